package rediscache_test

import (
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rediscache/rediscache"
	"github.com/rediscache/rediscache/internal/redistest"
)

// unrelatedKeys is how many keys outside the Client's Prefix the cost
// tests put next to its own.
const unrelatedKeys = 200_000

// healthCommands are the commands a health check may send.
var healthCommands = []string{"ping", "info", "dbsize", "scan"}

// startPopulated starts a redis-server, writes ownKeys keys under Prefix
// "app" through a Client, and with DEBUG POPULATE unrelated keys
// "other:N" outside it.
func startPopulated(t testing.TB, unrelated, ownKeys int) (*redistest.Server, *redis.Client) {
	t.Helper()
	srv := redistest.Start(t, "--enable-debug-command", "local")
	raw := srv.Client(t)
	ctx := t.Context()
	c, err := rediscache.New(&rediscache.Options{Addrs: []string{srv.Addr()}, Prefix: "app", HealthCheckInterval: -1})
	require.NoError(t, err)
	defer func() { _ = c.Close() }()
	for i := range ownKeys {
		require.NoError(t, c.Set(ctx, "tasks:v1:"+strconv.Itoa(i), i, time.Hour))
	}
	if unrelated > 0 {
		require.NoError(t, raw.Do(ctx, "DEBUG", "POPULATE", unrelated, "other").Err())
	}
	n, err := raw.DBSize(ctx).Result()
	require.NoError(t, err)
	require.GreaterOrEqual(t, n, int64(unrelated+ownKeys))
	return srv, raw
}

// healthStats returns the INFO commandstats entries of the commands a
// health check may send (a command never called since the last CONFIG
// RESETSTAT is absent).
func healthStats(t *testing.T, raw *redis.Client) map[string]cmdStat {
	t.Helper()
	all := commandStats(t, raw)
	out := map[string]cmdStat{}
	for _, name := range healthCommands {
		if st, ok := all[name]; ok {
			out[name] = st
		}
	}
	return out
}

// redisUsec is the time Redis spent in the health commands since the last
// CONFIG RESETSTAT.
func redisUsec(stats map[string]cmdStat) float64 {
	var usec float64
	for _, st := range stats {
		usec += st.usec
	}
	return usec
}

// pairedMedians runs empty and full in turn, calls times each, so that a
// busy machine slows both alike, and returns the median duration of each.
func pairedMedians(calls int, empty, full func()) (time.Duration, time.Duration) {
	var de, df []time.Duration
	for range calls {
		start := time.Now()
		empty()
		de = append(de, time.Since(start))
		start = time.Now()
		full()
		df = append(df, time.Since(start))
	}
	slices.Sort(de)
	slices.Sort(df)
	return de[len(de)/2], df[len(df)/2]
}

// costIsFlat checks the bound on one housekeeping call (a health
// check, run by empty and full on the servers of rawEmpty and rawFull: one
// empty but for the Client's keys, one with 200,000 unrelated keys more):
// the median of 7 calls with the keys is within 2x of the empty one's and
// under 20ms, and so is the time Redis spent per call (INFO commandstats).
// Neither server ever sees a SCAN. On a shared 2-core machine even a
// server's own clock is disturbed when it loses its core, so a round that
// misses a bound is measured again, up to 5 rounds.
func costIsFlat(t *testing.T, what string, rawEmpty, rawFull *redis.Client, empty, full func()) {
	t.Helper()
	const calls, rounds = 7, 5
	ctx := t.Context()
	empty()
	full() // connections dialled
	var me, mf time.Duration
	var ue, uf float64
	for round := 1; round <= rounds; round++ {
		for _, raw := range []*redis.Client{rawEmpty, rawFull} {
			require.NoError(t, raw.ConfigResetStat(ctx).Err())
		}
		me, mf = pairedMedians(calls, empty, full)
		se, sf := healthStats(t, rawEmpty), healthStats(t, rawFull)
		require.NotContains(t, se, "scan", "%s ran SCAN", what)
		require.NotContains(t, sf, "scan", "%s ran SCAN", what)
		require.Equal(t, calls, se["dbsize"].calls, "one check per call")
		require.Equal(t, calls, sf["dbsize"].calls, "one check per call")
		ue, uf = redisUsec(se)/calls, redisUsec(sf)/calls
		t.Logf("%s, round %d: median of %d: %v with 0 unrelated keys, %v with %d (%.2fx); Redis time per call %.1fµs and %.1fµs (%.2fx); commands %v",
			what, round, calls, me, mf, unrelatedKeys, float64(mf)/float64(me), ue, uf, uf/ue, sf)
		if mf <= 2*me && mf < 20*time.Millisecond && uf <= 2*ue {
			return
		}
	}
	assert.Less(t, mf, 20*time.Millisecond, "%s: median with %d unrelated keys", what, unrelatedKeys)
	assert.LessOrEqual(t, mf, 2*me, "%s: median with %d unrelated keys vs none, %d rounds", what, unrelatedKeys, rounds)
	assert.LessOrEqual(t, uf, 2*ue, "%s: Redis time with %d unrelated keys vs none, %d rounds", what, unrelatedKeys, rounds)
}

// Issue "keep every housekeeping call independent of the keyspace's size":
// HealthCheck and the background monitor cost the same with 0 or 200,000
// keys outside the Prefix; they never SCAN unless HealthCountKeys asks.
func TestHealthCheckCostIndependentOfKeyspace(t *testing.T) {
	// Not parallel: it measures time.
	_, rawEmpty := startPopulated(t, 0, 10)
	srvFull, rawFull := startPopulated(t, unrelatedKeys, 10)
	ctx := t.Context()
	client := func(srv string, opt rediscache.Options) *rediscache.Client {
		opt.Addrs, opt.Prefix = []string{srv}, "app"
		if opt.HealthCheckInterval == 0 {
			opt.HealthCheckInterval = -1
		}
		c, err := rediscache.New(&opt)
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	empty := client(rawEmpty.Options().Addr, rediscache.Options{})
	full := client(srvFull.Addr(), rediscache.Options{})

	check := func(c *rediscache.Client) func() {
		return func() {
			h := c.HealthCheck(ctx)
			require.NoError(t, h.Err)
			require.True(t, h.Healthy)
			require.Equal(t, int64(-1), h.Keys, "not counted by default")
		}
	}
	h := full.HealthCheck(ctx)
	assert.GreaterOrEqual(t, h.DBSize, int64(unrelatedKeys+10), "DBSize is always there")

	costIsFlat(t, "HealthCheck", rawEmpty, rawFull, check(empty), check(full))

	// The background monitor runs the same check.
	require.NoError(t, rawFull.ConfigResetStat(ctx).Err())
	client(srvFull.Addr(), rediscache.Options{HealthCheckInterval: 10 * time.Millisecond})
	require.Eventually(t, func() bool { return healthStats(t, rawFull)["dbsize"].calls >= 3 },
		5*time.Second, 10*time.Millisecond, "the monitor ran no check")
	assert.NotContains(t, healthStats(t, rawFull), "scan", "the monitor ran SCAN")

	// What counting costs, for the record.
	counting := client(srvFull.Addr(), rediscache.Options{HealthCountKeys: true})
	start := time.Now()
	h = counting.HealthCheck(ctx)
	t.Logf("HealthCheck with HealthCountKeys and %d unrelated keys: %v, Keys %d", unrelatedKeys, time.Since(start), h.Keys)
	assert.Equal(t, int64(10), h.Keys)
}

// With HealthCountKeys, Health.Keys is the count of the keys under the
// Prefix (DBSize without one); without it, -1. DBSize is always there, and
// CountPrefix counts on demand either way.
func TestHealthCountKeys(t *testing.T) {
	t.Parallel()
	_, raw := startPopulated(t, 5000, 123)
	addr := raw.Options().Addr
	ctx := t.Context()
	tests := []struct {
		name   string
		prefix string
		count  bool
		want   int64 // -2: DBSize
		own    int64 // CountPrefix
	}{
		{"default", "app", false, -1, 123},
		{"counted", "app", true, 123, 123},
		{"another prefix counted", "nobody", true, 0, 0},
		{"no prefix", "", false, -1, -2},
		{"no prefix counted", "", true, -2, -2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := rediscache.New(&rediscache.Options{Addrs: []string{addr}, Prefix: tt.prefix, HealthCountKeys: tt.count, HealthCheckInterval: -1})
			require.NoError(t, err)
			defer func() { _ = c.Close() }()
			h := c.HealthCheck(ctx)
			require.NoError(t, h.Err)
			dbsize, err := raw.DBSize(ctx).Result()
			require.NoError(t, err)
			assert.GreaterOrEqual(t, dbsize, int64(5000+123))
			assert.Equal(t, dbsize, h.DBSize)
			if tt.want == -2 {
				tt.want = dbsize
			}
			if tt.own == -2 {
				tt.own = dbsize
			}
			assert.Equal(t, tt.want, h.Keys)
			n, err := c.CountPrefix(ctx, "")
			require.NoError(t, err)
			assert.Equal(t, tt.own, n, "CountPrefix")
		})
	}
}

// BenchmarkHealthCheckKeyspace reports a HealthCheck on a server holding
// only the Client's 1,000 keys and on one with 200,000 unrelated keys
// more, alternated call by call: the ratio is what the unrelated keys cost
// (nothing, without HealthCountKeys).
func BenchmarkHealthCheckKeyspace(b *testing.B) {
	ctx := b.Context()
	check := func(srv *redistest.Server) func() error {
		c, err := rediscache.New(&rediscache.Options{Addrs: []string{srv.Addr()}, Prefix: "app", HealthCheckInterval: -1})
		require.NoError(b, err)
		b.Cleanup(func() { _ = c.Close() })
		return func() error {
			if h := c.HealthCheck(ctx); !h.Healthy {
				return h.Err
			}
			return nil
		}
	}
	empty, _ := startPopulated(b, 0, 1000)
	full, _ := startPopulated(b, unrelatedKeys, 1000)
	runPaired(b, "empty", check(empty), "200k", check(full))
}
