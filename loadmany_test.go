package rediscache_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rediscache/rediscache"
	"github.com/rediscache/rediscache/internal/redistest"
)

// A fake table: ids 0..99 exist, others do not.
type recordingLoader struct {
	calls  atomic.Int64
	mu     sync.Mutex
	loaded map[string]int // key -> times loaded
	delay  time.Duration
}

func (l *recordingLoader) load(ctx context.Context, missing []string) (map[string]string, error) {
	l.calls.Add(1)
	time.Sleep(l.delay)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.loaded == nil {
		l.loaded = map[string]int{}
	}
	out := map[string]string{}
	for _, k := range missing {
		l.loaded[k]++
		if n, err := strconv.Atoi(k[len("item:"):]); err == nil && n < 100 {
			out[k] = "value " + k
		}
	}
	return out, nil
}

func TestGetManyOrLoad(t *testing.T) {
	t.Parallel()
	run := func(t *testing.T, c *rediscache.Client) {
		ctx := t.Context()
		for i := range 50 {
			require.NoError(t, c.Set(ctx, fmt.Sprintf("item:%d", i), "value item:"+strconv.Itoa(i), time.Minute))
		}
		var keys []string
		for i := range 150 { // 0..49 cached, 50..99 to load, 100..149 do not exist
			keys = append(keys, fmt.Sprintf("item:%d", i))
		}
		l := &recordingLoader{}
		got, err := rediscache.GetManyOrLoad(ctx, c, keys, time.Minute, l.load)
		require.NoError(t, err)
		require.Len(t, got, 100)
		for i := range 100 {
			k := fmt.Sprintf("item:%d", i)
			assert.Equal(t, "value "+k, got[k])
		}
		assert.Equal(t, int64(1), l.calls.Load())
		assert.Len(t, l.loaded, 100, "only the misses are loaded")

		// Everything is now cached: loaded values and negative entries.
		got, err = rediscache.GetManyOrLoad(ctx, c, keys, time.Minute, l.load)
		require.NoError(t, err)
		assert.Len(t, got, 100)
		assert.Equal(t, int64(1), l.calls.Load(), "no load: hits and cached not-founds")
		assert.Positive(t, c.Stats().NegativeHits)
		v, err := rediscache.Get[string](ctx, c, "item:75")
		require.NoError(t, err)
		assert.Equal(t, "value item:75", v)
		_, err = rediscache.Get[string](ctx, c, "item:120")
		require.ErrorIs(t, err, rediscache.ErrCacheMiss, "a negative entry is a miss for Get")
	}
	t.Run("redis-server", func(t *testing.T) {
		t.Parallel()
		e := newRealEnv(t)
		run(t, e.client(t, rediscache.Options{Prefix: "gm"}))
	})
	t.Run("cluster", func(t *testing.T) {
		t.Parallel()
		cl := redistest.StartCluster(t, 3, 0)
		c, err := rediscache.New(&rediscache.Options{Addrs: cl.Addrs(), Prefix: "gm"})
		require.NoError(t, err)
		defer func() { _ = c.Close() }()
		run(t, c)
	})
}

func TestGetManyOrLoadOverlappingBatches(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	c := e.client(t, rediscache.Options{Prefix: "ov"})
	l := &recordingLoader{delay: 100 * time.Millisecond}
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			var keys []string
			for i := g; i < g+40; i++ { // windows overlap heavily
				keys = append(keys, fmt.Sprintf("item:%d", i%90))
			}
			got, err := rediscache.GetManyOrLoad(t.Context(), c, keys, time.Minute, l.load)
			if err != nil {
				t.Error(err)
				return
			}
			for _, k := range keys {
				if got[k] != "value "+k {
					t.Errorf("%s = %q", k, got[k])
				}
			}
		})
	}
	wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, n := range l.loaded {
		assert.Equal(t, 1, n, "key %s loaded %d times", k, n)
	}
}

func TestGetManyOrLoadErrorsAndFailOpen(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c, err := rediscache.New(&rediscache.Options{Addrs: []string{srv.Addr()}, Prefix: "fo", MaxRetries: -1})
	require.NoError(t, err)
	defer func() { _ = c.Close() }()
	ctx := t.Context()
	keys := []string{"item:1", "item:2"}

	boom := errors.New("db down")
	_, err = rediscache.GetManyOrLoad(ctx, c, keys, time.Minute, func(context.Context, []string) (map[string]string, error) {
		return nil, boom
	})
	require.ErrorIs(t, err, boom)
	n, err := c.CountPrefix(ctx, "")
	require.NoError(t, err)
	assert.Zero(t, n, "nothing cached after a load error")

	_, err = rediscache.GetManyOrLoad(ctx, c, keys, time.Minute, func(context.Context, []string) (map[string]string, error) {
		panic("bad loader")
	})
	require.ErrorIs(t, err, rediscache.ErrLoaderPanic)

	for _, tc := range []struct {
		name string
		call func() error
		want error
	}{
		{"nil loader", func() error {
			_, err := rediscache.GetManyOrLoad[string](ctx, c, keys, 0, nil)
			return err
		}, rediscache.ErrInvalidValue},
		{"negative ttl", func() error {
			_, err := rediscache.GetManyOrLoad(ctx, c, keys, -1, (&recordingLoader{}).load)
			return err
		}, rediscache.ErrInvalidTTL},
		{"empty key", func() error {
			_, err := rediscache.GetManyOrLoad(ctx, c, []string{"a", ""}, 0, (&recordingLoader{}).load)
			return err
		}, rediscache.ErrInvalidKey},
	} {
		require.ErrorIs(t, tc.call(), tc.want, tc.name)
	}

	// Redis down: values come from the loader, no error.
	srv.Kill()
	l := &recordingLoader{}
	for range 10 {
		got, err := rediscache.GetManyOrLoad(ctx, c, keys, time.Minute, l.load)
		require.NoError(t, err)
		assert.Equal(t, map[string]string{"item:1": "value item:1", "item:2": "value item:2"}, got)
	}
	assert.Positive(t, c.Stats().Fallbacks)
	assert.Equal(t, "open", c.Stats().BreakerState)

	l2 := &recordingLoader{}
	empty, err := rediscache.GetManyOrLoad(ctx, c, nil, 0, l2.load)
	require.NoError(t, err)
	assert.Empty(t, empty)
	assert.Zero(t, l2.calls.Load())
}

// Stale entries are served at once and refreshed by one background load.
func TestGetManyOrLoadRefreshesStale(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	c := e.client(t, rediscache.Options{Prefix: "p", StaleTTL: time.Minute})
	ctx := t.Context()
	var loads, version atomic.Int64
	var mu sync.Mutex
	var asked [][]string
	load := func(_ context.Context, missing []string) (map[string]string, error) {
		loads.Add(1)
		mu.Lock()
		asked = append(asked, append([]string(nil), missing...))
		mu.Unlock()
		out := map[string]string{}
		for _, k := range missing {
			out[k] = fmt.Sprint(k, "@", version.Load())
		}
		return out, nil
	}
	const ttl = 50 * time.Millisecond
	keys := []string{"a", "b"}
	m, err := rediscache.GetManyOrLoad(ctx, c, keys, ttl, load)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"a": "a@0", "b": "b@0"}, m)

	version.Store(1)
	time.Sleep(2 * ttl)
	// A long TTL now: the refreshed values must not go stale again (and be
	// refreshed once more) before the check below sees them.
	m, err = rediscache.GetManyOrLoad(ctx, c, append(keys, "c"), time.Hour, load)
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"a": "a@0", "b": "b@0", "c": "c@1"}, m, "stale values at once, the missing one loaded")
	assert.Equal(t, uint64(2), c.Stats().StaleServed)
	require.Eventually(t, func() bool {
		m, err := rediscache.GetManyOrLoad(ctx, c, keys, time.Hour, load)
		return err == nil && m["a"] == "a@1" && m["b"] == "b@1"
	}, 2*time.Second, 10*time.Millisecond, "the stale keys were refreshed")
	assert.Equal(t, int64(3), loads.Load(), "first load, the missing key, one refresh")
	mu.Lock()
	defer mu.Unlock()
	assert.Contains(t, asked, []string{"a", "b"}, "the refresh loaded the stale keys together")
}
