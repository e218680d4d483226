// Command service shows rediscacheotel in a small service: it handles a
// few requests for tasks through rediscache.GetOrLoad, under a handler
// span, and prints the spans with OpenTelemetry's stdout exporter. The
// first request misses, so its trace holds the cache call, the load and
// the loader's own database span; the second is a hit.
//
//	go run ./examples/service                       # an embedded Redis (miniredis)
//	go run ./examples/service -redis 127.0.0.1:6380 # a real one
//
// (from the otel module's directory).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"time"

	"github.com/alicebob/miniredis/v2"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/rediscache/rediscache"
	rediscacheotel "github.com/rediscache/rediscache/otel"
)

// Task is what the fake database stores.
type Task struct {
	ID    int    `json:"id"`
	Title string `json:"title"`
}

func main() {
	addr := flag.String("redis", "", "Redis address; empty starts an embedded miniredis")
	flag.Parse()
	if err := run(context.Background(), os.Stdout, *addr); err != nil {
		log.Fatal(err)
	}
}

// run serves three requests (task 7 twice, task 8 once) and writes their
// spans to w.
func run(ctx context.Context, w io.Writer, addr string) error {
	if addr == "" {
		mr, err := miniredis.Run()
		if err != nil {
			return err
		}
		defer mr.Close()
		addr = mr.Addr()
	}
	exp, err := stdouttrace.New(stdouttrace.WithWriter(w), stdouttrace.WithPrettyPrint())
	if err != nil {
		return err
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer func() { _ = tp.Shutdown(context.Background()) }()

	c, err := rediscache.New(&rediscache.Options{Addrs: []string{addr}, Prefix: "example"})
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }()
	if err := rediscacheotel.Instrument(c, rediscacheotel.WithTracerProvider(tp)); err != nil {
		return err
	}
	_, _ = c.Delete(ctx, "tasks:v1:7", "tasks:v1:8") // a fresh start against a real Redis

	tracer := tp.Tracer("example/service")
	for _, id := range []int{7, 7, 8} {
		if err := handle(ctx, tracer, c, id); err != nil {
			return err
		}
	}
	return nil
}

// handle is one request: GET /tasks/{id}.
func handle(ctx context.Context, tracer trace.Tracer, c *rediscache.Client, id int) error {
	ctx, span := tracer.Start(ctx, "GET /tasks/{id}")
	defer span.End()
	key := fmt.Sprintf("tasks:v1:%d", id)
	_, err := rediscache.GetOrLoad(ctx, c, key, time.Minute, func(ctx context.Context) (Task, error) {
		// The loader's context carries the rediscache.load span: this
		// database span nests under it.
		_, db := tracer.Start(ctx, "SELECT task")
		defer db.End()
		time.Sleep(2 * time.Millisecond)
		return Task{ID: id, Title: fmt.Sprintf("task %d", id)}, nil
	})
	return err
}
