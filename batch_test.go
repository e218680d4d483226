package rediscache_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rediscache/rediscache"
	"github.com/rediscache/rediscache/internal/redistest"
)

// topo is a Redis deployment under test: a standalone redis-server or a
// three-master Redis Cluster, with an unprefixed client for seeding and
// assertions.
type topo struct {
	name    string
	addr    string             // standalone
	cluster *redistest.Cluster // nil on standalone
	raw     redis.UniversalClient
}

// eachTopology runs fn as parallel subtests on a fresh standalone
// redis-server and on a fresh three-master cluster.
func eachTopology(t *testing.T, fn func(t *testing.T, e topo)) {
	t.Run("standalone", func(t *testing.T) {
		t.Parallel()
		srv := redistest.Start(t)
		fn(t, topo{name: "standalone", addr: srv.Addr(), raw: srv.Client(t)})
	})
	t.Run("cluster", func(t *testing.T) {
		t.Parallel()
		cl := redistest.StartCluster(t, 3, 0)
		fn(t, topo{name: "cluster", cluster: cl, raw: cl.Client(t)})
	})
}

// client returns a Client on e built from opt, closed on cleanup.
func (e topo) client(t testing.TB, opt rediscache.Options) *rediscache.Client {
	t.Helper()
	if e.cluster != nil {
		opt.Addrs, opt.ClusterMode = e.cluster.Addrs(), true
	} else {
		opt.Addrs = []string{e.addr}
	}
	c, err := rediscache.New(&opt)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// eachNode calls fn on every master (the one server on standalone),
// concurrently on a cluster.
func (e topo) eachNode(t testing.TB, fn func(ctx context.Context, n *redis.Client) error) {
	t.Helper()
	ctx := context.Background()
	switch r := e.raw.(type) {
	case *redis.ClusterClient:
		require.NoError(t, r.ForEachMaster(ctx, fn))
	case *redis.Client:
		require.NoError(t, fn(ctx, r))
	default:
		t.Fatalf("unexpected client %T", e.raw)
	}
}

// dbsize returns the number of keys on e, bookkeeping keys not counted.
func (e topo) dbsize(t testing.TB) int64 {
	t.Helper()
	return int64(len(e.userKeys(t)))
}

// userKeys is keys without the bookkeeping keys (a NUL byte in the key:
// namespace generations, write counters).
func (e topo) userKeys(t testing.TB) map[string]bool {
	t.Helper()
	all := e.keys(t)
	for k := range all {
		if strings.Contains(k, "\x00") {
			delete(all, k)
		}
	}
	return all
}

// keys returns every key on e, found by SCAN on every master.
func (e topo) keys(t testing.TB) map[string]bool {
	t.Helper()
	var mu sync.Mutex
	all := map[string]bool{}
	e.eachNode(t, func(ctx context.Context, n *redis.Client) error {
		it := n.Scan(ctx, 0, "", 5000).Iterator()
		for it.Next(ctx) {
			mu.Lock()
			all[it.Val()] = true
			mu.Unlock()
		}
		return it.Err()
	})
	return all
}

func (e topo) flush(t testing.TB) {
	t.Helper()
	e.eachNode(t, func(ctx context.Context, n *redis.Client) error { return n.FlushAll(ctx).Err() })
}

// seed writes every key with value v through raw pipelines.
func (e topo) seed(t testing.TB, keys []string, v string) {
	t.Helper()
	ctx := context.Background()
	for lo := 0; lo < len(keys); lo += 5000 {
		pipe := e.raw.Pipeline()
		for _, k := range keys[lo:min(lo+5000, len(keys))] {
			pipe.Set(ctx, k, v, 0)
		}
		cmds, err := pipe.Exec(ctx)
		require.NoError(t, err)
		require.Len(t, cmds, min(5000, len(keys)-lo))
	}
}

// pttls returns the PTTL of every stored key.
func (e topo) pttls(t testing.TB, keys []string) []time.Duration {
	t.Helper()
	ctx := context.Background()
	out := make([]time.Duration, 0, len(keys))
	for lo := 0; lo < len(keys); lo += 5000 {
		pipe := e.raw.Pipeline()
		var cmds []*redis.DurationCmd
		for _, k := range keys[lo:min(lo+5000, len(keys))] {
			cmds = append(cmds, pipe.PTTL(ctx, k))
		}
		_, err := pipe.Exec(ctx)
		require.NoError(t, err)
		for _, c := range cmds {
			out = append(out, c.Val())
		}
	}
	return out
}

// batchKeys returns n logical keys spread over all hash slots, with glob,
// separator and escape characters in some of them.
func batchKeys(n int) []string {
	g := rediscache.NewKeyGenerator(rediscache.V1)
	keys := make([]string, n)
	for i := range keys {
		switch i % 4 {
		case 0:
			keys[i] = g.TaskKey("task_" + strconv.Itoa(i))
		case 1:
			keys[i] = g.UserKey("u*?[x]:%"+strconv.Itoa(i), "profile")
		case 2:
			keys[i] = "raw:" + strconv.Itoa(i) + ":*?[]%"
		default:
			keys[i] = g.SessionKey("u"+strconv.Itoa(i), "s{1}", i%8 == 3)
		}
	}
	return keys
}

func TestBatchManyKeys(t *testing.T) {
	t.Parallel()
	const n = 10_000
	eachTopology(t, func(t *testing.T, e topo) {
		ctx := t.Context()
		keys := batchKeys(n)
		misses := make([]string, 0, n/5)
		for i := range n / 5 {
			misses = append(misses, "missing:"+strconv.Itoa(i))
		}
		// Query order interleaves hits and misses.
		query := make([]string, 0, n+len(misses))
		for i, k := range keys {
			query = append(query, k)
			if i%5 == 0 {
				query = append(query, misses[i/5])
			}
		}

		t.Run("SetMany GetMany", func(t *testing.T) {
			e.flush(t)
			c := e.client(t, rediscache.Options{Prefix: "b"})
			items := make(map[string]task, n)
			for i, k := range keys {
				items[k] = task{ID: k, Title: "t" + strconv.Itoa(i), Tags: []string{"x"}, Score: float64(i)}
			}
			require.NoError(t, rediscache.SetMany(ctx, c, items, 10*time.Minute))
			assert.Equal(t, int64(n), e.dbsize(t))

			stored := make([]string, n)
			for i, k := range keys {
				stored[i] = c.StorageKey(k)
			}
			for i, d := range e.pttls(t, stored) {
				if d <= 9*time.Minute || d > 10*time.Minute {
					t.Fatalf("PTTL of %q = %v, want (9m, 10m]", stored[i], d)
				}
			}

			got, err := rediscache.GetMany[task](ctx, c, query)
			require.NoError(t, err)
			require.Len(t, got, n)
			assert.Equal(t, items, got)
			for _, k := range misses {
				_, found := got[k]
				require.False(t, found, k)
			}
			s := c.Stats()
			assert.Equal(t, uint64(n), s.Sets)
			assert.Equal(t, uint64(n), s.Hits)
			assert.Equal(t, uint64(len(misses)), s.Misses)
			assert.Equal(t, uint64(0), s.Errors)
			assert.Positive(t, s.AvgLatency)
		})

		t.Run("SetMany ttl 0 per key", func(t *testing.T) {
			e.flush(t)
			c := e.client(t, rediscache.Options{
				Prefix:        "b",
				DefaultTTL:    time.Hour,
				NamespaceTTLs: map[rediscache.Namespace]time.Duration{rediscache.NamespaceSessions: rediscache.TTLDay},
				TTLJitter:     0.1,
			})
			items := map[string]int{}
			for i, k := range keys[:2000] {
				items[k] = i
			}
			require.NoError(t, rediscache.SetMany(ctx, c, items, 0))
			stored := make([]string, 2000)
			for i, k := range keys[:2000] {
				stored[i] = c.StorageKey(k)
			}
			seen := map[time.Duration]bool{}
			for i, d := range e.pttls(t, stored) {
				want := time.Hour
				if strings.HasPrefix(keys[i], "sessions:") {
					want = rediscache.TTLDay
				}
				require.GreaterOrEqual(t, d, time.Duration(float64(want)*0.9)-time.Second, keys[i])
				require.LessOrEqual(t, d, time.Duration(float64(want)*1.1), keys[i])
				seen[d.Round(time.Second)] = true
			}
			assert.Greater(t, len(seen), 100, "jitter is drawn per key")
		})

		t.Run("MSet MGet", func(t *testing.T) {
			e.flush(t)
			c := e.client(t, rediscache.Options{Prefix: "raw", DefaultTTL: 3 * time.Minute})
			items := make(map[string][]byte, n)
			for i, k := range keys {
				items[k] = []byte("payload-" + strconv.Itoa(i))
			}
			items[keys[7]] = []byte{} // an empty value is a value, not a miss
			require.NoError(t, c.MSet(ctx, items, 0))
			stored := make([]string, n)
			for i, k := range keys {
				stored[i] = c.StorageKey(k)
			}
			for i, d := range e.pttls(t, stored) {
				require.Greater(t, d, 2*time.Minute, stored[i])
			}
			v, err := e.raw.Get(ctx, c.StorageKey(keys[3])).Result()
			require.NoError(t, err)
			assert.Equal(t, "payload-3", v, "stored as-is, no envelope")

			got, err := c.MGet(ctx, query)
			require.NoError(t, err)
			require.Len(t, got, len(query))
			for i, k := range query {
				if strings.HasPrefix(k, "missing:") {
					assert.Nil(t, got[i], k)
					continue
				}
				require.NotNil(t, got[i], k)
				assert.Equal(t, items[k], got[i], k)
			}
			s := c.Stats()
			assert.Equal(t, uint64(n), s.Hits)
			assert.Equal(t, uint64(len(misses)), s.Misses)
			assert.Equal(t, uint64(n), s.Sets)
		})

		t.Run("MGet returns the envelope", func(t *testing.T) {
			e.flush(t)
			c := e.client(t, rediscache.Options{Prefix: "b"})
			require.NoError(t, rediscache.Set(ctx, c, "k", "hello", 0))
			got, err := c.MGet(ctx, []string{"k", "nope", "k"})
			require.NoError(t, err)
			require.Len(t, got, 3)
			raw, err := e.raw.Get(ctx, "b:k").Bytes()
			require.NoError(t, err)
			assert.Equal(t, raw, got[0])
			assert.Nil(t, got[1])
			assert.Equal(t, raw, got[2])
			assert.Equal(t, byte(0xC2), got[0][0])
			assert.True(t, strings.HasSuffix(string(got[0]), `"hello"`))
		})

		t.Run("DeleteMany", func(t *testing.T) {
			e.flush(t)
			c := e.client(t, rediscache.Options{Prefix: "b"})
			other := e.client(t, rediscache.Options{Prefix: "other"})
			items := make(map[string]int, n)
			for i, k := range keys {
				items[k] = i
			}
			require.NoError(t, rediscache.SetMany(ctx, c, items, time.Minute))
			require.NoError(t, rediscache.SetMany(ctx, other, items, time.Minute))
			d, err := c.DeleteMany(ctx, query)
			require.NoError(t, err)
			assert.Equal(t, int64(n), d)
			assert.Equal(t, uint64(n), c.Stats().Deletes)
			got, err := rediscache.GetMany[int](ctx, c, keys)
			require.NoError(t, err)
			assert.Empty(t, got)
			assert.Equal(t, int64(n), e.dbsize(t), "the other prefix is untouched")
			d, err = c.DeleteMany(ctx, keys)
			require.NoError(t, err)
			assert.Equal(t, int64(0), d)
		})

		t.Run("duplicates and empty batches", func(t *testing.T) {
			e.flush(t)
			c := e.client(t, rediscache.Options{Prefix: "b"})
			require.NoError(t, rediscache.SetMany(ctx, c, map[string]string{"a": "A", "b": "B"}, time.Minute))
			got, err := rediscache.GetMany[string](ctx, c, []string{"a", "a", "x", "b", "a"})
			require.NoError(t, err)
			assert.Equal(t, map[string]string{"a": "A", "b": "B"}, got)
			d, err := c.DeleteMany(ctx, []string{"a", "a"})
			require.NoError(t, err)
			assert.Equal(t, int64(1), d)

			m, err := rediscache.GetMany[string](ctx, c, nil)
			require.NoError(t, err)
			assert.NotNil(t, m)
			assert.Empty(t, m)
			raw, err := c.MGet(ctx, []string{})
			require.NoError(t, err)
			assert.Empty(t, raw)
			require.NoError(t, rediscache.SetMany(ctx, c, map[string]string{}, 0))
			require.NoError(t, c.MSet(ctx, nil, 0))
			d, err = c.DeleteMany(ctx, nil)
			require.NoError(t, err)
			assert.Equal(t, int64(0), d)
		})

		t.Run("corrupt values are per key", func(t *testing.T) {
			e.flush(t)
			c := e.client(t, rediscache.Options{Prefix: "b"})
			items := map[string]task{}
			for i := range 100 {
				items["good"+strconv.Itoa(i)] = task{ID: strconv.Itoa(i)}
			}
			require.NoError(t, rediscache.SetMany(ctx, c, items, time.Minute))
			require.NoError(t, rediscache.Set(ctx, c, "wrongtype", 42, time.Minute))
			require.NoError(t, e.raw.Set(ctx, "b:foreign", `{"id":"x"}`, 0).Err())
			require.NoError(t, e.raw.Set(ctx, "b:truncated", "\xc1\x00", 0).Err())
			query := []string{"foreign", "wrongtype", "truncated", "missing"}
			for k := range items {
				query = append(query, k)
			}

			got, err := rediscache.GetMany[task](ctx, c, query)
			require.Error(t, err)
			assert.Equal(t, items, got, "good values are returned despite the corrupt ones")
			be, isBatch := err.(*rediscache.BatchError) //nolint:errorlint // the documented type itself, unwrapped
			require.True(t, isBatch, "GetMany returns a *BatchError, not an error wrapping one: %T", err)
			assert.Equal(t, "getmany", be.Op)
			assert.Equal(t, len(query), be.Total)
			require.Len(t, be.Failed, 3)
			for _, k := range []string{"foreign", "wrongtype", "truncated"} {
				require.ErrorIs(t, be.Failed[k], rediscache.ErrCorruptValue, k)
				var op *rediscache.OpError
				require.ErrorAs(t, be.Failed[k], &op)
				assert.Equal(t, k, op.Key)
			}
			require.ErrorIs(t, err, rediscache.ErrCorruptValue)
			assert.NotErrorIs(t, err, rediscache.ErrCacheMiss)
			s := c.Stats()
			assert.Equal(t, uint64(3), s.Errors)
			assert.Equal(t, uint64(100), s.Hits)
			assert.Equal(t, uint64(1), s.Misses)
		})

		t.Run("bad input sends nothing", func(t *testing.T) {
			e.flush(t)
			c := e.client(t, rediscache.Options{Prefix: "b", MaxKeySize: 32, MaxValueSize: 64})
			closed := e.client(t, rediscache.Options{Prefix: "b"})
			require.NoError(t, closed.Close())
			require.NoError(t, e.raw.Set(ctx, "b:keep", "1", 0).Err())
			long := strings.Repeat("k", 40)
			var nilCtx context.Context // a nil context is exactly what is under test
			goodItems := func() map[string]any {
				return map[string]any{"a": 1, "b": "two", "keep": 3}
			}
			with := func(k string, v any) map[string]any {
				m := goodItems()
				m[k] = v
				return m
			}
			raws := func(k string, v []byte) map[string][]byte {
				return map[string][]byte{"a": []byte("1"), "keep": []byte("2"), k: v}
			}
			cases := []struct {
				name string
				call func() error
				want error
			}{
				{"GetMany empty key", func() error { _, err := rediscache.GetMany[int](ctx, c, []string{"a", "", "b"}); return err }, rediscache.ErrInvalidKey},
				{"GetMany long key", func() error { _, err := rediscache.GetMany[int](ctx, c, []string{"a", long}); return err }, rediscache.ErrInvalidKey},
				{"GetMany nil ctx", func() error { _, err := rediscache.GetMany[int](nilCtx, c, []string{"a"}); return err }, rediscache.ErrNilContext},
				{"GetMany closed", func() error { _, err := rediscache.GetMany[int](ctx, closed, []string{"a"}); return err }, rediscache.ErrClosed},
				{"MGet empty key", func() error { _, err := c.MGet(ctx, []string{"a", ""}); return err }, rediscache.ErrInvalidKey},
				{"SetMany empty key", func() error { return rediscache.SetMany(ctx, c, with("", 1), 0) }, rediscache.ErrInvalidKey},
				{"SetMany long key", func() error { return rediscache.SetMany(ctx, c, with(long, 1), 0) }, rediscache.ErrInvalidKey},
				{"SetMany negative ttl", func() error { return rediscache.SetMany(ctx, c, goodItems(), -time.Second) }, rediscache.ErrInvalidTTL},
				{"SetMany negative ttl empty", func() error { return rediscache.SetMany(ctx, c, map[string]int{}, -1) }, rediscache.ErrInvalidTTL},
				{"SetMany nil value", func() error { return rediscache.SetMany(ctx, c, with("z", nil), 0) }, rediscache.ErrInvalidValue},
				{"SetMany nil pointer", func() error {
					one := 1
					return rediscache.SetMany(ctx, c, map[string]*int{"a": &one, "z": nil}, 0)
				}, rediscache.ErrInvalidValue},
				{"SetMany unencodable", func() error { return rediscache.SetMany(ctx, c, with("z", make(chan int)), 0) }, rediscache.ErrInvalidValue},
				{"SetMany too large", func() error { return rediscache.SetMany(ctx, c, with("z", strings.Repeat("x", 100)), 0) }, rediscache.ErrValueTooLarge},
				{"SetMany nil ctx", func() error { return rediscache.SetMany(nilCtx, c, goodItems(), 0) }, rediscache.ErrNilContext},
				{"SetMany closed", func() error { return rediscache.SetMany(ctx, closed, goodItems(), 0) }, rediscache.ErrClosed},
				{"MSet nil payload", func() error { return c.MSet(ctx, raws("z", nil), 0) }, rediscache.ErrInvalidValue},
				{"MSet too large", func() error { return c.MSet(ctx, raws("z", make([]byte, 65)), 0) }, rediscache.ErrValueTooLarge},
				{"MSet empty key", func() error { return c.MSet(ctx, raws("", []byte("x")), 0) }, rediscache.ErrInvalidKey},
				{"MSet negative ttl", func() error { return c.MSet(ctx, raws("z", []byte("x")), -time.Millisecond) }, rediscache.ErrInvalidTTL},
				{"DeleteMany empty key", func() error { _, err := c.DeleteMany(ctx, []string{"keep", ""}); return err }, rediscache.ErrInvalidKey},
				{"DeleteMany long key", func() error { _, err := c.DeleteMany(ctx, []string{"keep", long}); return err }, rediscache.ErrInvalidKey},
				{"DeleteMany closed", func() error { _, err := closed.DeleteMany(ctx, []string{"keep"}); return err }, rediscache.ErrClosed},
			}
			for _, tc := range cases {
				err := tc.call()
				require.ErrorIs(t, err, tc.want, tc.name)
				var op *rediscache.OpError
				require.ErrorAs(t, err, &op, tc.name)
				var be *rediscache.BatchError
				assert.False(t, errors.As(err, &be), "%s: input errors are not batch errors", tc.name)
				assert.Equal(t, int64(1), e.dbsize(t), "%s changed the database", tc.name)
				v, err := e.raw.Get(ctx, "b:keep").Result()
				require.NoError(t, err)
				assert.Equal(t, "1", v, tc.name)
			}
			assert.Equal(t, uint64(0), c.Stats().Sets)
		})
	})
}

// A master dies: every batch call returns quickly with what succeeded and a
// BatchError naming exactly the keys of the dead node.
func TestBatchPartialFailure(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 3, 0)
	ctx := t.Context()
	// Without this the survivors refuse every command once they agree the
	// dead node failed (cluster_state:fail).
	for _, n := range cl.Nodes() {
		require.NoError(t, n.Client(t).ConfigSet(ctx, "cluster-require-full-coverage", "no").Err())
	}
	c, err := rediscache.New(&rediscache.Options{Addrs: cl.Addrs(), ClusterMode: true, Prefix: "pf", DialTimeout: 500 * time.Millisecond})
	require.NoError(t, err)
	defer func() { _ = c.Close() }()

	const n = 10_000
	keys := batchKeys(n)
	items := make(map[string]int, n)
	for i, k := range keys {
		items[k] = i
	}
	require.NoError(t, rediscache.SetMany(ctx, c, items, time.Hour))

	dead := cl.Nodes()[0]
	onDead := map[string]bool{}
	it := dead.Client(t).Scan(ctx, 0, "pf:*", 1000).Iterator()
	for it.Next(ctx) {
		onDead[strings.TrimPrefix(it.Val(), "pf:")] = true
	}
	require.NoError(t, it.Err())
	require.Greater(t, len(onDead), n/5)
	require.Less(t, len(onDead), n/2)
	dead.Kill()

	failedKeys := func(t *testing.T, err error) map[string]bool {
		t.Helper()
		var be *rediscache.BatchError
		require.ErrorAs(t, err, &be)
		got := map[string]bool{}
		for k, err := range be.Failed {
			got[k] = true
			assert.NotErrorIs(t, err, rediscache.ErrCacheMiss)
		}
		msg := err.Error()
		assert.Contains(t, msg, fmt.Sprintf("%d of %d keys failed", len(be.Failed), be.Total))
		assert.Contains(t, msg, fmt.Sprintf("and %d more", len(be.Failed)-10))
		assert.Less(t, len(msg), 2000, "the message is bounded")
		return got
	}
	timed := func(t *testing.T, f func(ctx context.Context)) {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		start := time.Now()
		f(cctx)
		d := time.Since(start)
		t.Logf("returned after %v", d)
		assert.Less(t, d, 10*time.Second)
	}

	t.Run("GetMany", func(t *testing.T) {
		errsBefore := c.Stats().Errors
		timed(t, func(ctx context.Context) {
			got, err := rediscache.GetMany[int](ctx, c, keys)
			assert.Equal(t, onDead, failedKeys(t, err))
			assert.Len(t, got, n-len(onDead))
			for k, v := range got {
				assert.Equal(t, items[k], v, k)
			}
		})
		assert.Equal(t, uint64(len(onDead)), c.Stats().Errors-errsBefore)
	})
	t.Run("MGet", func(t *testing.T) {
		timed(t, func(ctx context.Context) {
			got, err := c.MGet(ctx, keys)
			assert.Equal(t, onDead, failedKeys(t, err))
			require.Len(t, got, n)
			for i, k := range keys {
				assert.Equal(t, onDead[k], got[i] == nil, k)
			}
		})
	})
	t.Run("SetMany", func(t *testing.T) {
		newItems := make(map[string]int, n)
		for k, v := range items {
			newItems[k] = -v
		}
		timed(t, func(ctx context.Context) {
			err := rediscache.SetMany(ctx, c, newItems, time.Hour)
			assert.Equal(t, onDead, failedKeys(t, err))
		})
		var alive []string
		for _, k := range keys {
			if !onDead[k] {
				alive = append(alive, k)
			}
		}
		got, err := rediscache.GetMany[int](ctx, c, alive)
		require.NoError(t, err)
		require.Len(t, got, len(alive))
		for k, v := range got {
			assert.Equal(t, newItems[k], v, k)
		}
	})
	t.Run("DeleteMany", func(t *testing.T) {
		timed(t, func(ctx context.Context) {
			d, err := c.DeleteMany(ctx, keys)
			assert.Equal(t, onDead, failedKeys(t, err))
			assert.Equal(t, int64(n-len(onDead)), d)
		})
	})
	t.Run("InvalidatePrefix and CountPrefix", func(t *testing.T) {
		xs := map[string]int{}
		for i := range 60 {
			xs["x:"+strconv.Itoa(i)] = i
		}
		err := rediscache.SetMany(ctx, c, xs, time.Hour)
		var be *rediscache.BatchError
		require.ErrorAs(t, err, &be)
		alive := len(xs) - len(be.Failed)
		require.Positive(t, alive)
		timed(t, func(ctx context.Context) {
			_, err := c.CountPrefix(ctx, "x:")
			require.Error(t, err)
			var op *rediscache.OpError
			require.ErrorAs(t, err, &op)
			assert.Equal(t, "countprefix", op.Op)
			assert.Contains(t, err.Error(), dead.Addr())

			d, err := c.InvalidatePrefix(ctx, "x:")
			require.Error(t, err)
			assert.Contains(t, err.Error(), dead.Addr())
			assert.Equal(t, int64(alive), d, "every key on the live masters is deleted")
		})
	})
}

func TestBatchErrorMessage(t *testing.T) {
	t.Parallel()
	cause := errors.New("connection refused")
	be := &rediscache.BatchError{Op: "getmany", Total: 100, Failed: map[string]error{}}
	for i := range 25 {
		k := fmt.Sprintf("k%02d", i)
		be.Failed[k] = &rediscache.OpError{Op: "getmany", Key: k, Err: cause}
	}
	be.Failed["corrupt"] = &rediscache.OpError{Op: "getmany", Key: "corrupt", Err: rediscache.ErrCorruptValue}
	msg := be.Error()
	assert.Equal(t, `rediscache: getmany: 26 of 100 keys failed ("corrupt", "k00", "k01", "k02", "k03", "k04", "k05", "k06", "k07", "k08" and 16 more): rediscache: corrupt value; connection refused`, msg)
	require.ErrorIs(t, be, cause)
	require.ErrorIs(t, be, rediscache.ErrCorruptValue)
	var op *rediscache.OpError
	require.ErrorAs(t, fmt.Errorf("wrapped: %w", be), &op)
	assert.Equal(t, "corrupt", op.Key)
	assert.Len(t, be.Unwrap(), 26)
}

func ExampleGetMany() {
	srv, _ := miniredis.Run() // an in-process Redis, so the example runs anywhere
	defer srv.Close()
	c, _ := rediscache.New(&rediscache.Options{Addrs: []string{srv.Addr()}, Prefix: "myapp"})
	defer func() { _ = c.Close() }()
	ctx := context.Background()

	_ = rediscache.SetMany(ctx, c, map[string]string{"tasks:v1:1": "render", "tasks:v1:2": "upload"}, rediscache.TTLShort)
	m, err := rediscache.GetMany[string](ctx, c, []string{"tasks:v1:1", "tasks:v1:2", "tasks:v1:3"})
	var be *rediscache.BatchError
	if errors.As(err, &be) {
		fmt.Println("failed:", len(be.Failed)) // a node was down, a value was corrupt, ...
	}
	fmt.Println(len(m), m["tasks:v1:1"], m["tasks:v1:2"]) // the miss is simply absent
	// Output: 2 render upload
}
