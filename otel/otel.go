// Package rediscacheotel reports what a rediscache Client's calls meant to
// OpenTelemetry: a span per cache call (with a child span around each
// loader run, which the loader's context carries), the operation duration
// histogram of the database client semantic conventions, and counters
// whose sums equal the Client's Stats.
//
//	c, _ := rediscache.New(&rediscache.Options{Addrs: []string{"localhost:6379"}})
//	if err := rediscacheotel.Instrument(c); err != nil { ... }
//
// It is its own module, so the core stays free of OpenTelemetry.
package rediscacheotel

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/rediscache/rediscache"
)

// ScopeName is the instrumentation scope of the tracer and meter.
const ScopeName = "github.com/rediscache/rediscache/otel"

// Attribute keys of spans and metrics beyond the semantic conventions'.
const (
	// CacheHitKey is true when a read was answered from the cache.
	CacheHitKey = attribute.Key("cache.hit")
	// SourceKey is where a GetOrLoad answer came from: "hit", "loaded",
	// "stale" or "fallback".
	SourceKey = attribute.Key("rediscache.source")
	// NamespaceKey is the namespace the call is about (see
	// rediscache.Call.Namespace).
	NamespaceKey = attribute.Key("rediscache.namespace")
	// KeyKey is the logical key of a one-key call; recorded only with
	// [WithKeys].
	KeyKey = attribute.Key("rediscache.key")
	// BatchSizeKey is how many keys (or tags) a batch call was given.
	BatchSizeKey = attribute.Key("rediscache.batch.size")
	// BatchHitsKey, BatchLoadedKey, BatchStaleKey and BatchFallbacksKey
	// count a batch's keys answered from the cache, by the loader, stale,
	// and by the loader because Redis failed.
	BatchHitsKey      = attribute.Key("rediscache.batch.hits")
	BatchLoadedKey    = attribute.Key("rediscache.batch.loaded")
	BatchStaleKey     = attribute.Key("rediscache.batch.stale")
	BatchFallbacksKey = attribute.Key("rediscache.batch.fallbacks")
	// RefreshKey is true on the load span of a background refresh.
	RefreshKey = attribute.Key("rediscache.refresh")
)

// Option configures [Instrument].
type Option func(*config)

type config struct {
	tp   trace.TracerProvider
	mp   metric.MeterProvider
	keys bool
}

// WithTracerProvider sets the TracerProvider spans are made with; the
// default is the global one (otel.GetTracerProvider). A nil tp keeps it.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) {
		if tp != nil {
			c.tp = tp
		}
	}
}

// WithMeterProvider sets the MeterProvider metrics are recorded with; the
// default is the global one (otel.GetMeterProvider). A nil mp keeps it.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) {
		if mp != nil {
			c.mp = mp
		}
	}
}

// WithKeys records the logical key of one-key calls on their spans
// (rediscache.key). Keys are not recorded by default: they often carry
// user ids. Metrics never carry keys.
func WithKeys() Option { return func(c *config) { c.keys = true } }

// ErrNilClient is returned by [Instrument] for a nil Client.
var ErrNilClient = errors.New("rediscacheotel: nil Client")

// Instrument attaches tracing and metrics to c: calls made after it
// returns are traced and metered. It returns [ErrNilClient] for a nil c,
// an error wrapping rediscache.ErrClosed for a closed one, or the error of
// creating an instrument; c is then left as it was. Instrumenting a Client
// twice reports its calls twice.
func Instrument(c *rediscache.Client, opts ...Option) error {
	if c == nil {
		return ErrNilClient
	}
	cfg := config{tp: otel.GetTracerProvider(), mp: otel.GetMeterProvider()}
	for _, o := range opts {
		o(&cfg)
	}
	ob, err := newObserver(c, cfg)
	if err != nil {
		return fmt.Errorf("rediscacheotel: %w", err)
	}
	if err := c.AddObserver(ob); err != nil {
		_ = ob.breaker.Unregister()
		return fmt.Errorf("rediscacheotel: %w", err)
	}
	return nil
}

// observer is the rediscache.Observer Instrument attaches.
type observer struct {
	tracer   trace.Tracer
	keys     bool
	duration metric.Float64Histogram
	loadDur  metric.Float64Histogram
	counters [numEvents]metric.Int64Counter
	breaker  metric.Registration

	attrs sync.Map // attrKey -> metric.MeasurementOption
}

// numEvents bounds the rediscache.Event values this module knows.
const numEvents = int(rediscache.EventStoreRefused) + 1

// durationBuckets are the histogram bounds, in seconds: the semantic
// conventions' advice, finer below 1ms, where cache calls fall.
var durationBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

func newObserver(c *rediscache.Client, cfg config) (*observer, error) {
	meter := cfg.mp.Meter(ScopeName)
	o := &observer{tracer: cfg.tp.Tracer(ScopeName), keys: cfg.keys}
	var err error
	if o.duration, err = meter.Float64Histogram("db.client.operation.duration",
		metric.WithUnit("s"),
		metric.WithDescription("Duration of rediscache calls, by operation (db.operation.name)."),
		metric.WithExplicitBucketBoundaries(durationBuckets...)); err != nil {
		return nil, err
	}
	if o.loadDur, err = meter.Float64Histogram("rediscache.load.duration",
		metric.WithUnit("s"),
		metric.WithDescription("Duration of loader runs (GetOrLoad, GetManyOrLoad, background refreshes)."),
		metric.WithExplicitBucketBoundaries(durationBuckets...)); err != nil {
		return nil, err
	}
	for ev := rediscache.EventHit; int(ev) < numEvents; ev++ {
		if o.counters[ev], err = meter.Int64Counter("rediscache."+ev.String(),
			metric.WithUnit("{"+unitOf(ev)+"}"),
			metric.WithDescription(descriptions[ev])); err != nil {
			return nil, err
		}
	}
	state, err := meter.Int64ObservableGauge("rediscache.breaker.state",
		metric.WithUnit("1"),
		metric.WithDescription("Circuit breaker state: 0 closed, 1 half-open, 2 open, -1 disabled (on a cluster, the worst master's)."))
	if err != nil {
		return nil, err
	}
	o.breaker, err = meter.RegisterCallback(func(_ context.Context, obs metric.Observer) error {
		obs.ObserveInt64(state, breakerValue(c.Stats().BreakerState))
		return nil
	}, state)
	if err != nil {
		return nil, err
	}
	return o, nil
}

// descriptions of the counters, by event.
var descriptions = [numEvents]string{
	rediscache.EventHit:          "Lookups that found a value (Stats.Hits).",
	rediscache.EventMiss:         "Lookups that found nothing (Stats.Misses).",
	rediscache.EventError:        "Calls or batch keys that failed in Redis or decoding (Stats.Errors).",
	rediscache.EventSet:          "Values written (Stats.Sets).",
	rediscache.EventDelete:       "Keys deleted (Stats.Deletes).",
	rediscache.EventLoad:         "Loader calls (Stats.Loads).",
	rediscache.EventLoadError:    "Loader calls that failed (Stats.LoadErrors).",
	rediscache.EventStaleServed:  "Answers served from a stale entry (Stats.StaleServed).",
	rediscache.EventEarlyRefresh: "Background refreshes started early (Stats.EarlyRefreshes).",
	rediscache.EventNegativeHit:  "Answers of a cached not-found (Stats.NegativeHits).",
	rediscache.EventFallback:     "Answers served by the loader with Redis failing or skipped (Stats.Fallbacks).",
	rediscache.EventBreakerOpen:  "Times a circuit breaker opened (Stats.BreakerOpens).",
	rediscache.EventStoreRefused: "Loads whose store was refused because the key was invalidated meanwhile (Stats.StoresRefused).",
}

// unitOf is a counter's unit annotation.
func unitOf(ev rediscache.Event) string {
	switch ev {
	case rediscache.EventLoad, rediscache.EventLoadError:
		return "load"
	case rediscache.EventSet, rediscache.EventDelete, rediscache.EventStoreRefused:
		return "key"
	case rediscache.EventBreakerOpen:
		return "open"
	}
	return "call"
}

// breakerValue maps Stats.BreakerState to the gauge's value.
func breakerValue(state string) int64 {
	switch state {
	case "closed":
		return 0
	case "half-open":
		return 1
	case "open":
		return 2
	}
	return -1
}

var dbSystem = semconv.DBSystemNameRedis

// Start begins the call's span: rediscache.<op> (rediscache.load for a
// loader run, a child of the call's).
func (o *observer) Start(ctx context.Context, call *rediscache.Call) context.Context {
	if ctx == nil {
		return nil
	}
	kind := trace.SpanKindClient
	if call.Op == "load" {
		kind = trace.SpanKindInternal
	}
	attrs := make([]attribute.KeyValue, 0, 5)
	attrs = append(attrs, dbSystem, semconv.DBOperationName(call.Op))
	if call.Namespace != "" {
		attrs = append(attrs, NamespaceKey.String(call.Namespace))
	}
	if o.keys && call.Key != "" {
		attrs = append(attrs, KeyKey.String(call.Key))
	}
	if call.Key == "" && call.Keys > 0 {
		attrs = append(attrs, BatchSizeKey.Int(call.Keys))
	}
	if call.Refresh {
		attrs = append(attrs, RefreshKey.Bool(true))
	}
	ctx, _ = o.tracer.Start(ctx, "rediscache."+call.Op,
		trace.WithSpanKind(kind), trace.WithTimestamp(call.Start), trace.WithAttributes(attrs...))
	return ctx
}

// End records the call's outcome on its span, ends it, and records its
// duration.
func (o *observer) End(ctx context.Context, call *rediscache.Call) {
	failed := call.Err != nil && !expected(call.Err)
	elapsed := time.Since(call.Start)
	if call.Op == "load" {
		o.loadDur.Record(context.Background(), elapsed.Seconds(), o.measureOpt(call.Op, call.Namespace, failed, call.Err))
	} else {
		o.duration.Record(context.Background(), elapsed.Seconds(), o.measureOpt(call.Op, call.Namespace, failed, call.Err))
	}
	if ctx == nil {
		return
	}
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		span.End()
		return
	}
	attrs := make([]attribute.KeyValue, 0, 5)
	switch {
	case call.Op == "load":
		if call.Key == "" {
			attrs = append(attrs, BatchLoadedKey.Int(call.Loaded))
		}
	case call.Key != "" && isRead(call.Op):
		attrs = append(attrs, CacheHitKey.Bool(call.Hits > 0))
		if call.Source != 0 {
			attrs = append(attrs, SourceKey.String(call.Source.String()))
		}
	case isRead(call.Op):
		attrs = append(attrs, CacheHitKey.Bool(call.Hits > 0), BatchHitsKey.Int(call.Hits))
		if call.Op == "getmanyorload" {
			attrs = append(attrs, BatchLoadedKey.Int(call.Loaded), BatchStaleKey.Int(call.Stale), BatchFallbacksKey.Int(call.Fallbacks))
		}
	}
	if failed {
		attrs = append(attrs, semconv.ErrorType(call.Err))
		span.RecordError(call.Err)
		span.SetStatus(codes.Error, call.Err.Error())
	}
	span.SetAttributes(attrs...)
	span.End()
}

// Count adds to the event's counter.
func (o *observer) Count(ev rediscache.Event, namespace string, n uint64) {
	if int(ev) >= numEvents || o.counters[ev] == nil {
		return
	}
	o.counters[ev].Add(context.Background(), int64(n), o.countOpt(namespace))
}

// isRead reports ops whose answer is a hit or not.
func isRead(op string) bool {
	switch op {
	case "get", "getorload", "metadata", "getmany", "mget", "getmanyorload":
		return true
	}
	return false
}

// expected reports errors that are answers, not failures: a miss, and a
// loader's not found.
func expected(err error) bool {
	return errors.Is(err, rediscache.ErrCacheMiss) || errors.Is(err, rediscache.ErrNotFound)
}

// attrKey identifies a cached attribute set.
type attrKey struct {
	op, ns, errType string
}

// measureOpt returns the attributes of a duration measurement, cached:
// op and namespace are bounded sets (Stats bounds namespaces to 64).
func (o *observer) measureOpt(op, ns string, failed bool, err error) metric.MeasurementOption {
	k := attrKey{op: op, ns: ns}
	if failed {
		k.errType = semconv.ErrorType(err).Value.AsString()
	}
	if v, ok := o.attrs.Load(k); ok {
		return v.(metric.MeasurementOption)
	}
	attrs := []attribute.KeyValue{dbSystem, semconv.DBOperationName(op)}
	if ns != "" {
		attrs = append(attrs, NamespaceKey.String(ns))
	}
	if failed {
		attrs = append(attrs, semconv.ErrorTypeKey.String(k.errType))
	}
	opt := metric.WithAttributeSet(attribute.NewSet(attrs...))
	v, _ := o.attrs.LoadOrStore(k, opt)
	return v.(metric.MeasurementOption)
}

// countOpt returns the attributes of a counter addition, cached.
func (o *observer) countOpt(ns string) metric.AddOption {
	k := attrKey{op: "\x00count", ns: ns}
	if v, ok := o.attrs.Load(k); ok {
		return v.(metric.MeasurementOption)
	}
	var set attribute.Set
	if ns != "" {
		set = attribute.NewSet(NamespaceKey.String(ns))
	}
	v, _ := o.attrs.LoadOrStore(k, metric.WithAttributeSet(set))
	return v.(metric.MeasurementOption)
}
