package rediscache_test

import (
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rediscache/rediscache"
	"github.com/rediscache/rediscache/internal/redistest"
)

// benchAddr returns the Redis to benchmark against: REDISCACHE_BENCH_ADDR
// when set (a server pinned to its own CPU gives steady latency figures),
// else a redis-server started for the benchmark.
func benchAddr(b *testing.B) string {
	if addr := os.Getenv("REDISCACHE_BENCH_ADDR"); addr != "" {
		return addr
	}
	return redistest.Start(b).Addr()
}

// benchClients returns a raw go-redis client and a rediscache Client on the
// benchmark's server, both closed when the benchmark ends.
func benchClients(b *testing.B) (*redis.Client, *rediscache.Client) {
	addr := benchAddr(b)
	raw := redis.NewClient(&redis.Options{Addr: addr, PoolSize: rediscache.DefaultPoolSize})
	b.Cleanup(func() { _ = raw.Close() })
	c, err := rediscache.New(&rediscache.Options{Addrs: []string{addr}, Prefix: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	return raw, c
}

type benchTask struct {
	ID       string   `json:"id"`
	UserID   string   `json:"user_id"`
	Title    string   `json:"title"`
	Status   string   `json:"status"`
	Priority int      `json:"priority"`
	Tags     []string `json:"tags"`
}

var benchValue = benchTask{ID: "task_123", UserID: "user_abc", Title: "Render the storyboard", Status: "running", Priority: 2, Tags: []string{"video", "hd"}}

// BenchmarkGet compares a typed Get of a small struct through rediscache
// with raw go-redis GET plus encoding/json on the same server.
func BenchmarkGet(b *testing.B) {
	ctx := context.Background()
	raw, c := benchClients(b)
	payload, _ := json.Marshal(benchValue)
	if err := raw.Set(ctx, "bench:raw:task", payload, 0).Err(); err != nil {
		b.Fatal(err)
	}
	if err := rediscache.Set(ctx, c, "task", benchValue, rediscache.TTLDay); err != nil {
		b.Fatal(err)
	}
	rawGet := func() error {
		bs, err := raw.Get(ctx, "bench:raw:task").Bytes()
		if err != nil {
			return err
		}
		var v benchTask
		return json.Unmarshal(bs, &v)
	}
	cacheGet := func() error {
		_, err := rediscache.Get[benchTask](ctx, c, "task")
		return err
	}
	runPair(b, rawGet, cacheGet)
}

// BenchmarkSet compares a typed Set with a TTL through rediscache (on one
// server with the bump of the key's write counter in the same round trip)
// with raw go-redis SET plus encoding/json on the same server.
func BenchmarkSet(b *testing.B) {
	ctx := context.Background()
	raw, c := benchClients(b)
	rawSet := func() error {
		bs, err := json.Marshal(benchValue)
		if err != nil {
			return err
		}
		return raw.Set(ctx, "bench:raw:task", bs, rediscache.TTLMedium).Err()
	}
	cacheSet := func() error {
		return rediscache.Set(ctx, c, "task", benchValue, rediscache.TTLMedium)
	}
	runPair(b, rawSet, cacheSet)
}

// BenchmarkDelete compares a Delete of one present key through rediscache
// (UNLINK, and on one server the bump of the key's write counter in the
// same round trip) with raw go-redis SET then UNLINK: each side first sets
// its key, so both delete a present key.
func BenchmarkDelete(b *testing.B) {
	ctx := context.Background()
	raw, c := benchClients(b)
	bs, err := json.Marshal(benchValue)
	if err != nil {
		b.Fatal(err)
	}
	rawDel := func() error {
		if err := raw.Set(ctx, "bench:raw:task", bs, rediscache.TTLMedium).Err(); err != nil {
			return err
		}
		return raw.Unlink(ctx, "bench:raw:task").Err()
	}
	cacheDel := func() error {
		if err := raw.Set(ctx, "bench:task", bs, rediscache.TTLMedium).Err(); err != nil {
			return err
		}
		_, err := c.Delete(ctx, "task")
		return err
	}
	runPair(b, rawDel, cacheDel)
}

// runPair benchmarks raw and cache each on their own (serial and parallel)
// and alternated call by call ("paired"), which reports the ratio
// rediscache/raw with machine noise hitting both sides alike.
func runPair(b *testing.B, raw, cache func() error) {
	runPaired(b, "raw", raw, "rediscache", cache)
	for _, v := range []struct {
		name string
		fn   func() error
	}{{"raw", raw}, {"rediscache", cache}} {
		b.Run(v.name+"/serial", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := v.fn(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(v.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := v.fn(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkGetStats measures what counting costs: the same typed Get with
// Stats on (the default) and off (Options.DisableStats), alternated call by
// call so machine noise hits both alike. It reports each side's mean and
// the ratio on/off.
func BenchmarkGetStats(b *testing.B) {
	addr := benchAddr(b)
	ctx := context.Background()
	var clients [2]*rediscache.Client
	for i, off := range []bool{false, true} {
		c, err := rediscache.New(&rediscache.Options{Addrs: []string{addr}, Prefix: "bench-stats", DisableStats: off})
		if err != nil {
			b.Fatal(err)
		}
		defer func() { _ = c.Close() }()
		if err := rediscache.Set(ctx, c, "task", benchValue, rediscache.TTLDay); err != nil {
			b.Fatal(err)
		}
		clients[i] = c
	}
	var spent [2]time.Duration
	b.ReportAllocs()
	for b.Loop() {
		for i, c := range clients {
			start := time.Now()
			if _, err := rediscache.Get[benchTask](ctx, c, "task"); err != nil {
				b.Fatal(err)
			}
			spent[i] += time.Since(start)
		}
	}
	n := float64(b.N)
	b.ReportMetric(float64(spent[0].Nanoseconds())/n, "ns-stats-on")
	b.ReportMetric(float64(spent[1].Nanoseconds())/n, "ns-stats-off")
	b.ReportMetric(float64(spent[0])/float64(spent[1]), "on/off")
}

// runPaired runs base and test alternately, call by call, in one
// sub-benchmark "paired", and reports each side's mean and the ratio
// test/base: machine noise hits both sides alike.
func runPaired(b *testing.B, baseName string, base func() error, testName string, test func() error) {
	b.Run("paired", func(b *testing.B) {
		var spent [2]time.Duration
		for b.Loop() {
			for i, fn := range []func() error{base, test} {
				start := time.Now()
				if err := fn(); err != nil {
					b.Fatal(err)
				}
				spent[i] += time.Since(start)
			}
		}
		n := float64(b.N)
		b.ReportMetric(float64(spent[0].Nanoseconds())/n, "ns-"+baseName)
		b.ReportMetric(float64(spent[1].Nanoseconds())/n, "ns-"+testName)
		b.ReportMetric(float64(spent[1])/float64(spent[0]), testName+"/"+baseName)
	})
}
