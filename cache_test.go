package rediscache_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rediscache/rediscache"
	"github.com/rediscache/rediscache/internal/redistest"
)

type task struct {
	ID     string   `json:"id"`
	Title  string   `json:"title"`
	Status string   `json:"status"`
	Tags   []string `json:"tags"`
	Score  float64  `json:"score"`
}

func TestSetGetRoundTrip(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, e env) {
		ctx := t.Context()
		c := e.client(t, rediscache.Options{Prefix: "myapp"})
		want := task{ID: "task_123", Title: "render", Status: "done", Tags: []string{"a", "b"}, Score: 0.5}
		key := rediscache.NewKeyGenerator(rediscache.V1).TaskKey("task_123")

		require.NoError(t, rediscache.Set(ctx, c, key, want, 0))
		got, err := rediscache.Get[task](ctx, c, key)
		require.NoError(t, err)
		assert.Equal(t, want, got)

		var dst task
		require.NoError(t, c.Get(ctx, key, &dst))
		assert.Equal(t, want, dst)

		// Stored at exactly Prefix:key and nowhere else, beside the Prefix's
		// namespace generations and write counters (batchguard.go).
		keys, err := e.raw.Keys(ctx, "*").Result()
		require.NoError(t, err)
		assert.ElementsMatch(t, []string{"myapp:tasks:v1:task_123", "myapp:\x00{gens}", "myapp:\x00dels"}, keys)
		assert.Equal(t, "myapp:tasks:v1:task_123", c.StorageKey(key))
	})
}

func TestNoPrefixStoresKeyAsIs(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, e env) {
		ctx := t.Context()
		c := e.client(t, rediscache.Options{})
		require.NoError(t, c.Set(ctx, "tasks:v1:x", "v", 0))
		n, err := e.raw.Exists(ctx, "tasks:v1:x").Result()
		require.NoError(t, err)
		assert.Equal(t, int64(1), n)
	})
}

func TestMissIsMissNotError(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, e env) {
		ctx := t.Context()
		c := e.client(t, rediscache.Options{Prefix: "p"})
		v, err := rediscache.Get[task](ctx, c, "nope")
		require.ErrorIs(t, err, rediscache.ErrCacheMiss)
		assert.Equal(t, task{}, v)
		s := c.Stats()
		assert.Equal(t, uint64(1), s.Misses)
		assert.Equal(t, uint64(0), s.Errors)
		assert.Equal(t, uint64(0), s.Hits)
	})
}

func TestBadInputWritesNothing(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, e env) {
		ctx := t.Context()
		c := e.client(t, rediscache.Options{Prefix: "p", MaxValueSize: 64, MaxKeySize: 32})
		closed := e.client(t, rediscache.Options{Prefix: "p"})
		require.NoError(t, closed.Close())
		var dst task
		var nilCtx context.Context // a nil context is exactly what is under test
		cases := []struct {
			name string
			call func() error
			want error
		}{
			{"set empty key", func() error { return c.Set(ctx, "", 1, 0) }, rediscache.ErrInvalidKey},
			{"set key too long", func() error { return c.Set(ctx, strings.Repeat("k", 40), 1, 0) }, rediscache.ErrInvalidKey},
			{"set negative ttl", func() error { return c.Set(ctx, "k", 1, -time.Second) }, rediscache.ErrInvalidTTL},
			{"set nil", func() error { return c.Set(ctx, "k", nil, 0) }, rediscache.ErrInvalidValue},
			{"set nil pointer", func() error { return c.Set(ctx, "k", (*task)(nil), 0) }, rediscache.ErrInvalidValue},
			{"set unencodable", func() error { return c.Set(ctx, "k", make(chan int), 0) }, rediscache.ErrInvalidValue},
			{"set too large", func() error { return c.Set(ctx, "k", strings.Repeat("x", 100), 0) }, rediscache.ErrValueTooLarge},
			{"typed set too large", func() error { return rediscache.Set(ctx, c, "k", strings.Repeat("x", 100), 0) }, rediscache.ErrValueTooLarge},
			{"set nil ctx", func() error { return c.Set(nilCtx, "k", 1, 0) }, rediscache.ErrNilContext},
			{"set after close", func() error { return closed.Set(ctx, "k", 1, 0) }, rediscache.ErrClosed},
			{"get empty key", func() error { return c.Get(ctx, "", &dst) }, rediscache.ErrInvalidKey},
			{"get non-pointer", func() error { return c.Get(ctx, "k", dst) }, rediscache.ErrInvalidValue},
			{"get nil dst", func() error { return c.Get(ctx, "k", nil) }, rediscache.ErrInvalidValue},
			{"get after close", func() error { _, err := rediscache.Get[int](ctx, closed, "k"); return err }, rediscache.ErrClosed},
			{"delete empty key", func() error { _, err := c.Delete(ctx, "a", ""); return err }, rediscache.ErrInvalidKey},
			{"delete after close", func() error { _, err := closed.Delete(ctx, "a"); return err }, rediscache.ErrClosed},
			{"exists empty key", func() error { _, err := c.Exists(ctx, ""); return err }, rediscache.ErrInvalidKey},
			{"increment empty key", func() error { _, err := c.Increment(ctx, "", 1); return err }, rediscache.ErrInvalidKey},
			{"increment after close", func() error { _, err := closed.Increment(ctx, "n", 1); return err }, rediscache.ErrClosed},
			{"expire negative ttl", func() error { _, err := c.Expire(ctx, "k", -1); return err }, rediscache.ErrInvalidTTL},
			{"expire empty key", func() error { _, err := c.Expire(ctx, "", time.Second); return err }, rediscache.ErrInvalidKey},
		}
		for _, tc := range cases {
			err := tc.call()
			require.ErrorIs(t, err, tc.want, tc.name)
			assert.Equal(t, int64(0), dbsize(t, e), "%s wrote a key", tc.name)
		}
		var op *rediscache.OpError
		require.ErrorAs(t, c.Set(ctx, "k", nil, 0), &op)
		assert.Equal(t, "set", op.Op)
		assert.Equal(t, "k", op.Key)
	})
}

func TestCorruptValue(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, e env) {
		ctx := t.Context()
		c := e.client(t, rediscache.Options{Prefix: "p"})
		// The header of a real entry: its generation is the current one.
		require.NoError(t, c.Set(ctx, "real", "x", 0))
		real, err := e.raw.Get(ctx, "p:real").Bytes()
		require.NoError(t, err)
		header := string(real[:46])
		cases := map[string]string{
			"foreign":      `{"id":"x"}`,
			"empty":        "",
			"truncated":    "\xc2\x00\x00",
			"truncated v1": "\xc1\x00\x00",
			"bad flags":    header[:1] + "\x80" + header[2:] + `"x"`,
			"bad json":     header + `{"id":`,
		}
		for name, raw := range cases {
			require.NoError(t, e.raw.Set(ctx, "p:"+name, raw, 0).Err())
			_, err := rediscache.Get[task](ctx, c, name)
			require.ErrorIs(t, err, rediscache.ErrCorruptValue, name)
		}
		// A version-1 envelope (written before generations were stamped
		// into entries) is of no current generation: a miss.
		require.NoError(t, e.raw.Set(ctx, "p:v1", "\xc1\x00"+strings.Repeat("\x00", 20)+`"x"`, 0).Err())
		_, err = rediscache.Get[string](ctx, c, "v1")
		require.ErrorIs(t, err, rediscache.ErrCacheMiss)
		// A valid value read into the wrong type is ErrCorruptValue too.
		require.NoError(t, c.Set(ctx, "obj", task{ID: "x"}, 0))
		_, err = rediscache.Get[int](ctx, c, "obj")
		require.ErrorIs(t, err, rediscache.ErrCorruptValue)
		s := c.Stats()
		assert.Equal(t, uint64(len(cases)+1), s.Errors)
		assert.Equal(t, uint64(0), s.Hits)
		assert.Equal(t, uint64(1), s.Misses, "the version-1 envelope")
	})
}

func TestTTLRules(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, e env) {
		ctx := t.Context()
		c := e.client(t, rediscache.Options{
			Prefix:        "p",
			DefaultTTL:    10 * time.Minute,
			NamespaceTTLs: map[rediscache.Namespace]time.Duration{rediscache.NamespaceSessions: rediscache.TTLDay, rediscache.NamespaceAPI: 0, "team docs": time.Hour},
		})
		escaped := rediscache.NewKeyGenerator(rediscache.V1).Key("team docs", "a") // "team%20docs:v1:a"
		pttl := func(key string) time.Duration {
			d, err := e.raw.PTTL(ctx, "p:"+key).Result()
			require.NoError(t, err)
			return d
		}
		cases := []struct {
			key      string
			ttl      time.Duration
			min, max time.Duration
		}{
			{"tasks:v1:a", 0, 9 * time.Minute, 10 * time.Minute},
			{"sessions:v1:a", 0, 23 * time.Hour, 24 * time.Hour},
			{"api:v1:a", 0, 9 * time.Minute, 10 * time.Minute}, // zero entry: DefaultTTL
			{escaped, 0, 59 * time.Minute, time.Hour},          // a namespace KeyGenerator escapes
			{"tasks:v1:b", time.Minute, 50 * time.Second, time.Minute},
			{"tasks:v1:ms", 1500 * time.Millisecond, time.Second, 1500 * time.Millisecond},
			{"tasks:v1:sub", 250 * time.Millisecond, time.Millisecond, 250 * time.Millisecond},
			{"tasks:v1:us", 10 * time.Microsecond, 0, time.Millisecond}, // rounded up to 1ms
		}
		for _, tc := range cases {
			require.NoError(t, c.Set(ctx, tc.key, 1, tc.ttl), tc.key)
			got := pttl(tc.key)
			if got < 0 && tc.ttl < time.Millisecond {
				continue // a 1ms key may be gone already
			}
			assert.GreaterOrEqual(t, got, tc.min, tc.key)
			assert.LessOrEqual(t, got, tc.max, tc.key)
		}
		assert.Equal(t, rediscache.TTLDay, c.TTLFor(rediscache.NamespaceSessions))
		assert.Equal(t, 10*time.Minute, c.TTLFor(rediscache.NamespaceTasks))

		// A sub-second TTL really expires in well under a second.
		require.NoError(t, c.Set(ctx, "short", 1, 100*time.Millisecond))
		if e.mini != nil {
			e.mini.FastForward(150 * time.Millisecond)
		} else {
			time.Sleep(300 * time.Millisecond)
		}
		_, err := rediscache.Get[int](ctx, c, "short")
		require.ErrorIs(t, err, rediscache.ErrCacheMiss)
	})
}

func TestTTLJitter(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	ctx := t.Context()
	c := e.client(t, rediscache.Options{Prefix: "j", TTLJitter: 0.1})
	seen := map[time.Duration]bool{}
	for i := range 50 {
		key := strconv.Itoa(i)
		require.NoError(t, c.Set(ctx, key, i, time.Hour))
		d, err := e.raw.PTTL(ctx, "j:"+key).Result()
		require.NoError(t, err)
		assert.GreaterOrEqual(t, d, 54*time.Minute-time.Second)
		assert.LessOrEqual(t, d, 66*time.Minute)
		seen[d.Round(time.Second)] = true
	}
	assert.Greater(t, len(seen), 10, "jitter spreads TTLs")

	_, err := rediscache.New(&rediscache.Options{Addrs: []string{e.addr}, TTLJitter: 1})
	require.ErrorIs(t, err, rediscache.ErrInvalidOptions)
}

func TestDeleteExistsExpire(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, e env) {
		ctx := t.Context()
		c := e.client(t, rediscache.Options{Prefix: "p"})
		for _, k := range []string{"a", "b", "c"} {
			require.NoError(t, c.Set(ctx, k, k, time.Minute))
		}
		ok, err := c.Exists(ctx, "a")
		require.NoError(t, err)
		assert.True(t, ok)

		n, err := c.Delete(ctx, "a", "b", "missing")
		require.NoError(t, err)
		assert.Equal(t, int64(2), n)
		n, err = c.Delete(ctx)
		require.NoError(t, err)
		assert.Equal(t, int64(0), n)
		ok, err = c.Exists(ctx, "a")
		require.NoError(t, err)
		assert.False(t, ok)
		assert.Equal(t, uint64(2), c.Stats().Deletes)

		ok, err = c.Expire(ctx, "missing", time.Minute)
		require.NoError(t, err)
		assert.False(t, ok)
		ok, err = c.Expire(ctx, "c", time.Hour)
		require.NoError(t, err)
		assert.True(t, ok)
		d, err := e.raw.PTTL(ctx, "p:c").Result()
		require.NoError(t, err)
		assert.Greater(t, d, 59*time.Minute)
	})
}

func TestIncrement(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, e env) {
		ctx := t.Context()
		c := e.client(t, rediscache.Options{Prefix: "p"})
		n, err := c.Increment(ctx, "views", 1)
		require.NoError(t, err)
		assert.Equal(t, int64(1), n)
		n, err = c.Increment(ctx, "views", 5)
		require.NoError(t, err)
		assert.Equal(t, int64(6), n)
		n, err = c.Increment(ctx, "views", -10)
		require.NoError(t, err)
		assert.Equal(t, int64(-4), n)

		i64, err := rediscache.Get[int64](ctx, c, "views")
		require.NoError(t, err)
		assert.Equal(t, int64(-4), i64)
		i, err := rediscache.Get[int](ctx, c, "views")
		require.NoError(t, err)
		assert.Equal(t, -4, i)
		_, err = rediscache.Get[uint32](ctx, c, "views") // negative into unsigned
		require.ErrorIs(t, err, rediscache.ErrCorruptValue)
		_, err = rediscache.Get[string](ctx, c, "views")
		require.ErrorIs(t, err, rediscache.ErrCorruptValue)

		// A counter has no TTL unless asked for; Expire sets one.
		d, err := e.raw.PTTL(ctx, "p:views").Result()
		require.NoError(t, err)
		assert.Equal(t, time.Duration(-1), d)

		require.NoError(t, c.Set(ctx, "obj", task{ID: "x"}, 0))
		_, err = c.Increment(ctx, "obj", 1)
		require.Error(t, err)
		assert.NotErrorIs(t, err, rediscache.ErrCacheMiss)
	})
}

func TestPrefixIsolation(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, e env) {
		ctx := t.Context()
		a := e.client(t, rediscache.Options{Prefix: "a"})
		b := e.client(t, rediscache.Options{Prefix: "b"})
		require.NoError(t, a.Set(ctx, "k", "from a", 0))
		require.NoError(t, b.Set(ctx, "k", "from b", 0))
		va, err := rediscache.Get[string](ctx, a, "k")
		require.NoError(t, err)
		vb, err := rediscache.Get[string](ctx, b, "k")
		require.NoError(t, err)
		assert.Equal(t, "from a", va)
		assert.Equal(t, "from b", vb)

		n, err := a.Delete(ctx, "k")
		require.NoError(t, err)
		assert.Equal(t, int64(1), n)
		_, err = rediscache.Get[string](ctx, a, "k")
		require.ErrorIs(t, err, rediscache.ErrCacheMiss)
		vb, err = rediscache.Get[string](ctx, b, "k")
		require.NoError(t, err)
		assert.Equal(t, "from b", vb)
	})
}

func TestStats(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, e env) {
		ctx := t.Context()
		c := e.client(t, rediscache.Options{Prefix: "p"})
		assert.Equal(t, 0.0, c.Stats().HitRate())
		require.NoError(t, c.Set(ctx, "a", 1, 0))
		for range 3 {
			_, err := rediscache.Get[int](ctx, c, "a")
			require.NoError(t, err)
		}
		_, err := rediscache.Get[int](ctx, c, "b")
		require.ErrorIs(t, err, rediscache.ErrCacheMiss)
		s := c.Stats()
		assert.Equal(t, uint64(3), s.Hits)
		assert.Equal(t, uint64(1), s.Misses)
		assert.Equal(t, uint64(1), s.Sets)
		assert.Equal(t, uint64(0), s.Errors)
		assert.InDelta(t, 0.75, s.HitRate(), 1e-9)
		assert.Greater(t, s.AvgLatency, time.Duration(0))
	})
}

func TestCloseOwnership(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	ctx := t.Context()

	own := e.client(t, rediscache.Options{})
	require.NoError(t, own.Ping(ctx))
	require.NoError(t, own.Close())
	require.ErrorIs(t, own.Ping(ctx), rediscache.ErrClosed)
	require.NoError(t, own.Close(), "Close is idempotent")
	require.ErrorIs(t, own.Redis().Ping(ctx).Err(), redis.ErrClosed, "a client New built is closed")

	rdb := redis.NewClient(&redis.Options{Addr: e.addr})
	defer func() { _ = rdb.Close() }()
	borrowed := e.client(t, rediscache.Options{Redis: rdb})
	require.NoError(t, borrowed.Close())
	require.NoError(t, rdb.Ping(ctx).Err(), "the caller's client stays open")
	_, err := borrowed.Exists(ctx, "k")
	require.ErrorIs(t, err, rediscache.ErrClosed)
}

func TestNewValidatesOptions(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		opt  *rediscache.Options
	}{
		{"nil", nil},
		{"no server", &rediscache.Options{}},
		{"negative DefaultTTL", &rediscache.Options{Addrs: []string{"127.0.0.1:1"}, DefaultTTL: -1}},
		{"negative namespace ttl", &rediscache.Options{Addrs: []string{"127.0.0.1:1"}, NamespaceTTLs: map[rediscache.Namespace]time.Duration{"x": -1}}},
		{"jitter too big", &rediscache.Options{Addrs: []string{"127.0.0.1:1"}, TTLJitter: 1.5}},
		{"negative jitter", &rediscache.Options{Addrs: []string{"127.0.0.1:1"}, TTLJitter: -0.1}},
		{"negative pool", &rediscache.Options{Addrs: []string{"127.0.0.1:1"}, PoolSize: -1}},
		{"db on cluster", &rediscache.Options{Addrs: []string{"127.0.0.1:1", "127.0.0.1:2"}, DB: 2}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := rediscache.New(tc.opt)
			require.ErrorIs(t, err, rediscache.ErrInvalidOptions)
			assert.Nil(t, c)
		})
	}
	opt := &rediscache.Options{Addrs: []string{"127.0.0.1:1"}}
	c, err := rediscache.New(opt)
	require.NoError(t, err)
	defer func() { _ = c.Close() }()
	assert.Equal(t, time.Duration(0), opt.DefaultTTL, "New does not write to the caller's Options")
	assert.Equal(t, rediscache.TTLMedium, c.TTLFor("x"))
}

// Sixty-four goroutines of mixed operations; every value read back belongs
// to the key it was read from.
func TestConcurrentMixed(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, e env) {
		ctx := t.Context()
		c := e.client(t, rediscache.Options{Prefix: "conc", PoolSize: 16})
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for g := range 64 {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(g), 1))
				for range 200 {
					id := strconv.Itoa(r.IntN(32))
					key := "k" + id
					switch r.IntN(3) {
					case 0:
						if err := rediscache.Set(ctx, c, key, task{ID: id, Score: float64(g)}, time.Minute); err != nil {
							errs <- err
							return
						}
					case 1:
						v, err := rediscache.Get[task](ctx, c, key)
						if err != nil && !errors.Is(err, rediscache.ErrCacheMiss) {
							errs <- err
							return
						}
						if err == nil && v.ID != id {
							errs <- fmt.Errorf("key %s served value of %s", key, v.ID)
							return
						}
					case 2:
						if _, err := c.Delete(ctx, key); err != nil {
							errs <- err
							return
						}
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		s := c.Stats()
		assert.Equal(t, uint64(0), s.Errors)
		assert.Positive(t, s.Hits+s.Misses)
	})
}

// With the server gone, calls fail within their context; after a restart on
// the same port the same Client works again.
func TestServerRestart(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c, err := rediscache.New(&rediscache.Options{Addrs: []string{srv.Addr()}, Prefix: "r", DialTimeout: 200 * time.Millisecond})
	require.NoError(t, err)
	defer func() { _ = c.Close() }()
	ctx := t.Context()
	require.NoError(t, c.Set(ctx, "k", 1, 0))

	srv.Kill()
	for range 3 {
		cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		start := time.Now()
		_, err := rediscache.Get[int](cctx, c, "k")
		cancel()
		require.Error(t, err)
		require.NotErrorIs(t, err, rediscache.ErrCacheMiss)
		assert.Less(t, time.Since(start), 3*time.Second, "a call must not hang past its context")
	}
	assert.Positive(t, c.Stats().Errors)

	srv.Restart(t)
	require.Eventually(t, func() bool {
		return c.Set(ctx, "k", 2, 0) == nil
	}, 5*time.Second, 50*time.Millisecond)
	v, err := rediscache.Get[int](ctx, c, "k")
	require.NoError(t, err)
	assert.Equal(t, 2, v)
}
