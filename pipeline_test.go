package rediscache_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rediscache/rediscache"
)

func TestAutoPipeline(t *testing.T) {
	t.Parallel()
	for _, near := range []bool{false, true} {
		t.Run(fmt.Sprintf("LocalCache=%v", near), func(t *testing.T) {
			t.Parallel()
			e := newRealEnv(t)
			c := e.client(t, rediscache.Options{Prefix: "ap", AutoPipeline: true, LocalCache: near})
			ctx := t.Context()
			var wg sync.WaitGroup
			for g := range 64 {
				wg.Go(func() {
					for i := range 50 {
						key := fmt.Sprintf("k%d-%d", g, i)
						if err := rediscache.Set(ctx, c, key, key, time.Minute); err != nil {
							t.Error(err)
							return
						}
						v, err := rediscache.Get[string](ctx, c, key)
						if err != nil || v != key {
							t.Errorf("%s: got %q, %v", key, v, err)
							return
						}
					}
				})
			}
			wg.Wait()
			assert.Equal(t, uint64(64*50), c.Stats().Hits)
			n, err := c.CountPrefix(ctx, "")
			require.NoError(t, err)
			assert.Equal(t, int64(64*50), n)
			v, err := rediscache.GetOrLoad(ctx, c, "loaded", 0, func(context.Context) (int, error) { return 7, nil })
			require.NoError(t, err)
			assert.Equal(t, 7, v)

			// Another client's write reaches the auto-pipelined reads too.
			writer := e.client(t, rediscache.Options{Prefix: "ap"})
			require.NoError(t, rediscache.Set(ctx, writer, "k0-0", "changed", time.Minute))
			require.Eventually(t, func() bool {
				v, err := rediscache.Get[string](ctx, c, "k0-0")
				return err == nil && v == "changed"
			}, 2*time.Second, 5*time.Millisecond)
		})
	}
}

func getCalls(t *testing.T, e env) int64 {
	t.Helper()
	info, err := e.raw.Info(t.Context(), "commandstats").Result()
	require.NoError(t, err)
	for _, line := range strings.Split(info, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_get:calls="); ok {
			n, err := strconv.ParseInt(rest[:strings.IndexByte(rest, ',')], 10, 64)
			require.NoError(t, err)
			return n
		}
	}
	return 0
}

func TestLocalCache(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	ctx := t.Context()
	near := e.client(t, rediscache.Options{Prefix: "lc", LocalCache: true})
	writer := e.client(t, rediscache.Options{Prefix: "lc"})
	require.NoError(t, rediscache.Set(ctx, writer, "k", "v1", time.Minute))

	v, err := rediscache.Get[string](ctx, near, "k")
	require.NoError(t, err)
	require.Equal(t, "v1", v)
	before := getCalls(t, e)
	for range 100 {
		v, err := rediscache.Get[string](ctx, near, "k")
		require.NoError(t, err)
		require.Equal(t, "v1", v)
	}
	assert.LessOrEqual(t, getCalls(t, e)-before, int64(2), "repeated hits are served locally")

	// The Client's own write is read back at once.
	require.NoError(t, rediscache.Set(ctx, near, "k", "own", time.Minute))
	v, err = rediscache.Get[string](ctx, near, "k")
	require.NoError(t, err)
	require.Equal(t, "own", v)

	// So are its batch writes, deletes and prefix invalidations: each
	// drops the kept copies before it writes.
	keep := func(key, want string) {
		t.Helper()
		for range 3 {
			v, err := rediscache.Get[string](ctx, near, key)
			require.NoError(t, err)
			require.Equal(t, want, v)
		}
	}
	keep("k", "own")
	require.NoError(t, rediscache.SetMany(ctx, near, map[string]string{"k": "batch", "k2": "x"}, time.Minute))
	keep("k", "batch")
	_, err = near.DeleteMany(ctx, []string{"k", "k2"})
	require.NoError(t, err)
	_, err = rediscache.Get[string](ctx, near, "k")
	require.ErrorIs(t, err, rediscache.ErrCacheMiss)
	require.NoError(t, near.MSet(ctx, map[string][]byte{"raw": []byte("r")}, time.Minute))
	require.NoError(t, rediscache.Set(ctx, near, "k", "again", time.Minute))
	keep("k", "again")
	n, err := near.InvalidatePrefix(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, int64(1), n)
	_, err = rediscache.Get[string](ctx, near, "k")
	require.ErrorIs(t, err, rediscache.ErrCacheMiss)
	require.NoError(t, rediscache.Set(ctx, near, "k", "own", time.Minute))

	// Another client's write invalidates the local copy.
	require.NoError(t, rediscache.Set(ctx, writer, "k", "v2", time.Minute))
	require.Eventually(t, func() bool {
		v, err := rediscache.Get[string](ctx, near, "k")
		return err == nil && v == "v2"
	}, 2*time.Second, 5*time.Millisecond)

	for _, bad := range []rediscache.Options{
		{Addrs: []string{e.addr, e.addr}, LocalCache: true},
		{Addrs: []string{e.addr}, DB: 1, LocalCache: true},
		{Redis: e.raw, LocalCache: true},
		{Addrs: []string{e.addr}, MasterName: "m", LocalCache: true},
	} {
		_, err := rediscache.New(&bad)
		require.ErrorIs(t, err, rediscache.ErrInvalidOptions)
	}
}

// GetOrLoad with LocalCache answers repeated hits from the decoded values
// without a round trip, yet keeps its freshness rules: negative entries
// end with NegativeTTL, stale ones are served while a refresh runs, and
// another client's write reaches it through Redis's invalidation.
func TestLocalCacheGetOrLoad(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	ctx := t.Context()
	near := e.client(t, rediscache.Options{Prefix: "lcl", LocalCache: true,
		NegativeTTL: 300 * time.Millisecond, StaleTTL: time.Minute, EarlyRefreshBeta: -1})
	writer := e.client(t, rediscache.Options{Prefix: "lcl"})

	var loads atomic.Int64
	load := func(v string) func(context.Context) (string, error) {
		return func(context.Context) (string, error) {
			loads.Add(1)
			return v, nil
		}
	}

	v, src, err := rediscache.GetOrLoadWithSource(ctx, near, "k", time.Minute, load("v1"))
	require.NoError(t, err)
	require.Equal(t, "v1", v)
	require.Equal(t, rediscache.SourceLoaded, src)
	v, src, err = rediscache.GetOrLoadWithSource(ctx, near, "k", time.Minute, load("never"))
	require.NoError(t, err)
	require.Equal(t, "v1", v) // read back from Redis, now kept locally
	require.Equal(t, rediscache.SourceHit, src)
	before := getCalls(t, e)
	for range 100 {
		v, src, err := rediscache.GetOrLoadWithSource(ctx, near, "k", time.Minute, load("never"))
		require.NoError(t, err)
		require.Equal(t, "v1", v)
		require.Equal(t, rediscache.SourceHit, src)
	}
	assert.LessOrEqual(t, getCalls(t, e)-before, int64(2), "repeated hits are served locally")
	assert.Equal(t, int64(1), loads.Load())

	// The decoded value itself is kept: a slice comes back as the same
	// slice, not a fresh decode of the bytes.
	ids := func(context.Context) ([]int, error) { return []int{1, 2, 3}, nil }
	// (The first reads after the Client's own write may race Redis's
	// invalidation of that write, which stops them from keeping the value.)
	for range 3 {
		_, err = rediscache.GetOrLoad(ctx, near, "ids", time.Minute, ids)
		require.NoError(t, err)
	}
	a, err := rediscache.GetOrLoad(ctx, near, "ids", time.Minute, ids)
	require.NoError(t, err)
	b, err := rediscache.GetOrLoad(ctx, near, "ids", time.Minute, ids)
	require.NoError(t, err)
	require.Equal(t, []int{1, 2, 3}, b)
	assert.Same(t, &a[0], &b[0], "a hit returns the kept decoded value")

	// A typed Get of another type does not take the kept string.
	_, err = rediscache.Get[int](ctx, near, "k")
	require.ErrorIs(t, err, rediscache.ErrCorruptValue)

	// Another client's write reaches the local copy.
	require.NoError(t, rediscache.Set(ctx, writer, "k", "v2", time.Minute))
	require.Eventually(t, func() bool {
		v, err := rediscache.GetOrLoad(ctx, near, "k", time.Minute, load("never"))
		return err == nil && v == "v2"
	}, 2*time.Second, 5*time.Millisecond)
	assert.Equal(t, int64(1), loads.Load())

	// A negative entry is kept locally, but not past NegativeTTL.
	var misses atomic.Int64
	notFound := func(context.Context) (string, error) {
		misses.Add(1)
		return "", rediscache.ErrNotFound
	}
	for range 3 {
		_, err := rediscache.GetOrLoad(ctx, near, "gone", time.Minute, notFound)
		require.ErrorIs(t, err, rediscache.ErrNotFound)
	}
	require.Equal(t, int64(1), misses.Load())
	time.Sleep(400 * time.Millisecond)
	_, err = rediscache.GetOrLoad(ctx, near, "gone", time.Minute, notFound)
	require.ErrorIs(t, err, rediscache.ErrNotFound)
	require.Equal(t, int64(2), misses.Load())

	// A value past its fresh window is served stale while one background
	// load refreshes it; the refresh replaces the local copy.
	_, err = rediscache.GetOrLoad(ctx, near, "s", 50*time.Millisecond, load("old"))
	require.NoError(t, err)
	_, err = rediscache.GetOrLoad(ctx, near, "s", 50*time.Millisecond, load("never"))
	require.NoError(t, err) // kept locally
	time.Sleep(100 * time.Millisecond)
	loadsBefore := loads.Load()
	v, src, err = rediscache.GetOrLoadWithSource(ctx, near, "s", 50*time.Millisecond, load("new"))
	require.NoError(t, err)
	require.Equal(t, "old", v)
	require.Equal(t, rediscache.SourceStale, src)
	require.Eventually(t, func() bool {
		v, err := rediscache.GetOrLoad(ctx, near, "s", time.Hour, load("new"))
		return err == nil && v == "new"
	}, 2*time.Second, 5*time.Millisecond)
	assert.Equal(t, loadsBefore+1, loads.Load(), "one background load")
}

// GetMany with LocalCache answers kept keys locally, fetches the rest in one
// batch, and keeps what it fetched; another client's write still reaches it.
func TestLocalCacheGetMany(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	ctx := t.Context()
	near := e.client(t, rediscache.Options{Prefix: "lcm", LocalCache: true})
	writer := e.client(t, rediscache.Options{Prefix: "lcm"})
	items := map[string][]int{}
	keys := []string{"missing"}
	for i := range 20 {
		k := "k" + strconv.Itoa(i)
		items[k] = []int{i, i + 1}
		keys = append(keys, k)
	}
	require.NoError(t, rediscache.SetMany(ctx, writer, items, time.Minute))

	// A few single Gets keep some values first, so the batch mixes both.
	for _, k := range keys[1:6] {
		_, err := rediscache.Get[[]int](ctx, near, k)
		require.NoError(t, err)
	}
	first, err := rediscache.GetMany[[]int](ctx, near, keys)
	require.NoError(t, err)
	require.Equal(t, items, first)
	second, err := rediscache.GetMany[[]int](ctx, near, keys)
	require.NoError(t, err)
	require.Equal(t, items, second)
	for k := range items {
		assert.Same(t, &first[k][0], &second[k][0], "%s: a kept decoded value", k)
	}
	got, err := rediscache.Get[[]int](ctx, near, "k7")
	require.NoError(t, err)
	assert.Same(t, &first["k7"][0], &got[0], "Get shares what GetMany kept")
	s := near.Stats()
	assert.Equal(t, uint64(5+20+20+1), s.Hits)
	assert.Equal(t, uint64(2), s.Misses)

	// Another type is not taken from the kept values.
	_, err = rediscache.GetMany[string](ctx, near, []string{"k1"})
	var be *rediscache.BatchError
	require.ErrorAs(t, err, &be)
	assert.Equal(t, 1, be.Total)
	require.ErrorIs(t, be.Failed["k1"], rediscache.ErrCorruptValue)

	require.NoError(t, rediscache.Set(ctx, writer, "k3", []int{42}, time.Minute))
	require.Eventually(t, func() bool {
		m, err := rediscache.GetMany[[]int](ctx, near, keys)
		return err == nil && len(m) == 20 && m["k3"][0] == 42 && m["k4"][0] == 4
	}, 2*time.Second, 5*time.Millisecond)
}
