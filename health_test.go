package rediscache_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rediscache/rediscache"
	"github.com/rediscache/rediscache/internal/redistest"
)

func TestHealthCheckStandalone(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, "--maxmemory", "64mb")
	c, err := rediscache.New(&rediscache.Options{Addrs: []string{srv.Addr()}, Prefix: "h", DialTimeout: 200 * time.Millisecond})
	require.NoError(t, err)
	defer func() { _ = c.Close() }()
	ctx := t.Context()
	for i := range 10 {
		require.NoError(t, c.Set(ctx, fmt.Sprint("k", i), i, 0))
	}
	require.NoError(t, srv.Client(t).Set(ctx, "outside", 1, 0).Err())

	require.NoError(t, c.Ping(ctx))
	h := c.HealthCheck(ctx)
	require.NoError(t, h.Err)
	assert.True(t, h.Healthy)
	assert.True(t, c.Healthy())
	assert.Positive(t, h.Latency)
	assert.Positive(t, h.UsedMemory)
	assert.NotEmpty(t, h.UsedMemoryHuman)
	assert.Equal(t, int64(64<<20), h.MaxMemory)
	assert.Positive(t, h.ConnectedClients)
	assert.Equal(t, int64(-1), h.Keys, "not counted without HealthCountKeys")
	assert.Equal(t, int64(13), h.DBSize, "10 keys, one outside the Prefix, the namespace generations, the write counters")
	assert.Positive(t, h.Pool.TotalConns)
	require.Len(t, h.Nodes, 1)
	assert.Equal(t, srv.Addr(), h.Nodes[0].Addr)

	srv.Kill()
	h = c.HealthCheck(ctx)
	assert.False(t, h.Healthy)
	require.Error(t, h.Err)
	assert.Contains(t, h.Err.Error(), srv.Addr())
	assert.False(t, c.Healthy())
}

func TestHealthCheckClusterNamesTheBadNode(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 3, 0)
	c, err := rediscache.New(&rediscache.Options{Addrs: cl.Addrs(), Prefix: "h", DialTimeout: 200 * time.Millisecond})
	require.NoError(t, err)
	defer func() { _ = c.Close() }()
	ctx := t.Context()
	h := c.HealthCheck(ctx)
	require.NoError(t, h.Err)
	assert.True(t, h.Healthy)
	assert.Len(t, h.Nodes, 3)

	dead := cl.Nodes()[1]
	dead.Kill()
	h = c.HealthCheck(ctx)
	assert.False(t, h.Healthy)
	require.Error(t, h.Err)
	assert.Contains(t, h.Err.Error(), dead.Addr())
	var bad []string
	for _, n := range h.Nodes {
		if !n.Healthy {
			bad = append(bad, n.Addr)
		}
	}
	assert.Equal(t, []string{dead.Addr()}, bad)
}

func TestHealthMonitorCallsOnHealthChange(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	var (
		mu      sync.Mutex
		changes []bool
	)
	c, err := rediscache.New(&rediscache.Options{
		Addrs: []string{srv.Addr()}, DialTimeout: 100 * time.Millisecond,
		HealthCheckInterval: 50 * time.Millisecond,
		OnHealthChange: func(h rediscache.Health) {
			mu.Lock()
			changes = append(changes, h.Healthy)
			mu.Unlock()
		},
	})
	require.NoError(t, err)
	defer func() { _ = c.Close() }()
	time.Sleep(200 * time.Millisecond)
	assert.True(t, c.Healthy())
	srv.Kill()
	require.Eventually(t, func() bool { return !c.Healthy() }, 5*time.Second, 20*time.Millisecond)
	srv.Restart(t)
	require.Eventually(t, c.Healthy, 5*time.Second, 20*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []bool{false, true}, changes, "called once per flip")
}

// Nothing the library reports contains a password or a cached value.
func TestNoSecretsInReports(t *testing.T) {
	t.Parallel()
	const password = "s3cr3t-P4ssw0rd-xyzzy"
	const value = "private-value-plugh"
	srv := redistest.Start(t)
	require.NoError(t, srv.Client(t).ConfigSet(t.Context(), "requirepass", password).Err())
	c, err := rediscache.New(&rediscache.Options{Addrs: []string{srv.Addr()}, Password: password, Prefix: "sec", DialTimeout: 200 * time.Millisecond})
	require.NoError(t, err)
	defer func() { _ = c.Close() }()
	ctx := t.Context()
	require.NoError(t, c.Set(ctx, "k", value, 0))
	_, err = rediscache.Get[int](ctx, c, "k") // a decode error
	require.Error(t, err)
	var texts []string
	texts = append(texts, err.Error())
	md, err := c.Metadata(ctx, "k")
	require.NoError(t, err)
	texts = append(texts, fmt.Sprintf("%+v", md))
	wrong, err := rediscache.New(&rediscache.Options{Addrs: []string{srv.Addr()}, Password: password + "-wrong", DialTimeout: 200 * time.Millisecond})
	require.NoError(t, err)
	defer func() { _ = wrong.Close() }()
	err = wrong.Set(ctx, "k", value, 0)
	require.Error(t, err)
	texts = append(texts, err.Error(), fmt.Sprintf("%+v", wrong.HealthCheck(ctx)))
	srv.Kill()
	_, err = rediscache.Get[string](ctx, c, "k")
	texts = append(texts, fmt.Sprint(err), fmt.Sprintf("%+v", c.HealthCheck(ctx)), fmt.Sprintf("%+v", c.Stats()))
	for _, s := range texts {
		assert.NotContains(t, s, password)
		assert.NotContains(t, s, "s3cr3t")
		assert.NotContains(t, s, value)
	}
}

func TestMetadata(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, e env) {
		ctx := t.Context()
		c := e.client(t, rediscache.Options{Prefix: "md"})
		g := rediscache.NewKeyGenerator(rediscache.V2)
		key := g.TaskKey("task_1")
		before := time.Now().Add(-time.Second)
		require.NoError(t, c.Set(ctx, key, strings.Repeat("x", 100), time.Hour))
		md, err := c.Metadata(ctx, key)
		require.NoError(t, err)
		assert.Equal(t, key, md.Key)
		assert.Equal(t, "md:"+key, md.StorageKey)
		assert.Equal(t, rediscache.NamespaceTasks, md.Namespace)
		assert.Equal(t, rediscache.V2, md.Version)
		assert.True(t, md.CreatedAt.After(before) && md.CreatedAt.Before(time.Now().Add(time.Second)), "%v", md.CreatedAt)
		assert.Greater(t, md.TTL, 59*time.Minute)
		assert.WithinDuration(t, time.Now().Add(time.Hour), md.ExpiresAt, 5*time.Second)
		assert.Equal(t, 46+102, md.Size, "header + JSON string")
		assert.False(t, md.Negative || md.Counter)

		_, err = c.Increment(ctx, "counters:views", 3)
		require.NoError(t, err)
		md, err = c.Metadata(ctx, "counters:views")
		require.NoError(t, err)
		assert.True(t, md.Counter)
		assert.Equal(t, time.Duration(-1), md.TTL)
		assert.Equal(t, rediscache.Namespace("counters"), md.Namespace)
		assert.Zero(t, md.Version)

		_, err = c.Metadata(ctx, "missing")
		require.ErrorIs(t, err, rediscache.ErrCacheMiss)
		require.NoError(t, e.raw.Set(ctx, "md:foreign", "hello", 0).Err())
		_, err = c.Metadata(ctx, "foreign")
		require.ErrorIs(t, err, rediscache.ErrCorruptValue)
		_, err = c.Metadata(ctx, "")
		require.True(t, errors.Is(err, rediscache.ErrInvalidKey))
	})
}
