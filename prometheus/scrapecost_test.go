package rediscacheprom

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rediscache/rediscache"
)

// TestKeysOnlyWhenCounted checks that rediscache_keys is exported only
// when the Client counts its keys (Options.HealthCountKeys): without it
// the count is unknown (Health.Keys -1), and a gauge of -1 would be a lie.
func TestKeysOnlyWhenCounted(t *testing.T) {
	addr := startRedis(t)
	ctx := context.Background()
	for _, count := range []bool{false, true} {
		t.Run(fmt.Sprintf("HealthCountKeys=%v", count), func(t *testing.T) {
			c := newClient(t, addr, rediscache.Options{Prefix: "counted" + strconv.FormatBool(count), HealthCountKeys: count})
			for i := range 4 {
				if err := c.Set(ctx, "tasks:v1:"+strconv.Itoa(i), i, time.Minute); err != nil {
					t.Fatal(err)
				}
			}
			mfs := gather(t, NewCollector(c, nil))
			if mfs["rediscache_redis_up"].GetMetric()[0].GetGauge().GetValue() != 1 {
				t.Fatal("rediscache_redis_up is not 1")
			}
			mf := mfs["rediscache_keys"]
			switch {
			case !count && mf != nil:
				t.Errorf("rediscache_keys = %v without HealthCountKeys, want it absent", mf.GetMetric())
			case count && (mf == nil || mf.GetMetric()[0].GetGauge().GetValue() != 4):
				t.Errorf("rediscache_keys = %v with HealthCountKeys, want 4", mf.GetMetric())
			}
			want := len(exportedNames)
			if !count {
				want--
			}
			if len(mfs) != want {
				t.Errorf("%d metric families, want %d", len(mfs), want)
			}
		})
	}
}

// unrelatedKeys is how many keys outside the Client's Prefix the scrape
// cost test puts next to its own.
const unrelatedKeys = 200_000

// populated returns a Client with Prefix "app" and 10 keys on a fresh
// redis-server that also holds unrelated keys "other:N" (DEBUG POPULATE),
// and the server's address.
func populated(t *testing.T, unrelated int) (*rediscache.Client, string) {
	t.Helper()
	addr := startRedis(t, "--enable-debug-command", "local")
	c := newClient(t, addr, rediscache.Options{Prefix: "app"})
	ctx := context.Background()
	for i := range 10 {
		if err := c.Set(ctx, "tasks:v1:"+strconv.Itoa(i), i, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if unrelated > 0 {
		if err := c.Redis().Do(ctx, "DEBUG", "POPULATE", unrelated, "other").Err(); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := c.Redis().DBSize(ctx).Result(); err != nil || n < int64(unrelated+10) {
		t.Fatalf("DBSIZE = %d, %v; want at least %d", n, err, unrelated+10)
	}
	return c, addr
}

// redisTime returns how many health checks (DBSIZE calls) Redis ran since
// the last CONFIG RESETSTAT, the microseconds it spent in the commands a
// check may send, and how many SCANs it ran.
func redisTime(t *testing.T, c *rediscache.Client) (checks int64, usec float64, scans int64) {
	t.Helper()
	info, err := c.Redis().InfoMap(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ping", "info", "dbsize", "scan"} {
		v, ok := info["Commandstats"]["cmdstat_"+name]
		if !ok {
			continue
		}
		var calls int64
		var us float64
		if _, err := fmt.Sscanf(v, "calls=%d,usec=%f,", &calls, &us); err != nil {
			t.Fatalf("cmdstat_%s %q: %v", name, v, err)
		}
		usec += us
		switch name {
		case "dbsize":
			checks = calls
		case "scan":
			scans = calls
		}
	}
	return checks, usec, scans
}

// TestScrapeCostIndependentOfKeyspace checks the bound on one
// scrape that runs a health check: the median of 7 scrapes with 200,000
// keys outside the Prefix is within 2x of an empty server's and under
// 20ms, and so is the time Redis spent per scrape (INFO commandstats); a
// scrape never SCANs. Scrapes of the two servers alternate, so a busy
// machine slows both alike; a round that misses a bound (a shared 2-core
// machine disturbs even the server's clock) is measured again, up to 5
// rounds.
func TestScrapeCostIndependentOfKeyspace(t *testing.T) {
	empty, _ := populated(t, 0)
	full, fullAddr := populated(t, unrelatedKeys)
	scraper := func(c *rediscache.Client) func() {
		// Every scrape runs a health check.
		reg := prometheus.NewRegistry()
		reg.MustRegister(NewCollector(c, &CollectorOptions{HealthInterval: time.Nanosecond}))
		return func() {
			mfs, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			if len(mfs) < 10 {
				t.Fatalf("%d metric families", len(mfs))
			}
		}
	}
	se, sf := scraper(empty), scraper(full)
	se()
	sf() // connections dialled

	const calls, rounds = 7, 5
	var me, mf time.Duration
	var pe, pf float64
	for round := 1; round <= rounds; round++ {
		for _, c := range []*rediscache.Client{empty, full} {
			if err := c.Redis().ConfigResetStat(context.Background()).Err(); err != nil {
				t.Fatal(err)
			}
		}
		var de, df []time.Duration
		for range calls {
			start := time.Now()
			se()
			de = append(de, time.Since(start))
			start = time.Now()
			sf()
			df = append(df, time.Since(start))
		}
		slices.Sort(de)
		slices.Sort(df)
		me, mf = de[calls/2], df[calls/2]
		ce, ue, scansE := redisTime(t, empty)
		cf, uf, scansF := redisTime(t, full)
		if scansE != 0 || scansF != 0 {
			t.Fatalf("scrapes ran SCAN: %d and %d calls", scansE, scansF)
		}
		if ce != calls || cf != calls {
			t.Fatalf("%d and %d health checks ran for %d scrapes each, want one per scrape", ce, cf, calls)
		}
		pe, pf = ue/calls, uf/calls
		t.Logf("scrape, round %d: median of %d: %v with 0 unrelated keys, %v with %d (%.2fx); Redis time per scrape %.1fµs and %.1fµs (%.2fx)",
			round, calls, me, mf, unrelatedKeys, float64(mf)/float64(me), pe, pf, pf/pe)
		if mf <= 2*me && mf < 20*time.Millisecond && pf <= 2*pe {
			break
		}
	}
	if mf >= 20*time.Millisecond || mf > 2*me || pf > 2*pe {
		t.Errorf("after %d rounds: scrape median %v with %d unrelated keys, %v with none; Redis time %.1fµs and %.1fµs: want under 20ms and within 2x",
			rounds, mf, unrelatedKeys, me, pf, pe)
	}

	// What counting costs, for the record.
	counting := newClient(t, fullAddr, rediscache.Options{Prefix: "app", HealthCountKeys: true})
	start := time.Now()
	mfs := gather(t, NewCollector(counting, nil))
	t.Logf("scrape with HealthCountKeys and %d unrelated keys: %v", unrelatedKeys, time.Since(start))
	if mf := mfs["rediscache_keys"]; mf == nil || mf.GetMetric()[0].GetGauge().GetValue() != 10 {
		t.Errorf("rediscache_keys = %v, want 10", mf)
	}
}
