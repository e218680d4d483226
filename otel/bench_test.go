package rediscacheotel_test

import (
	"context"
	"os"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/rediscache/rediscache"
	"github.com/rediscache/rediscache/internal/redistest"
	rediscacheotel "github.com/rediscache/rediscache/otel"
)

type benchTask struct {
	ID    int    `json:"id"`
	Title string `json:"title"`
}

// discard is a span processor that drops every span: the benchmark
// measures making spans, not exporting them.
type discard struct{}

func (discard) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (discard) OnEnd(sdktrace.ReadOnlySpan)                     {}
func (discard) Shutdown(context.Context) error                  { return nil }
func (discard) ForceFlush(context.Context) error                { return nil }

// BenchmarkInstrumented alternates, call by call, a typed Get hit and a
// GetOrLoad hit on a plain Client and on one instrumented with the SDK's
// tracer (always sampling, spans dropped) and meter (a manual reader):
// it reports each side's mean and the ratio instrumented/plain. Set
// REDISCACHE_BENCH_ADDR to use a running server (pinned to its own CPU).
func BenchmarkInstrumented(b *testing.B) {
	addr := os.Getenv("REDISCACHE_BENCH_ADDR")
	if addr == "" {
		addr = redistest.Start(b).Addr()
	}
	ctx := context.Background()
	var clients [2]*rediscache.Client
	for i := range clients {
		c, err := rediscache.New(&rediscache.Options{Addrs: []string{addr}, Prefix: "bench-otel"})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = c.Close() })
		clients[i] = c
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(discard{}), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	if err := rediscacheotel.Instrument(clients[1], rediscacheotel.WithTracerProvider(tp), rediscacheotel.WithMeterProvider(mp)); err != nil {
		b.Fatal(err)
	}
	load := func(context.Context) (benchTask, error) { return benchTask{ID: 1, Title: "t"}, nil }
	if err := rediscache.Set(ctx, clients[0], "tasks:get", benchTask{ID: 1, Title: "t"}, time.Hour); err != nil {
		b.Fatal(err)
	}
	if _, err := rediscache.GetOrLoad(ctx, clients[0], "tasks:gol", time.Hour, load); err != nil {
		b.Fatal(err)
	}
	for _, op := range []struct {
		name string
		fn   func(c *rediscache.Client) error
	}{
		{"Get", func(c *rediscache.Client) error { _, err := rediscache.Get[benchTask](ctx, c, "tasks:get"); return err }},
		{"GetOrLoad", func(c *rediscache.Client) error {
			_, err := rediscache.GetOrLoad(ctx, c, "tasks:gol", time.Hour, load)
			return err
		}},
	} {
		b.Run(op.name+"/paired", func(b *testing.B) {
			var spent [2]time.Duration
			for b.Loop() {
				for i, c := range clients {
					start := time.Now()
					if err := op.fn(c); err != nil {
						b.Fatal(err)
					}
					spent[i] += time.Since(start)
				}
			}
			n := float64(b.N)
			b.ReportMetric(float64(spent[0].Nanoseconds())/n, "ns-plain")
			b.ReportMetric(float64(spent[1].Nanoseconds())/n, "ns-instrumented")
			b.ReportMetric(float64(spent[1])/float64(spent[0]), "instrumented/plain")
		})
		for i, name := range []string{"plain", "instrumented"} {
			b.Run(op.name+"/"+name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if err := op.fn(clients[i]); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
