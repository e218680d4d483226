package rediscache_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rediscache/rediscache"
)

// recorder is an Observer that keeps every call it was told of and sums
// every count, per event.
type recorder struct {
	mu     sync.Mutex
	starts int
	ended  []rediscache.Call
	counts map[rediscache.Event]uint64
	byNs   map[string]uint64 // EventHit by namespace
}

type callIDKey struct{}

func newRecorder() *recorder {
	return &recorder{counts: map[rediscache.Event]uint64{}, byNs: map[string]uint64{}}
}

func (r *recorder) Start(ctx context.Context, call *rediscache.Call) context.Context {
	r.mu.Lock()
	r.starts++
	r.mu.Unlock()
	if ctx == nil {
		return nil
	}
	return context.WithValue(ctx, callIDKey{}, call)
}

func (r *recorder) End(ctx context.Context, call *rediscache.Call) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ctx != nil && ctx.Value(callIDKey{}) != call {
		panic("End got a context Start did not return")
	}
	r.ended = append(r.ended, *call)
}

func (r *recorder) Count(ev rediscache.Event, ns string, n uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts[ev] += n
	if ev == rediscache.EventHit {
		r.byNs[ns] += n
	}
}

// observedClient returns a Client on e built from opt, with a recorder
// attached.
func observedClient(t *testing.T, e env, opt rediscache.Options) (*rediscache.Client, *recorder) {
	t.Helper()
	c := e.client(t, opt)
	r := newRecorder()
	require.NoError(t, c.AddObserver(r))
	return c, r
}

// last returns the last ended call of op.
func (r *recorder) last(t *testing.T, op string) rediscache.Call {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.ended) - 1; i >= 0; i-- {
		if r.ended[i].Op == op {
			return r.ended[i]
		}
	}
	t.Fatalf("no %q call ended", op)
	return rediscache.Call{}
}

func TestObserverCountsEqualStats(t *testing.T) {
	c, r := observedClient(t, newRealEnv(t), rediscache.Options{Prefix: "obs", StaleTTL: time.Minute, EarlyRefreshBeta: -1})
	ctx := t.Context()

	load := func(v string) func(context.Context) (string, error) {
		return func(context.Context) (string, error) { return v, nil }
	}
	fail := func(context.Context) (string, error) { return "", errors.New("db down") }
	many := func(_ context.Context, keys []string) (map[string]string, error) {
		m := map[string]string{}
		for _, k := range keys {
			m[k] = "v-" + k
		}
		return m, nil
	}
	for i := range 3 {
		require.NoError(t, c.Set(ctx, "tasks:a", i, time.Minute))
		var v int
		require.NoError(t, c.Get(ctx, "tasks:a", &v))
		require.ErrorIs(t, c.Get(ctx, "tasks:missing", &v), rediscache.ErrCacheMiss)
		_, err := rediscache.GetOrLoad(ctx, c, "users:u", 50*time.Millisecond, load("x"))
		require.NoError(t, err)
		_, err = rediscache.GetOrLoad(ctx, c, "users:fail", time.Minute, fail)
		require.Error(t, err)
		_, err = rediscache.GetManyOrLoad(ctx, c, []string{"tasks:m1", "tasks:m2", "tasks:a"}, time.Minute, many)
		require.NoError(t, err, "tasks:a holds an int: loaded again as a string")
		_, err = rediscache.GetMany[string](ctx, c, []string{"tasks:a", "tasks:none"})
		require.NoError(t, err)
		_, err = c.Delete(ctx, "tasks:m1")
		require.NoError(t, err)
		time.Sleep(60 * time.Millisecond) // users:u goes stale
	}
	_, err := c.InvalidatePrefix(ctx, "tasks:")
	require.NoError(t, err)
	require.NoError(t, c.InvalidateTags(ctx, "t1"))
	_, err = c.InvalidateNamespace(ctx, "users")
	require.NoError(t, err)

	s := c.Stats()
	r.mu.Lock()
	defer r.mu.Unlock()
	want := map[rediscache.Event]uint64{
		rediscache.EventHit: s.Hits, rediscache.EventMiss: s.Misses, rediscache.EventError: s.Errors,
		rediscache.EventSet: s.Sets, rediscache.EventDelete: s.Deletes, rediscache.EventLoad: s.Loads,
		rediscache.EventLoadError: s.LoadErrors, rediscache.EventStaleServed: s.StaleServed,
		rediscache.EventEarlyRefresh: s.EarlyRefreshes, rediscache.EventNegativeHit: s.NegativeHits,
		rediscache.EventFallback: s.Fallbacks, rediscache.EventBreakerOpen: s.BreakerOpens,
		rediscache.EventStoreRefused: s.StoresRefused,
	}
	for ev, n := range want {
		assert.Equal(t, n, r.counts[ev], "%s", ev)
	}
	assert.NotZero(t, s.Hits)
	assert.NotZero(t, s.StaleServed, "the workload serves stale values")
	assert.NotZero(t, s.LoadErrors)
	for ns, n := range s.Namespaces {
		assert.Equal(t, n.Hits, r.byNs[ns], "hits of namespace %q", ns)
	}
	assert.Equal(t, r.starts, len(r.ended), "every call that started ended")
}

func TestObserverCallOutcomes(t *testing.T) {
	c, r := observedClient(t, newRealEnv(t), rediscache.Options{Prefix: "obs", StaleTTL: time.Minute, EarlyRefreshBeta: -1})
	ctx := t.Context()

	var loaderCall *rediscache.Call
	loaderSawCall := func(ctx context.Context) (string, error) {
		loaderCall, _ = ctx.Value(callIDKey{}).(*rediscache.Call)
		return "v", nil
	}
	_, err := rediscache.GetOrLoad(ctx, c, "tasks:k", 40*time.Millisecond, loaderSawCall)
	require.NoError(t, err)
	got := r.last(t, "getorload")
	assert.Equal(t, rediscache.SourceLoaded, got.Source)
	assert.Equal(t, 1, got.Loaded)
	assert.Equal(t, 0, got.Hits)
	assert.Equal(t, "tasks", got.Namespace)
	assert.Equal(t, "tasks:k", got.Key)
	require.NotNil(t, loaderCall, "the loader's context carries the load's Start context")
	assert.Equal(t, "load", loaderCall.Op)
	load := r.last(t, "load")
	assert.Equal(t, "tasks:k", load.Key)
	assert.False(t, load.Refresh)

	_, err = rediscache.GetOrLoad(ctx, c, "tasks:k", 40*time.Millisecond, loaderSawCall)
	require.NoError(t, err)
	got = r.last(t, "getorload")
	assert.Equal(t, rediscache.SourceHit, got.Source)
	assert.Equal(t, 1, got.Hits)

	time.Sleep(60 * time.Millisecond)
	_, err = rediscache.GetOrLoad(ctx, c, "tasks:k", 40*time.Millisecond, loaderSawCall)
	require.NoError(t, err)
	got = r.last(t, "getorload")
	assert.Equal(t, rediscache.SourceStale, got.Source)
	assert.Equal(t, 1, got.Stale)
	require.Eventually(t, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, call := range r.ended {
			if call.Op == "load" && call.Refresh {
				return true
			}
		}
		return false
	}, 5*time.Second, 10*time.Millisecond, "the stale answer's refresh is a load with Refresh set")

	var v string
	require.ErrorIs(t, c.Get(ctx, "tasks:none", &v), rediscache.ErrCacheMiss)
	got = r.last(t, "get")
	assert.ErrorIs(t, got.Err, rediscache.ErrCacheMiss)
	assert.Equal(t, 0, got.Hits)

	require.NoError(t, c.Set(ctx, "tasks:x", "1", time.Minute))
	_, err = rediscache.GetManyOrLoad(ctx, c, []string{"tasks:x", "tasks:y", "tasks:z"}, time.Minute,
		func(_ context.Context, keys []string) (map[string]string, error) {
			return map[string]string{"tasks:y": "2"}, nil
		})
	require.NoError(t, err)
	got = r.last(t, "getmanyorload")
	assert.Equal(t, 3, got.Keys)
	assert.Equal(t, 1, got.Hits)
	assert.Equal(t, 1, got.Loaded)
	assert.Equal(t, "tasks", got.Namespace)
	assert.Empty(t, got.Key, "a batch names no key")

	_, err = rediscache.GetMany[string](ctx, c, []string{"tasks:x", "users:y"})
	require.NoError(t, err)
	got = r.last(t, "getmany")
	assert.Equal(t, 1, got.Hits)
	assert.Empty(t, got.Namespace, "keys of two namespaces")

	var nilCtx context.Context // a nil context is what is under test
	require.ErrorIs(t, c.Set(nilCtx, "tasks:x", "1", time.Minute), rediscache.ErrNilContext)
	got = r.last(t, "set")
	assert.ErrorIs(t, got.Err, rediscache.ErrNilContext)

	_, err = c.InvalidatePrefix(ctx, "tasks:")
	require.NoError(t, err)
	assert.Equal(t, "tasks", r.last(t, "invalidateprefix").Namespace)
	_, err = c.InvalidateNamespace(ctx, "users")
	require.NoError(t, err)
	assert.Equal(t, "users", r.last(t, "invalidatenamespace").Namespace)
	require.NoError(t, c.InvalidateTags(ctx, "a", "b"))
	assert.Equal(t, 2, r.last(t, "invalidatetags").Keys)
}

func TestAddObserverRejects(t *testing.T) {
	c := newMiniEnv(t).client(t, rediscache.Options{Prefix: "obs"})
	assert.ErrorIs(t, c.AddObserver(nil), rediscache.ErrInvalidValue)
	require.NoError(t, c.Close())
	assert.ErrorIs(t, c.AddObserver(newRecorder()), rediscache.ErrClosed)
}

func TestEventString(t *testing.T) {
	for _, tc := range []struct {
		ev   rediscache.Event
		want string
	}{
		{rediscache.EventHit, "hits"},
		{rediscache.EventLoadError, "load_errors"},
		{rediscache.EventStoreRefused, "stores_refused"},
		{rediscache.Event(0), "Event(0)"},
		{rediscache.Event(200), "Event(200)"},
	} {
		assert.Equal(t, tc.want, tc.ev.String())
	}
}

// With DisableStats, Stats reports zeros while an Observer still hears
// every count.
func TestDisableStatsReportsZerosObserverStillCounts(t *testing.T) {
	c, r := observedClient(t, newRealEnv(t), rediscache.Options{Prefix: "obs", DisableStats: true})
	ctx := t.Context()
	notFound := func(context.Context) (string, error) { return "", rediscache.ErrNotFound }
	for range 3 {
		_, err := rediscache.GetOrLoad(ctx, c, "tasks:gone", time.Minute, notFound)
		require.ErrorIs(t, err, rediscache.ErrNotFound)
	}
	s := c.Stats()
	for name, n := range map[string]uint64{"Hits": s.Hits, "Misses": s.Misses, "Loads": s.Loads, "NegativeHits": s.NegativeHits, "Sets": s.Sets} {
		assert.Zero(t, n, name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	assert.Equal(t, uint64(1), r.counts[rediscache.EventLoad])
	assert.Equal(t, uint64(2), r.counts[rediscache.EventNegativeHit])
	assert.Equal(t, uint64(2), r.counts[rediscache.EventHit])
}

// A GetOrLoad whose loader fails counts no key as loaded.
func TestObserverFailedLoadCountsNoKey(t *testing.T) {
	c, r := observedClient(t, newMiniEnv(t), rediscache.Options{Prefix: "obs"})
	boom := errors.New("boom")
	_, err := rediscache.GetOrLoad(t.Context(), c, "tasks:f", time.Minute, func(context.Context) (string, error) { return "", boom })
	require.ErrorIs(t, err, boom)
	got := r.last(t, "getorload")
	assert.ErrorIs(t, got.Err, boom)
	assert.Equal(t, rediscache.SourceLoaded, got.Source)
	assert.Zero(t, got.Loaded)
	assert.Zero(t, got.Hits)
}
