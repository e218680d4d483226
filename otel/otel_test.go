package rediscacheotel_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/rediscache/rediscache"
	"github.com/rediscache/rediscache/internal/redistest"
	rediscacheotel "github.com/rediscache/rediscache/otel"
)

// rig is a Client on its own redis-server, instrumented with an in-memory
// span recorder and a manual metric reader.
type rig struct {
	srv    *redistest.Server
	c      *rediscache.Client
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	reader *sdkmetric.ManualReader
}

func newRig(t *testing.T, opt rediscache.Options, opts ...rediscacheotel.Option) *rig {
	t.Helper()
	srv := redistest.Start(t)
	opt.Addrs = []string{srv.Addr()}
	if opt.Prefix == "" {
		opt.Prefix = "otel"
	}
	c, err := rediscache.New(&opt)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	r := &rig{srv: srv, c: c, spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	r.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(r.spans))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r.reader))
	t.Cleanup(func() { _ = r.tp.Shutdown(context.Background()); _ = mp.Shutdown(context.Background()) })
	opts = append([]rediscacheotel.Option{rediscacheotel.WithTracerProvider(r.tp), rediscacheotel.WithMeterProvider(mp)}, opts...)
	require.NoError(t, rediscacheotel.Instrument(c, opts...))
	return r
}

// named returns the ended spans called name.
func (r *rig) named(name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range r.spans.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// one returns the only ended span called name.
func (r *rig) one(t *testing.T, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	got := r.named(name)
	require.Len(t, got, 1, "spans named %s", name)
	return got[0]
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

func TestMissSpanTree(t *testing.T) {
	r := newRig(t, rediscache.Options{})
	ctx := t.Context()
	loader := func(ctx context.Context) (string, error) {
		_, span := r.tp.Tracer("db").Start(ctx, "SELECT tasks")
		defer span.End()
		return "v", nil
	}
	root, parent := r.tp.Tracer("app").Start(ctx, "handler")
	v, err := rediscache.GetOrLoad(root, r.c, "tasks:v1:42", time.Minute, loader)
	parent.End()
	require.NoError(t, err)
	require.Equal(t, "v", v)

	call := r.one(t, "rediscache.getorload")
	load := r.one(t, "rediscache.load")
	db := r.one(t, "SELECT tasks")
	assert.Equal(t, parent.SpanContext().SpanID(), call.Parent().SpanID(), "the cache span nests under the caller's")
	assert.Equal(t, call.SpanContext().SpanID(), load.Parent().SpanID(), "the load span is the cache span's child")
	assert.Equal(t, load.SpanContext().SpanID(), db.Parent().SpanID(), "the loader's own span nests under the load span")
	assert.Equal(t, call.SpanContext().TraceID(), db.SpanContext().TraceID())

	a := attrs(call)
	assert.Equal(t, "redis", a["db.system.name"].AsString())
	assert.Equal(t, "getorload", a["db.operation.name"].AsString())
	assert.False(t, a["cache.hit"].AsBool())
	assert.Equal(t, "loaded", a["rediscache.source"].AsString())
	assert.Equal(t, "tasks", a["rediscache.namespace"].AsString())
	assert.NotContains(t, a, attribute.Key("rediscache.key"), "keys are not recorded by default")
	assert.Equal(t, codes.Unset, call.Status().Code)
}

func TestHitAndKeys(t *testing.T) {
	r := newRig(t, rediscache.Options{}, rediscacheotel.WithKeys())
	ctx := t.Context()
	require.NoError(t, r.c.Set(ctx, "tasks:v1:1", "x", time.Minute))
	v, src, err := rediscache.GetOrLoadWithSource(ctx, r.c, "tasks:v1:1", time.Minute, func(context.Context) (string, error) {
		return "", errors.New("not called")
	})
	require.NoError(t, err)
	require.Equal(t, "x", v)
	require.Equal(t, rediscache.SourceHit, src)
	a := attrs(r.one(t, "rediscache.getorload"))
	assert.True(t, a["cache.hit"].AsBool())
	assert.Equal(t, "hit", a["rediscache.source"].AsString())
	assert.Equal(t, "tasks:v1:1", a["rediscache.key"].AsString(), "WithKeys records the key")
	assert.Empty(t, r.named("rediscache.load"), "a hit runs no loader")
	assert.Equal(t, "tasks:v1:1", attrs(r.one(t, "rediscache.set"))["rediscache.key"].AsString())

	var got string
	require.ErrorIs(t, r.c.Get(ctx, "tasks:v1:none", &got), rediscache.ErrCacheMiss)
	miss := r.one(t, "rediscache.get")
	assert.False(t, attrs(miss)["cache.hit"].AsBool())
	assert.Equal(t, codes.Unset, miss.Status().Code, "a miss is an answer, not an error")
}

func TestStaleAnswer(t *testing.T) {
	r := newRig(t, rediscache.Options{StaleTTL: time.Minute, EarlyRefreshBeta: -1})
	ctx := t.Context()
	load := func(context.Context) (string, error) { return "v", nil }
	_, err := rediscache.GetOrLoad(ctx, r.c, "tasks:s", 30*time.Millisecond, load)
	require.NoError(t, err)
	time.Sleep(50 * time.Millisecond)
	_, src, err := rediscache.GetOrLoadWithSource(ctx, r.c, "tasks:s", 30*time.Millisecond, load)
	require.NoError(t, err)
	require.Equal(t, rediscache.SourceStale, src)

	stale := r.named("rediscache.getorload")[1]
	a := attrs(stale)
	assert.True(t, a["cache.hit"].AsBool())
	assert.Equal(t, "stale", a["rediscache.source"].AsString())
	require.Eventually(t, func() bool {
		for _, s := range r.named("rediscache.load") {
			if attrs(s)["rediscache.refresh"].AsBool() && s.Parent().SpanID() == stale.SpanContext().SpanID() {
				return true
			}
		}
		return false
	}, 5*time.Second, 10*time.Millisecond, "the background refresh is a load span under the stale answer's")
}

func TestFallbackWithRedisDown(t *testing.T) {
	r := newRig(t, rediscache.Options{MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	r.srv.Kill()
	v, src, err := rediscache.GetOrLoadWithSource(t.Context(), r.c, "tasks:f", time.Minute, func(context.Context) (string, error) {
		return "from db", nil
	})
	require.NoError(t, err)
	require.Equal(t, "from db", v)
	require.Equal(t, rediscache.SourceFallback, src)
	call := r.one(t, "rediscache.getorload")
	a := attrs(call)
	assert.Equal(t, "fallback", a["rediscache.source"].AsString())
	assert.False(t, a["cache.hit"].AsBool())
	assert.Equal(t, codes.Unset, call.Status().Code, "a fallback answered the caller")
	load := r.one(t, "rediscache.load")
	assert.Equal(t, call.SpanContext().SpanID(), load.Parent().SpanID())
}

func TestErrorRecorded(t *testing.T) {
	r := newRig(t, rediscache.Options{})
	boom := errors.New("db is down")
	_, err := rediscache.GetOrLoad(t.Context(), r.c, "tasks:e", time.Minute, func(context.Context) (string, error) {
		return "", boom
	})
	require.ErrorIs(t, err, boom)
	for _, name := range []string{"rediscache.getorload", "rediscache.load"} {
		s := r.one(t, name)
		assert.Equal(t, codes.Error, s.Status().Code, name)
		assert.Contains(t, s.Status().Description, "db is down", name)
		require.NotEmpty(t, s.Events(), name)
		assert.Equal(t, "exception", s.Events()[0].Name, name)
		assert.NotEmpty(t, attrs(s)["error.type"].AsString(), name)
	}

	_, err = r.c.Delete(t.Context(), "bad key\x00")
	require.ErrorIs(t, err, rediscache.ErrInvalidKey)
	assert.Equal(t, codes.Error, r.one(t, "rediscache.delete").Status().Code)
}

func TestBatchSpans(t *testing.T) {
	r := newRig(t, rediscache.Options{})
	ctx := t.Context()
	require.NoError(t, rediscache.SetMany(ctx, r.c, map[string]string{"tasks:a": "1", "tasks:b": "2"}, time.Minute))
	got, err := rediscache.GetManyOrLoad(ctx, r.c, []string{"tasks:a", "tasks:b", "tasks:c", "tasks:d"}, time.Minute,
		func(ctx context.Context, missing []string) (map[string]string, error) {
			return map[string]string{"tasks:c": "3"}, nil
		})
	require.NoError(t, err)
	require.Len(t, got, 3)
	call := r.one(t, "rediscache.getmanyorload")
	a := attrs(call)
	assert.Equal(t, int64(4), a["rediscache.batch.size"].AsInt64())
	assert.Equal(t, int64(2), a["rediscache.batch.hits"].AsInt64())
	assert.Equal(t, int64(1), a["rediscache.batch.loaded"].AsInt64())
	assert.Equal(t, "tasks", a["rediscache.namespace"].AsString())
	load := r.one(t, "rediscache.load")
	assert.Equal(t, call.SpanContext().SpanID(), load.Parent().SpanID())
	assert.Equal(t, int64(2), attrs(load)["rediscache.batch.size"].AsInt64(), "the loader was asked for c and d")
	assert.Equal(t, int64(2), attrs(r.one(t, "rediscache.setmany"))["rediscache.batch.size"].AsInt64())

	for _, op := range []string{"getmany", "deletemany", "invalidateprefix", "invalidatenamespace", "invalidatetags"} {
		switch op {
		case "getmany":
			_, err = rediscache.GetMany[string](ctx, r.c, []string{"tasks:a", "tasks:z"})
		case "deletemany":
			_, err = r.c.DeleteMany(ctx, []string{"tasks:a", "tasks:b"})
		case "invalidateprefix":
			_, err = r.c.InvalidatePrefix(ctx, "tasks:")
		case "invalidatenamespace":
			_, err = r.c.InvalidateNamespace(ctx, "tasks")
		case "invalidatetags":
			err = r.c.InvalidateTags(ctx, "t")
		}
		require.NoError(t, err, op)
		s := r.one(t, "rediscache."+op)
		assert.Equal(t, op, attrs(s)["db.operation.name"].AsString())
	}
}

// sums reads the counters and the duration histogram's counts per
// operation.
func sums(t *testing.T, r *rig) (counters map[string]int64, durations map[string]uint64, breaker int64) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, r.reader.Collect(t.Context(), &rm))
	counters, durations, breaker = map[string]int64{}, map[string]uint64{}, -2
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					counters[m.Name] += p.Value
				}
			case metricdata.Histogram[float64]:
				if m.Name != "db.client.operation.duration" {
					continue
				}
				for _, p := range d.DataPoints {
					op, _ := p.Attributes.Value("db.operation.name")
					durations[op.AsString()] += p.Count
				}
			case metricdata.Gauge[int64]:
				if m.Name == "rediscache.breaker.state" {
					breaker = d.DataPoints[0].Value
				}
			}
		}
	}
	return counters, durations, breaker
}

func TestMetricsEqualStats(t *testing.T) {
	r := newRig(t, rediscache.Options{StaleTTL: time.Minute, EarlyRefreshBeta: -1, BreakerFailures: 2, MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	ctx := t.Context()
	fail := func(context.Context) (string, error) { return "", errors.New("db down") }
	notFound := func(context.Context) (string, error) { return "", rediscache.ErrNotFound }
	ok := func(context.Context) (string, error) { return "v", nil }
	calls := map[string]uint64{}
	for i := range 20 {
		key := "tasks:" + string(rune('a'+i%5))
		require.NoError(t, r.c.Set(ctx, key, i, time.Minute))
		var v int
		require.NoError(t, r.c.Get(ctx, key, &v))
		require.ErrorIs(t, r.c.Get(ctx, "users:none", &v), rediscache.ErrCacheMiss)
		_, _ = rediscache.GetOrLoad(ctx, r.c, "users:ok", 20*time.Millisecond, ok)
		_, _ = rediscache.GetOrLoad(ctx, r.c, "users:fail", time.Minute, fail)
		_, _ = rediscache.GetOrLoad(ctx, r.c, "users:gone", time.Minute, notFound)
		_, err := r.c.Delete(ctx, key)
		require.NoError(t, err)
		calls["set"]++
		calls["get"] += 2
		calls["getorload"] += 3
		calls["delete"]++
		if i%5 == 4 {
			time.Sleep(30 * time.Millisecond) // users:ok goes stale
		}
	}
	// Then Redis goes away: reads fail, loads fall back, the breaker opens.
	r.srv.Kill()
	for range 5 {
		var v int
		_ = r.c.Get(ctx, "tasks:a", &v)
		_, _ = rediscache.GetOrLoad(ctx, r.c, "users:down", time.Minute, ok)
		calls["get"]++
		calls["getorload"]++
	}
	// Let background refreshes finish before reading.
	require.Eventually(t, func() bool {
		s := r.c.Stats()
		time.Sleep(50 * time.Millisecond)
		return s.Loads == r.c.Stats().Loads
	}, 5*time.Second, 10*time.Millisecond)

	s := r.c.Stats()
	got, durations, breaker := sums(t, r)
	want := map[string]uint64{
		"rediscache.hits": s.Hits, "rediscache.misses": s.Misses, "rediscache.errors": s.Errors,
		"rediscache.sets": s.Sets, "rediscache.deletes": s.Deletes, "rediscache.loads": s.Loads,
		"rediscache.load_errors": s.LoadErrors, "rediscache.stale_served": s.StaleServed,
		"rediscache.negative_hits": s.NegativeHits, "rediscache.fallbacks": s.Fallbacks,
		"rediscache.stores_refused": s.StoresRefused, "rediscache.early_refreshes": s.EarlyRefreshes,
		"rediscache.breaker_opens": s.BreakerOpens,
	}
	for name, n := range want {
		assert.Equal(t, int64(n), got[name], name)
	}
	assert.NotZero(t, s.StaleServed)
	assert.NotZero(t, s.LoadErrors)
	assert.NotZero(t, s.NegativeHits)
	assert.NotZero(t, s.Fallbacks)
	assert.NotZero(t, s.Errors)
	assert.NotZero(t, s.BreakerOpens)
	for op, n := range calls {
		assert.Equal(t, n, durations[op], "db.client.operation.duration count of %s", op)
	}
	assert.Equal(t, int64(2), breaker, "the breaker is open")
}

func TestInstrumentRejects(t *testing.T) {
	require.ErrorIs(t, rediscacheotel.Instrument(nil), rediscacheotel.ErrNilClient)
	c, err := rediscache.New(&rediscache.Options{Addrs: []string{"127.0.0.1:1"}})
	require.NoError(t, err)
	require.NoError(t, c.Close())
	require.ErrorIs(t, rediscacheotel.Instrument(c), rediscache.ErrClosed)
}

// A loader that ignores its context: the caller's span ends with the
// LoadTimeout error when the caller returns; the load span ends only when
// the loader does.
func TestSpansOfALoaderThatIgnoresItsContext(t *testing.T) {
	r := newRig(t, rediscache.Options{LoadTimeout: 200 * time.Millisecond})
	release := make(chan struct{})
	_, err := rediscache.GetOrLoad(t.Context(), r.c, "tasks:slow", time.Minute, func(context.Context) (string, error) {
		<-release
		return "late", nil
	})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	call := r.one(t, "rediscache.getorload")
	assert.Equal(t, codes.Error, call.Status().Code)
	assert.Empty(t, r.named("rediscache.load"), "the load is still running")
	close(release)
	require.Eventually(t, func() bool { return len(r.named("rediscache.load")) == 1 }, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, call.SpanContext().SpanID(), r.one(t, "rediscache.load").Parent().SpanID())
}
