package rediscache_test

import (
	"context"
	"testing"
	"time"

	"github.com/rediscache/rediscache"
	"github.com/rediscache/rediscache/internal/redistest"
)

// loadBenchTask is the trivial loader of the GetOrLoad benchmarks.
func loadBenchTask(context.Context) (benchTask, error) { return benchValue, nil }

// benchSink keeps the compiler from dropping a benchmarked call.
var benchSink benchTask

// BenchmarkGetOrLoadHit compares a GetOrLoad hit with a typed Get of the
// same key on the same Client: the overhead of GetOrLoad on the hot path.
// The entry is stored by GetOrLoad, so it carries a freshness deadline and
// a load cost like any loaded entry.
func BenchmarkGetOrLoadHit(b *testing.B) {
	addr := benchAddr(b)
	ctx := context.Background()
	c, err := rediscache.New(&rediscache.Options{Addrs: []string{addr}, Prefix: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	const key = "loader:task"
	if _, err := c.Delete(ctx, key); err != nil {
		b.Fatal(err)
	}
	if _, err := rediscache.GetOrLoad(ctx, c, key, rediscache.TTLDay, loadBenchTask); err != nil {
		b.Fatal(err)
	}
	loads := c.Stats().Loads
	get := func() error {
		v, err := rediscache.Get[benchTask](ctx, c, key)
		benchSink = v
		return err
	}
	getOrLoad := func() error {
		v, err := rediscache.GetOrLoad(ctx, c, key, rediscache.TTLDay, loadBenchTask)
		benchSink = v
		return err
	}
	runPaired(b, "Get", get, "GetOrLoad", getOrLoad)
	runNamed(b, []namedOp{{"Get", get}, {"GetOrLoad", getOrLoad}})
	if n := c.Stats().Loads - loads; n != 0 {
		b.Fatalf("%d loads during the benchmark: not all GetOrLoad calls were hits", n)
	}
}

// BenchmarkGetOrLoadBreakerOpen measures GetOrLoad with Redis killed and the
// circuit breaker open: the per-call cost of the cache layer during an
// outage, against calling the same loader directly.
func BenchmarkGetOrLoadBreakerOpen(b *testing.B) {
	srv := redistest.Start(b)
	ctx := context.Background()
	c, err := rediscache.New(&rediscache.Options{
		Addrs:           []string{srv.Addr()},
		Prefix:          "bench",
		BreakerCooldown: time.Hour, // no half-open probe during the run
	})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	srv.Kill()
	for i := 0; c.Stats().BreakerOpens == 0; i++ {
		if i == 100 {
			b.Fatal("the breaker did not open")
		}
		if _, err := rediscache.GetOrLoad(ctx, c, "loader:task", 0, loadBenchTask); err != nil {
			b.Fatal(err)
		}
	}
	load := loadBenchTask
	runNamed(b, []namedOp{
		{"loader", func() error {
			v, err := load(ctx)
			benchSink = v
			return err
		}},
		{"GetOrLoad", func() error {
			v, err := rediscache.GetOrLoad(ctx, c, "loader:task", 0, load)
			benchSink = v
			return err
		}},
	})
	if got := c.Stats().BreakerOpens; got != 1 {
		b.Fatalf("BreakerOpens = %d, want 1: the breaker half-opened during the run", got)
	}
}

type namedOp struct {
	name string
	fn   func() error
}

// runNamed runs each op as name/serial and name/parallel sub-benchmarks.
func runNamed(b *testing.B, ops []namedOp) {
	for _, op := range ops {
		b.Run(op.name+"/serial", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := op.fn(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(op.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := op.fn(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
