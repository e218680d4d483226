// Package rediscacheprom exports the statistics and health of a
// [rediscache.Client] as Prometheus metrics.
//
// It is its own module (github.com/rediscache/rediscache/prometheus), so the
// core module never depends on client_golang:
//
//	c, _ := rediscache.New(&rediscache.Options{Addrs: []string{addr}, Prefix: "tasks"})
//	prometheus.MustRegister(rediscacheprom.NewCollector(c, &rediscacheprom.CollectorOptions{
//		ConstLabels: prometheus.Labels{"client": "tasks-api"},
//	}))
//	http.Handle("/metrics", promhttp.Handler())
//
// Every metric is computed at scrape time from [rediscache.Client.Stats]
// (a few atomic loads) and, for the Redis-side gauges, from the latest
// [rediscache.Client.HealthCheck], which the collector runs at most once per
// [CollectorOptions.HealthInterval] so that frequent scrapes stay cheap.
//
// # Metrics
//
// All names start with "rediscache_" and carry the collector's ConstLabels.
//
//	rediscache_requests_total{namespace,result}    counter  lookups; result is "hit", "miss" or "error"
//	rediscache_sets_total{namespace}               counter  values written
//	rediscache_deletes_total{namespace}            counter  keys deleted
//	rediscache_operation_duration_seconds{operation} histogram  Redis round trips: get, set, delete, batch, scan, other
//	rediscache_loads_total                         counter  loader calls (GetOrLoad, GetManyOrLoad)
//	rediscache_load_errors_total                   counter  loader calls that failed
//	rediscache_stale_served_total                  counter  answers served from a stale entry
//	rediscache_early_refreshes_total               counter  XFetch background refreshes started
//	rediscache_negative_hits_total                 counter  answers of a cached ErrNotFound
//	rediscache_fallbacks_total                     counter  answers served by the loader with Redis failing or skipped
//	rediscache_breaker_opens_total                 counter  times the circuit breaker opened
//	rediscache_stores_refused_total                counter  loads whose guarded store was refused: the key was invalidated while they loaded
//	rediscache_breaker_state                       gauge    0 closed, 1 half-open, 2 open, -1 breaker disabled
//	rediscache_pool_hits_total                     counter  go-redis pool: a free connection was found
//	rediscache_pool_misses_total                   counter  go-redis pool: no free connection was found
//	rediscache_pool_timeouts_total                 counter  go-redis pool: waiting for a connection timed out
//	rediscache_pool_connections{state}             gauge    go-redis pool connections; state is "total", "idle" or "stale"
//	rediscache_redis_up                            gauge    1 when the latest health check passed, else 0
//	rediscache_redis_used_memory_bytes             gauge    Redis used_memory (summed over cluster masters)
//	rediscache_redis_max_memory_bytes              gauge    Redis maxmemory, 0 = no limit (summed over masters)
//	rediscache_redis_connected_clients             gauge    Redis connected_clients (summed over masters)
//	rediscache_keys                                gauge    keys under the Client's Prefix (DBSIZE without a Prefix); only with Options.HealthCountKeys
//	rediscache_redis_ping_seconds                  gauge    PING round trip of the latest health check (slowest master)
//
// The namespace label is the first ":"-separated segment of a logical key;
// the core tracks at most 64 of them and counts the rest under "other", so
// the label's cardinality is bounded. Requests, sets and deletes that the
// core counts without a namespace (for instance a call refused by the open
// circuit breaker, or the keys DeleteMany deletes) are exported under
// namespace [UnattributedNamespace], so that summing a counter over its
// namespaces always gives the Client's total in Stats: in particular
//
//	sum(rediscache_requests_total{result="hit"}) / sum(rediscache_requests_total{result=~"hit|miss"})
//
// is Stats().HitRate().
//
// The Redis-side gauges (rediscache_redis_*, rediscache_keys) are absent
// until the first health check has run, and all but rediscache_redis_up are
// absent while Redis is unhealthy (a failed check has no figures to report).
//
// rediscache_keys is exported only when the health check counted the keys,
// that is when the Client has [rediscache.Options.HealthCountKeys] set and
// the count succeeded. By default a health check is PING, INFO and DBSIZE
// per master, so a scrape costs the same with 0 or 1,000,000 keys in Redis;
// the count is a SCAN of the whole database, one round trip per 1,000 keys,
// whosever they are.
package rediscacheprom

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rediscache/rediscache"
)

// Defaults of [CollectorOptions].
const (
	// DefaultHealthInterval is how often Collect refreshes the Redis-side
	// gauges when CollectorOptions.HealthInterval is 0.
	DefaultHealthInterval = 15 * time.Second
	// DefaultHealthTimeout bounds one health check when
	// CollectorOptions.HealthTimeout is 0.
	DefaultHealthTimeout = 2 * time.Second
)

// UnattributedNamespace is the namespace label value under which the
// collector exports the requests, sets and deletes that the core counted in
// its totals but under no namespace. The series appears only once such a
// count exists.
const UnattributedNamespace = "_unattributed"

// Breaker state values of the rediscache_breaker_state gauge.
const (
	BreakerClosed   = 0  // calls go to Redis
	BreakerHalfOpen = 1  // probing Redis after the cooldown
	BreakerOpen     = 2  // calls skip Redis
	BreakerDisabled = -1 // Options.BreakerFailures is -1 (or a cluster without an explicit setting)
)

// CollectorOptions configure a [Collector]. The zero value (or nil) uses the
// defaults.
type CollectorOptions struct {
	// ConstLabels are added to every metric, for instance
	// prometheus.Labels{"client": "tasks-api"} to tell several Clients of a
	// process apart. Their names must not be "namespace", "result",
	// "operation" or "state".
	ConstLabels prometheus.Labels

	// HealthInterval is the least time between two health checks run by
	// Collect (through [rediscache.Client.HealthCheck], which also updates
	// Client.Healthy and may call Options.OnHealthChange); scrapes in
	// between reuse the last result. Default 15s. A negative value never
	// runs a health check: the rediscache_redis_* and rediscache_keys
	// gauges are then not exported.
	HealthInterval time.Duration

	// HealthTimeout bounds one health check: PING, INFO and DBSIZE per
	// master and, when the Client has Options.HealthCountKeys set, a SCAN
	// count of its keys, which takes one round trip per 1,000 keys of the
	// database (the Client's or not): with that option on a large keyspace,
	// raise it, or the count times out and rediscache_keys is left out.
	// Default 2s.
	HealthTimeout time.Duration
}

// Collector is a prometheus.Collector for one [rediscache.Client]. It is
// safe for concurrent use; register it once per Client.
type Collector struct {
	c        *rediscache.Client
	interval time.Duration
	timeout  time.Duration

	requests, sets, deletes     *prometheus.Desc
	duration                    *prometheus.Desc
	loads, loadErrors           *prometheus.Desc
	staleServed, earlyRefreshes *prometheus.Desc
	negativeHits, fallbacks     *prometheus.Desc
	breakerOpens, breakerState  *prometheus.Desc
	storesRefused               *prometheus.Desc
	poolHits, poolMisses        *prometheus.Desc
	poolTimeouts, poolConns     *prometheus.Desc
	redisUp, usedMemory         *prometheus.Desc
	maxMemory, connectedClients *prometheus.Desc
	keys, ping                  *prometheus.Desc

	healthMu sync.Mutex // serialises health checks; guards health and healthAt
	health   rediscache.Health
	healthAt time.Time // when health was taken; zero before the first check

	statsMu    sync.Mutex         // orders the Stats snapshots; guards roundTrips and rest
	roundTrips uint64             // histogram count at the last snapshot, to spot ResetStats
	rest       [numRest]remainder // unattributed counts, kept monotonic
}

// The counters whose unattributed remainder the collector derives.
const (
	restHits = iota
	restMisses
	restErrors
	restSets
	restDeletes
	numRest
)

// remainder is one unattributed counter: the Client's total minus the sum
// over its namespaces.
type remainder struct {
	value uint64 // the last exported value
	shown bool   // exported at least once: keep exporting it
}

// next returns the remainder to export for a total and a namespace sum;
// reset tells that the Client's stats were reset since the last call. Stats
// reads the total and the namespaces a few operations apart, and the core
// may briefly take back a count it moved to another counter, so the raw
// difference can jitter by a few counts; the exported value never goes
// down, except after ResetStats, which Prometheus then sees as a counter
// reset like every other counter's.
func (r *remainder) next(total, nsSum uint64, reset bool) (uint64, bool) {
	var v uint64
	if total > nsSum {
		v = total - nsSum
	}
	if reset {
		r.value = 0
	}
	v = max(v, r.value)
	r.value = v
	r.shown = r.shown || v > 0
	return v, r.shown
}

// NewCollector returns a Collector for c. opts may be nil. It does not
// contact Redis: the first health check runs on the first Collect.
func NewCollector(c *rediscache.Client, opts *CollectorOptions) *Collector {
	var o CollectorOptions
	if opts != nil {
		o = *opts
	}
	if o.HealthInterval == 0 {
		o.HealthInterval = DefaultHealthInterval
	}
	if o.HealthTimeout <= 0 {
		o.HealthTimeout = DefaultHealthTimeout
	}
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName("rediscache", "", name), help, labels, o.ConstLabels)
	}
	return &Collector{
		c:        c,
		interval: o.HealthInterval,
		timeout:  o.HealthTimeout,

		requests: desc("requests_total", "Cache lookups by namespace (first key segment) and result: hit, miss or error.", "namespace", "result"),
		sets:     desc("sets_total", "Values written to the cache, by namespace.", "namespace"),
		deletes:  desc("deletes_total", "Keys deleted from the cache, by namespace.", "namespace"),
		duration: desc("operation_duration_seconds", "Duration of Redis round trips (retries included), by kind of operation.", "operation"),

		loads:          desc("loads_total", "Loader calls made by GetOrLoad and GetManyOrLoad."),
		loadErrors:     desc("load_errors_total", "Loader calls that failed (ErrNotFound is not a failure)."),
		staleServed:    desc("stale_served_total", "Answers served from a stale entry while it is refreshed."),
		earlyRefreshes: desc("early_refreshes_total", "Background refreshes started by probabilistic early expiration (XFetch)."),
		negativeHits:   desc("negative_hits_total", "Answers of a cached ErrNotFound (negative caching)."),
		fallbacks:      desc("fallbacks_total", "Answers served by the loader because Redis failed or the circuit breaker was open."),
		breakerOpens:   desc("breaker_opens_total", "Times the circuit breaker opened."),
		breakerState:   desc("breaker_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open, -1 disabled."),
		storesRefused:  desc("stores_refused_total", "Loads whose guarded store was refused because the key was written or deleted while they loaded."),

		poolHits:     desc("pool_hits_total", "go-redis pool: times a free connection was found in the pool."),
		poolMisses:   desc("pool_misses_total", "go-redis pool: times no free connection was found in the pool."),
		poolTimeouts: desc("pool_timeouts_total", "go-redis pool: times waiting for a connection timed out."),
		poolConns:    desc("pool_connections", "go-redis pool connections by state: total, idle or stale.", "state"),

		redisUp:          desc("redis_up", "1 when the latest health check of Redis passed, 0 otherwise."),
		usedMemory:       desc("redis_used_memory_bytes", "Redis used_memory, summed over cluster masters, at the latest health check."),
		maxMemory:        desc("redis_max_memory_bytes", "Redis maxmemory (0 means no limit), summed over cluster masters, at the latest health check."),
		connectedClients: desc("redis_connected_clients", "Redis connected_clients, summed over cluster masters, at the latest health check."),
		keys:             desc("keys", "Keys under the Client's Prefix (the database size without a Prefix) at the latest health check; exported only with Options.HealthCountKeys."),
		ping:             desc("redis_ping_seconds", "PING round trip of the latest health check (the slowest master on a cluster)."),
	}
}

// Describe sends the descriptors of every metric the Collector can export.
func (col *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		col.requests, col.sets, col.deletes, col.duration,
		col.loads, col.loadErrors, col.staleServed, col.earlyRefreshes,
		col.negativeHits, col.fallbacks, col.breakerOpens, col.breakerState, col.storesRefused,
		col.poolHits, col.poolMisses, col.poolTimeouts, col.poolConns,
		col.redisUp, col.usedMemory, col.maxMemory, col.connectedClients, col.keys, col.ping,
	} {
		ch <- d
	}
}

// Collect sends the current metrics. It reads Stats and the pool figures
// at every call, and runs a health check only when the last one is older
// than HealthInterval (at most HealthTimeout long).
func (col *Collector) Collect(ch chan<- prometheus.Metric) {
	col.collectStats(ch)
	col.collectPool(ch)
	if h, ok := col.latestHealth(); ok {
		col.collectHealth(ch, h)
	}
}

// collectStats sends the metrics that come from Stats.
func (col *Collector) collectStats(ch chan<- prometheus.Metric) {
	// The snapshot and the remainders are taken under one lock, so that
	// concurrent scrapes see the remainders in the order of the snapshots.
	col.statsMu.Lock()
	s := col.c.Stats()
	var roundTrips uint64
	for _, o := range s.Operations {
		roundTrips += o.Count
	}
	// Only ResetStats lowers a latency histogram's count.
	reset := roundTrips < col.roundTrips
	col.roundTrips = roundTrips
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	var sum [numRest]uint64
	for ns, n := range s.Namespaces {
		counter(col.requests, n.Hits, ns, "hit")
		counter(col.requests, n.Misses, ns, "miss")
		counter(col.requests, n.Errors, ns, "error")
		counter(col.sets, n.Sets, ns)
		counter(col.deletes, n.Deletes, ns)
		sum[restHits] += n.Hits
		sum[restMisses] += n.Misses
		sum[restErrors] += n.Errors
		sum[restSets] += n.Sets
		sum[restDeletes] += n.Deletes
	}
	totals := [numRest]uint64{s.Hits, s.Misses, s.Errors, s.Sets, s.Deletes}
	var rest [numRest]uint64
	var shown [numRest]bool
	for i := range numRest {
		rest[i], shown[i] = col.rest[i].next(totals[i], sum[i], reset)
	}
	col.statsMu.Unlock()
	// Export the unattributed requests together, once any of them exists.
	if shown[restHits] || shown[restMisses] || shown[restErrors] {
		counter(col.requests, rest[restHits], UnattributedNamespace, "hit")
		counter(col.requests, rest[restMisses], UnattributedNamespace, "miss")
		counter(col.requests, rest[restErrors], UnattributedNamespace, "error")
	}
	if shown[restSets] {
		counter(col.sets, rest[restSets], UnattributedNamespace)
	}
	if shown[restDeletes] {
		counter(col.deletes, rest[restDeletes], UnattributedNamespace)
	}

	for op, o := range s.Operations {
		ch <- prometheus.MustNewConstHistogram(col.duration, o.Count, o.Sum.Seconds(), histogramBuckets(o), op)
	}

	counter(col.loads, s.Loads)
	counter(col.loadErrors, s.LoadErrors)
	counter(col.staleServed, s.StaleServed)
	counter(col.earlyRefreshes, s.EarlyRefreshes)
	counter(col.negativeHits, s.NegativeHits)
	counter(col.fallbacks, s.Fallbacks)
	counter(col.breakerOpens, s.BreakerOpens)
	counter(col.storesRefused, s.StoresRefused)
	ch <- prometheus.MustNewConstMetric(col.breakerState, prometheus.GaugeValue, breakerValue(s.BreakerState))
}

// histogramBuckets converts the core's cumulative buckets to Prometheus
// ones: upper bounds in seconds to cumulative counts. The core's last bucket
// (upper bound math.MaxInt64 ns) is the total, which Prometheus carries as
// the histogram's count (the implicit +Inf bucket), so it is dropped.
func histogramBuckets(o rediscache.OperationStats) map[float64]uint64 {
	b := o.Buckets
	if len(b) > 0 {
		b = b[:len(b)-1]
	}
	m := make(map[float64]uint64, len(b))
	for _, bk := range b {
		m[bk.UpperBound.Seconds()] = bk.Count
	}
	return m
}

// breakerValue maps Stats.BreakerState to the rediscache_breaker_state value.
func breakerValue(state string) float64 {
	switch state {
	case "closed":
		return BreakerClosed
	case "half-open":
		return BreakerHalfOpen
	case "open":
		return BreakerOpen
	}
	return BreakerDisabled
}

// collectPool reads the go-redis pool figures live: they are in-process
// counters, cheap at every scrape, unlike the rest of a health check.
func (col *Collector) collectPool(ch chan<- prometheus.Metric) {
	ps := col.c.Redis().PoolStats()
	if ps == nil {
		return
	}
	counter := func(d *prometheus.Desc, v uint32) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	counter(col.poolHits, ps.Hits)
	counter(col.poolMisses, ps.Misses)
	counter(col.poolTimeouts, ps.Timeouts)
	for _, st := range []struct {
		state string
		n     uint32
	}{{"total", ps.TotalConns}, {"idle", ps.IdleConns}, {"stale", ps.StaleConns}} {
		ch <- prometheus.MustNewConstMetric(col.poolConns, prometheus.GaugeValue, float64(st.n), st.state)
	}
}

// latestHealth returns the cached health result, first refreshing it when
// it is older than the interval. ok is false when health checks are off.
func (col *Collector) latestHealth() (h rediscache.Health, ok bool) {
	if col.interval < 0 {
		return h, false
	}
	col.healthMu.Lock()
	defer col.healthMu.Unlock()
	if col.healthAt.IsZero() || time.Since(col.healthAt) >= col.interval {
		ctx, cancel := context.WithTimeout(context.Background(), col.timeout)
		col.health = col.c.HealthCheck(ctx)
		cancel()
		col.healthAt = time.Now()
	}
	return col.health, true
}

func (col *Collector) collectHealth(ch chan<- prometheus.Metric, h rediscache.Health) {
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	if !h.Healthy {
		gauge(col.redisUp, 0)
		return
	}
	gauge(col.redisUp, 1)
	gauge(col.usedMemory, float64(h.UsedMemory))
	gauge(col.maxMemory, float64(h.MaxMemory))
	gauge(col.connectedClients, float64(h.ConnectedClients))
	if h.Keys >= 0 { // -1: not counted (Options.HealthCountKeys off) or the count failed
		gauge(col.keys, float64(h.Keys))
	}
	gauge(col.ping, h.Latency.Seconds())
}
