package rediscache_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rediscache/rediscache"
	"github.com/rediscache/rediscache/internal/redistest"
)

// tagsEnv is a backend for the tag tests: a standalone server or a
// 3-master cluster, with a way to build Clients on it.
type tagsEnv struct {
	name    string
	addrs   []string
	cluster bool
}

func (e tagsEnv) client(t *testing.T, opt rediscache.Options) *rediscache.Client {
	t.Helper()
	opt.Addrs, opt.ClusterMode = e.addrs, e.cluster
	c, err := rediscache.New(&opt)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func tagsEnvs(t *testing.T) []tagsEnv {
	srv := redistest.Start(t)
	cl := redistest.StartCluster(t, 3, 0)
	return []tagsEnv{{name: "standalone", addrs: []string{srv.Addr()}}, {name: "cluster", addrs: cl.Addrs(), cluster: true}}
}

var tagPrefixSeq atomic.Int64

func tagPrefix() string { return fmt.Sprint("tags", tagPrefixSeq.Add(1)) }

func TestTags(t *testing.T) {
	t.Parallel()
	for _, e := range tagsEnvs(t) {
		t.Run(e.name, func(t *testing.T) {
			t.Parallel()
			t.Run("another Client sees the invalidation at once", func(t *testing.T) { tagsSeenAtOnce(t, e) })
			t.Run("any one of four tags invalidates", func(t *testing.T) { tagsAnyOfFour(t, e) })
			t.Run("a load racing InvalidateTags", func(t *testing.T) { tagsRacingLoad(t, e) })
			t.Run("a lost tag key means invalid", func(t *testing.T) { tagsLostKey(t, e) })
			t.Run("bad tags write nothing", func(t *testing.T) { tagsBadInput(t, e) })
			t.Run("SetMany and GetManyOrLoad", func(t *testing.T) { tagsBatches(t, e) })
		})
	}
}

// tagsSeenAtOnce: once InvalidateTags returns in A, every read in B that
// starts afterwards misses, whether or not the read names the tags.
func tagsSeenAtOnce(t *testing.T, e tagsEnv) {
	ctx := t.Context()
	p := tagPrefix()
	a, b := e.client(t, rediscache.Options{Prefix: p}), e.client(t, rediscache.Options{Prefix: p})
	require.NoError(t, rediscache.Set(ctx, a, "tasks:v1:1", "task", time.Hour, rediscache.WithTags("user:42", "org:7")))
	require.NoError(t, rediscache.Set(ctx, a, "tasks:v1:2", "other", time.Hour, rediscache.WithTags("user:43")))
	v, err := rediscache.Get[string](ctx, b, "tasks:v1:1")
	require.NoError(t, err)
	assert.Equal(t, "task", v)
	md, err := b.Metadata(ctx, "tasks:v1:1")
	require.NoError(t, err)
	assert.Equal(t, []string{"org:7", "user:42"}, md.Tags)

	require.NoError(t, a.InvalidateTags(ctx, "user:42"))
	_, err = rediscache.Get[string](ctx, b, "tasks:v1:1")
	assert.ErrorIs(t, err, rediscache.ErrCacheMiss, "Get")
	_, err = rediscache.Get[string](ctx, b, "tasks:v1:1", rediscache.WithTags("user:42", "org:7"))
	assert.ErrorIs(t, err, rediscache.ErrCacheMiss, "Get WithTags")
	var s string
	assert.ErrorIs(t, b.Get(ctx, "tasks:v1:1", &s), rediscache.ErrCacheMiss, "untyped Get")
	m, err := rediscache.GetMany[string](ctx, b, []string{"tasks:v1:1", "tasks:v1:2"})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"tasks:v1:2": "other"}, m, "GetMany: only the other tag's entry")
	got, src, err := rediscache.GetOrLoadWithSource(ctx, b, "tasks:v1:1", time.Hour,
		func(context.Context) (string, error) { return "reloaded", nil }, rediscache.WithTags("user:42"))
	require.NoError(t, err)
	assert.Equal(t, "reloaded", got)
	assert.Equal(t, rediscache.SourceLoaded, src)
	v, err = rediscache.Get[string](ctx, a, "tasks:v1:1")
	require.NoError(t, err)
	assert.Equal(t, "reloaded", v, "the reload replaced the invalidated entry, under the tag's new version")
}

// tagsAnyOfFour: an entry with four tags is invalidated by any one.
func tagsAnyOfFour(t *testing.T, e tagsEnv) {
	ctx := t.Context()
	c := e.client(t, rediscache.Options{Prefix: tagPrefix()})
	tags := []string{"a", "b", "c", "d"}
	for _, inv := range tags {
		require.NoError(t, rediscache.Set(ctx, c, "k", 1, time.Hour, rediscache.WithTags(tags...)))
		_, err := rediscache.Get[int](ctx, c, "k")
		require.NoError(t, err)
		require.NoError(t, c.InvalidateTags(ctx, inv))
		_, err = rediscache.Get[int](ctx, c, "k")
		assert.ErrorIs(t, err, rediscache.ErrCacheMiss, "after InvalidateTags(%q)", inv)
	}
}

// tagsRacingLoad: a GetOrLoad (and a GetManyOrLoad) whose loader read the
// old row before InvalidateTags returned never leaves an entry that reads
// as valid after it.
func tagsRacingLoad(t *testing.T, e tagsEnv) {
	ctx := t.Context()
	c := e.client(t, rediscache.Options{Prefix: tagPrefix()})
	other := e.client(t, rediscache.Options{Prefix: c.StorageKey("")[:len(c.StorageKey(""))-1]})
	var row atomic.Int64
	row.Store(1)
	started, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 2)
	go func() {
		_, err := rediscache.GetOrLoad(ctx, c, "one", time.Hour, func(context.Context) (int64, error) {
			v := row.Load()
			started <- struct{}{}
			<-release
			return v, nil
		}, rediscache.WithTags("t"))
		done <- err
	}()
	go func() {
		_, err := rediscache.GetManyOrLoad(ctx, c, []string{"many"}, time.Hour, func(_ context.Context, ks []string) (map[string]int64, error) {
			v := row.Load()
			started <- struct{}{}
			<-release
			return map[string]int64{ks[0]: v}, nil
		}, rediscache.WithTags("t"))
		done <- err
	}()
	<-started
	<-started
	row.Store(2)
	require.NoError(t, other.InvalidateTags(ctx, "t"))
	close(release)
	require.NoError(t, <-done)
	require.NoError(t, <-done)
	for _, k := range []string{"one", "many"} {
		_, err := rediscache.Get[int64](ctx, other, k)
		assert.ErrorIs(t, err, rediscache.ErrCacheMiss, "%s: the old row stored before the invalidation reads as valid", k)
		v, err := rediscache.GetOrLoad(ctx, other, k, time.Hour, func(context.Context) (int64, error) { return row.Load(), nil }, rediscache.WithTags("t"))
		require.NoError(t, err)
		assert.Equal(t, int64(2), v, k)
	}
}

// tagsLostKey: a tag key evicted (deleted by hand) makes its entries
// misses, never valid; the next write of the tag starts a new version.
func tagsLostKey(t *testing.T, e tagsEnv) {
	ctx := t.Context()
	c := e.client(t, rediscache.Options{Prefix: tagPrefix()})
	require.NoError(t, rediscache.Set(ctx, c, "k", "v", time.Hour, rediscache.WithTags("t")))
	_, err := rediscache.Get[string](ctx, c, "k")
	require.NoError(t, err)
	require.NoError(t, c.Redis().Del(ctx, c.StorageKey("")+"\x00tag:t").Err())
	_, err = rediscache.Get[string](ctx, c, "k")
	assert.ErrorIs(t, err, rediscache.ErrCacheMiss, "an entry of a lost tag version")
	require.NoError(t, rediscache.Set(ctx, c, "k2", "v2", time.Hour, rediscache.WithTags("t")))
	v, err := rediscache.Get[string](ctx, c, "k2")
	require.NoError(t, err)
	assert.Equal(t, "v2", v)
	_, err = rediscache.Get[string](ctx, c, "k")
	assert.ErrorIs(t, err, rediscache.ErrCacheMiss, "the new version is not the lost one")
}

// tagsBadInput: an empty tag, a NUL in one, or more than MaxTags are
// ErrInvalidKey, and nothing is written.
func tagsBadInput(t *testing.T, e tagsEnv) {
	ctx := t.Context()
	c := e.client(t, rediscache.Options{Prefix: tagPrefix()})
	many := make([]string, rediscache.MaxTags+1)
	for i := range many {
		many[i] = fmt.Sprint("t", i)
	}
	load := func(context.Context) (int, error) { return 1, nil }
	loadMany := func(_ context.Context, ks []string) (map[string]int, error) { return map[string]int{ks[0]: 1}, nil }
	for name, tags := range map[string][]string{"empty": {""}, "NUL": {"a\x00b"}, "17 tags": many} {
		opt := rediscache.WithTags(tags...)
		for call, err := range map[string]error{
			"Set":        rediscache.Set(ctx, c, "k", 1, time.Hour, opt),
			"Client.Set": c.Set(ctx, "k", 1, time.Hour, opt),
			"SetMany":    rediscache.SetMany(ctx, c, map[string]int{"k": 1}, time.Hour, opt),
			"GetOrLoad":  func() error { _, err := rediscache.GetOrLoad(ctx, c, "k", time.Hour, load, opt); return err }(),
			"GetManyOrLoad": func() error {
				_, err := rediscache.GetManyOrLoad(ctx, c, []string{"k"}, time.Hour, loadMany, opt)
				return err
			}(),
			"Get":            func() error { _, err := rediscache.Get[int](ctx, c, "k", opt); return err }(),
			"InvalidateTags": c.InvalidateTags(ctx, tags...),
		} {
			assert.ErrorIs(t, err, rediscache.ErrInvalidKey, "%s with %s tags", call, name)
		}
	}
	n, err := c.CountPrefix(ctx, "")
	require.NoError(t, err)
	assert.Zero(t, n, "something was written")
	var tagKeys atomic.Int64 // ForEachMaster calls iter on every master at once
	iter := func(ctx context.Context, n *redis.Client) error {
		keys, err := n.Keys(ctx, c.StorageKey("")+"\x00tag:*").Result()
		tagKeys.Add(int64(len(keys)))
		return err
	}
	if cc, ok := c.Redis().(*redis.ClusterClient); ok {
		require.NoError(t, cc.ForEachMaster(ctx, iter))
	} else {
		require.NoError(t, iter(ctx, c.Redis().(*redis.Client)))
	}
	assert.Zero(t, tagKeys.Load(), "a tag version was written")
}

// tagsBatches: SetMany and GetManyOrLoad tag their entries, and a tag
// invalidation reaches both.
func tagsBatches(t *testing.T, e tagsEnv) {
	ctx := t.Context()
	c := e.client(t, rediscache.Options{Prefix: tagPrefix()})
	items := map[string]int{}
	for i := range 50 {
		items[fmt.Sprint("set:", i)] = i
	}
	require.NoError(t, rediscache.SetMany(ctx, c, items, time.Hour, rediscache.WithTags("batch")))
	var loads atomic.Int64
	loadMany := func(_ context.Context, ks []string) (map[string]int, error) {
		loads.Add(1)
		out := map[string]int{}
		for _, k := range ks {
			out[k] = int(loads.Load())
		}
		return out, nil
	}
	keys := []string{"load:1", "load:2", "load:3"}
	m, err := rediscache.GetManyOrLoad(ctx, c, keys, time.Hour, loadMany, rediscache.WithTags("batch"))
	require.NoError(t, err)
	assert.Len(t, m, 3)
	got, err := rediscache.GetMany[int](ctx, c, append(keys, "set:1", "set:2"), rediscache.WithTags("batch"))
	require.NoError(t, err)
	assert.Len(t, got, 5)
	require.NoError(t, c.InvalidateTags(ctx, "batch"))
	got, err = rediscache.GetMany[int](ctx, c, append(keys, "set:1", "set:2"))
	require.NoError(t, err)
	assert.Empty(t, got, "GetMany after InvalidateTags")
	m, err = rediscache.GetManyOrLoad(ctx, c, keys, time.Hour, loadMany, rediscache.WithTags("batch"))
	require.NoError(t, err)
	assert.Equal(t, map[string]int{"load:1": 2, "load:2": 2, "load:3": 2}, m, "loaded again, once")
	assert.Equal(t, int64(2), loads.Load())
}

// Tags with LocalCache: another Client's InvalidateTags reaches the near
// cache within its bound, the Client's own at once.
func TestTagsLocalCache(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	ctx := t.Context()
	near := e.client(t, rediscache.Options{Prefix: "tn", LocalCache: true})
	other := e.client(t, rediscache.Options{Prefix: "tn"})
	require.NoError(t, rediscache.Set(ctx, other, "k", "v", time.Hour, rediscache.WithTags("t")))
	for range 3 { // kept now, with the tag's version
		v, err := rediscache.Get[string](ctx, near, "k")
		require.NoError(t, err)
		require.Equal(t, "v", v)
	}
	require.NoError(t, other.InvalidateTags(ctx, "t"))
	start := time.Now()
	require.Eventually(t, func() bool {
		_, err := rediscache.Get[string](ctx, near, "k")
		return errors.Is(err, rediscache.ErrCacheMiss)
	}, rediscache.DefaultLocalCacheTTL, time.Millisecond, "another Client's InvalidateTags never reached the near cache")
	t.Logf("another Client's InvalidateTags reached the near cache after %v", time.Since(start))

	require.NoError(t, rediscache.Set(ctx, near, "own", "v", time.Hour, rediscache.WithTags("u")))
	_, err := rediscache.Get[string](ctx, near, "own")
	require.NoError(t, err)
	require.NoError(t, near.InvalidateTags(ctx, "u"))
	_, err = rediscache.Get[string](ctx, near, "own")
	assert.ErrorIs(t, err, rediscache.ErrCacheMiss, "its own InvalidateTags, at once")
	v, err := rediscache.GetOrLoad(ctx, near, "own", time.Hour, func(context.Context) (string, error) { return "new", nil }, rediscache.WithTags("u"))
	require.NoError(t, err)
	assert.Equal(t, "new", v)
}

// roundTrips counts go-redis round trips (commands and pipelines).
type roundTrips struct{ n atomic.Int64 }

func (r *roundTrips) DialHook(next redisDialHook) redisDialHook { return next }
func (r *roundTrips) ProcessHook(next redisProcessHook) redisProcessHook {
	return func(ctx context.Context, cmd redisCmder) error {
		r.n.Add(1)
		return next(ctx, cmd)
	}
}
func (r *roundTrips) ProcessPipelineHook(next redisPipelineHook) redisPipelineHook {
	return func(ctx context.Context, cmds []redisCmder) error {
		r.n.Add(1)
		return next(ctx, cmds)
	}
}

// A tagged entry costs one more round trip than an untagged one, and none
// when the read names its tags (WithTags); an untagged one costs what it
// always did.
func TestTagsReadRoundTrips(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	ctx := t.Context()
	rdb := redis.NewClient(&redis.Options{Addr: e.addr})
	t.Cleanup(func() { _ = rdb.Close() })
	var rt roundTrips
	rdb.AddHook(&rt)
	c := e.client(t, rediscache.Options{Redis: rdb, Prefix: "rt"})
	require.NoError(t, rediscache.Set(ctx, c, "plain", 1, time.Hour))
	require.NoError(t, rediscache.Set(ctx, c, "tagged", 1, time.Hour, rediscache.WithTags("a", "b", "c", "d")))
	for _, tc := range []struct {
		name string
		read func() error
		want int64
	}{
		{"untagged", func() error { _, err := rediscache.Get[int](ctx, c, "plain"); return err }, 1},
		{"tagged", func() error { _, err := rediscache.Get[int](ctx, c, "tagged"); return err }, 2},
		{"tagged, WithTags", func() error {
			_, err := rediscache.Get[int](ctx, c, "tagged", rediscache.WithTags("a", "b", "c", "d"))
			return err
		}, 1},
		{"GetOrLoad tagged, WithTags", func() error {
			_, err := rediscache.GetOrLoad(ctx, c, "tagged", time.Hour, func(context.Context) (int, error) { return 0, errors.New("not a hit") }, rediscache.WithTags("a", "b", "c", "d"))
			return err
		}, 1},
	} {
		before := rt.n.Load()
		require.NoError(t, tc.read(), tc.name)
		assert.Equal(t, tc.want, rt.n.Load()-before, "%s: round trips", tc.name)
	}
}

// InvalidateTags is O(1): one command per tag, whatever the number of
// entries carrying it; with 1,000,000 tagged entries it takes under a
// millisecond of Redis time.
func TestInvalidateTagsMillionEntries(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	raw := srv.Client(t)
	ctx := t.Context()
	c, err := rediscache.New(&rediscache.Options{Addrs: []string{srv.Addr()}, Prefix: "m"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	require.NoError(t, rediscache.Set(ctx, c, "tasks:v1:0", "v", time.Hour, rediscache.WithTags("user:42")))
	entry, err := raw.Get(ctx, "m:tasks:v1:0").Bytes()
	require.NoError(t, err)
	// 1,000,000 copies of the tagged entry, written by a script in slices
	// of 50,000 (a script must not block Redis for long).
	const n, slice = 1_000_000, 50_000
	for from := 1; from <= n; from += slice {
		require.NoError(t, raw.Eval(ctx, `for i = tonumber(ARGV[2]), tonumber(ARGV[3]) do redis.call("SET", "m:tasks:v1:" .. i, ARGV[1], "EX", 3600) end return 0`,
			nil, entry, from, from+slice-1).Err())
	}
	v, err := rediscache.Get[string](ctx, c, fmt.Sprint("tasks:v1:", n/2))
	require.NoError(t, err)
	require.Equal(t, "v", v)

	require.NoError(t, raw.ConfigResetStat(ctx).Err())
	require.NoError(t, c.InvalidateTags(ctx, "user:42"))
	var usec float64
	info, err := raw.Info(ctx, "commandstats").Result()
	require.NoError(t, err)
	for _, line := range strings.Split(info, "\n") {
		for _, cmd := range []string{"cmdstat_evalsha:", "cmdstat_eval:"} {
			if rest, ok := strings.CutPrefix(line, cmd); ok {
				for _, f := range strings.Split(strings.TrimSpace(rest), ",") {
					if u, ok := strings.CutPrefix(f, "usec="); ok {
						usec += mustFloat(t, u)
					}
				}
			}
		}
	}
	t.Logf("InvalidateTags over %d tagged entries: %v µs of Redis time", n, usec)
	assert.Less(t, usec, 1000.0)
	_, err = rediscache.Get[string](ctx, c, fmt.Sprint("tasks:v1:", n/2))
	assert.ErrorIs(t, err, rediscache.ErrCacheMiss)
}
