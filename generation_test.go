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
	first, err := b.Generation(ctx, rediscache.NamespaceTasks)
	require.NoError(t, err)
	assert.Positive(t, first, "a namespace never invalidated has the Prefix's epoch")

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
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return !lastOld.IsZero() }, 5*time.Second, time.Millisecond, "B reads the old value before the bump")
	bumped := time.Now()
	gen, err := a.InvalidateNamespace(ctx, rediscache.NamespaceTasks)
	require.NoError(t, err)
	assert.Greater(t, gen, first)
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
	stored, err := e.raw.Keys(ctx, "p:*").Result()
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"p:tasks:v1:1", "p:user:v1:profile:u", "p:\x00{gens}", "p:\x00{gens}log", "p:\x00dels"}, stored,
		"keys do not move: one value per key, and the generations")
	g, err := b.Generation(ctx, rediscache.NamespaceTasks)
	require.NoError(t, err)
	assert.Equal(t, gen, g)
	md, err := b.Metadata(ctx, keys.TaskKey("1"))
	require.NoError(t, err)
	assert.Equal(t, gen, md.Generation)
	assert.Equal(t, "p:tasks:v1:1", b.StorageKey(keys.TaskKey("1")), "StorageKey is where the value is")
}

// A Client whose view of a namespace is still the old generation reads the
// one value every Client writes: a Set or Delete by an up-to-date Client
// is never hidden from it (the keys do not move).
func TestInvalidateNamespaceLaggingClientSeesWrites(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	ctx := t.Context()
	a := e.client(t, rediscache.Options{Prefix: "p", GenerationTTL: time.Hour})
	b := e.client(t, rediscache.Options{Prefix: "p", GenerationTTL: time.Hour}) // lags for an hour
	const key = "tasks:v1:1"
	require.NoError(t, rediscache.Set(ctx, b, key, "v1", time.Hour))
	_, err := a.InvalidateNamespace(ctx, rediscache.NamespaceTasks)
	require.NoError(t, err)
	v, err := rediscache.Get[string](ctx, b, key)
	require.NoError(t, err)
	assert.Equal(t, "v1", v, "B lags: within GenerationTTL it may still read the old generation")

	require.NoError(t, rediscache.Set(ctx, a, key, "v2", time.Hour))
	_, err = rediscache.Get[string](ctx, b, key)
	assert.ErrorIs(t, err, rediscache.ErrCacheMiss, "A's write replaced the value B reads: B never sees v1 again")
	require.NoError(t, rediscache.Set(ctx, b, key, "v3", time.Hour))
	_, err = a.Delete(ctx, key)
	require.NoError(t, err)
	_, err = rediscache.Get[string](ctx, b, key)
	assert.ErrorIs(t, err, rediscache.ErrCacheMiss, "A's Delete removed what B wrote")
}

// A generation is never reused: when its key is lost (evicted, or a
// restart without persistence), the next Client creates a new one, older
// entries read as misses, and InvalidateNamespace still invalidates at once.
func TestGenerationLost(t *testing.T) {
	t.Parallel()
	e, srv := killableEnv(t)
	ctx := t.Context()
	const ttl = 100 * time.Millisecond
	a := e.client(t, rediscache.Options{Prefix: "p", GenerationTTL: ttl})
	const key = "tasks:v1:1"
	require.NoError(t, rediscache.Set(ctx, a, key, "old", time.Hour))
	before, err := a.Generation(ctx, rediscache.NamespaceTasks)
	require.NoError(t, err)

	require.NoError(t, e.raw.Del(ctx, "p:\x00{gens}", "p:\x00{gens}log").Err()) // evicted
	time.Sleep(2 * ttl)
	_, err = rediscache.Get[string](ctx, a, key)
	require.ErrorIs(t, err, rediscache.ErrCacheMiss, "an entry of a lost generation is never valid again")
	after, err := a.Generation(ctx, rediscache.NamespaceTasks)
	require.NoError(t, err)
	assert.NotEqual(t, before, after)

	srv.Restart(t) // without persistence: everything is gone
	fresh := e.client(t, rediscache.Options{Prefix: "p", GenerationTTL: ttl})
	require.NoError(t, rediscache.Set(ctx, fresh, key, "v1", time.Hour))
	require.Eventually(t, func() bool {
		v, err := rediscache.Get[string](ctx, a, key)
		return err == nil && v == "v1"
	}, 5*time.Second, 10*time.Millisecond, "A recovers after the restart")
	gen, err := a.InvalidateNamespace(ctx, rediscache.NamespaceTasks)
	require.NoError(t, err)
	assert.NotContains(t, []int64{before, after}, gen, "generations never repeat")
	_, err = rediscache.Get[string](ctx, a, key)
	assert.ErrorIs(t, err, rediscache.ErrCacheMiss, "the invalidation holds at once for the invalidating Client")
}

// One script call (EXISTS and INCR of one key), whatever the namespace's
// size: under a millisecond of Redis time.
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
	defer func() { _ = c.Close() }()
	_, err = rediscache.Get[string](ctx, c, "tasks:v1:42")
	require.ErrorIs(t, err, rediscache.ErrCorruptValue, "DEBUG POPULATE values are not ours, but they are found")
	require.NoError(t, c.Set(ctx, "tasks:v1:real", "an entry of ours", time.Hour))

	require.NoError(t, raw.ConfigResetStat(ctx).Err())
	_, err = c.InvalidateNamespace(ctx, rediscache.NamespaceTasks)
	require.NoError(t, err)
	info, err := raw.Info(ctx, "commandstats").Result()
	require.NoError(t, err)
	var usec float64 = -1
	for _, line := range strings.Split(info, "\n") {
		for _, cmd := range []string{"cmdstat_evalsha:", "cmdstat_eval:"} { // EVAL after a NOSCRIPT
			if strings.HasPrefix(line, cmd) {
				for _, f := range strings.Split(strings.TrimSpace(strings.TrimPrefix(line, cmd)), ",") {
					if v, ok := strings.CutPrefix(f, "usec="); ok {
						usec = max(usec, 0) + mustFloat(t, v)
					}
				}
			}
		}
	}
	require.GreaterOrEqual(t, usec, 0.0, "the script ran: %s", info)
	assert.Less(t, usec, 1000.0, "Redis time of the invalidation in µs")
	t.Logf("invalidated 1,000,000 keys in %v µs of Redis time", usec)

	_, err = rediscache.Get[string](ctx, c, "tasks:v1:real")
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
	assert.ElementsMatch(t, []string{"p:\x00dels", "p:tasks:v1:1"}, keys, "no generations key is written (only the write counters)")

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
