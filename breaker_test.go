package rediscache_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rediscache/rediscache"
	"github.com/rediscache/rediscache/internal/redistest"
)

// On a cluster each master has its own breaker: a dead master's breaker
// opens and its keys fail fast (GetOrLoad serves the loader), while every
// key on the live masters keeps being served from Redis.
func TestClusterBreakerPerNode(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 3, 0)
	ctx := t.Context()
	// The survivors keep serving their slots once the dead node is marked
	// failed.
	for _, n := range cl.Nodes() {
		require.NoError(t, n.Client(t).ConfigSet(ctx, "cluster-require-full-coverage", "no").Err())
	}
	c, err := rediscache.New(&rediscache.Options{Addrs: cl.Addrs(), ClusterMode: true, Prefix: "nb",
		BreakerFailures: 2, BreakerCooldown: time.Minute, DialTimeout: 200 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	require.Equal(t, "closed", c.Stats().BreakerState)

	keys := batchKeys(300)
	items := map[string]int{}
	for i, k := range keys {
		items[k] = i
	}
	require.NoError(t, rediscache.SetMany(ctx, c, items, time.Hour))
	dead := cl.Nodes()[0]
	onDead := map[string]bool{}
	it := dead.Client(t).Scan(ctx, 0, "nb:*", 1000).Iterator()
	for it.Next(ctx) {
		onDead[strings.TrimPrefix(it.Val(), "nb:")] = true
	}
	require.NoError(t, it.Err())
	require.NotEmpty(t, onDead)
	var deadKey string
	for k := range onDead {
		deadKey = k
		break
	}
	dead.Kill()

	// The dead node's breaker opens after BreakerFailures outages.
	killed := time.Now()
	for range 2 {
		_, err := rediscache.Get[int](ctx, c, deadKey)
		require.Error(t, err)
	}
	t.Logf("the dead node's breaker opened %v after the kill", time.Since(killed).Round(time.Millisecond))
	start := time.Now()
	_, err = rediscache.Get[int](ctx, c, deadKey)
	require.ErrorIs(t, err, rediscache.ErrCircuitOpen)
	assert.Less(t, time.Since(start), 50*time.Millisecond, "refused without a round trip")
	assert.Equal(t, "open", c.Stats().BreakerState)
	assert.Equal(t, uint64(1), c.Stats().BreakerOpens)

	// Every key on the live masters is still read from Redis.
	for _, k := range keys {
		if onDead[k] {
			continue
		}
		v, err := rediscache.Get[int](ctx, c, k)
		require.NoError(t, err, k)
		require.Equal(t, items[k], v, k)
	}

	// GetOrLoad fails open on the dead node only.
	load := func(context.Context) (int, error) { return -1, nil }
	for _, k := range keys[:30] {
		v, src, err := rediscache.GetOrLoadWithSource(ctx, c, k, time.Hour, load)
		require.NoError(t, err, k)
		if onDead[k] {
			assert.Equal(t, rediscache.SourceFallback, src, k)
			assert.Equal(t, -1, v, k)
		} else {
			assert.Equal(t, rediscache.SourceHit, src, k)
			assert.Equal(t, items[k], v, k)
		}
	}

	// A batch: the dead node's keys fail fast with ErrCircuitOpen, the rest
	// are read.
	start = time.Now()
	got, err := rediscache.GetMany[int](ctx, c, keys)
	t.Logf("GetMany of %d keys, %d on the dead node: %v", len(keys), len(onDead), time.Since(start).Round(time.Microsecond))
	assert.Less(t, time.Since(start), time.Second)
	var be *rediscache.BatchError
	require.ErrorAs(t, err, &be)
	assert.Len(t, be.Failed, len(onDead))
	for k, kerr := range be.Failed {
		assert.True(t, onDead[k], k)
		assert.True(t, errors.Is(kerr, rediscache.ErrCircuitOpen), "%s: %v", k, kerr)
	}
	assert.Len(t, got, len(keys)-len(onDead))
	assert.Equal(t, uint64(1), c.Stats().BreakerOpens, "the live nodes' breakers stayed closed")
}
