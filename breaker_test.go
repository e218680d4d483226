package rediscache_test

import (
	"context"
	"errors"
	"io"
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

// reopen opens c's breaker (BreakerFailures 1) with Redis down, brings
// Redis back and waits until the breaker half-opens.
func reopen(t *testing.T, c *rediscache.Client, srv *redistest.Server) {
	t.Helper()
	srv.Kill()
	_, err := rediscache.Get[string](t.Context(), c, "k")
	require.Error(t, err)
	require.NotErrorIs(t, err, rediscache.ErrCircuitOpen)
	require.Equal(t, "open", c.Stats().BreakerState)
	srv.Restart(t)
	require.Eventually(t, func() bool { return c.Stats().BreakerState == "half-open" }, 5*time.Second, 5*time.Millisecond)
}

// A probe whose caller's context is cancelled proves nothing about Redis:
// the breaker stays half-open (it does not close, as a success would, nor
// open), and the next call probes.
func TestBreakerCancelledProbeKeepsHalfOpen(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c, err := rediscache.New(&rediscache.Options{Addrs: []string{srv.Addr()}, Prefix: "p",
		BreakerFailures: 1, BreakerCooldown: 100 * time.Millisecond, GenerationTTL: -1, HealthCheckInterval: -1})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	reopen(t, c, srv)

	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = rediscache.Get[string](cancelled, c, "k")
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, "half-open", c.Stats().BreakerState, "the cancelled probe decided the breaker")
	assert.Equal(t, uint64(1), c.Stats().BreakerOpens)

	_, err = rediscache.Get[string](t.Context(), c, "k")
	require.ErrorIs(t, err, rediscache.ErrCacheMiss, "the next call is the probe")
	assert.Equal(t, "closed", c.Stats().BreakerState)
}

// A call that asks the breaker and then sends nothing (its input is
// invalid, or there is nothing to send) does not keep the half-open
// probe's turn: the very next call probes.
func TestBreakerHalfOpenCallsThatSendNothingLeaveTheProbe(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	// One dial error per cycle, and a pool larger than their sum: go-redis
	// fails every dial at once, for up to a second, after PoolSize of them.
	c, err := rediscache.New(&rediscache.Options{Addrs: []string{srv.Addr()}, Prefix: "p", PoolSize: 1000, MaxRetries: -1,
		BreakerFailures: 1, BreakerCooldown: 100 * time.Millisecond, GenerationTTL: -1, HealthCheckInterval: -1})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	ctx := t.Context()
	load := func(context.Context, []string) (map[string]string, error) { return nil, nil }
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"Set, negative ttl", func() error { return c.Set(ctx, "k", "v", -time.Second) }},
		{"Set, nil value", func() error { return c.Set(ctx, "k", nil, 0) }},
		{"Expire, negative ttl", func() error { _, err := c.Expire(ctx, "k", -time.Second); return err }},
		{"SetMany, nil value", func() error { return rediscache.SetMany[any](ctx, c, map[string]any{"a": nil}, 0) }},
		{"MSet, nil payload", func() error { return c.MSet(ctx, map[string][]byte{"a": nil}, 0) }},
		{"GetMany, no keys", func() error { _, err := rediscache.GetMany[string](ctx, c, nil); return err }},
		{"MGet, no keys", func() error { _, err := c.MGet(ctx, nil); return err }},
		{"DeleteMany, no keys", func() error { _, err := c.DeleteMany(ctx, nil); return err }},
		{"GetManyOrLoad, no keys", func() error { _, err := rediscache.GetManyOrLoad(ctx, c, nil, 0, load); return err }},
		{"GetManyOrLoad, bad key", func() error { _, err := rediscache.GetManyOrLoad(ctx, c, []string{""}, 0, load); return err }},
		{"GetMany, bad key", func() error { _, err := rediscache.GetMany[string](ctx, c, []string{""}); return err }},
		{"InvalidateTags, no tags", func() error { return c.InvalidateTags(ctx) }},
		{"InvalidateTags, bad tag", func() error { return c.InvalidateTags(ctx, "") }},
		{"InvalidatePrefix, empty", func() error { _, err := c.InvalidatePrefix(ctx, ""); return err }},
		{"CountPrefix, bad prefix", func() error { _, err := c.CountPrefix(ctx, "a\x00"); return err }},
	} {
		reopen(t, c, srv)
		err := tc.call()
		require.NotErrorIs(t, err, rediscache.ErrCircuitOpen, tc.name)
		_, err = rediscache.Get[string](ctx, c, "k")
		require.ErrorIs(t, err, rediscache.ErrCacheMiss, "%s: the next call did not probe", tc.name)
		require.Equal(t, "closed", c.Stats().BreakerState, tc.name)
	}
}

// failStores fails, while on, every round trip that stores a loaded value
// (the guarded scripts, and the WATCH/MULTI/EXEC of a store under the
// write counters) with io.EOF, as a connection dropped under them would.
type failStores struct{ on atomic.Bool }

func (h *failStores) stores(cmds ...redis.Cmder) bool {
	for _, cmd := range cmds {
		switch cmd.Name() {
		case "evalsha", "eval", "watch", "exec":
			return h.on.Load()
		}
	}
	return false
}

func (h *failStores) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *failStores) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if h.stores(cmd) {
			cmd.SetErr(io.EOF)
			return io.EOF
		}
		return next(ctx, cmd)
	}
}

func (h *failStores) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if h.stores(cmds...) {
			for _, cmd := range cmds {
				cmd.SetErr(io.EOF)
			}
			return io.EOF
		}
		return next(ctx, cmds)
	}
}

// The stores of a batch load report their outcome to the breaker: stores
// failing with an outage open it (they were reported as successes, so a
// failing store also closed a half-open breaker).
func TestBreakerHearsFailedBatchStores(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	hook := &failStores{}
	rdb.AddHook(hook)
	c, err := rediscache.New(&rediscache.Options{Redis: rdb, Prefix: "fs", MaxRetries: -1,
		BreakerFailures: 1, BreakerCooldown: time.Minute, GenerationTTL: -1, HealthCheckInterval: -1})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	ctx := t.Context()
	load := func(_ context.Context, missing []string) (map[string]int, error) {
		m := map[string]int{}
		for i, k := range missing {
			m[k] = i
		}
		return m, nil
	}

	hook.on.Store(true)
	got, err := rediscache.GetManyOrLoad(ctx, c, []string{"a", "b", "c"}, time.Minute, load)
	require.NoError(t, err, "the loaded values are served, stored or not")
	require.Len(t, got, 3)
	assert.Positive(t, c.Stats().Errors, "the failed stores are counted")
	assert.Equal(t, "open", c.Stats().BreakerState, "the failed stores were reported as successes")
}
