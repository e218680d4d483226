package rediscache_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rediscache/rediscache"
)

// benchPrefix returns a Prefix no other benchmark run uses, so a shared
// server (REDISCACHE_BENCH_ADDR) never needs a FLUSHDB.
func benchPrefix(name string) string {
	return name + strconv.FormatInt(time.Now().UnixNano(), 36)
}

// BenchmarkGetMany compares GetMany[benchTask] of 100 and 1,000 keys with
// raw go-redis on the same server: a pipeline of GETs, and one MGET of all
// keys. Every variant decodes each JSON value into the same struct and
// builds the same map[string]benchTask.
func BenchmarkGetMany(b *testing.B) {
	addr := benchAddr(b)
	ctx := context.Background()
	raw := redis.NewClient(&redis.Options{Addr: addr, PoolSize: rediscache.DefaultPoolSize})
	defer func() { _ = raw.Close() }()
	c, err := rediscache.New(&rediscache.Options{Addrs: []string{addr}, Prefix: benchPrefix("bgm")})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	defer func() { _, _ = c.ClearAll(ctx) }()

	payload, err := json.Marshal(benchValue)
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{100, 1000} {
		keys := make([]string, n)    // logical keys of the rediscache values
		rawKeys := make([]string, n) // stored keys of the raw JSON values
		items := make(map[string]benchTask, n)
		pipe := raw.Pipeline()
		for i := range keys {
			keys[i] = "task:" + strconv.Itoa(n) + ":" + strconv.Itoa(i)
			rawKeys[i] = c.StorageKey("raw:" + keys[i])
			items[keys[i]] = benchValue
			pipe.Set(ctx, rawKeys[i], payload, time.Hour)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			b.Fatal(err)
		}
		if err := rediscache.SetMany(ctx, c, items, time.Hour); err != nil {
			b.Fatal(err)
		}

		variants := []struct {
			name string
			get  func() error
		}{
			{"rediscache", func() error {
				m, err := rediscache.GetMany[benchTask](ctx, c, keys)
				if err == nil && len(m) != n {
					err = fmt.Errorf("GetMany returned %d of %d values", len(m), n)
				}
				return err
			}},
			{"raw-pipeline-get", func() error {
				pipe := raw.Pipeline()
				cmds := make([]*redis.StringCmd, n)
				for i, k := range rawKeys {
					cmds[i] = pipe.Get(ctx, k)
				}
				if _, err := pipe.Exec(ctx); err != nil {
					return err
				}
				m := make(map[string]benchTask, n)
				for i, cmd := range cmds {
					bs, err := cmd.Bytes()
					if err != nil {
						return err
					}
					var v benchTask
					if err := json.Unmarshal(bs, &v); err != nil {
						return err
					}
					m[rawKeys[i]] = v
				}
				return nil
			}},
			{"raw-mget", func() error {
				vals, err := raw.MGet(ctx, rawKeys...).Result()
				if err != nil {
					return err
				}
				m := make(map[string]benchTask, n)
				for i, v := range vals {
					s, ok := v.(string)
					if !ok {
						return fmt.Errorf("MGET %s: %T", rawKeys[i], v)
					}
					var t benchTask
					if err := json.Unmarshal([]byte(s), &t); err != nil {
						return err
					}
					m[rawKeys[i]] = t
				}
				return nil
			}},
		}
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			for _, v := range variants {
				b.Run(v.name, func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						if err := v.get(); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
			// The three in turn within each iteration, so a busy machine slows
			// them alike; reports each one's time and the ratios.
			b.Run("paired", func(b *testing.B) {
				spent := make([]time.Duration, len(variants))
				for b.Loop() {
					for i, v := range variants {
						start := time.Now()
						if err := v.get(); err != nil {
							b.Fatal(err)
						}
						spent[i] += time.Since(start)
					}
				}
				for i, v := range variants {
					b.ReportMetric(float64(spent[i].Nanoseconds())/float64(b.N), v.name+"-ns/op")
				}
				b.ReportMetric(float64(spent[0])/float64(spent[1]), "x-raw-pipeline")
				b.ReportMetric(float64(spent[0])/float64(spent[2]), "x-raw-mget")
			})
		})
	}
}

// BenchmarkInvalidatePrefix1M deletes 1,000,000 keys with InvalidatePrefix
// while another goroutine times single GETs of an unrelated key, and
// reports the deletion rate and the p99 GET latency during it (and, for
// comparison, before it). It needs REDISCACHE_BENCH_BIG=1; run it with
// -benchtime 1x.
func BenchmarkInvalidatePrefix1M(b *testing.B) {
	if os.Getenv("REDISCACHE_BENCH_BIG") != "1" {
		b.Skip("set REDISCACHE_BENCH_BIG=1 to seed and delete 1,000,000 keys")
	}
	const n = 1_000_000
	addr := benchAddr(b)
	ctx := context.Background()
	raw := redis.NewClient(&redis.Options{Addr: addr})
	defer func() { _ = raw.Close() }()
	c, err := rediscache.New(&rediscache.Options{Addrs: []string{addr}, Prefix: benchPrefix("bip")})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	defer func() { _, _ = c.ClearAll(ctx) }()
	probe := c.StorageKey("probe")
	if err := raw.Set(ctx, probe, "x", 0).Err(); err != nil {
		b.Fatal(err)
	}

	// getLatencies runs single GETs of probe until stop is closed.
	getLatencies := func(stop <-chan struct{}) []time.Duration {
		var lat []time.Duration
		for {
			select {
			case <-stop:
				return lat
			default:
			}
			start := time.Now()
			if err := raw.Get(ctx, probe).Err(); err != nil {
				b.Error(err)
				return lat
			}
			lat = append(lat, time.Since(start))
		}
	}
	p99 := func(lat []time.Duration) float64 {
		if len(lat) == 0 {
			return 0
		}
		slices.Sort(lat)
		return float64(lat[len(lat)*99/100]) / float64(time.Millisecond)
	}

	var deleted int64
	var elapsed time.Duration
	var during, idle []time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		for lo := 0; lo < n; lo += 10_000 {
			pipe := raw.Pipeline()
			for i := lo; i < lo+10_000; i++ {
				pipe.Set(ctx, c.StorageKey("big:"+strconv.Itoa(i)), "v", 0)
			}
			if _, err := pipe.Exec(ctx); err != nil {
				b.Fatal(err)
			}
		}
		stop := make(chan struct{})
		time.AfterFunc(time.Second, func() { close(stop) })
		idle = append(idle, getLatencies(stop)...)
		b.StartTimer()

		stop = make(chan struct{})
		var wg sync.WaitGroup
		var lat []time.Duration
		wg.Go(func() { lat = getLatencies(stop) })
		start := time.Now()
		d, err := c.InvalidatePrefix(ctx, "big:")
		elapsed += time.Since(start)
		close(stop)
		wg.Wait()
		if err != nil || d != n {
			b.Fatalf("InvalidatePrefix deleted %d of %d: %v", d, n, err)
		}
		deleted += d
		during = append(during, lat...)
	}
	b.ReportMetric(float64(deleted)/elapsed.Seconds(), "keys/s")
	b.ReportMetric(p99(during), "p99-get-ms")
	b.ReportMetric(p99(idle), "p99-get-idle-ms")
	b.ReportMetric(float64(len(during)), "gets-during")
}

// BenchmarkInvalidatePrefixKeyspace measures what an InvalidatePrefix of
// 1,000 keys costs next to 200,000 keys it must not delete, held either
// under another Prefix ("outside") or under the Client's own Prefix
// ("inside"). SCAN MATCH visits every key of the database and filters
// afterwards, so both cost the same: the walk's rate is reported as
// scanned-keys/s (the database's keys over the time taken).
func BenchmarkInvalidatePrefixKeyspace(b *testing.B) {
	const others, matched = 200_000, 1_000
	addr := benchAddr(b)
	ctx := context.Background()
	raw := redis.NewClient(&redis.Options{Addr: addr})
	defer func() { _ = raw.Close() }()
	seed := func(keys func(i int) string, n int) {
		for lo := 0; lo < n; lo += 10_000 {
			pipe := raw.Pipeline()
			for i := lo; i < min(lo+10_000, n); i++ {
				pipe.Set(ctx, keys(i), "v", 0)
			}
			if _, err := pipe.Exec(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, where := range []string{"outside", "inside"} {
		b.Run(where, func(b *testing.B) {
			c, err := rediscache.New(&rediscache.Options{Addrs: []string{addr}, Prefix: benchPrefix("bipk")})
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = c.Close() }()
			defer func() { _, _ = c.ClearAll(ctx) }()
			other := c
			if where == "outside" {
				if other, err = rediscache.New(&rediscache.Options{Addrs: []string{addr}, Prefix: benchPrefix("bipo")}); err != nil {
					b.Fatal(err)
				}
				defer func() { _ = other.Close() }()
				defer func() { _, _ = other.ClearAll(ctx) }()
			}
			seed(func(i int) string { return other.StorageKey("other:" + strconv.Itoa(i)) }, others)
			g := rediscache.NewKeyGenerator(rediscache.V1)
			prefix := g.Prefix(rediscache.NamespaceTasks, "user_tasks", "user_1")
			var scanned int64
			var elapsed time.Duration
			for b.Loop() {
				b.StopTimer()
				seed(func(i int) string { return c.StorageKey(prefix + strconv.Itoa(i)) }, matched)
				size, err := raw.DBSize(ctx).Result()
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				start := time.Now()
				d, err := c.InvalidatePrefix(ctx, prefix)
				elapsed += time.Since(start)
				if err != nil || d != matched {
					b.Fatalf("InvalidatePrefix deleted %d of %d: %v", d, matched, err)
				}
				scanned += size
			}
			b.ReportMetric(float64(scanned)/elapsed.Seconds(), "scanned-keys/s")
		})
	}
}
