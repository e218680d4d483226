package rediscache_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rediscache/rediscache"
	"github.com/rediscache/rediscache/internal/redistest"
)

// lagStats are the lags between a write returning and a reader seeing it.
type lagStats []time.Duration

func (l lagStats) String() string {
	if len(l) == 0 {
		return "no samples"
	}
	s := slices.Clone(l)
	slices.Sort(s)
	q := func(p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))] }
	return fmt.Sprintf("%d writes: p50 %v, p99 %v, max %v", len(s), q(0.50), q(0.99), s[len(s)-1])
}

// nearLag runs writes of key 1..n by writer while near (LocalCache) reads
// it in loops, typed and untyped, and returns how long after each write
// returned near stopped returning an older value (it returns the new one,
// or a miss). fault, when set, runs every 100 writes. It fails the test if
// a reader ever reads a value older than one it read before (a kept value
// resurrected), or if near does not end on n.
func nearLag(t *testing.T, near, writer *rediscache.Client, key string, n int, fault func()) lagStats {
	t.Helper()
	ctx := t.Context()
	var (
		backwards atomic.Int64
		firstBack atomic.Value // what the first backwards read was
		stop      = make(chan struct{})
		wg        sync.WaitGroup
	)
	read := func(typed bool) {
		defer wg.Done()
		var last int
		for {
			select {
			case <-stop:
				return
			default:
			}
			var v int
			var err error
			if typed {
				v, err = rediscache.Get[int](ctx, near, key)
			} else {
				err = near.Get(ctx, key, &v)
			}
			if err == nil {
				if v < last && backwards.Add(1) == 1 {
					firstBack.Store(fmt.Sprintf("typed %v: %d after %d", typed, v, last))
				}
				last = v
			}
			time.Sleep(50 * time.Microsecond) // a service reads often, but does other work too
		}
	}
	wg.Add(3)
	go read(true)
	go read(true)
	go read(false)
	write := func(i int) {
		for try := 0; ; try++ { // a restart makes writes fail for a moment
			err := rediscache.Set(ctx, writer, key, i, time.Hour)
			if err == nil {
				return
			}
			require.Less(t, try, 500, "write %d: %v", i, err)
			time.Sleep(10 * time.Millisecond)
		}
	}
	lags := make(lagStats, 0, n)
	for i := 1; i <= n; i++ {
		if fault != nil && i%100 == 0 {
			fault()
		}
		write(i)
		wrote := time.Now()
		for {
			v, err := rediscache.Get[int](ctx, near, key)
			if (err == nil && v >= i) || errors.Is(err, rediscache.ErrCacheMiss) {
				break
			}
			require.Less(t, time.Since(wrote), 10*time.Second, "write %d: near still reads %d, %v", i, v, err)
			time.Sleep(20 * time.Microsecond)
		}
		lags = append(lags, time.Since(wrote))
	}
	// After a restart, writes stamped with a generation epoch that was lost
	// read as misses until the writer's view catches up: write once more.
	time.Sleep(2 * rediscache.DefaultGenerationTTL)
	write(n)
	close(stop)
	wg.Wait()
	assert.Zero(t, backwards.Load(), "a reader went back to an older value; the first: %v", firstBack.Load())
	require.Eventually(t, func() bool {
		typed, err1 := rediscache.Get[int](ctx, near, key)
		var untyped int
		err2 := near.Get(ctx, key, &untyped)
		return err1 == nil && err2 == nil && typed == n && untyped == n
	}, 2*time.Second, time.Millisecond, "typed and untyped Get at the end")
	return lags
}

// Another Client's writes reach a LocalCache Client: never a value kept
// from before a later write, and within the invalidation's travel time
// (measured), also across CLIENT KILL and a server restart (which flush
// the near cache).
func TestNearCacheLag(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	raw := srv.Client(t)
	opt := func(local bool) rediscache.Options {
		return rediscache.Options{Addrs: []string{srv.Addr()}, Prefix: "lag", LocalCache: local}
	}
	newClient := func(local bool) *rediscache.Client {
		c, err := rediscache.New(&[]rediscache.Options{opt(local)}[0])
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	for _, tc := range []struct {
		name  string
		fault func()
	}{
		{"normal", nil},
		{"CLIENT KILL every 100 writes", func() { _ = raw.Do(t.Context(), "CLIENT", "KILL", "TYPE", "normal").Err() }},
		{"restart at write 500", func() {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			near, writer := newClient(true), newClient(false)
			fault := tc.fault
			if tc.name == "restart at write 500" {
				n := 0
				fault = func() {
					if n++; n == 5 {
						srv.Restart(t)
					}
				}
			}
			lags := nearLag(t, near, writer, "lag:"+tc.name, 1000, fault)
			t.Logf("near-cache lag after another Client's write, %s: %v", tc.name, lags)
			assert.Less(t, slices.Max(lags), 2*rediscache.DefaultLocalCacheTTL, "lag beyond LocalCacheTTL (sanity bound)")
		})
	}
}

// A Client reads its own writes at once with LocalCache, while its other
// goroutines read the same key: after each write returns, no read of it
// returns what it held before.
func TestNearCacheReadsOwnWrites(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	c := e.client(t, rediscache.Options{Prefix: "own", LocalCache: true})
	ctx := t.Context()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 { // readers that keep refilling the near cache
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, _ = rediscache.Get[int](ctx, c, "own:k")
				_, _ = rediscache.Get[int64](ctx, c, "own:n")
			}
		})
	}
	defer func() { close(stop); wg.Wait() }()
	stale := map[string]int{}
	for i := 1; i <= 1000; i++ {
		require.NoError(t, rediscache.Set(ctx, c, "own:k", i, time.Hour))
		if v, err := rediscache.Get[int](ctx, c, "own:k"); err != nil || v != i {
			stale["Set"]++
		}
		if i%3 == 0 {
			n, err := c.Increment(ctx, "own:n", 1)
			require.NoError(t, err)
			if got, err := rediscache.Get[int64](ctx, c, "own:n"); err != nil || got != n {
				stale["Increment"]++
			}
		}
		if i%10 == 0 {
			_, err := c.Delete(ctx, "own:k")
			require.NoError(t, err)
			if _, err := rediscache.Get[int](ctx, c, "own:k"); !errors.Is(err, rediscache.ErrCacheMiss) {
				stale["Delete"]++
			}
		}
		if i%50 == 0 {
			m := map[string]int{"own:k": i + 1}
			require.NoError(t, rediscache.SetMany(ctx, c, m, time.Hour))
			if v, err := rediscache.Get[int](ctx, c, "own:k"); err != nil || v != i+1 {
				stale["SetMany"]++
			}
			got, err := rediscache.GetManyOrLoad(ctx, c, []string{"own:loaded" + fmt.Sprint(i)}, time.Hour,
				func(_ context.Context, ks []string) (map[string]int, error) { return map[string]int{ks[0]: i}, nil })
			require.NoError(t, err)
			if v, err := rediscache.Get[int](ctx, c, "own:loaded"+fmt.Sprint(i)); err != nil || v != got["own:loaded"+fmt.Sprint(i)] {
				stale["GetManyOrLoad store"]++
			}
		}
	}
	assert.Empty(t, stale, "reads right after the Client's own writes that returned the old value")
}

// A kept value ends with its key's TTL, whoever wrote it, even when Redis
// sends no expiry notice (active expiry off here, as it is slow to reach a
// key among many with TTLs).
func TestNearCacheEndsWithTTL(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, "--enable-debug-command", "local")
	raw := srv.Client(t)
	require.NoError(t, raw.Do(t.Context(), "DEBUG", "SET-ACTIVE-EXPIRE", "0").Err())
	near, err := rediscache.New(&rediscache.Options{Addrs: []string{srv.Addr()}, Prefix: "ttl", LocalCache: true, LocalCacheTTL: -1})
	require.NoError(t, err)
	t.Cleanup(func() { _ = near.Close() })
	other, err := rediscache.New(&rediscache.Options{Addrs: []string{srv.Addr()}, Prefix: "ttl"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = other.Close() })
	ctx := t.Context()
	const ttl = 300 * time.Millisecond
	for _, writer := range []*rediscache.Client{near, other} {
		require.NoError(t, rediscache.Set(ctx, writer, "k", "v", ttl))
		require.NoError(t, rediscache.Set(ctx, writer, "m", "v", ttl))
		for range 3 {
			_, err := rediscache.Get[string](ctx, near, "k") // kept now
			require.NoError(t, err)
			_, err = rediscache.GetMany[string](ctx, near, []string{"m"})
			require.NoError(t, err)
		}
		time.Sleep(ttl + 100*time.Millisecond)
		_, err := rediscache.Get[string](ctx, near, "k")
		assert.ErrorIs(t, err, rediscache.ErrCacheMiss, "typed Get after the TTL")
		var s string
		assert.ErrorIs(t, near.Get(ctx, "k", &s), rediscache.ErrCacheMiss, "untyped Get after the TTL")
		m, err := rediscache.GetMany[string](ctx, near, []string{"m"})
		require.NoError(t, err)
		assert.Empty(t, m, "GetMany after the TTL")
		v, err := rediscache.GetOrLoad(ctx, near, "k", ttl, func(context.Context) (string, error) { return "loaded", nil })
		require.NoError(t, err)
		assert.Equal(t, "loaded", v, "GetOrLoad after the TTL")
	}
}

// failGenerations is a go-redis hook that fails every command on the
// namespace generations of prefix p while on is true.
type failGenerations struct {
	on     *atomic.Bool
	prefix string
}

func (h failGenerations) touches(cmd redis.Cmder) bool {
	args := cmd.Args()
	if len(args) < 2 {
		return false
	}
	k, _ := args[1].(string)
	return h.on.Load() && (k == h.prefix+":\x00{gens}" || k == h.prefix+":\x00{gens}log")
}

func (h failGenerations) DialHook(next redisDialHook) redisDialHook { return next }
func (h failGenerations) ProcessHook(next redisProcessHook) redisProcessHook {
	return func(ctx context.Context, cmd redisCmder) error {
		if h.touches(cmd) {
			cmd.SetErr(errors.New("injected: generations unreadable"))
			return cmd.Err()
		}
		return next(ctx, cmd)
	}
}
func (h failGenerations) ProcessPipelineHook(next redisPipelineHook) redisPipelineHook {
	return func(ctx context.Context, cmds []redisCmder) error {
		for _, cmd := range cmds {
			if h.touches(cmd) {
				for _, c := range cmds {
					c.SetErr(errors.New("injected: generations unreadable"))
				}
				return cmds[0].Err()
			}
		}
		return next(ctx, cmds)
	}
}

// GenerationTTL is a hard bound: a Client that cannot read the namespace
// generations stops trusting its view once it is older than GenerationTTL,
// so another Client's InvalidateNamespace reaches it within that bound
// even then: Get fails (ErrGenerationUnknown), GetOrLoad serves the loader.
func TestGenerationTTLIsABound(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	ctx := t.Context()
	const bound = 300 * time.Millisecond
	a := e.client(t, rediscache.Options{Prefix: "gb", GenerationTTL: bound})
	var failing atomic.Bool
	rdb := redis.NewClient(&redis.Options{Addr: e.addr, MaxRetries: -1})
	rdb.AddHook(failGenerations{on: &failing, prefix: "gb"})
	t.Cleanup(func() { _ = rdb.Close() })
	b := e.client(t, rediscache.Options{Redis: rdb, Prefix: "gb", GenerationTTL: bound, MaxRetries: -1})

	const key = "tasks:v1:1"
	require.NoError(t, rediscache.Set(ctx, a, key, "old", time.Hour))
	v, err := rediscache.Get[string](ctx, b, key)
	require.NoError(t, err)
	require.Equal(t, "old", v)

	failing.Store(true)
	_, err = a.InvalidateNamespace(ctx, rediscache.NamespaceTasks)
	require.NoError(t, err)
	bumped := time.Now()
	var lastOld time.Time
	for time.Since(bumped) < 4*bound {
		if v, err := rediscache.Get[string](ctx, b, key); err == nil && v == "old" {
			lastOld = time.Now()
		}
		time.Sleep(5 * time.Millisecond)
	}
	lag := lastOld.Sub(bumped)
	t.Logf("B served the old generation for %v after the invalidation, its generations unreadable", lag.Round(time.Millisecond))
	assert.Less(t, lag, bound+100*time.Millisecond, "B used a view older than GenerationTTL")
	_, err = rediscache.Get[string](ctx, b, key)
	assert.ErrorIs(t, err, rediscache.ErrGenerationUnknown)
	got, src, err := rediscache.GetOrLoadWithSource(ctx, b, key, time.Hour, func(context.Context) (string, error) { return "fresh", nil })
	require.NoError(t, err)
	assert.Equal(t, "fresh", got)
	assert.Equal(t, rediscache.SourceFallback, src)

	failing.Store(false)
	require.Eventually(t, func() bool {
		_, err := rediscache.Get[string](ctx, b, key)
		return errors.Is(err, rediscache.ErrCacheMiss)
	}, 5*time.Second, 10*time.Millisecond, "B trusts its view again once it can read the generations")
}

// A hung cluster master holding the namespace generations must not hold up
// calls whose keys live on healthy masters: once the view is older than
// GenerationTTL they fall back to the loader at once, within their own
// deadline.
func TestGenerationsOnAHungMaster(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 3, 0)
	cc := cl.Client(t)
	ctx := t.Context()
	c, err := rediscache.New(&rediscache.Options{Addrs: cl.Addrs(), ClusterMode: true, Prefix: "hung", GenerationTTL: 200 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	load := func(context.Context) (string, error) { return "loaded", nil }
	_, err = rediscache.GetOrLoad(ctx, c, "warm", time.Hour, load)
	require.NoError(t, err)

	gensNode, err := cc.MasterForKey(ctx, "hung:\x00{gens}")
	require.NoError(t, err)
	var hung *redistest.Server
	for _, n := range cl.Nodes() {
		if n.Addr() == gensNode.Options().Addr {
			hung = n
		}
	}
	require.NotNil(t, hung)
	var keys []string // keys on the healthy masters
	for i := 0; len(keys) < 52; i++ {
		k := fmt.Sprintf("tasks:v1:%d", i)
		if node, err := cc.MasterForKey(ctx, "hung:"+k); err == nil && node.Options().Addr != hung.Addr() {
			keys = append(keys, k)
		}
	}
	require.NoError(t, syscall.Kill(hung.Pid(), syscall.SIGSTOP))
	t.Cleanup(func() { _ = syscall.Kill(hung.Pid(), syscall.SIGCONT) })
	time.Sleep(400 * time.Millisecond) // the view is now older than GenerationTTL

	var failed, slow int
	for _, k := range keys {
		cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		start := time.Now()
		v, err := rediscache.GetOrLoad(cctx, c, k, time.Hour, load)
		took := time.Since(start)
		cancel()
		if err != nil || v != "loaded" {
			failed++
			t.Logf("%s: %v after %v", k, err, took)
		}
		if took > 300*time.Millisecond {
			slow++
		}
	}
	assert.Zero(t, failed, "calls on healthy masters that failed, of %d", len(keys))
	assert.Zero(t, slow, "calls that outlived their deadline")
}

// The steady-state refresh of the generations is one O(1) command, however
// many namespaces were ever invalidated: the whole hash is read once.
func TestGenerationsRefreshIsConstant(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	raw := srv.Client(t)
	ctx := t.Context()
	const ttl = 100 * time.Millisecond
	// A, which invalidates, keeps the default GenerationTTL: with 100ms its
	// own reads would wait for refreshes of a log that 8 writers keep
	// moving, and fail on a slow machine (-race) once one takes over 50ms.
	a, err := rediscache.New(&rediscache.Options{Addrs: []string{srv.Addr()}, Prefix: "many"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Close() })
	const namespaces = 20_000
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < namespaces; i += 8 {
				_, err := a.InvalidateNamespace(ctx, rediscache.Namespace(fmt.Sprint("ns", i)))
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()
	b, err := rediscache.New(&rediscache.Options{Addrs: []string{srv.Addr()}, Prefix: "many", GenerationTTL: ttl})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	want, err := a.Generation(ctx, "ns19999")
	require.NoError(t, err)
	require.Eventually(t, func() bool { // the first read: the whole hash, in pages
		g, err := b.Generation(ctx, "ns19999")
		return err == nil && g == want
	}, 5*time.Second, 10*time.Millisecond)

	require.NoError(t, raw.ConfigResetStat(ctx).Err())
	deadline := time.Now().Add(10 * ttl)
	for time.Now().Before(deadline) { // keep B's view in use
		_, _ = b.Generation(ctx, "ns1")
		time.Sleep(ttl / 10)
	}
	stats := commandStats(t, raw)
	assert.Zero(t, stats["hscan"].calls, "the hash was read again")
	require.Positive(t, stats["hmget"].calls, "no refresh ran")
	perCall := stats["hmget"].usec / float64(stats["hmget"].calls)
	t.Logf("%d refreshes over %d namespaces: %.1f µs of Redis time each", stats["hmget"].calls, namespaces, perCall)
	assert.Less(t, perCall, 1000.0, "µs of Redis time per refresh")
}

type cmdStat struct {
	calls int
	usec  float64
}

// commandStats parses INFO commandstats.
func commandStats(t *testing.T, raw *redis.Client) map[string]cmdStat {
	t.Helper()
	info, err := raw.InfoMap(t.Context(), "commandstats").Result()
	require.NoError(t, err)
	out := map[string]cmdStat{}
	for name, v := range info["Commandstats"] {
		var st cmdStat
		_, err := fmt.Sscanf(v, "calls=%d,usec=%f,", &st.calls, &st.usec)
		if err == nil {
			out[name[len("cmdstat_"):]] = st
		}
	}
	return out
}

// A GetMany with LocalCache over several chunks (500 keys each, decoded
// at once) keeps every key it read from Redis: the second call answers
// them all from the near cache, with the same values, and sends nothing.
func TestNearCacheGetManyChunks(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	c := e.client(t, rediscache.Options{Prefix: "chunks", LocalCache: true})
	ctx := t.Context()
	const n = 2_000
	items := make(map[string]int, n)
	keys := make([]string, 0, n)
	for i := range n {
		k := fmt.Sprintf("tasks:v1:%d", i)
		items[k] = i
		keys = append(keys, k)
	}
	require.NoError(t, rediscache.SetMany(ctx, c, items, time.Hour))
	first, err := rediscache.GetMany[int](ctx, c, keys)
	require.NoError(t, err)
	require.Equal(t, items, first)
	require.NoError(t, e.raw.ConfigResetStat(ctx).Err())
	second, err := rediscache.GetMany[int](ctx, c, keys)
	require.NoError(t, err)
	require.Equal(t, items, second)
	stats := commandStats(t, e.raw)
	assert.Zero(t, stats["mget"].calls+stats["get"].calls, "the second GetMany read Redis")
}
