package rediscacheprom

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/rediscache/rediscache"
)

// newClient returns a Client on addr with the background health monitor
// off (the collector runs its own checks), closed when the test ends.
func newClient(t *testing.T, addr string, opt rediscache.Options) *rediscache.Client {
	t.Helper()
	opt.Addrs = []string{addr}
	if opt.HealthCheckInterval == 0 {
		opt.HealthCheckInterval = -1
	}
	c, err := rediscache.New(&opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// gather registers col on a fresh registry and returns its families by name.
func gather(t *testing.T, col prometheus.Collector) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(col)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]*dto.MetricFamily, len(mfs))
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// label returns the value of label name in m.
func label(m *dto.Metric, name string) string {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == name {
			return lp.GetValue()
		}
	}
	return ""
}

// knownSequence runs a fixed sequence of cache calls: 3 hits, 2 misses and
// 1 error in two namespaces, 4 sets, 1 delete. It leaves 3 keys.
func knownSequence(t *testing.T, c *rediscache.Client) {
	t.Helper()
	ctx := context.Background()
	for _, k := range []string{"tasks:v1:1", "tasks:v1:2", "user:v1:1"} {
		if err := c.Set(ctx, k, "value of "+k, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	var s string
	for _, k := range []string{"tasks:v1:1", "tasks:v1:1", "user:v1:1"} {
		if err := c.Get(ctx, k, &s); err != nil {
			t.Fatalf("Get(%s): %v", k, err)
		}
	}
	for _, k := range []string{"tasks:v1:3", "user:v1:2"} {
		if err := c.Get(ctx, k, &s); !errors.Is(err, rediscache.ErrCacheMiss) {
			t.Fatalf("Get(%s) = %v, want a miss", k, err)
		}
	}
	// A value that does not decode into the destination is an error.
	if err := c.Set(ctx, "user:v1:x", "not a number", time.Minute); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := c.Get(ctx, "user:v1:x", &n); !errors.Is(err, rediscache.ErrCorruptValue) {
		t.Fatalf("Get into an int = %v, want ErrCorruptValue", err)
	}
	if n, err := c.Delete(ctx, "tasks:v1:1"); err != nil || n != 1 {
		t.Fatalf("Delete = %d, %v", n, err)
	}
}

func TestCollectAndCompare(t *testing.T) {
	addr := startRedis(t, "--maxmemory", "64mb")
	c := newClient(t, addr, rediscache.Options{Prefix: "t", HealthCountKeys: true})
	knownSequence(t, c)
	col := NewCollector(c, &CollectorOptions{ConstLabels: prometheus.Labels{"client": "test"}})

	const want = `
# HELP rediscache_requests_total Cache lookups by namespace (first key segment) and result: hit, miss or error.
# TYPE rediscache_requests_total counter
rediscache_requests_total{client="test",namespace="tasks",result="error"} 0
rediscache_requests_total{client="test",namespace="tasks",result="hit"} 2
rediscache_requests_total{client="test",namespace="tasks",result="miss"} 1
rediscache_requests_total{client="test",namespace="user",result="error"} 1
rediscache_requests_total{client="test",namespace="user",result="hit"} 1
rediscache_requests_total{client="test",namespace="user",result="miss"} 1
# HELP rediscache_sets_total Values written to the cache, by namespace.
# TYPE rediscache_sets_total counter
rediscache_sets_total{client="test",namespace="tasks"} 2
rediscache_sets_total{client="test",namespace="user"} 2
# HELP rediscache_deletes_total Keys deleted from the cache, by namespace.
# TYPE rediscache_deletes_total counter
rediscache_deletes_total{client="test",namespace="tasks"} 1
rediscache_deletes_total{client="test",namespace="user"} 0
# HELP rediscache_loads_total Loader calls made by GetOrLoad and GetManyOrLoad.
# TYPE rediscache_loads_total counter
rediscache_loads_total{client="test"} 0
# HELP rediscache_fallbacks_total Answers served by the loader because Redis failed or the circuit breaker was open.
# TYPE rediscache_fallbacks_total counter
rediscache_fallbacks_total{client="test"} 0
# HELP rediscache_breaker_opens_total Times the circuit breaker opened.
# TYPE rediscache_breaker_opens_total counter
rediscache_breaker_opens_total{client="test"} 0
# HELP rediscache_breaker_state Circuit breaker state: 0 closed, 1 half-open, 2 open, -1 disabled.
# TYPE rediscache_breaker_state gauge
rediscache_breaker_state{client="test"} 0
# HELP rediscache_redis_up 1 when the latest health check of Redis passed, 0 otherwise.
# TYPE rediscache_redis_up gauge
rediscache_redis_up{client="test"} 1
# HELP rediscache_redis_max_memory_bytes Redis maxmemory (0 means no limit), summed over cluster masters, at the latest health check.
# TYPE rediscache_redis_max_memory_bytes gauge
rediscache_redis_max_memory_bytes{client="test"} 6.7108864e+07
# HELP rediscache_keys Keys under the Client's Prefix (the database size without a Prefix) at the latest health check; exported only with Options.HealthCountKeys.
# TYPE rediscache_keys gauge
rediscache_keys{client="test"} 3
`
	if err := testutil.CollectAndCompare(col, strings.NewReader(want),
		"rediscache_requests_total", "rediscache_sets_total", "rediscache_deletes_total",
		"rediscache_loads_total", "rediscache_fallbacks_total", "rediscache_breaker_opens_total",
		"rediscache_breaker_state", "rediscache_redis_up", "rediscache_redis_max_memory_bytes",
		"rediscache_keys",
	); err != nil {
		t.Fatal(err)
	}

	// The figures that vary from run to run are present and plausible.
	mfs := gather(t, col)
	for _, name := range []string{"rediscache_redis_used_memory_bytes", "rediscache_redis_connected_clients", "rediscache_redis_ping_seconds"} {
		mf := mfs[name]
		if mf == nil || len(mf.GetMetric()) != 1 || mf.GetMetric()[0].GetGauge().GetValue() <= 0 {
			t.Errorf("%s = %v, want one positive gauge", name, mf)
		}
	}
	conns := map[string]float64{}
	for _, m := range mfs["rediscache_pool_connections"].GetMetric() {
		conns[label(m, "state")] = m.GetGauge().GetValue()
	}
	if len(conns) != 3 || conns["total"] < 1 {
		t.Errorf("rediscache_pool_connections = %v, want total, idle and stale with total >= 1", conns)
	}
	if mfs["rediscache_pool_hits_total"].GetMetric()[0].GetCounter().GetValue() < 1 {
		t.Error("rediscache_pool_hits_total is 0 after a dozen calls")
	}
}

func TestCollectAndLint(t *testing.T) {
	addr := startRedis(t)
	c := newClient(t, addr, rediscache.Options{Prefix: "lint", HealthCountKeys: true})
	knownSequence(t, c)
	col := NewCollector(c, &CollectorOptions{ConstLabels: prometheus.Labels{"client": "lint"}})
	problems, err := testutil.CollectAndLint(col)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	// Every descriptor is consistent with what Collect sends (the pedantic
	// registry checks it), and Collect sends every family it describes
	// while Redis is healthy.
	mfs := gather(t, col)
	if got, want := len(mfs), len(exportedNames); got != want {
		t.Errorf("%d metric families, want %d: %v", got, want, slices.Sorted(mapsKeys(mfs)))
	}
}

// exportedNames are every metric family the collector exports while Redis
// is healthy and the Client counts its keys (Options.HealthCountKeys).
var exportedNames = []string{
	"rediscache_requests_total", "rediscache_sets_total", "rediscache_deletes_total",
	"rediscache_operation_duration_seconds",
	"rediscache_loads_total", "rediscache_load_errors_total", "rediscache_stale_served_total",
	"rediscache_early_refreshes_total", "rediscache_negative_hits_total", "rediscache_fallbacks_total",
	"rediscache_breaker_opens_total", "rediscache_breaker_state", "rediscache_stores_refused_total",
	"rediscache_pool_hits_total", "rediscache_pool_misses_total", "rediscache_pool_timeouts_total",
	"rediscache_pool_connections",
	"rediscache_redis_up", "rediscache_redis_used_memory_bytes", "rediscache_redis_max_memory_bytes",
	"rediscache_redis_connected_clients", "rediscache_keys", "rediscache_redis_ping_seconds",
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestTotalsMatchStats checks that summing a counter over its namespaces
// gives the Client's total in Stats after plain and GetOrLoad calls, and so
// that the hit rate from the metrics is Stats().HitRate().
func TestTotalsMatchStats(t *testing.T) {
	addr := startRedis(t)
	c := newClient(t, addr, rediscache.Options{Prefix: "totals"})
	ctx := context.Background()
	knownSequence(t, c)
	load := func(context.Context) (string, error) { return "loaded", nil }
	notFound := func(context.Context) (string, error) { return "", rediscache.ErrNotFound }
	for range 3 {
		if _, err := rediscache.GetOrLoad(ctx, c, "tasks:v1:loaded", time.Minute, load); err != nil {
			t.Fatal(err)
		}
		if _, err := rediscache.GetOrLoad(ctx, c, "api:v1:gone", time.Minute, notFound); !errors.Is(err, rediscache.ErrNotFound) {
			t.Fatalf("GetOrLoad of a missing row = %v, want ErrNotFound", err)
		}
	}
	// A load whose key is deleted while it loads: its store is refused.
	started, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := rediscache.GetOrLoad(ctx, c, "tasks:v1:raced", time.Minute, func(context.Context) (string, error) {
			close(started)
			<-release
			return "old", nil
		})
		done <- err
	}()
	<-started
	if _, err := c.Delete(ctx, "tasks:v1:raced"); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	col := NewCollector(c, nil)
	mfs := gather(t, col)
	s := c.Stats()

	var byResult = map[string]float64{}
	for _, m := range mfs["rediscache_requests_total"].GetMetric() {
		byResult[label(m, "result")] += m.GetCounter().GetValue()
	}
	sum := func(name string) (v float64) {
		for _, m := range mfs[name].GetMetric() {
			v += m.GetCounter().GetValue()
		}
		return v
	}
	for _, tc := range []struct {
		name      string
		got, want float64
	}{
		{"hits", byResult["hit"], float64(s.Hits)},
		{"misses", byResult["miss"], float64(s.Misses)},
		{"errors", byResult["error"], float64(s.Errors)},
		{"sets", sum("rediscache_sets_total"), float64(s.Sets)},
		{"deletes", sum("rediscache_deletes_total"), float64(s.Deletes)},
		{"loads", sum("rediscache_loads_total"), float64(s.Loads)},
		{"negative hits", sum("rediscache_negative_hits_total"), float64(s.NegativeHits)},
		{"stores refused", sum("rediscache_stores_refused_total"), float64(s.StoresRefused)},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: metrics say %v, Stats %v", tc.name, tc.got, tc.want)
		}
	}
	if s.Loads != 3 || s.NegativeHits != 2 || s.StoresRefused != 1 {
		t.Errorf("Loads = %d, NegativeHits = %d, StoresRefused = %d, want 3, 2 and 1", s.Loads, s.NegativeHits, s.StoresRefused)
	}
	if rate := byResult["hit"] / (byResult["hit"] + byResult["miss"]); math.Abs(rate-s.HitRate()) > 1e-12 {
		t.Errorf("hit rate from the metrics %v, Stats().HitRate() %v", rate, s.HitRate())
	}
}

func TestOperationHistogram(t *testing.T) {
	addr := startRedis(t)
	c := newClient(t, addr, rediscache.Options{Prefix: "hist"})
	knownSequence(t, c)
	s := c.Stats()
	mfs := gather(t, NewCollector(c, &CollectorOptions{HealthInterval: -1}))
	mf := mfs["rediscache_operation_duration_seconds"]
	if mf.GetType() != dto.MetricType_HISTOGRAM {
		t.Fatalf("type %v, want a histogram", mf.GetType())
	}
	ops := map[string]bool{}
	for _, m := range mf.GetMetric() {
		op := label(m, "operation")
		ops[op] = true
		h := m.GetHistogram()
		o := s.Operations[op]
		if h.GetSampleCount() != o.Count || h.GetSampleSum() != o.Sum.Seconds() {
			t.Errorf("%s: count %d sum %v, Stats %d %v", op, h.GetSampleCount(), h.GetSampleSum(), o.Count, o.Sum.Seconds())
		}
		b := h.GetBucket()
		if len(b) != len(o.Buckets)-1 {
			t.Errorf("%s: %d buckets, want %d (the core's minus its total)", op, len(b), len(o.Buckets)-1)
		}
		for i := range b {
			if math.IsInf(b[i].GetUpperBound(), 1) {
				t.Errorf("%s: an explicit +Inf bucket", op)
			}
			if i > 0 && (b[i].GetUpperBound() <= b[i-1].GetUpperBound() || b[i].GetCumulativeCount() < b[i-1].GetCumulativeCount()) {
				t.Errorf("%s: bucket %d not increasing", op, i)
			}
		}
		if n := len(b); n > 0 && b[n-1].GetCumulativeCount() > h.GetSampleCount() {
			t.Errorf("%s: last bucket %d above the count %d", op, b[n-1].GetCumulativeCount(), h.GetSampleCount())
		}
	}
	for _, op := range []string{"get", "set", "delete"} {
		if !ops[op] || s.Operations[op].Count == 0 {
			t.Errorf("operation %q missing or empty", op)
		}
	}
	if s.Operations["get"].Count != 6 {
		t.Errorf("get count %d, want 6", s.Operations["get"].Count)
	}
}

func TestHistogramBuckets(t *testing.T) {
	o := rediscache.OperationStats{
		Count: 7,
		Sum:   3 * time.Millisecond,
		Buckets: []rediscache.Bucket{
			{UpperBound: time.Microsecond, Count: 1},
			{UpperBound: time.Millisecond, Count: 5},
			{UpperBound: time.Duration(math.MaxInt64), Count: 7},
		},
	}
	got := histogramBuckets(o)
	want := map[float64]uint64{1e-6: 1, 1e-3: 5}
	if len(got) != len(want) || got[1e-6] != 1 || got[1e-3] != 5 {
		t.Errorf("histogramBuckets = %v, want %v", got, want)
	}
	if len(histogramBuckets(rediscache.OperationStats{})) != 0 {
		t.Error("empty histogram has buckets")
	}
}

func TestBreakerState(t *testing.T) {
	for state, want := range map[string]float64{"closed": 0, "half-open": 1, "open": 2, "disabled": -1, "": -1} {
		if got := breakerValue(state); got != want {
			t.Errorf("breakerValue(%q) = %v, want %v", state, got, want)
		}
	}
	addr := startRedis(t)
	c := newClient(t, addr, rediscache.Options{BreakerFailures: -1})
	col := NewCollector(c, &CollectorOptions{HealthInterval: -1})
	const want = `
# HELP rediscache_breaker_state Circuit breaker state: 0 closed, 1 half-open, 2 open, -1 disabled.
# TYPE rediscache_breaker_state gauge
rediscache_breaker_state -1
`
	if err := testutil.CollectAndCompare(col, strings.NewReader(want), "rediscache_breaker_state"); err != nil {
		t.Fatal(err)
	}
}

func TestHealthIsCached(t *testing.T) {
	addr := startRedis(t)
	c := newClient(t, addr, rediscache.Options{Prefix: "cached", HealthCountKeys: true})
	ctx := context.Background()
	if err := c.Set(ctx, "tasks:v1:1", 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	keys := func(col *Collector) float64 {
		t.Helper()
		mf := gather(t, col)["rediscache_keys"]
		if mf == nil {
			t.Fatal("rediscache_keys missing")
		}
		return mf.GetMetric()[0].GetGauge().GetValue()
	}
	slow := NewCollector(c, &CollectorOptions{HealthInterval: time.Hour})
	fast := NewCollector(c, &CollectorOptions{HealthInterval: time.Nanosecond})
	if k := keys(slow); k != 1 {
		t.Fatalf("keys = %v, want 1", k)
	}
	if err := c.Set(ctx, "tasks:v1:2", 2, time.Minute); err != nil {
		t.Fatal(err)
	}
	if k := keys(slow); k != 1 {
		t.Errorf("keys within the health interval = %v, want the cached 1", k)
	}
	if k := keys(fast); k != 2 {
		t.Errorf("keys after the health interval = %v, want 2", k)
	}

	off := gather(t, NewCollector(c, &CollectorOptions{HealthInterval: -1}))
	for name := range off {
		if strings.HasPrefix(name, "rediscache_redis_") || name == "rediscache_keys" {
			t.Errorf("%s exported with health checks off", name)
		}
	}
}

func TestRedisDown(t *testing.T) {
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port) // nothing listens there
	c := newClient(t, addr, rediscache.Options{MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	col := NewCollector(c, &CollectorOptions{HealthTimeout: time.Second})
	const want = `
# HELP rediscache_redis_up 1 when the latest health check of Redis passed, 0 otherwise.
# TYPE rediscache_redis_up gauge
rediscache_redis_up 0
`
	if err := testutil.CollectAndCompare(col, strings.NewReader(want), "rediscache_redis_up", "rediscache_redis_used_memory_bytes", "rediscache_keys"); err != nil {
		t.Fatal(err)
	}
	problems, err := testutil.CollectAndLint(col)
	if err != nil || len(problems) > 0 {
		t.Errorf("lint with Redis down: %v %v", problems, err)
	}
}

func TestRemainder(t *testing.T) {
	var r remainder
	steps := []struct {
		total, nsSum uint64
		reset        bool
		want         uint64
		shown        bool
	}{
		{0, 0, false, 0, false},
		{5, 5, false, 0, false}, // all attributed
		{8, 6, false, 2, true},  // 2 unattributed
		{9, 8, false, 2, true},  // jitter (a namespace read ahead): never down
		{8, 7, false, 2, true},  // a total taken back: never down
		{12, 9, false, 3, true},
		{1, 1, true, 0, true}, // ResetStats
		{3, 1, false, 2, true},
	}
	for i, s := range steps {
		got, shown := r.next(s.total, s.nsSum, s.reset)
		if got != s.want || shown != s.shown {
			t.Errorf("step %d: next(%d, %d, %v) = %d, %v; want %d, %v", i, s.total, s.nsSum, s.reset, got, shown, s.want, s.shown)
		}
	}
}

// TestResetStats checks that after ResetStats the counters restart from
// zero, which Prometheus reads as a counter reset.
func TestResetStats(t *testing.T) {
	addr := startRedis(t)
	c := newClient(t, addr, rediscache.Options{Prefix: "reset"})
	ctx := context.Background()
	load := func(context.Context) (int, error) { return 1, nil }
	for range 3 {
		if _, err := rediscache.GetOrLoad(ctx, c, "tasks:v1:1", time.Minute, load); err != nil {
			t.Fatal(err)
		}
	}
	col := NewCollector(c, &CollectorOptions{HealthInterval: -1})
	total := func() (v float64) {
		for _, m := range gather(t, col)["rediscache_requests_total"].GetMetric() {
			v += m.GetCounter().GetValue()
		}
		return v
	}
	if got := total(); got != 3 {
		t.Fatalf("requests before the reset = %v, want 3", got)
	}
	c.ResetStats()
	if _, err := rediscache.GetOrLoad(ctx, c, "tasks:v1:1", time.Minute, load); err != nil {
		t.Fatal(err)
	}
	if got := total(); got != 1 {
		t.Errorf("requests after the reset = %v, want 1", got)
	}
}

// TestConcurrentScrapes scrapes while the Client is busy, for the race
// detector, and checks that counters never go down between scrapes.
func TestConcurrentScrapes(t *testing.T) {
	addr := startRedis(t)
	c := newClient(t, addr, rediscache.Options{Prefix: "busy"})
	col := NewCollector(c, &CollectorOptions{HealthInterval: 10 * time.Millisecond})
	reg := prometheus.NewRegistry()
	reg.MustRegister(col)

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			load := func(context.Context) (int, error) { return w, nil }
			for i := 0; ctx.Err() == nil; i++ {
				key := []string{"tasks", "user", "api"}[i%3] + ":v1:" + strconv.Itoa(i%50)
				_, _ = rediscache.GetOrLoad(ctx, c, key, time.Minute, load)
				var v int
				_ = c.Get(ctx, key, &v)
			}
		})
	}
	errs := make(chan error, 2)
	for range 2 {
		wg.Go(func() {
			last := map[string]float64{}
			for ctx.Err() == nil {
				mfs, err := reg.Gather()
				if err != nil {
					errs <- err
					return
				}
				for _, mf := range mfs {
					if mf.GetType() != dto.MetricType_COUNTER {
						continue
					}
					for _, m := range mf.GetMetric() {
						id := mf.GetName() + labelString(m)
						v := m.GetCounter().GetValue()
						if v < last[id] {
							errs <- errors.New(id + " went down")
							return
						}
						last[id] = v
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func labelString(m *dto.Metric) string {
	var parts []string
	for _, lp := range m.GetLabel() {
		parts = append(parts, lp.GetName()+"="+lp.GetValue())
	}
	sort.Strings(parts)
	return "{" + strings.Join(parts, ",") + "}"
}

// metricName finds the rediscache metric names in a PromQL expression.
var metricName = regexp.MustCompile(`rediscache_[a-z_]+`)

// histogramSuffix is what PromQL appends to a histogram's name.
var histogramSuffix = regexp.MustCompile(`_(bucket|sum|count)$`)

// dashboard is the part of a Grafana dashboard the tests read.
type dashboard struct {
	Title         string  `json:"title"`
	UID           string  `json:"uid"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID      int     `json:"id"`
	Title   string  `json:"title"`
	Type    string  `json:"type"`
	Panels  []panel `json:"panels"` // a collapsed row's
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "dashboards", "rediscache.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboards/rediscache.json: %v", err)
	}
	return d
}

// TestDashboardIsValid checks the shape Grafana needs to import it.
func TestDashboardIsValid(t *testing.T) {
	d := readDashboard(t)
	if d.Title == "" || d.UID == "" {
		t.Errorf("title %q, uid %q: both are required", d.Title, d.UID)
	}
	if d.SchemaVersion < 36 {
		t.Errorf("schemaVersion %d, want >= 36", d.SchemaVersion)
	}
	if len(d.Panels) == 0 {
		t.Fatal("no panels")
	}
	ids := map[int]bool{}
	var check func(ps []panel)
	check = func(ps []panel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel id %d used twice", p.ID)
			}
			ids[p.ID] = true
			if p.Type == "row" {
				check(p.Panels)
				continue
			}
			if p.Title == "" {
				t.Errorf("panel %d has no title", p.ID)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no targets", p.Title)
			}
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" || tg.RefID == "" {
					t.Errorf("panel %q: a target without expr or refId", p.Title)
				}
			}
		}
	}
	check(d.Panels)
	var hasDatasource bool
	for _, v := range d.Templating.List {
		if v.Name == "datasource" && v.Type == "datasource" && v.Query == "prometheus" {
			hasDatasource = true
		}
	}
	if !hasDatasource {
		t.Error(`no templating variable "datasource" of type datasource for prometheus`)
	}
}

// TestDashboardMetricsAreExported checks that every metric the dashboard
// queries (in panels and template variables) is one the collector exports.
func TestDashboardMetricsAreExported(t *testing.T) {
	addr := startRedis(t)
	c := newClient(t, addr, rediscache.Options{Prefix: "dash", HealthCountKeys: true})
	knownSequence(t, c)
	exported := gather(t, NewCollector(c, &CollectorOptions{ConstLabels: prometheus.Labels{"client": "dash"}}))
	histograms := map[string]bool{}
	for name, mf := range exported {
		if mf.GetType() == dto.MetricType_HISTOGRAM {
			histograms[name] = true
		}
	}

	d := readDashboard(t)
	used := map[string][]string{} // metric -> panels
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			walk(p.Panels)
			for _, tg := range p.Targets {
				for _, name := range metricName.FindAllString(tg.Expr, -1) {
					if base := histogramSuffix.ReplaceAllString(name, ""); histograms[base] {
						name = base
					}
					used[name] = append(used[name], p.Title)
				}
			}
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if q, ok := v.Query.(string); ok {
			for _, name := range metricName.FindAllString(q, -1) {
				used[name] = append(used[name], "variable "+v.Name)
			}
		}
	}
	if len(used) < 10 {
		t.Errorf("the dashboard queries only %d metrics", len(used))
	}
	for name, panels := range used {
		if exported[name] == nil {
			t.Errorf("%s (used by %q) is not exported by the collector", name, panels)
		}
	}
}

// TestUnattributedAndOpenBreaker opens the breaker against a dead Redis: a
// call it then refuses is counted as an error under no namespace, which the
// collector exports under UnattributedNamespace so the sum stays the total.
func TestUnattributedAndOpenBreaker(t *testing.T) {
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port) // nothing listens there
	c := newClient(t, addr, rediscache.Options{
		MaxRetries: -1, DialTimeout: 200 * time.Millisecond,
		BreakerFailures: 1, BreakerCooldown: time.Hour,
	})
	ctx := context.Background()
	var s string
	if err := c.Get(ctx, "tasks:v1:1", &s); err == nil || errors.Is(err, rediscache.ErrCircuitOpen) {
		t.Fatalf("first Get = %v, want a connection error", err)
	}
	if err := c.Get(ctx, "tasks:v1:1", &s); !errors.Is(err, rediscache.ErrCircuitOpen) {
		t.Fatalf("second Get = %v, want ErrCircuitOpen", err)
	}
	if st := c.Stats(); st.Errors != 2 || st.Namespaces["tasks"].Errors != 1 {
		t.Fatalf("Stats errors %d, tasks errors %d; want 2 and 1 (the test's premise)", st.Errors, st.Namespaces["tasks"].Errors)
	}
	col := NewCollector(c, &CollectorOptions{HealthInterval: -1})
	const want = `
# HELP rediscache_requests_total Cache lookups by namespace (first key segment) and result: hit, miss or error.
# TYPE rediscache_requests_total counter
rediscache_requests_total{namespace="_unattributed",result="error"} 1
rediscache_requests_total{namespace="_unattributed",result="hit"} 0
rediscache_requests_total{namespace="_unattributed",result="miss"} 0
rediscache_requests_total{namespace="tasks",result="error"} 1
rediscache_requests_total{namespace="tasks",result="hit"} 0
rediscache_requests_total{namespace="tasks",result="miss"} 0
# HELP rediscache_breaker_opens_total Times the circuit breaker opened.
# TYPE rediscache_breaker_opens_total counter
rediscache_breaker_opens_total 1
# HELP rediscache_breaker_state Circuit breaker state: 0 closed, 1 half-open, 2 open, -1 disabled.
# TYPE rediscache_breaker_state gauge
rediscache_breaker_state 2
`
	if err := testutil.CollectAndCompare(col, strings.NewReader(want),
		"rediscache_requests_total", "rediscache_breaker_opens_total", "rediscache_breaker_state"); err != nil {
		t.Fatal(err)
	}
}
