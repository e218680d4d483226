package rediscache

import (
	"context"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Source tells where a [GetOrLoadWithSource] answer came from.
type Source uint8

// Sources of a GetOrLoad answer.
const (
	SourceHit      Source = iota + 1 // a fresh cached value (possibly just stored by another process's load)
	SourceLoaded                     // the loader, called once for all concurrent callers of this process
	SourceStale                      // a stale cached value, served while one background load refreshes it
	SourceFallback                   // the loader, because Redis failed or the circuit breaker is open
)

// String returns "hit", "loaded", "stale", "fallback", or "unknown" for
// any other value.
func (s Source) String() string {
	switch s {
	case SourceHit:
		return "hit"
	case SourceLoaded:
		return "loaded"
	case SourceStale:
		return "stale"
	case SourceFallback:
		return "fallback"
	}
	return "unknown"
}

// GetOrLoad returns the value at key, calling load on a miss and caching
// its result for ttl (0: the key's namespace TTL or DefaultTTL).
//
//   - Concurrent misses of a key in one process share one load call, which
//     runs detached from the first caller's cancellation, bounded by
//     Options.LoadTimeout; each caller leaves on its own ctx.
//   - Across processes, the first to miss writes a short lease into the key
//     (Options.LockTTL) and the others wait for its value.
//   - An invalidation is never undone: the load stores its value only if
//     the key still holds its lease, so a Set, Delete, Expire,
//     InvalidatePrefix or ClearAll of the key that comes while the loader
//     runs makes the store a no-op (counted in Stats.StoresRefused). A call
//     that starts after such an invalidation returned never receives the
//     refused value: it loads again.
//   - A load returning (or wrapping) [ErrNotFound] is cached for
//     Options.NegativeTTL: GetOrLoad returns ErrNotFound without calling
//     load again until then. Any other load error is returned and nothing
//     is cached. A load that panics returns a [*LoaderPanicError].
//   - A hit near expiry may start a background refresh (XFetch,
//     Options.EarlyRefreshBeta); with Options.StaleTTL a stale entry is
//     served at once while a background load refreshes it. A refresh
//     stores only if the key still holds the value it refreshes.
//   - When Redis fails or the circuit breaker is open, GetOrLoad returns
//     the loader's value with a nil error (fail open).
//
// Errors: [ErrInvalidKey], [ErrInvalidTTL], [ErrInvalidValue] (nil load),
// [ErrClosed] (also for a load Close cancels), [ErrNilContext], ctx.Err()
// when ctx ends first, an error wrapping [context.DeadlineExceeded] when the
// load outlives LoadTimeout, [ErrCorruptValue] when a concurrent call of
// this process loads the same key as another type, or the loader's error.
//
// [WithTags] tags the entry it stores (and names the tags expected on a
// hit, so their versions are read in the same round trip): after
// [Client.InvalidateTags] of any of them the entry is a miss, and a load
// that began before the invalidation never stores one that reads as valid.
func GetOrLoad[T any](ctx context.Context, c *Client, key string, ttl time.Duration, load func(context.Context) (T, error), opts ...CallOption) (T, error) {
	v, _, err := GetOrLoadWithSource(ctx, c, key, ttl, load, opts...)
	return v, err
}

var (
	errNilLoader   = fmt.Errorf("%w: nil loader", ErrInvalidValue)
	errLoadTimeout = fmt.Errorf("load outlived LoadTimeout: %w", context.DeadlineExceeded)
	errOtherType   = fmt.Errorf("%w: key loaded concurrently as another type", ErrCorruptValue)
)

// GetOrLoadWithSource is [GetOrLoad] that also reports where the answer
// came from, for per-call logging or metrics.
func GetOrLoadWithSource[T any](ctx context.Context, c *Client, key string, ttl time.Duration, load func(context.Context) (T, error), opts ...CallOption) (_ T, src Source, err error) {
	if o := c.ctr.obs.Load(); o != nil {
		call := c.newCall(opGetOrLoad, key, 1)
		ctx = o.start(ctx, call)
		defer func() { call.sourced(src, err); o.end(ctx, call) }()
	}
	var zero T
	if load == nil {
		return zero, 0, opErr(opGetOrLoad, key, errNilLoader)
	}
	o, err := parseCallOptions(opts)
	if err != nil {
		return zero, 0, opErr(opGetOrLoad, key, err)
	}
	if ttl, err = c.ttl(key, ttl); err != nil {
		return zero, 0, opErr(opGetOrLoad, key, err)
	}
	if err := c.ready(ctx); err != nil {
		return zero, 0, opErr(opGetOrLoad, key, err)
	}
	lc := loadCall[T]{c: c, key: key, ttl: ttl, load: load, tags: o.tags} // on the stack: a hit allocates nothing for it
	v, src, err, again := lc.answer(ctx, false)
	if again {
		// The shared load we joined is older than we are, and an
		// invalidation may lie between: answer anew, taking whatever the
		// second try gives (it began after that load ended).
		v, src, err, _ = lc.answer(ctx, true)
	}
	return v, src, err
}

const opGetOrLoad = "getorload"

// loadCall is one GetOrLoad call: its key, TTL and loader, and the steps of
// answering it. The background refreshes it starts use it too.
type loadCall[T any] struct {
	c    *Client
	key  string // logical
	k    string // stored
	gen  uint64 // the namespace generation entries must carry, and stores are stamped with
	ttl  time.Duration
	load func(context.Context) (T, error)
	tags []string // WithTags: what stores are tagged with
	turn turn     // of the breaker of k, from locate: released once the call is past Redis
}

// heap returns a copy of lc for a goroutine, so that lc itself stays on
// its caller's stack.
func (lc *loadCall[T]) heap() *loadCall[T] {
	cp := *lc
	return &cp
}

// loaded is a shared load's value as its flight hands it out.
type loaded[T any] struct{ v T }

// answer answers from the near cache, from Redis, or through a shared
// load. again is true when the shared load it joined cannot answer this
// call (see flight) and retried is false: the caller answers once more.
func (lc *loadCall[T]) answer(ctx context.Context, retried bool) (v T, src Source, err error, again bool) {
	useRedis, err := lc.locate(ctx)
	switch {
	case err != nil:
		return v, 0, err, false
	case !useRedis:
		return lc.fallback(ctx, retried)
	}
	var m nearMark
	if lc.c.near != nil {
		v, src, r, err := lc.fromNear(ctx)
		switch r {
		case nearAnswered:
			lc.turn.release()
			return v, src, err, false
		case nearFallback:
			lc.turn.release()
			return lc.fallback(ctx, retried)
		}
		m = lc.c.near.mark(lc.k)
	}
	return lc.fromRedis(ctx, m, retried) // its read of k reports
}

// locate resolves the call's stored key and namespace generation, and asks
// the breaker of the key (on a cluster, of its node) once the key is valid.
// It reports false, with no error, when the call is to skip Redis and
// serve the loader: the breaker refuses, or the generations are unknown.
// The error is an invalid key's.
func (lc *loadCall[T]) locate(ctx context.Context) (useRedis bool, err error) {
	c := lc.c
	if lc.k, err = c.storageKey(lc.key); err != nil {
		return false, opErr(opGetOrLoad, lc.key, err)
	}
	var ok bool
	if lc.turn, ok = c.breakerFor(ctx, lc.k).allow(); !ok {
		return false, nil
	}
	if lc.gen, err = c.expect(ctx, lc.key); err != nil {
		lc.turn.release()
		c.ctr.fail(lc.key)
		c.warnf("rediscache: namespace generation unknown, serving from the loader", "op", opGetOrLoad, "key", lc.key, "error", err)
		return false, nil
	}
	return true, nil
}

// nearResult is what the near cache made of a call.
type nearResult uint8

const (
	nearMissed   nearResult = iota // nothing usable kept: read Redis
	nearAnswered                   // answered from the kept value
	nearFallback                   // the kept value's tags cannot be checked: serve the loader
)

// fromNear answers from the value the near cache keeps for the key, if it
// is live, of the call's generation and type, and its tags are current.
func (lc *loadCall[T]) fromNear(ctx context.Context) (v T, src Source, r nearResult, err error) {
	c := lc.c
	ent, ok := c.near.load(lc.k)
	if !ok || !ent.liveAt(c.near.now()) || ent.env.gen != lc.gen {
		return v, 0, nearMissed, nil
	}
	kept, isT := ent.v.(T)
	if !isT && !ent.negative {
		return v, 0, nearMissed, nil // kept as another type: read from Redis instead
	}
	current, terr := c.tagsCurrent(ctx, ent.env, nil)
	switch {
	case terr != nil:
		return v, 0, nearFallback, nil
	case !current:
		return v, 0, nearMissed, nil
	}
	v, src, err = lc.hit(ctx, kept, ent.env, ent.negative)
	return v, src, nearAnswered, err
}

// fromRedis reads the key from Redis and answers with what it holds, or,
// on a miss, through a shared load; m is the near cache's mark taken
// before the read, for keeping what it decodes.
func (lc *loadCall[T]) fromRedis(ctx context.Context, m nearMark, retried bool) (v T, src Source, err error, again bool) {
	c := lc.c
	b, known, err := c.getTagged(ctx, lc.k, lc.tags)
	switch {
	case err == nil:
		// Declared here: decoding into it moves it to the heap, which a
		// near hit need not pay for.
		var dv T
		e, _, derr := c.decodeStored(b, &dv, lc.gen)
		if (derr == nil || errors.Is(derr, errNegative)) && len(e.tags) > 0 {
			current, terr := c.tagsCurrent(ctx, e, known)
			switch {
			case terr != nil:
				c.ctr.fail(lc.key)
				return lc.fallback(ctx, retried)
			case !current:
				derr = errTagged
			}
		}
		switch {
		case derr == nil || errors.Is(derr, errNegative):
			negative := errors.Is(derr, errNegative)
			if c.near != nil {
				var kept any
				if !negative {
					kept = dv
				}
				c.near.store(lc.k, c.nearEntryOf(e, kept), m)
			}
			v, src, err = lc.hit(ctx, dv, e, negative)
			return v, src, err, false
		case errors.Is(derr, errLeaseOnly) || errors.Is(derr, errOldGeneration) || errors.Is(derr, errTagged):
			c.ctr.miss(lc.key) // another load is filling it, or an invalidation left it behind
		default:
			c.ctr.fail(lc.key) // undecodable: load (see acquire for what is overwritten)
		}
	case errors.Is(err, redis.Nil):
		c.ctr.miss(lc.key)
	case ctx.Err() != nil:
		c.ctr.fail(lc.key)
		return v, 0, opErr(opGetOrLoad, lc.key, err), false
	default:
		c.ctr.fail(lc.key)
		c.warnf("rediscache: redis failed, serving from the loader", "op", opGetOrLoad, "key", lc.key, "error", err)
		return lc.fallback(ctx, retried)
	}
	return lc.shared(ctx, lc.flightKey(), modeLoad, retried)
}

// flightKey is the key of the call's shared load: its stored key, and its
// generation, so a call that expects a newer generation never joins a load
// begun under an older one.
func (lc *loadCall[T]) flightKey() string {
	if lc.gen == 0 {
		return lc.k
	}
	return lc.k + "\x00" + strconv.FormatUint(lc.gen, 10)
}

// fallback serves the loader's value without Redis (it is failing, or
// the breaker is open). locate validated the key before asking the
// breaker, so a call that fails with Redis up fails the same way during an
// outage.
func (lc *loadCall[T]) fallback(ctx context.Context, retried bool) (T, Source, error, bool) {
	lc.c.ctr.add(&lc.c.ctr.fallbacks, EventFallback, lc.key, 1)
	return lc.shared(ctx, "\x00fallback:"+lc.k, modeFallback, retried)
}

// hit answers from a cached value: ErrNotFound for a negative entry, else
// v, starting an early refresh (XFetch) near its freshness end or a
// refresh past it (serving v stale).
func (lc *loadCall[T]) hit(ctx context.Context, v T, e envelope, negative bool) (T, Source, error) {
	c := lc.c
	c.ctr.hit(lc.key)
	if negative {
		c.ctr.add(&c.ctr.negativeHits, EventNegativeHit, lc.key, 1)
		var zero T
		return zero, SourceHit, ErrNotFound
	}
	if e.freshUntil == 0 {
		return v, SourceHit, nil
	}
	now := c.nowMs()
	if now >= e.freshUntil {
		c.ctr.add(&c.ctr.staleServed, EventStaleServed, lc.key, 1)
		lc.refresh(ctx, e)
		return v, SourceStale, nil
	}
	if c.xfetch(e.freshUntil, e.loadCost, now) && lc.refresh(ctx, e) {
		c.ctr.add(&c.ctr.earlyRefreshes, EventEarlyRefresh, lc.key, 1)
	}
	return v, SourceHit, nil
}

// xfetch decides a probabilistic early refresh (Vattani, Chierichetti and
// Lowenstein, VLDB 2015): refresh when now - delta*beta*ln(rand) reaches
// the expiry freshUntil, delta being how long the last load took
// (loadCost, µs).
func (c *Client) xfetch(freshUntil int64, loadCost uint32, nowMs int64) bool {
	beta := c.opt.EarlyRefreshBeta
	if beta <= 0 || loadCost == 0 {
		return false
	}
	deltaMs := float64(loadCost) / 1000
	return float64(nowMs)-deltaMs*beta*math.Log(1-mrand.Float64()) >= float64(freshUntil)
}

type loadMode uint8

const (
	modeLoad     loadMode = iota // lease, or wait for another process's value; then a guarded store
	modeFallback                 // Redis is failing: load only
)

// shared runs the call through the flight of flightKey: it starts the
// flight when none is running, then waits for its outcome, its own ctx,
// or LoadTimeout. A caller that joined the flight after the point its
// outcome is certified at gets again (unless retried).
func (lc *loadCall[T]) shared(ctx context.Context, flightKey string, mode loadMode, retried bool) (v T, src Source, err error, again bool) {
	c := lc.c
	f, joined, lead := c.flight.join(flightKey, c.opt.LoadTimeout)
	if lead && !lc.start(ctx, flightKey, f, mode) {
		return v, 0, opErr(opGetOrLoad, lc.key, ErrClosed), false
	}
	timeout := time.NewTimer(time.Until(f.deadline) + c.loadGrace())
	defer timeout.Stop()
	select {
	case <-f.done:
	case <-ctx.Done():
		return v, 0, opErr(opGetOrLoad, lc.key, ctx.Err()), false
	case <-timeout.C:
		return v, 0, opErr(opGetOrLoad, lc.key, errLoadTimeout), false
	}
	if !retried && !f.takes(joined) {
		return v, 0, nil, true
	}
	err = f.err
	if err != nil && errors.Is(err, context.Canceled) && c.bg.ctx.Err() != nil && ctx.Err() == nil {
		err = opErr(opGetOrLoad, lc.key, ErrClosed) // Close cancelled the load, not the caller
	}
	r, ok := f.val.(loaded[T])
	if !ok && f.val != nil {
		err = errOtherType
	}
	src = f.src
	if mode == modeFallback && src != 0 {
		src = SourceFallback
	}
	return r.v, src, err, false
}

// start runs the flight f in a goroutine of its own (one per shared load,
// whoever waits for it), on a context detached from the caller's
// cancellation (its values kept), bounded by LoadTimeout and cancelled by
// Close. It reports false, with f finished, when the Client is closed.
func (lc *loadCall[T]) start(ctx context.Context, flightKey string, f *flight, mode loadMode) bool {
	c := lc.c
	lctx, cancel := c.bg.detach(ctx, f.deadline)
	l := lc.heap() // the goroutine's own: lc stays on its caller's stack
	started := c.bg.goRun(func() {
		defer cancel()
		var o outcome
		defer func() { c.flight.finish(flightKey, f, o.val, o.src, o.err, o.cert) }()
		defer func() {
			if r := recover(); r != nil { // a bug of ours: fail the callers, not the process
				o = outcome{err: newLoaderPanic(r), cert: math.MaxUint64}
			}
		}()
		if mode == modeFallback {
			cert := f.mark()
			v, _, err := callLoader(lctx, c, l.key, false, l.load)
			o = outcome{val: loaded[T]{v}, src: SourceFallback, err: err, cert: cert}
			return
		}
		o = l.fly(lctx, f)
	})
	if !started {
		cancel()
		c.flight.finish(flightKey, f, nil, 0, ErrClosed, math.MaxUint64)
	}
	return started
}

// loadGrace is how long past a load's LoadTimeout its callers still wait,
// so a loader that honours its context returns its own error to them:
// a tenth of LoadTimeout, at most 100ms.
func (c *Client) loadGrace() time.Duration { return min(c.opt.LoadTimeout/10, 100*time.Millisecond) }

// outcome is what a flight hands its callers.
type outcome struct {
	val  any
	src  Source
	err  error
	cert uint64
}

// fly is the body of a shared load: take the key's lease (or find the
// value another load stored), load, store guarded by the lease.
func (lc *loadCall[T]) fly(ctx context.Context, f *flight) outcome {
	a := lc.acquire(ctx, f)
	if a.found {
		return outcome{val: loaded[T]{a.v}, src: SourceHit, err: a.err, cert: a.cert}
	}
	return lc.loadAndStore(ctx, f, a)
}

// acquired is what acquire found.
type acquired[T any] struct {
	// guard is the header the store must find at the key: our lease, or a
	// value of ours that is not a T (overwritten); "" means do not store.
	guard string
	lease bool        // guard is our lease: extend it while loading, release it on failure
	vers  tagVersions // of the call's tags, read before the loader
	found bool        // v (or err, ErrNotFound) was stored by someone else
	v     T
	err   error
	cert  uint64
	gone  bool // wait: the lease we waited on went without a value
}

// acquire writes a lease into the missing key (SET NX PX, in one pipeline
// with a re-read of the key), or finds what is there: a value another load
// or a Set stored (used as is), another process's lease (its value is
// waited for up to LockTTL), or bytes it cannot read as a T: a value of
// ours is overwritten under a guard, foreign bytes and counters never are.
// A failure of Redis means load without storing.
func (lc *loadCall[T]) acquire(ctx context.Context, f *flight) acquired[T] {
	c := lc.c
	lease := newLease()
	var deadline time.Time
	if c.opt.LockTTL > 0 {
		deadline = time.Now().Add(c.opt.LockTTL)
	}
	for range 3 {
		if _, ok := c.brk.allow(); !ok { // then one round trip on k, which reports
			return acquired[T]{}
		}
		cert := f.mark()
		pipe := c.one.Pipeline()
		setnx := pipe.SetNX(ctx, lc.k, lease, c.leaseTTL())
		get := pipe.Get(ctx, lc.k)
		var readTags func() (tagVersions, error)
		if len(lc.tags) > 0 {
			// Read before the loader runs: an InvalidateTags after this
			// makes what the load stores a miss.
			readTags = c.queueTagVersions(ctx, pipe, lc.tags)
		}
		start := mono()
		_, err := execPipe(ctx, pipe)
		if errors.Is(err, redis.Nil) {
			err = nil
		}
		c.observe(lc.k, start, err)
		var vers tagVersions
		if readTags != nil {
			vers, _ = readTags() // none: nothing is stored
		}
		ok, err := setnx.Result()
		switch {
		case err != nil:
			c.ctr.fail(lc.key) // the load goes on without a lease: nothing is stored
			c.warnf("rediscache: taking a load's lease failed", "key", lc.key, "error", err)
			return acquired[T]{}
		case ok:
			return acquired[T]{guard: lease, lease: true, vers: vers}
		}
		b, err := get.Bytes()
		if err != nil {
			continue // gone again since the SET: try once more
		}
		a, waitFor := lc.found(ctx, b, cert, vers)
		if !waitFor {
			return a
		}
		if deadline.IsZero() {
			return acquired[T]{} // LockTTL -1: the guard holds, only the waiting is off
		}
		if a = lc.wait(ctx, f, deadline); !a.gone {
			return a
		}
		// The lease went without a value: take it ourselves.
	}
	return acquired[T]{}
}

// found turns bytes read at the key into what acquire returns; waitFor is
// true when they are another load's lease. vers are the versions of the
// call's tags, read with the bytes; a value whose tags were invalidated is
// replaced, one whose tags cannot be checked is not stored over.
func (lc *loadCall[T]) found(ctx context.Context, b []byte, cert uint64, vers tagVersions) (a acquired[T], waitFor bool) {
	a.vers = vers
	e, kind, err := lc.c.decodeStored(b, &a.v, lc.gen)
	if (err == nil || errors.Is(err, errNegative)) && len(e.tags) > 0 {
		known := make(tagVersions, len(vers))
		for t, v := range vers {
			known[t] = v
		}
		current, terr := lc.c.tagsCurrent(ctx, e, known)
		switch {
		case terr != nil:
			return acquired[T]{}, false
		case !current:
			err = errTagged
		}
	}
	switch {
	case errors.Is(err, errTagged):
		a.guard = e.header() // a tag of it was invalidated: replace it
	case errors.Is(err, errOldGeneration):
		a.guard = e.header() // invalidated by InvalidateNamespace: replace it
	case err == nil:
		a.found, a.cert = true, cert
	case errors.Is(err, errNegative):
		a.found, a.cert, a.err = true, cert, ErrNotFound
	case kind == storedLease:
		return a, true
	case kind == storedValue:
		a.guard = e.header() // ours, but not a T (a changed type): replace it
	}
	return a, false
}

// wait polls for the value another process is loading, with backoff (5ms
// doubling to 100ms), until it appears, the lease disappears (gone), the
// deadline or a failure.
func (lc *loadCall[T]) wait(ctx context.Context, f *flight, deadline time.Time) acquired[T] {
	c := lc.c
	delay := 5 * time.Millisecond
	timer := time.NewTimer(delay)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return acquired[T]{}
		case <-timer.C:
		}
		cert := f.mark()
		start := mono()
		// A pipeline: go-redis's client-side cache (LocalCache) does not
		// answer it from memory, so the poll sees Redis.
		pipe := c.one.Pipeline()
		get := pipe.Get(ctx, lc.k)
		_, _ = execPipe(ctx, pipe)
		b, err := get.Bytes()
		switch {
		case errors.Is(err, redis.Nil):
			c.observe(lc.k, start, nil)
			return acquired[T]{gone: true}
		case err != nil:
			c.observe(lc.k, start, err)
			return acquired[T]{}
		}
		c.observe(lc.k, start, nil)
		// The tags' versions are read again (nil): those read with the
		// lease predate cert, and a value certified at cert must be
		// checked against versions at least as new.
		if a, waitFor := lc.found(ctx, b, cert, nil); !waitFor {
			if !a.found {
				a.guard = "" // not what we waited for: load, don't overwrite
			}
			return a
		}
		remaining := time.Until(deadline)
		if remaining <= 0 {
			return acquired[T]{}
		}
		delay = min(2*delay, 100*time.Millisecond, remaining)
		timer.Reset(delay)
	}
}

// leaseTTL is the lifetime of a load's lease; it is extended while the
// loader runs.
func (c *Client) leaseTTL() time.Duration {
	if c.opt.LockTTL > 0 {
		return c.opt.LockTTL
	}
	return DefaultLockTTL
}

// loadAndStore calls the loader and stores its value (or a negative entry
// for ErrNotFound) guarded by a.guard. The outcome is certified at the
// store when it was written, else at the loader call.
func (lc *loadCall[T]) loadAndStore(ctx context.Context, f *flight, a acquired[T]) outcome {
	c := lc.c
	var keep func()
	if a.lease {
		keep = lc.keepLease(a.guard)
	}
	cert := f.mark()
	v, cost, err := callLoader(ctx, c, lc.key, false, lc.load)
	if keep != nil {
		keep()
	}
	o := outcome{val: loaded[T]{v}, src: SourceLoaded, err: err, cert: cert}
	if err != nil && !errors.Is(err, ErrNotFound) {
		o.cert = math.MaxUint64 // an error is no stale value: every caller takes it
	}
	if a.guard == "" {
		return o
	}
	e, ttl, ok := c.loadedEnvelope(lc.key, lc.gen, v, err, cost, lc.ttl, lc.tags, a.vers)
	if !ok {
		if a.lease {
			c.releaseLease(ctx, lc.k, a.guard)
		}
		return o
	}
	storeCert := f.mark()
	// A stored value certifies the outcome at the store: nothing removed it
	// from the key until then. A tagged one does not: an InvalidateTags
	// leaves the key alone, so the outcome stays certified at the loader
	// call, and a caller that joined after it starts over.
	if c.storeGuarded(ctx, lc.key, lc.k, a.guard, e, ttl) && len(lc.tags) == 0 {
		o.cert = storeCert
	}
	return o
}

// loadedEnvelope returns what a load stores for the loader's result and
// for how long: the value, fresh for ttl and kept StaleTTL more; a
// negative entry for ErrNotFound (unless NegativeTTL is -1); nil for any
// other error, or a value that cannot be encoded or is over MaxValueSize
// as stored (counted as an error). The payload is compressed as
// Options.Compression says (see Client.pack).
func (c *Client) loadedEnvelope(key string, gen uint64, v any, err error, cost time.Duration, ttl time.Duration, tags []string, vers tagVersions) (envelope, time.Duration, bool) {
	now := time.Now()
	var section []byte
	if len(tags) > 0 {
		for _, t := range tags {
			if _, ok := vers[t]; !ok {
				return envelope{}, 0, false // a version not read: nothing it could be checked by
			}
		}
		section = appendTags(nil, tags, vers)
	}
	switch {
	case errors.Is(err, ErrNotFound):
		if c.opt.NegativeTTL <= 0 {
			return envelope{}, 0, false
		}
		return envelope{flags: flagNegative, created: now.UnixMilli(), stamp: newStamp(), gen: gen,
			expires: now.Add(c.opt.NegativeTTL).UnixMilli(), tags: section}, c.opt.NegativeTTL, true
	case err != nil:
		return envelope{}, 0, false
	}
	p, flags, merr := c.encode(v, len(section))
	if merr != nil {
		c.ctr.fail(key)
		return envelope{}, 0, false
	}
	return envelope{
		flags:      flags,
		tags:       section,
		created:    now.UnixMilli(),
		freshUntil: now.Add(ttl).UnixMilli(),
		loadCost:   uint32(min(cost.Microseconds(), math.MaxUint32)),
		stamp:      newStamp(),
		gen:        gen,
		expires:    now.Add(ttl + c.opt.StaleTTL).UnixMilli(),
		payload:    p,
	}, ttl + c.opt.StaleTTL, true
}

// storeGuarded writes e at stored key k for ttl if k still starts with
// guard, and reports whether it did. A refused store (the key was written
// or removed meanwhile) is counted in Stats.StoresRefused; a failure is
// counted and logged, not returned: the caller already has its value, and
// a lease not released expires.
func (c *Client) storeGuarded(ctx context.Context, key, k, guard string, e envelope, ttl time.Duration) bool {
	if _, ok := c.brk.allow(); !ok { // then one round trip on k, which reports
		return false
	}
	if c.near != nil {
		c.near.written(k)
		defer c.near.written(k)
	}
	// The load's own deadline may have passed (a loader that timed out):
	// the store must still go out, bounded on its own.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	start := mono()
	n, err := runScript(ctx, c.one, casSetScript, []string{k}, guard, encodeEnvelope(e), pxArg(ttl))
	c.observeOp(opSet, k, start, err)
	c.countStore(key, n, err)
	return err == nil && n == 1
}

// releaseLease deletes our lease at k after a load that stores nothing,
// so the next miss loads at once instead of waiting for it to expire.
func (c *Client) releaseLease(ctx context.Context, k, lease string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	start := mono()
	_, err := runScript(ctx, c.one, casDelScript, []string{k}, lease)
	c.observe(k, start, err)
}

// keepLease extends the lease at the call's key every half leaseTTL while
// the loader runs, so a load slower than LockTTL still holds the key when
// it stores; the returned func stops it.
func (lc *loadCall[T]) keepLease(lease string) (stop func()) {
	c, k := lc.c, lc.k
	ttl := c.leaseTTL()
	return c.every(ttl/2, func(ctx context.Context) bool {
		n, err := runScript(ctx, c.one, casPExpireScript, []string{k}, lease, pxArg(ttl))
		return err == nil && n == 1
	})
}

// refresh starts one bounded background load of the call's key that
// stores only while the key still holds the value e it refreshes, unless
// a refresh of the key is running here, the Client is busy or closed. It
// reports whether it started. Across processes, a short lock
// (key + "\x00lock", LockTTL) lets one process refresh at a time. The
// refresh runs on ctx's values (a trace, say) but not its cancellation,
// bounded by LoadTimeout and cancelled by Close.
func (lc *loadCall[T]) refresh(ctx context.Context, e envelope) bool {
	c := lc.c
	flightKey := "\x00refresh:" + lc.k
	if c.flight.get(flightKey) != nil {
		return false
	}
	l := lc.heap() // the goroutine's own: lc stays on its caller's stack
	return c.bg.tryGo(func() {
		f, _, lead := c.flight.join(flightKey, c.opt.LoadTimeout)
		if !lead {
			return
		}
		defer c.flight.finish(flightKey, f, nil, 0, nil, 0)
		ctx, cancel := c.bg.detach(ctx, time.Now().Add(c.opt.LoadTimeout))
		defer cancel()
		l.refreshNow(ctx, e.header())
	})
}

// refreshNow is the body of a refresh of a value whose header is guard.
func (lc *loadCall[T]) refreshNow(ctx context.Context, guard string) {
	c := lc.c
	lockKey, token := lc.k+"\x00lock", ""
	if c.opt.LockTTL > 0 {
		token = newLease()
		start := mono()
		ok, err := c.one.SetNX(ctx, lockKey, token, c.opt.LockTTL).Result()
		c.observe(lockKey, start, err)
		if err != nil || !ok {
			return // another process is refreshing it
		}
	}
	vers, verr := c.writeTagVersions(ctx, lc.tags) // before the loader; none: nothing is stored
	if verr != nil {
		vers = nil
	}
	v, cost, err := callLoader(ctx, c, lc.key, true, lc.load)
	var cmds []*guardedCmd
	e, ttl, stores := c.loadedEnvelope(lc.key, lc.gen, v, err, cost, lc.ttl, lc.tags, vers)
	if stores {
		cmds = append(cmds, &guardedCmd{s: casSetScript, keys: []string{lc.k}, args: []any{guard, encodeEnvelope(e), pxArg(ttl)}})
	}
	if token != "" {
		cmds = append(cmds, &guardedCmd{s: casDelScript, keys: []string{lockKey}, args: []any{token}})
	}
	if len(cmds) == 0 {
		return
	}
	if _, ok := c.brk.allow(); !ok { // then one round trip, which reports
		return
	}
	if stores && c.near != nil {
		c.near.written(lc.k)
		defer c.near.written(lc.k)
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	start := mono()
	execGuarded(sctx, c.one, cmds)
	if !stores {
		c.observe(lockKey, start, cmds[0].cmd.Err())
		return
	}
	n, err := cmds[0].result()
	c.observeOp(opSet, lc.k, start, err)
	c.countStore(lc.key, n, err)
}

// countStore counts the result of a guarded store: a set, a refused store
// or an error.
func (c *Client) countStore(key string, n int64, err error) {
	switch {
	case err != nil:
		c.ctr.fail(key)
		c.warnf("rediscache: storing a loaded value failed", "key", key, "error", err)
	case n == 0:
		c.ctr.add(&c.ctr.storesRefused, EventStoreRefused, key, 1)
	default:
		c.ctr.set(key)
	}
}

// callLoader runs load for logical key (refresh: in the background),
// counting it, reporting it to the observers, and turning a panic into a
// *LoaderPanicError.
func callLoader[T any](ctx context.Context, c *Client, key string, refresh bool, load func(context.Context) (T, error)) (v T, cost time.Duration, err error) {
	c.ctr.add(&c.ctr.loads, EventLoad, key, 1)
	if o := c.ctr.obs.Load(); o != nil {
		call := c.newCall("load", key, 1)
		call.Refresh = refresh
		ctx = o.start(ctx, call)
		defer func() { call.Err = err; o.end(ctx, call) }() // after the recover below
	}
	start := mono()
	defer func() {
		if r := recover(); r != nil {
			err = newLoaderPanic(r)
			c.ctr.add(&c.ctr.loadErrors, EventLoadError, key, 1)
		}
	}()
	v, err = load(ctx)
	cost = mono() - start
	if err != nil && !errors.Is(err, ErrNotFound) {
		c.ctr.add(&c.ctr.loadErrors, EventLoadError, key, 1)
	}
	return v, cost, err
}
