package rediscache_test

import (
	"context"
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rediscache/rediscache"
)

func TestStatsRatesAreZeroNotNaN(t *testing.T) {
	t.Parallel()
	var s rediscache.Stats
	for name, r := range map[string]float64{"hit": s.HitRate(), "miss": s.MissRate(), "error": s.ErrorRate(),
		"ns hit": s.Namespaces["tasks"].HitRate(), "ns error": s.Namespaces["x"].ErrorRate()} {
		assert.False(t, math.IsNaN(r), name)
		assert.Equal(t, 0.0, r, name)
	}
}

func TestStatsNamespacesPercentilesReset(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	ctx := t.Context()
	c := e.client(t, rediscache.Options{Prefix: "st"})
	g := rediscache.NewKeyGenerator(rediscache.V1)
	require.NoError(t, c.Set(ctx, g.TaskKey("1"), 1, 0))
	require.NoError(t, c.Set(ctx, g.UserKey("u", "profile"), 1, 0))
	for range 3 {
		_, err := rediscache.Get[int](ctx, c, g.TaskKey("1"))
		require.NoError(t, err)
	}
	_, err := rediscache.Get[int](ctx, c, g.TaskKey("2"))
	require.ErrorIs(t, err, rediscache.ErrCacheMiss)
	_, err = rediscache.Get[int](ctx, c, g.UserKey("x", "profile"))
	require.ErrorIs(t, err, rediscache.ErrCacheMiss)
	_, err = rediscache.Get[string](ctx, c, g.UserKey("u", "profile")) // int into string
	require.ErrorIs(t, err, rediscache.ErrCorruptValue)
	_, err = c.Delete(ctx, g.TaskKey("1"))
	require.NoError(t, err)

	s := c.Stats()
	tasks, user := s.Namespaces["tasks"], s.Namespaces["user"]
	assert.Equal(t, rediscache.NamespaceStats{Hits: 3, Misses: 1, Sets: 1, Deletes: 1}, tasks)
	assert.Equal(t, rediscache.NamespaceStats{Misses: 1, Errors: 1, Sets: 1}, user)
	assert.InDelta(t, 0.75, tasks.HitRate(), 1e-9)
	assert.InDelta(t, 1.0/3, user.ErrorRate(), 1e-9)
	assert.Equal(t, uint64(3), s.Hits)
	assert.Equal(t, uint64(2), s.Misses)
	assert.InDelta(t, 0.4, s.MissRate(), 1e-9)

	// Percentiles: ordered, positive, and bounded by the slowest round trip seen.
	assert.Positive(t, s.P50)
	assert.LessOrEqual(t, s.P50, s.P95)
	assert.LessOrEqual(t, s.P95, s.P99)
	assert.Less(t, s.P99, 5*time.Second)
	get := s.Operations["get"]
	assert.Equal(t, uint64(6), get.Count, "six GET round trips")
	assert.Equal(t, get.Count, get.Buckets[len(get.Buckets)-1].Count, "the last bucket is the total")
	for i := 1; i < len(get.Buckets); i++ {
		assert.Less(t, get.Buckets[i-1].UpperBound, get.Buckets[i].UpperBound)
		assert.LessOrEqual(t, get.Buckets[i-1].Count, get.Buckets[i].Count)
	}
	assert.Equal(t, uint64(2), s.Operations["set"].Count)
	assert.Equal(t, uint64(1), s.Operations["delete"].Count)

	c.ResetStats()
	s = c.Stats()
	assert.Zero(t, s.Hits+s.Misses+s.Errors+s.Sets+s.Deletes)
	assert.Empty(t, s.Namespaces)
	assert.Zero(t, s.P99)
	assert.Zero(t, s.Operations["get"].Count)
}

func TestStatsNamespaceCardinalityIsBounded(t *testing.T) {
	t.Parallel()
	e := newMiniEnv(t)
	c := e.client(t, rediscache.Options{})
	for i := range 200 {
		_, _ = rediscache.Get[int](t.Context(), c, "ns"+strings.Repeat("x", i)+":k")
	}
	s := c.Stats()
	assert.LessOrEqual(t, len(s.Namespaces), 65)
	assert.Equal(t, uint64(200-64), s.Namespaces["other"].Misses)
}

func TestDisableStats(t *testing.T) {
	t.Parallel()
	e := newMiniEnv(t)
	c := e.client(t, rediscache.Options{DisableStats: true})
	require.NoError(t, c.Set(t.Context(), "a", 1, 0))
	_, _ = rediscache.Get[int](t.Context(), c, "a")
	s := c.Stats()
	assert.Zero(t, s.Hits+s.Sets)
	assert.Empty(t, s.Namespaces)
}

func TestLatencyPercentileAccuracy(t *testing.T) {
	t.Parallel()
	// A hook delays every GET by a known amount: P50 must land in [d, 1.125d+overhead].
	e := newRealEnv(t)
	rdb := e.raw
	var slow atomic.Bool
	rdb.AddHook(delayHook{d: 20 * time.Millisecond, on: &slow})
	c := e.client(t, rediscache.Options{Redis: rdb})
	slow.Store(true)
	for range 20 {
		_, _ = rediscache.Get[int](t.Context(), c, "k")
	}
	s := c.Stats()
	assert.GreaterOrEqual(t, s.P50, 20*time.Millisecond)
	assert.Less(t, s.P50, 40*time.Millisecond)
	// The average over GETs: the Client's other round trips (reading the
	// namespace generations) are not delayed.
	get := s.Operations["get"]
	require.Equal(t, uint64(20), get.Count)
	assert.GreaterOrEqual(t, get.Sum/time.Duration(get.Count), 20*time.Millisecond)
}

type delayHook struct {
	d  time.Duration
	on *atomic.Bool
}

func (h delayHook) DialHook(next redisDialHook) redisDialHook { return next }
func (h delayHook) ProcessPipelineHook(next redisPipelineHook) redisPipelineHook {
	return next
}
func (h delayHook) ProcessHook(next redisProcessHook) redisProcessHook {
	return func(ctx context.Context, cmd redisCmder) error {
		if h.on.Load() && cmd.Name() == "get" {
			time.Sleep(h.d)
		}
		return next(ctx, cmd)
	}
}
