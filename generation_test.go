package rediscache_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rediscache/rediscache"
	"github.com/rediscache/rediscache/internal/redistest"
)

func TestInvalidateNamespace(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	ctx := t.Context()
	const bound = 300 * time.Millisecond
	a := e.client(t, rediscache.Options{Prefix: "p", GenerationTTL: bound})
	b := e.client(t, rediscache.Options{Prefix: "p", GenerationTTL: bound})
	other := e.client(t, rediscache.Options{Prefix: "q", GenerationTTL: bound})
	keys := rediscache.NewKeyGenerator(rediscache.V1)

	require.NoError(t, a.Set(ctx, keys.TaskKey("1"), "old", 0))
	require.NoError(t, a.Set(ctx, keys.UserKey("u", "profile"), "user", 0))
	require.NoError(t, other.Set(ctx, keys.TaskKey("1"), "other prefix", 0))
	v, err := rediscache.Get[string](ctx, b, keys.TaskKey("1"))
	require.NoError(t, err)
	require.Equal(t, "old", v)

	// B reads in a loop while A invalidates; B may serve "old" only within the bound.
	var (
		mu      sync.Mutex
		lastOld time.Time
		stop    = make(chan struct{})
		done    = make(chan struct{})
	)
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if v, err := rediscache.Get[string](ctx, b, keys.TaskKey("1")); err == nil && v == "old" {
				mu.Lock()
				lastOld = time.Now()
				mu.Unlock()
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	time.Sleep(50 * time.Millisecond)
	bumped := time.Now()
	gen, err := a.InvalidateNamespace(ctx, rediscache.NamespaceTasks)
	require.NoError(t, err)
	assert.Equal(t, int64(1), gen)
	_, err = rediscache.Get[string](ctx, a, keys.TaskKey("1"))
	require.ErrorIs(t, err, rediscache.ErrCacheMiss, "the invalidating Client sees it at once")
	time.Sleep(2 * bound)
	close(stop)
	<-done
	mu.Lock()
	stale := lastOld.Sub(bumped)
	mu.Unlock()
	assert.LessOrEqual(t, stale, bound+50*time.Millisecond, "B served the old value %v after the bump", stale)
	_, err = rediscache.Get[string](ctx, b, keys.TaskKey("1"))
	require.ErrorIs(t, err, rediscache.ErrCacheMiss)

	// Other namespaces and other prefixes are untouched.
	u, err := rediscache.Get[string](ctx, b, keys.UserKey("u", "profile"))
	require.NoError(t, err)
	assert.Equal(t, "user", u)
	o, err := rediscache.Get[string](ctx, other, keys.TaskKey("1"))
	require.NoError(t, err)
	assert.Equal(t, "other prefix", o)

	// New writes land in the new generation and are shared by both Clients.
	require.NoError(t, b.Set(ctx, keys.TaskKey("1"), "new", 0))
	v, err = rediscache.Get[string](ctx, a, keys.TaskKey("1"))
	require.NoError(t, err)
	assert.Equal(t, "new", v)
	stored, err := e.raw.Keys(ctx, "p:tasks*").Result()
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"p:tasks:v1:1", "p:tasks\x001:v1:1"}, stored)
	g, err := b.Generation(ctx, rediscache.NamespaceTasks)
	require.NoError(t, err)
	assert.Equal(t, int64(1), g)
}

// One HINCRBY, whatever the namespace's size: under a millisecond of Redis time.
func TestInvalidateNamespaceMillionKeys(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, "--enable-debug-command", "local")
	raw := srv.Client(t)
	ctx := t.Context()
	require.NoError(t, raw.Do(ctx, "DEBUG", "POPULATE", 1_000_000, "p:tasks:v1").Err())
	n, err := raw.DBSize(ctx).Result()
	require.NoError(t, err)
	require.Equal(t, int64(1_000_000), n)

	c, err := rediscache.New(&rediscache.Options{Addrs: []string{srv.Addr()}, Prefix: "p"})
	require.NoError(t, err)
	defer c.Close()
	_, err = rediscache.Get[string](ctx, c, "tasks:v1:42")
	require.ErrorIs(t, err, rediscache.ErrCorruptValue, "DEBUG POPULATE values are not ours, but they are found")

	require.NoError(t, raw.ConfigResetStat(ctx).Err())
	_, err = c.InvalidateNamespace(ctx, rediscache.NamespaceTasks)
	require.NoError(t, err)
	info, err := raw.Info(ctx, "commandstats").Result()
	require.NoError(t, err)
	var usec float64 = -1
	for _, line := range strings.Split(info, "\n") {
		if strings.HasPrefix(line, "cmdstat_hincrby:") {
			for _, f := range strings.Split(strings.TrimSpace(strings.TrimPrefix(line, "cmdstat_hincrby:")), ",") {
				if v, ok := strings.CutPrefix(f, "usec="); ok {
					usec = mustFloat(t, v)
				}
			}
		}
	}
	require.GreaterOrEqual(t, usec, 0.0, "HINCRBY ran: %s", info)
	assert.Less(t, usec, 1000.0, "Redis time of the invalidation in µs")
	t.Logf("invalidated 1,000,000 keys in %v µs of Redis time", usec)

	_, err = rediscache.Get[string](ctx, c, "tasks:v1:42")
	require.ErrorIs(t, err, rediscache.ErrCacheMiss)
}

func TestGenerationsOffAndBadInput(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	ctx := t.Context()
	off := e.client(t, rediscache.Options{Prefix: "p", GenerationTTL: -1})
	require.NoError(t, off.Set(ctx, "tasks:v1:1", 1, 0))
	_, err := off.InvalidateNamespace(ctx, rediscache.NamespaceTasks)
	require.ErrorIs(t, err, rediscache.ErrInvalidOptions)
	keys, err := e.raw.Keys(ctx, "*").Result()
	require.NoError(t, err)
	assert.Equal(t, []string{"p:tasks:v1:1"}, keys, "no bookkeeping key is written")

	on := e.client(t, rediscache.Options{Prefix: "p"})
	for _, ns := range []rediscache.Namespace{"", "a\x00b"} {
		_, err = on.InvalidateNamespace(ctx, ns)
		require.ErrorIs(t, err, rediscache.ErrInvalidKey)
	}
	require.ErrorIs(t, on.Set(ctx, "a\x00b", 1, 0), rediscache.ErrInvalidKey)
	require.NoError(t, on.Close())
	_, err = on.InvalidateNamespace(ctx, rediscache.NamespaceTasks)
	require.ErrorIs(t, err, rediscache.ErrClosed)
}
