package rediscache_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/rediscache/rediscache"
	"github.com/rediscache/rediscache/internal/redistest"
)

// killableEnv starts a redis-server the test may Kill and Restart, and an
// env on it.
func killableEnv(t *testing.T) (env, *redistest.Server) {
	t.Helper()
	srv := redistest.Start(t)
	return env{addr: srv.Addr(), raw: srv.Client(t), real: true}, srv
}

// valueLoader returns a loader that counts its calls in calls, sleeps d
// and returns v.
func valueLoader[T any](calls *atomic.Int64, d time.Duration, v T) func(context.Context) (T, error) {
	return func(context.Context) (T, error) {
		calls.Add(1)
		time.Sleep(d)
		return v, nil
	}
}

// errLoader returns a loader that counts its calls and returns err.
func errLoader[T any](calls *atomic.Int64, err error) func(context.Context) (T, error) {
	return func(context.Context) (T, error) {
		calls.Add(1)
		var zero T
		return zero, err
	}
}

// together runs fn(i) in n goroutines released at once and waits for all.
func together(n int, fn func(i int)) {
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			fn(i)
		})
	}
	close(start)
	wg.Wait()
}

// openBreaker makes GetOrLoad calls on key until the Client's breaker has
// opened (Redis must be down).
func openBreaker(t *testing.T, c *rediscache.Client) {
	t.Helper()
	load := func(context.Context) (string, error) { return "x", nil }
	for i := 0; c.Stats().BreakerOpens == 0; i++ {
		require.Less(t, i, 100, "the breaker did not open")
		_, err := rediscache.GetOrLoad(t.Context(), c, "breaker:probe", 0, load)
		require.NoError(t, err)
	}
}

func TestGetOrLoadOneLoadPerKeyPerProcess(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	c := e.client(t, rediscache.Options{Prefix: "p"})
	want := task{ID: "task_1", Title: "render", Status: "done"}
	var calls atomic.Int64
	load := valueLoader(&calls, 50*time.Millisecond, want)

	const n = 1000
	var bad atomic.Int64
	together(n, func(int) {
		v, err := rediscache.GetOrLoad(t.Context(), c, "tasks:v1:task_1", 0, load)
		if !assert.NoError(t, err) || !assert.Equal(t, want, v) {
			bad.Add(1)
		}
	})
	assert.Zero(t, bad.Load(), "callers without the value")
	assert.Equal(t, int64(1), calls.Load(), "loader calls")
	assert.Equal(t, uint64(1), c.Stats().Loads)

	got, err := rediscache.Get[task](t.Context(), c, "tasks:v1:task_1")
	require.NoError(t, err)
	assert.Equal(t, want, got)
}

func TestGetOrLoadCrossProcessLease(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	const clients, perClient, rounds = 8, 50, 5
	cs := make([]*rediscache.Client, clients)
	for i := range cs {
		cs[i] = e.client(t, rediscache.Options{Prefix: "fleet"})
	}
	for round := range rounds {
		key := fmt.Sprintf("tasks:v1:cold%d", round)
		want := "value of " + key
		var calls atomic.Int64
		load := valueLoader(&calls, 50*time.Millisecond, want)
		together(clients*perClient, func(i int) {
			v, err := rediscache.GetOrLoad(t.Context(), cs[i%clients], key, 0, load)
			assert.NoError(t, err)
			assert.Equal(t, want, v)
		})
		t.Logf("round %d: %d loader calls for %d Clients x %d goroutines", round, calls.Load(), clients, perClient)
		assert.LessOrEqual(t, calls.Load(), int64(2), "loader calls for one cold key across %d Clients", clients)
	}
	assert.Zero(t, dbsize(t, e)-rounds, "only the values are left: every lease was released")
}

func TestGetOrLoadFailsOpenWhenRedisDies(t *testing.T) {
	t.Parallel()
	e, srv := killableEnv(t)
	c := e.client(t, rediscache.Options{Prefix: "p"})
	ctx := t.Context()
	load := func(key string) func(context.Context) (string, error) {
		return func(context.Context) (string, error) { return "v:" + key, nil }
	}

	var stop atomic.Bool
	var afterKill, bad atomic.Int64
	var killed atomic.Bool
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := w; !stop.Load(); i++ {
				key := fmt.Sprintf("k%d", i%8)
				v, err := rediscache.GetOrLoad(ctx, c, key, time.Minute, load(key))
				if !assert.NoError(t, err) || !assert.Equal(t, "v:"+key, v) {
					bad.Add(1)
				}
				if killed.Load() {
					afterKill.Add(1)
				}
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	before := c.Stats()
	srv.Kill()
	killed.Store(true)
	time.Sleep(600 * time.Millisecond)
	stop.Store(true)
	wg.Wait()

	assert.Zero(t, bad.Load(), "calls without the loader's value")
	assert.Positive(t, afterKill.Load(), "calls made with Redis down")
	s := c.Stats()
	assert.Greater(t, s.Fallbacks, before.Fallbacks, "Fallbacks")
	assert.Greater(t, s.Errors, before.Errors, "Errors")
	t.Logf("with Redis down: %d calls, stats %+v", afterKill.Load(), s)

	srv.Restart(t)
	restarted := time.Now()
	require.Eventually(t, func() bool {
		v, src, err := rediscache.GetOrLoadWithSource(ctx, c, "k0", time.Minute, load("k0"))
		assert.NoError(t, err)
		assert.Equal(t, "v:k0", v)
		return src == rediscache.SourceHit
	}, 2*time.Second, 20*time.Millisecond, "no hit within 2s of the restart")
	t.Logf("hits back %v after the restart", time.Since(restarted).Round(time.Millisecond))
}

func TestBreakerWithRedisDown(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		caller bool // the caller brings its own go-redis client
	}{
		{name: "own client"},
		{name: "caller's client", caller: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e, srv := killableEnv(t)
			opt := rediscache.Options{Prefix: "p"}
			if tc.caller {
				// As Options.Redis advises: our retry loop owns retries.
				rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DialerRetries: 1, ContextTimeoutEnabled: true})
				t.Cleanup(func() { _ = rdb.Close() })
				opt.Redis = rdb
			}
			c := e.client(t, opt)
			ctx := t.Context()
			require.NoError(t, c.Set(ctx, "k", "cached", 0))
			srv.Kill()

			var calls atomic.Int64
			load := valueLoader(&calls, 0, "loaded")
			start := time.Now()
			for range 1000 {
				v, err := rediscache.GetOrLoad(ctx, c, "k", 0, load)
				require.NoError(t, err)
				require.Equal(t, "loaded", v)
			}
			elapsed := time.Since(start)
			t.Logf("1000 GetOrLoad calls with Redis down: %v", elapsed)
			assert.Less(t, elapsed, time.Second)
			assert.Equal(t, int64(1000), calls.Load())
			s := c.Stats()
			assert.GreaterOrEqual(t, s.BreakerOpens, uint64(1), "BreakerOpens")
			assert.Equal(t, uint64(1000), s.Fallbacks)

			// A half-open probe may fail first; then the breaker is open for a
			// whole cooldown.
			var err error
			for range 3 {
				if _, err = rediscache.Get[string](ctx, c, "k"); errors.Is(err, rediscache.ErrCircuitOpen) {
					break
				}
			}
			require.ErrorIs(t, err, rediscache.ErrCircuitOpen)
			start = time.Now()
			_, err = rediscache.Get[string](ctx, c, "k")
			require.ErrorIs(t, err, rediscache.ErrCircuitOpen)
			err = c.Set(ctx, "k", "v", 0)
			require.ErrorIs(t, err, rediscache.ErrCircuitOpen)
			assert.Less(t, time.Since(start), 50*time.Millisecond, "Get and Set while open")

			srv.Restart(t)
			require.Eventually(t, func() bool {
				_, err := rediscache.Get[string](ctx, c, "k")
				return errors.Is(err, rediscache.ErrCacheMiss) // the restart lost the data
			}, 5*time.Second, 20*time.Millisecond, "the breaker did not close after the restart")
			_, src, err := rediscache.GetOrLoadWithSource(ctx, c, "k", 0, load)
			require.NoError(t, err)
			assert.Equal(t, rediscache.SourceLoaded, src)
			_, src, err = rediscache.GetOrLoadWithSource(ctx, c, "k", 0, load)
			require.NoError(t, err)
			assert.Equal(t, rediscache.SourceHit, src)
			require.NoError(t, c.Set(ctx, "k2", "v", 0))
		})
	}
}

// While half-open, one call at a time probes Redis; the others are refused
// as when open, so a Redis still down costs one call's retries, not all.
func TestBreakerHalfOpenProbesOnce(t *testing.T) {
	t.Parallel()
	e, srv := killableEnv(t)
	const cooldown = 300 * time.Millisecond
	c := e.client(t, rediscache.Options{Prefix: "p", BreakerFailures: 1, BreakerCooldown: cooldown})
	ctx := t.Context()
	require.NoError(t, c.Set(ctx, "k", "v", 0))
	srv.Kill()
	_, err := rediscache.Get[string](ctx, c, "k")
	require.Error(t, err)
	require.NotErrorIs(t, err, rediscache.ErrCircuitOpen)
	_, err = rediscache.Get[string](ctx, c, "k")
	require.ErrorIs(t, err, rediscache.ErrCircuitOpen)
	require.Equal(t, "open", c.Stats().BreakerState)

	burst := func() (refused, probes int) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range 50 {
			wg.Go(func() {
				<-start
				var err error
				switch i % 3 { // every kind of call asks the breaker once
				case 0:
					_, err = rediscache.Get[string](ctx, c, "k")
				case 1:
					err = rediscache.SetMany(ctx, c, map[string]string{"a": "1", "b": "2"}, 0)
				case 2:
					_, err = rediscache.GetMany[string](ctx, c, []string{"k", "a"})
				}
				mu.Lock()
				defer mu.Unlock()
				if errors.Is(err, rediscache.ErrCircuitOpen) {
					refused++
				} else {
					probes++
				}
			})
		}
		close(start)
		wg.Wait()
		return refused, probes
	}

	time.Sleep(cooldown + 100*time.Millisecond) // half-open now
	refused, probes := burst()
	assert.Equal(t, 1, probes, "calls that went to a dead Redis")
	assert.Equal(t, 49, refused)
	assert.Equal(t, "open", c.Stats().BreakerState, "the failed probe opened it again")

	srv.Restart(t)
	time.Sleep(cooldown + 100*time.Millisecond)
	_, err = rediscache.Get[string](ctx, c, "k") // the probe: Redis is back (empty)
	require.ErrorIs(t, err, rediscache.ErrCacheMiss)
	require.Equal(t, "closed", c.Stats().BreakerState)
	refused, _ = burst()
	assert.Zero(t, refused)

	// A GetOrLoad probe asks once too, and closes the breaker.
	srv.Kill()
	_, err = rediscache.Get[string](ctx, c, "k")
	require.Error(t, err)
	srv.Restart(t)
	time.Sleep(cooldown + 100*time.Millisecond)
	v, src, err := rediscache.GetOrLoadWithSource(ctx, c, "k", 0, func(context.Context) (string, error) { return "loaded", nil })
	require.NoError(t, err)
	assert.Equal(t, "loaded", v)
	assert.Equal(t, rediscache.SourceLoaded, src, "the probe went to Redis")
	assert.Equal(t, "closed", c.Stats().BreakerState)
}

func TestBreakerDisabled(t *testing.T) {
	t.Parallel()
	e, srv := killableEnv(t)
	c := e.client(t, rediscache.Options{Prefix: "p", BreakerFailures: -1, MaxRetries: -1})
	ctx := t.Context()
	srv.Kill()
	var calls atomic.Int64
	load := valueLoader(&calls, 0, "loaded")
	for range 50 {
		_, err := rediscache.Get[string](ctx, c, "k")
		require.Error(t, err)
		require.NotErrorIs(t, err, rediscache.ErrCircuitOpen)
		v, src, err := rediscache.GetOrLoadWithSource(ctx, c, "k", 0, load)
		require.NoError(t, err)
		require.Equal(t, "loaded", v)
		require.Equal(t, rediscache.SourceFallback, src)
	}
	assert.Zero(t, c.Stats().BreakerOpens)
}

func TestGetOrLoadNegativeCaching(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"sentinel", rediscache.ErrNotFound},
		{"wrapped", fmt.Errorf("user 7: %w", rediscache.ErrNotFound)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newRealEnv(t)
			c := e.client(t, rediscache.Options{Prefix: "p", NegativeTTL: 300 * time.Millisecond})
			ctx := t.Context()
			var calls atomic.Int64
			load := errLoader[task](&calls, tc.err)

			_, src, err := rediscache.GetOrLoadWithSource(ctx, c, "user:7", 0, load)
			require.ErrorIs(t, err, rediscache.ErrNotFound)
			assert.Equal(t, rediscache.SourceLoaded, src)
			require.Equal(t, int64(1), calls.Load())

			_, src, err = rediscache.GetOrLoadWithSource(ctx, c, "user:7", 0, load)
			require.ErrorIs(t, err, rediscache.ErrNotFound)
			assert.Equal(t, rediscache.SourceHit, src)
			assert.Equal(t, int64(1), calls.Load(), "the cached ErrNotFound is served without the loader")
			s := c.Stats()
			assert.Equal(t, uint64(1), s.NegativeHits)
			assert.Zero(t, s.LoadErrors, "ErrNotFound is not a load failure")

			_, err = rediscache.Get[task](ctx, c, "user:7")
			require.ErrorIs(t, err, rediscache.ErrCacheMiss, "plain Get of a negative entry")

			time.Sleep(400 * time.Millisecond) // past NegativeTTL
			_, err = rediscache.GetOrLoad(ctx, c, "user:7", 0, load)
			require.ErrorIs(t, err, rediscache.ErrNotFound)
			assert.Equal(t, int64(2), calls.Load(), "loaded again after NegativeTTL")
		})
	}
	t.Run("disabled", func(t *testing.T) {
		t.Parallel()
		e := newRealEnv(t)
		c := e.client(t, rediscache.Options{Prefix: "p", NegativeTTL: -1})
		var calls atomic.Int64
		load := errLoader[task](&calls, rediscache.ErrNotFound)
		for i := range 3 {
			_, err := rediscache.GetOrLoad(t.Context(), c, "user:7", 0, load)
			require.ErrorIs(t, err, rediscache.ErrNotFound)
			assert.Equal(t, int64(i+1), calls.Load())
		}
		assert.Zero(t, dbsize(t, e), "nothing cached")
		assert.Zero(t, c.Stats().NegativeHits)
	})
}

func TestGetOrLoadLoaderErrorIsNotCached(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	c := e.client(t, rediscache.Options{Prefix: "p"})
	errDB := errors.New("db: connection refused")
	var calls atomic.Int64
	load := errLoader[task](&calls, errDB)
	for i := range 2 {
		v, err := rediscache.GetOrLoad(t.Context(), c, "tasks:v1:x", 0, load)
		require.ErrorIs(t, err, errDB)
		assert.Equal(t, task{}, v)
		assert.Equal(t, int64(i+1), calls.Load(), "every call calls the loader")
		assert.Zero(t, dbsize(t, e), "neither the value nor the lease is left in Redis")
	}
	assert.Equal(t, uint64(2), c.Stats().LoadErrors)
}

func TestGetOrLoadStale(t *testing.T) {
	t.Parallel()
	const ttl = 200 * time.Millisecond
	newClient := func(t *testing.T) *rediscache.Client {
		e := newRealEnv(t)
		return e.client(t, rediscache.Options{Prefix: "p", StaleTTL: 2 * time.Second, EarlyRefreshBeta: -1})
	}

	t.Run("refresh", func(t *testing.T) {
		t.Parallel()
		c := newClient(t)
		ctx := t.Context()
		var calls atomic.Int64
		_, err := rediscache.GetOrLoad(ctx, c, "k", ttl, valueLoader(&calls, 0, "old"))
		require.NoError(t, err)
		time.Sleep(ttl + 100*time.Millisecond)

		slow := valueLoader(&calls, time.Second, "new")
		start := time.Now()
		v, src, err := rediscache.GetOrLoadWithSource(ctx, c, "k", ttl, slow)
		elapsed := time.Since(start)
		require.NoError(t, err)
		assert.Equal(t, "old", v)
		assert.Equal(t, rediscache.SourceStale, src)
		assert.Less(t, elapsed, 500*time.Millisecond, "a stale answer does not wait for the 1s loader")

		require.Eventually(t, func() bool {
			v, src, err := rediscache.GetOrLoadWithSource(ctx, c, "k", ttl, slow)
			return err == nil && v == "new" && src == rediscache.SourceHit
		}, 5*time.Second, 20*time.Millisecond, "the background refresh did not store the new value")
		s := c.Stats()
		assert.GreaterOrEqual(t, s.StaleServed, uint64(1))
		assert.GreaterOrEqual(t, calls.Load(), int64(2))
	})

	t.Run("loader fails", func(t *testing.T) {
		t.Parallel()
		c := newClient(t)
		ctx := t.Context()
		var calls atomic.Int64
		_, err := rediscache.GetOrLoad(ctx, c, "k", ttl, valueLoader(&calls, 0, "old"))
		require.NoError(t, err)
		time.Sleep(ttl + 100*time.Millisecond)

		failing := errLoader[string](&calls, errors.New("db down"))
		for i := range 10 {
			v, src, err := rediscache.GetOrLoadWithSource(ctx, c, "k", ttl, failing)
			require.NoError(t, err, "call %d", i)
			assert.Equal(t, "old", v)
			assert.Equal(t, rediscache.SourceStale, src)
			time.Sleep(30 * time.Millisecond)
		}
		require.Eventually(t, func() bool { return c.Stats().LoadErrors >= 1 }, 5*time.Second, 10*time.Millisecond,
			"the background refresh never ran the failing loader")
		s := c.Stats()
		assert.GreaterOrEqual(t, s.StaleServed, uint64(10))
		assert.Equal(t, s.LoadErrors, uint64(calls.Load()-1), "every refresh failed")
	})
}

func TestGetOrLoadEarlyRefresh(t *testing.T) {
	t.Parallel()
	// The first load takes 100ms, so the envelope records a load cost; the
	// entry is fresh for 1s. With beta 50, a hit 500ms before expiry
	// refreshes with probability exp(-500/(100*50)) = 0.9.
	const ttl = time.Second
	for _, tc := range []struct {
		name  string
		beta  float64
		early bool
	}{
		{"beta 50", 50, true},
		{"disabled", -1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newRealEnv(t)
			c := e.client(t, rediscache.Options{Prefix: "p", EarlyRefreshBeta: tc.beta})
			ctx := t.Context()
			var calls atomic.Int64
			release := make(chan struct{})
			load := func(context.Context) (string, error) {
				n := calls.Add(1)
				if n == 1 {
					time.Sleep(100 * time.Millisecond)
				} else {
					<-release // a refresh blocks until the test lets it go
				}
				return fmt.Sprint("v", n), nil
			}
			t.Cleanup(func() {
				select {
				case <-release:
				default:
					close(release)
				}
			})

			_, src, err := rediscache.GetOrLoadWithSource(ctx, c, "k", ttl, load)
			require.NoError(t, err)
			require.Equal(t, rediscache.SourceLoaded, src)
			stored := time.Now()
			time.Sleep(ttl / 2)

			// Hits until a refresh has started (or, disabled, for 300ms): each
			// answers at once with the current value, never waiting for the
			// blocked loader.
			for time.Since(stored) < ttl/2+300*time.Millisecond {
				v, src, err := rediscache.GetOrLoadWithSource(ctx, c, "k", ttl, load)
				require.NoError(t, err)
				require.Equal(t, "v1", v)
				require.Equal(t, rediscache.SourceHit, src)
				if tc.early && calls.Load() >= 2 {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if !tc.early {
				assert.Equal(t, int64(1), calls.Load())
				assert.Zero(t, c.Stats().EarlyRefreshes)
				return
			}
			require.Eventually(t, func() bool { return calls.Load() >= 2 }, 2*time.Second, 5*time.Millisecond,
				"no early refresh started")
			assert.GreaterOrEqual(t, c.Stats().EarlyRefreshes, uint64(1))
			// The refresh's loader is still blocked: a hit is served anyway.
			v, src, err := rediscache.GetOrLoadWithSource(ctx, c, "k", ttl, load)
			require.NoError(t, err)
			assert.Equal(t, "v1", v)
			assert.Equal(t, rediscache.SourceHit, src)

			close(release)
			require.Eventually(t, func() bool {
				v, src, err := rediscache.GetOrLoadWithSource(ctx, c, "k", ttl, load)
				return err == nil && v != "v1" && src == rediscache.SourceHit
			}, 2*time.Second, 10*time.Millisecond, "the refreshed value was not stored")
		})
	}
}

func TestGetOrLoadPanickingLoader(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	c := e.client(t, rediscache.Options{Prefix: "p"})
	var calls atomic.Int64
	const waiters = 20
	panicking := func(context.Context) (string, error) {
		calls.Add(1)
		for deadline := time.Now().Add(5 * time.Second); rediscache.FlightCallers(c) < waiters && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond) // until every waiter has joined
		}
		panic("boom in the loader")
	}
	together(waiters, func(int) {
		v, err := rediscache.GetOrLoad(t.Context(), c, "k", 0, panicking)
		assert.ErrorIs(t, err, rediscache.ErrLoaderPanic)
		assert.ErrorContains(t, err, "boom in the loader")
		assert.Empty(t, v)
	})
	assert.Equal(t, int64(1), calls.Load(), "one shared load")
	s := c.Stats()
	assert.Equal(t, uint64(1), s.LoadErrors)
	assert.Equal(t, uint64(1), s.Loads)
	assert.Zero(t, dbsize(t, e), "nothing cached, lease released")

	v, src, err := rediscache.GetOrLoadWithSource(t.Context(), c, "k", 0, valueLoader(&calls, 0, "ok"))
	require.NoError(t, err)
	assert.Equal(t, "ok", v)
	assert.Equal(t, rediscache.SourceLoaded, src)
	assert.Equal(t, int64(2), calls.Load())
}

func TestGetOrLoadCancelledWaiter(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	c := e.client(t, rediscache.Options{Prefix: "p"})
	var calls atomic.Int64
	loaderCtxErr := make(chan error, 1)
	entered := make(chan struct{})
	load := func(ctx context.Context) (string, error) {
		if calls.Add(1) == 1 {
			close(entered)
		}
		select {
		case <-time.After(time.Second):
			loaderCtxErr <- ctx.Err()
			return "value", nil
		case <-ctx.Done():
			loaderCtxErr <- ctx.Err()
			return "", ctx.Err()
		}
	}

	ctxA, cancelA := context.WithCancel(t.Context())
	defer cancelA()
	errA := make(chan error, 1)
	go func() {
		_, err := rediscache.GetOrLoad(ctxA, c, "k", 0, load)
		errA <- err
	}()
	<-entered // A's call started the load
	type result struct {
		v   string
		src rediscache.Source
		err error
	}
	resB := make(chan result, 1)
	go func() {
		v, src, err := rediscache.GetOrLoadWithSource(t.Context(), c, "k", 0, load)
		resB <- result{v, src, err}
	}()
	require.Eventually(t, func() bool { return rediscache.FlightCallers(c) == 2 }, 5*time.Second, time.Millisecond, "B joins the load")

	cancelA()
	cancelled := time.Now()
	select {
	case err := <-errA:
		require.ErrorIs(t, err, context.Canceled)
		assert.Less(t, time.Since(cancelled), 500*time.Millisecond, "A left on its own ctx")
	case <-time.After(5 * time.Second):
		t.Fatal("A did not return after its ctx was cancelled")
	}
	select {
	case <-resB:
		t.Fatal("B returned before the load finished")
	default:
	}

	r := <-resB
	require.NoError(t, r.err)
	assert.Equal(t, "value", r.v)
	assert.Equal(t, rediscache.SourceLoaded, r.src)
	assert.NoError(t, <-loaderCtxErr, "the shared load was not cancelled by A")
	assert.Equal(t, int64(1), calls.Load())
}

func TestGetOrLoadLoadTimeout(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	// 1s, not less: the three callers must all join the one load before
	// it times out, also on a slow machine.
	c := e.client(t, rediscache.Options{Prefix: "p", LoadTimeout: time.Second})
	var calls atomic.Int64
	blocking := func(ctx context.Context) (string, error) {
		calls.Add(1)
		<-ctx.Done()
		return "", fmt.Errorf("query: %w", ctx.Err())
	}
	start := time.Now()
	together(3, func(int) {
		_, err := rediscache.GetOrLoad(t.Context(), c, "k", 0, blocking)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.ErrorContains(t, err, "query: ")
	})
	elapsed := time.Since(start)
	assert.GreaterOrEqual(t, elapsed, 900*time.Millisecond)
	assert.Less(t, elapsed, 10*time.Second)
	assert.Equal(t, int64(1), calls.Load())
	assert.Zero(t, dbsize(t, e), "nothing cached")
}

// TestGetOrLoadCloseLeavesNoGoroutine is not parallel: goleak compares the
// goroutines with those present when it starts.
func TestGetOrLoadCloseLeavesNoGoroutine(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	srv := redistest.Start(t)
	c, err := rediscache.New(&rediscache.Options{
		Addrs:            []string{srv.Addr()},
		Prefix:           "p",
		StaleTTL:         5 * time.Second,
		EarlyRefreshBeta: 50,
		LoadTimeout:      time.Minute, // only Close ends the slow loads
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() }) // if the test stops early
	ctx := t.Context()
	slow := func(ctx context.Context) (string, error) {
		select {
		case <-time.After(time.Minute): // Close must cancel it
			return "slow", nil
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	quick := func(context.Context) (string, error) {
		time.Sleep(20 * time.Millisecond)
		return "quick", nil
	}

	const ttl = 100 * time.Millisecond
	for i := range 20 {
		_, err := rediscache.GetOrLoad(ctx, c, fmt.Sprint("warm", i), ttl, quick)
		require.NoError(t, err)
	}
	// Early refreshes of fresh entries.
	for i := range 20 {
		_, err := rediscache.GetOrLoad(ctx, c, fmt.Sprint("warm", i), ttl, slow)
		require.NoError(t, err)
	}
	time.Sleep(2 * ttl)
	// Stale refreshes.
	for i := range 20 {
		_, err := rediscache.GetOrLoad(ctx, c, fmt.Sprint("warm", i), ttl, slow)
		require.NoError(t, err)
	}
	// Foreground loads in flight.
	var (
		wg      sync.WaitGroup
		started atomic.Int64
	)
	cold := func(ctx context.Context) (string, error) { started.Add(1); return slow(ctx) }
	for i := range 20 {
		wg.Go(func() {
			_, err := rediscache.GetOrLoad(ctx, c, fmt.Sprint("cold", i), ttl, cold)
			assert.ErrorIs(t, err, rediscache.ErrClosed, "a load cancelled by Close")
		})
	}
	require.Eventually(t, func() bool { return started.Load() == 20 }, 5*time.Second, time.Millisecond, "the foreground loads are in flight")
	require.Positive(t, c.Stats().EarlyRefreshes+c.Stats().StaleServed)

	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	callersDone := make(chan struct{})
	go func() {
		wg.Wait()
		close(callersDone)
	}()
	select {
	case <-callersDone:
	case <-time.After(5 * time.Second):
		t.Fatal("callers of loads in flight still wait after Close")
	}

	_, err = rediscache.GetOrLoad(ctx, c, "warm0", ttl, quick)
	require.ErrorIs(t, err, rediscache.ErrClosed)
	_, err = rediscache.GetOrLoad(ctx, c, "new", ttl, quick)
	require.ErrorIs(t, err, rediscache.ErrClosed)

	srv.Kill() // its reaper goroutine is redistest's, not the Client's
	goleak.VerifyNone(t, ignore)
}

func TestGetOrLoadBadInput(t *testing.T) {
	t.Parallel()
	var nilCtx context.Context
	var nilLoad func(context.Context) (string, error)
	for _, redisDown := range []bool{false, true} {
		t.Run(map[bool]string{false: "redis up", true: "breaker open"}[redisDown], func(t *testing.T) {
			t.Parallel()
			e, srv := killableEnv(t)
			c := e.client(t, rediscache.Options{Prefix: "p"})
			if redisDown {
				srv.Kill()
				openBreaker(t, c)
			}
			var calls atomic.Int64
			load := valueLoader(&calls, 0, "v")
			for _, tc := range []struct {
				name string
				ctx  context.Context
				key  string
				ttl  time.Duration
				load func(context.Context) (string, error)
				want error
			}{
				{"nil loader", t.Context(), "k", 0, nilLoad, rediscache.ErrInvalidValue},
				{"empty key", t.Context(), "", 0, load, rediscache.ErrInvalidKey},
				{"NUL in key", t.Context(), "a\x00b", 0, load, rediscache.ErrInvalidKey},
				{"key too long", t.Context(), strings.Repeat("k", 5000), 0, load, rediscache.ErrInvalidKey},
				{"negative ttl", t.Context(), "k", -time.Second, load, rediscache.ErrInvalidTTL},
				{"nil ctx", nilCtx, "k", 0, load, rediscache.ErrNilContext},
			} {
				t.Run(tc.name, func(t *testing.T) {
					v, src, err := rediscache.GetOrLoadWithSource(tc.ctx, c, tc.key, tc.ttl, tc.load)
					require.ErrorIs(t, err, tc.want)
					var op *rediscache.OpError
					require.ErrorAs(t, err, &op)
					assert.Equal(t, "getorload", op.Op)
					assert.Empty(t, v)
					assert.Zero(t, src)
				})
			}
			assert.Zero(t, calls.Load(), "loader called")
			if !redisDown {
				assert.Zero(t, dbsize(t, e), "something was written")
			}
		})
	}
}

func TestGetOrLoadSource(t *testing.T) {
	t.Parallel()
	e, srv := killableEnv(t)
	c := e.client(t, rediscache.Options{Prefix: "p"})
	ctx := t.Context()
	var calls atomic.Int64
	load := valueLoader(&calls, 0, "v")
	steps := []struct {
		name   string
		before func()
		want   rediscache.Source
	}{
		{name: "cold", want: rediscache.SourceLoaded},
		{name: "cached", want: rediscache.SourceHit},
		{name: "redis down", before: srv.Kill, want: rediscache.SourceFallback},
		{name: "breaker open", before: func() { openBreaker(t, c) }, want: rediscache.SourceFallback},
	}
	for _, st := range steps {
		if st.before != nil {
			st.before()
		}
		v, src, err := rediscache.GetOrLoadWithSource(ctx, c, "k", 0, load)
		require.NoError(t, err, st.name)
		assert.Equal(t, "v", v, st.name)
		assert.Equal(t, st.want, src, "%s: got %v", st.name, src)
	}
	assert.GreaterOrEqual(t, c.Stats().Fallbacks, uint64(2))

	for src, want := range map[rediscache.Source]string{
		rediscache.SourceHit: "hit", rediscache.SourceLoaded: "loaded", rediscache.SourceStale: "stale",
		rediscache.SourceFallback: "fallback", 0: "unknown",
	} {
		assert.Equal(t, want, src.String())
	}
}
