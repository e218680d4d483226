package rediscache_test

import (
	"context"
	"encoding/json"
	"os"
	"testing"

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
	addr := benchAddr(b)
	ctx := context.Background()
	raw := redis.NewClient(&redis.Options{Addr: addr, PoolSize: rediscache.DefaultPoolSize})
	defer raw.Close()
	c, err := rediscache.New(&rediscache.Options{Addrs: []string{addr}, Prefix: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
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

// BenchmarkSet compares a typed Set with a TTL through rediscache with raw
// go-redis SET plus encoding/json on the same server.
func BenchmarkSet(b *testing.B) {
	addr := benchAddr(b)
	ctx := context.Background()
	raw := redis.NewClient(&redis.Options{Addr: addr, PoolSize: rediscache.DefaultPoolSize})
	defer raw.Close()
	c, err := rediscache.New(&rediscache.Options{Addrs: []string{addr}, Prefix: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
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

func runPair(b *testing.B, raw, cache func() error) {
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
