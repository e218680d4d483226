// Command metrics is a small HTTP service that caches a slow "database"
// through rediscache and serves Prometheus metrics of the cache.
//
//	go run ./examples/metrics -addr 127.0.0.1:8080 -redis 127.0.0.1:6380
//
// (from the prometheus module's directory; without -redis it starts an
// embedded in-process Redis, miniredis). Routes:
//
//	GET /task?id=N   the task N (0 <= N < 1000) through rediscache.GetOrLoad; 404 for an unknown id
//	GET /metrics     Prometheus metrics: the rediscache collector, Go runtime and process metrics
//	GET /stats       the Client's Stats() as JSON, with its hit, miss and error rates
//
// It stops gracefully on SIGINT or SIGTERM.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rediscache/rediscache"
	rediscacheprom "github.com/rediscache/rediscache/prometheus"
)

// Task is what the fake database stores.
type Task struct {
	ID    int    `json:"id"`
	Title string `json:"title"`
}

// numTasks is how many tasks the fake database holds: ids 0 to numTasks-1.
const numTasks = 1000

// database is a fake slow database: a map behind a 2ms sleep.
type database struct{ tasks map[int]Task }

func newDatabase() *database {
	db := &database{tasks: make(map[int]Task, numTasks)}
	for i := range numTasks {
		db.tasks[i] = Task{ID: i, Title: "task " + strconv.Itoa(i)}
	}
	return db
}

// task returns the task id after 2ms, or rediscache.ErrNotFound.
func (db *database) task(ctx context.Context, id int) (Task, error) {
	select {
	case <-time.After(2 * time.Millisecond):
	case <-ctx.Done():
		return Task{}, ctx.Err()
	}
	t, ok := db.tasks[id]
	if !ok {
		return Task{}, rediscache.ErrNotFound
	}
	return t, nil
}

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:8080", "HTTP listen address (keep it on loopback)")
	redisAddr := flag.String("redis", "", "Redis address host:port; empty starts an embedded miniredis")
	prefix := flag.String("prefix", "metrics-example", "the cache's key prefix")
	flag.Parse()

	if *redisAddr == "" {
		mr, err := miniredis.Run()
		if err != nil {
			return fmt.Errorf("starting miniredis: %w", err)
		}
		defer mr.Close()
		*redisAddr = mr.Addr()
		log.Printf("no -redis given: using an embedded miniredis at %s", *redisAddr)
	}

	c, err := rediscache.New(&rediscache.Options{Addrs: []string{*redisAddr}, Prefix: *prefix})
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }()

	reg := prometheus.NewRegistry()
	reg.MustRegister(
		rediscacheprom.NewCollector(c, &rediscacheprom.CollectorOptions{
			ConstLabels: prometheus.Labels{"client": "metrics-example"},
		}),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)

	db := newDatabase()
	keys := rediscache.NewKeyGenerator(rediscache.V1)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /task", func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.Atoi(r.URL.Query().Get("id"))
		if err != nil {
			http.Error(w, "id must be an integer", http.StatusBadRequest)
			return
		}
		t, err := rediscache.GetOrLoad(r.Context(), c, keys.TaskKey(strconv.Itoa(id)), rediscache.TTLMedium,
			func(ctx context.Context) (Task, error) { return db.task(ctx, id) })
		switch {
		case errors.Is(err, rediscache.ErrNotFound):
			http.Error(w, "no such task", http.StatusNotFound)
		case err != nil:
			http.Error(w, err.Error(), http.StatusInternalServerError)
		default:
			writeJSON(w, t)
		}
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, statsJSON(c.Stats()))
	})

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Printf("listening on http://%s", ln.Addr())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Print("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	return nil
}

// Stats is the /stats document: Stats() with durations in seconds and the
// rates computed.
type Stats struct {
	Hits           uint64                    `json:"hits"`
	Misses         uint64                    `json:"misses"`
	Errors         uint64                    `json:"errors"`
	Sets           uint64                    `json:"sets"`
	Deletes        uint64                    `json:"deletes"`
	Loads          uint64                    `json:"loads"`
	LoadErrors     uint64                    `json:"load_errors"`
	StaleServed    uint64                    `json:"stale_served"`
	EarlyRefreshes uint64                    `json:"early_refreshes"`
	NegativeHits   uint64                    `json:"negative_hits"`
	Fallbacks      uint64                    `json:"fallbacks"`
	BreakerOpens   uint64                    `json:"breaker_opens"`
	BreakerState   string                    `json:"breaker_state"`
	HitRate        float64                   `json:"hit_rate"`
	MissRate       float64                   `json:"miss_rate"`
	ErrorRate      float64                   `json:"error_rate"`
	AvgLatency     float64                   `json:"avg_latency_seconds"`
	P50            float64                   `json:"p50_seconds"`
	P95            float64                   `json:"p95_seconds"`
	P99            float64                   `json:"p99_seconds"`
	Namespaces     map[string]NamespaceStats `json:"namespaces"`
}

// NamespaceStats is one namespace of the /stats document.
type NamespaceStats struct {
	Hits    uint64  `json:"hits"`
	Misses  uint64  `json:"misses"`
	Errors  uint64  `json:"errors"`
	Sets    uint64  `json:"sets"`
	Deletes uint64  `json:"deletes"`
	HitRate float64 `json:"hit_rate"`
}

func statsJSON(s rediscache.Stats) Stats {
	out := Stats{
		Hits: s.Hits, Misses: s.Misses, Errors: s.Errors, Sets: s.Sets, Deletes: s.Deletes,
		Loads: s.Loads, LoadErrors: s.LoadErrors, StaleServed: s.StaleServed,
		EarlyRefreshes: s.EarlyRefreshes, NegativeHits: s.NegativeHits,
		Fallbacks: s.Fallbacks, BreakerOpens: s.BreakerOpens, BreakerState: s.BreakerState,
		HitRate: s.HitRate(), MissRate: s.MissRate(), ErrorRate: s.ErrorRate(),
		AvgLatency: s.AvgLatency.Seconds(), P50: s.P50.Seconds(), P95: s.P95.Seconds(), P99: s.P99.Seconds(),
		Namespaces: make(map[string]NamespaceStats, len(s.Namespaces)),
	}
	for name, n := range s.Namespaces {
		out.Namespaces[name] = NamespaceStats{
			Hits: n.Hits, Misses: n.Misses, Errors: n.Errors, Sets: n.Sets, Deletes: n.Deletes,
			HitRate: n.HitRate(),
		}
	}
	return out
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(v); err != nil {
		log.Printf("writing a response: %v", err)
	}
}
