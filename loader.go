package rediscache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	mrand "math/rand/v2"
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

// String returns "hit", "loaded", "stale" or "fallback".
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
//   - Across processes, the first to miss takes a short Redis lease
//     (Options.LockTTL) and the others wait for its value.
//   - A load returning (or wrapping) [ErrNotFound] is cached for
//     Options.NegativeTTL: GetOrLoad returns ErrNotFound without calling
//     load again until then. Any other load error is returned and nothing
//     is cached. A load that panics returns [ErrLoaderPanic].
//   - A hit near expiry may start a background refresh (XFetch,
//     Options.EarlyRefreshBeta); with Options.StaleTTL a stale entry is
//     served at once while a background load refreshes it.
//   - When Redis fails or the circuit breaker is open, GetOrLoad returns
//     the loader's value with a nil error (fail open).
//
// Errors: [ErrInvalidKey], [ErrInvalidTTL], [ErrInvalidValue] (nil load),
// [ErrClosed] (also for a load Close cancels), [ErrNilContext], ctx.Err()
// when ctx ends first, or the loader's error.
func GetOrLoad[T any](ctx context.Context, c *Client, key string, ttl time.Duration, load func(context.Context) (T, error)) (T, error) {
	v, _, err := GetOrLoadWithSource(ctx, c, key, ttl, load)
	return v, err
}

var errNilLoader = fmt.Errorf("%w: nil loader", ErrInvalidValue)

// GetOrLoadWithSource is [GetOrLoad] that also reports where the answer
// came from, for per-call logging or metrics.
func GetOrLoadWithSource[T any](ctx context.Context, c *Client, key string, ttl time.Duration, load func(context.Context) (T, error)) (T, Source, error) {
	const op = "getorload"
	var zero T
	if load == nil {
		return zero, 0, opErr(op, key, errNilLoader)
	}
	ttl, err := c.ttl(key, ttl)
	if err != nil {
		return zero, 0, opErr(op, key, err)
	}
	if err := c.ready(ctx); err != nil {
		return zero, 0, opErr(op, key, err)
	}
	if !c.brk.allow() {
		return breakerOpenLoad(ctx, c, key, ttl, load)
	}
	k, err := c.mapKey(ctx, key)
	if err != nil {
		return zero, 0, opErr(op, key, err)
	}
	if !c.nodeAllows(ctx, k) {
		return breakerOpenLoad(ctx, c, key, ttl, load)
	}
	var seq uint64
	if c.near != nil {
		if ent, ok := c.near.load(k); ok && ent.live() {
			// A value kept as another type is read from Redis instead.
			if v, isT := ent.v.(T); isT || ent.negative {
				return answer(c, key, k, ttl, v, ent.negative, ent.freshUntil, ent.loadCost, load)
			}
		}
		seq = c.near.seq.Load()
	}
	b, err := c.get(ctx, k)
	switch {
	case err == nil:
		if v, e, ok := decodeStored[T](c, b); ok {
			negative := e.flags&flagNegative != 0
			if c.near != nil {
				var kept any
				if !negative {
					kept = v
				}
				c.near.store(k, c.nearEntryOf(e, kept), seq)
			}
			return answer(c, key, k, ttl, v, negative, e.freshUntil, e.loadCost, load)
		}
		c.ctr.fail(key) // undecodable: load and overwrite it
	case errors.Is(err, redis.Nil):
		c.ctr.miss(key)
	case ctx.Err() != nil:
		c.ctr.fail(key)
		return zero, 0, opErr(op, key, err)
	default:
		c.ctr.fail(key)
		c.logf(slog.LevelWarn, "rediscache: redis failed, serving from the loader", "op", op, "key", key, "error", err)
		return sharedLoad(ctx, c, key, "\x00fallback:"+k, ttl, load, modeFallback)
	}
	return sharedLoad(ctx, c, key, k, ttl, load, modeForeground)
}

// breakerOpenLoad serves the loader's value while the breaker is open. It
// still validates the key, so a call that fails with Redis up fails the
// same way during an outage.
func breakerOpenLoad[T any](ctx context.Context, c *Client, key string, ttl time.Duration, load func(context.Context) (T, error)) (T, Source, error) {
	k, err := c.storageKey(key)
	if err != nil {
		var zero T
		return zero, 0, opErr("getorload", key, err)
	}
	return sharedLoad(ctx, c, key, "\x00fallback:"+k, ttl, load, modeFallback)
}

// decodeStored decodes a stored envelope and, unless it is a negative
// entry, its payload as a T; ok is false when the bytes are not a
// rediscache value or not a T.
func decodeStored[T any](c *Client, b []byte) (v T, e envelope, ok bool) {
	e, err := decodeEnvelope(b)
	if err != nil {
		return v, e, false
	}
	if e.flags&flagNegative == 0 && c.opt.Codec.Unmarshal(e.payload, &v) != nil {
		return v, e, false
	}
	return v, e, true
}

// answer answers from a cached value: ErrNotFound for a negative entry,
// else v, starting an early refresh (XFetch) near freshUntil or a refresh
// past it (serving v stale).
func answer[T any](c *Client, key, k string, ttl time.Duration, v T, negative bool, freshUntil int64, loadCost uint32, load func(context.Context) (T, error)) (T, Source, error) {
	c.ctr.hit(key)
	if negative {
		c.ctr.negativeHits.Add(1)
		var zero T
		return zero, SourceHit, ErrNotFound
	}
	if freshUntil == 0 {
		return v, SourceHit, nil
	}
	now := time.Now().UnixMilli()
	if now >= freshUntil {
		c.ctr.staleServed.Add(1)
		refreshInBackground(c, key, k, ttl, load)
		return v, SourceStale, nil
	}
	if c.xfetch(freshUntil, loadCost, now) && refreshInBackground(c, key, k, ttl, load) {
		c.ctr.earlyRefreshes.Add(1)
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

// refreshInBackground starts one bounded background load of key unless
// the Client is busy or closed, and reports whether it started.
func refreshInBackground[T any](c *Client, key, k string, ttl time.Duration, load func(context.Context) (T, error)) bool {
	return c.bg.tryGo(func() {
		ctx, cancel := context.WithTimeout(c.bg.ctx, c.opt.LoadTimeout)
		defer cancel()
		_, _, _ = c.flight.Do(k, func() (any, error) {
			return loadAndStore(ctx, c, key, k, ttl, load, modeBackground)
		})
	})
}

type loadMode uint8

const (
	modeForeground loadMode = iota // lease, or wait for another process's value; then store
	modeBackground                 // lease or skip; then store
	modeFallback                   // Redis is failing: load only
)

// loaded is what a shared load hands every caller sharing it.
type loaded[T any] struct {
	v   T
	src Source
}

// sharedLoad runs one load per flight key for all concurrent callers of
// this Client. The load runs on a context detached from the caller's
// cancellation (its values kept), bounded by LoadTimeout and cancelled by
// Close; the caller waits for it or for its own ctx.
func sharedLoad[T any](ctx context.Context, c *Client, key, flightKey string, ttl time.Duration, load func(context.Context) (T, error), mode loadMode) (T, Source, error) {
	var zero T
	if mode == modeFallback {
		c.ctr.fallbacks.Add(1)
	}
	ch := make(chan loaded[T], 1)
	errc := make(chan error, 1)
	started := c.bg.goRun(func() {
		run := func() (any, error) {
			lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opt.LoadTimeout)
			defer cancel()
			stop := context.AfterFunc(c.bg.ctx, cancel)
			defer stop()
			return loadAndStore(lctx, c, key, flightKey, ttl, load, mode)
		}
		val, err, _ := c.flight.Do(flightKey, run)
		for val == nil && err == nil {
			// We joined a background refresh that skipped its load because
			// another process holds the lease: run our own (which never
			// returns nil, nil).
			val, err, _ = c.flight.Do(flightKey, run)
		}
		r, ok := val.(loaded[T])
		if !ok && err == nil {
			// The same key was loaded as another type by a concurrent caller.
			err = fmt.Errorf("%w: key loaded concurrently as another type", ErrCorruptValue)
		}
		ch <- r
		errc <- err
	})
	if !started {
		return zero, 0, opErr("getorload", key, ErrClosed)
	}
	select {
	case r := <-ch:
		err := <-errc
		if err != nil && errors.Is(err, context.Canceled) && c.bg.ctx.Err() != nil && ctx.Err() == nil {
			// Close cancelled the load, not the caller.
			err = opErr("getorload", key, ErrClosed)
		}
		if mode == modeFallback && r.src != 0 {
			r.src = SourceFallback
		}
		return r.v, r.src, err
	case <-ctx.Done():
		return zero, 0, opErr("getorload", key, ctx.Err())
	}
}

// loadAndStore is the body of a shared load: lease, load, store. A miss
// with the lease costs three round trips after the first GET: the lease
// and a re-read of the key in one pipeline, the loader, then the value and
// the lease's release in one pipeline.
func loadAndStore[T any](ctx context.Context, c *Client, key, k string, ttl time.Duration, load func(context.Context) (T, error), mode loadMode) (any, error) {
	var held *lease
	switch {
	case mode != modeFallback && c.opt.LockTTL > 0:
		l, v, found, err := acquireOrWait[T](ctx, c, k, mode)
		switch {
		case found:
			return loaded[T]{v: v, src: SourceHit}, err
		case l == nil && mode == modeBackground:
			return nil, nil // another process is refreshing it
		}
		held = l
	case mode == modeForeground:
		// A load that finished between our miss and this flight, here or in
		// another process, already stored the value: use it.
		if v, found, err := recheck[T](ctx, c, k); found {
			return loaded[T]{v: v, src: SourceHit}, err
		}
	}
	v, cost, err := callLoader(ctx, c, load)
	if errors.Is(err, ErrNotFound) {
		var neg *envelope
		if mode != modeFallback && c.opt.NegativeTTL > 0 {
			neg = &envelope{flags: flagNegative, created: time.Now().UnixMilli()}
		}
		c.storeAndRelease(ctx, key, k, neg, c.opt.NegativeTTL, held)
		return loaded[T]{src: SourceLoaded}, err
	}
	if err != nil {
		c.storeAndRelease(ctx, key, k, nil, 0, held)
		return loaded[T]{}, err
	}
	var e *envelope
	if mode != modeFallback {
		if p, err := c.opt.Codec.Marshal(v); err != nil {
			c.ctr.fail(key)
		} else if c.opt.MaxValueSize < 0 || len(p)+envHeaderSize <= c.opt.MaxValueSize {
			now := time.Now()
			e = &envelope{
				created:    now.UnixMilli(),
				freshUntil: now.Add(ttl).UnixMilli(),
				loadCost:   uint32(min(cost.Microseconds(), math.MaxUint32)),
				payload:    p,
			}
		}
	}
	c.storeAndRelease(ctx, key, k, e, ttl+c.opt.StaleTTL, held)
	return loaded[T]{v: v, src: SourceLoaded}, nil
}

// recheck reads k once more before loading.
func recheck[T any](ctx context.Context, c *Client, k string) (v T, found bool, err error) {
	if !c.brk.allow() {
		return v, false, nil
	}
	start := mono()
	b, gerr := c.one.Get(ctx, k).Bytes()
	if errors.Is(gerr, redis.Nil) {
		c.observe(k, start, nil)
		return v, false, nil
	}
	c.observe(k, start, gerr)
	if gerr != nil {
		return v, false, nil
	}
	return decodeLoaded[T](c, b)
}

// decodeLoaded decodes a value another load stored: found is false when it
// cannot be read as a T.
func decodeLoaded[T any](c *Client, b []byte) (v T, found bool, err error) {
	v, e, ok := decodeStored[T](c, b)
	switch {
	case !ok:
		return v, false, nil
	case e.flags&flagNegative != 0:
		return v, true, ErrNotFound
	}
	return v, true, nil
}

// callLoader runs load, counting it and turning a panic into an error.
func callLoader[T any](ctx context.Context, c *Client, load func(context.Context) (T, error)) (v T, cost time.Duration, err error) {
	c.ctr.loads.Add(1)
	start := mono()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrLoaderPanic, r)
			c.ctr.loadErrors.Add(1)
		}
	}()
	v, err = load(ctx)
	cost = mono() - start
	if err != nil && !errors.Is(err, ErrNotFound) {
		c.ctr.loadErrors.Add(1)
	}
	return v, cost, err
}

// storeAndRelease writes e (when non-nil) for ttl and releases held (when
// non-nil) in one pipeline. A failure is counted and logged, not returned:
// the caller already has its value, and a lease not released expires.
func (c *Client) storeAndRelease(ctx context.Context, key, k string, e *envelope, ttl time.Duration, held *lease) {
	if (e == nil && held == nil) || !c.brk.allow() {
		return
	}
	if e != nil && c.near != nil {
		c.near.written(k)
	}
	// The load's own deadline may have passed (a loader that timed out):
	// the release must still go out, bounded on its own.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	pipe := c.one.Pipeline()
	var set *redis.StatusCmd
	if e != nil {
		set = pipe.Set(ctx, k, encodeEnvelope(*e), ttl)
	}
	if held != nil {
		pipe.Eval(ctx, releaseSource, []string{held.key}, held.token)
	}
	start := mono()
	_, err := pipe.Exec(ctx)
	c.observeOp(opSet, k, start, err)
	if set == nil {
		return
	}
	if err := set.Err(); err != nil {
		c.ctr.fail(key)
		c.logf(slog.LevelWarn, "rediscache: storing a loaded value failed", "key", key, "error", err)
		return
	}
	c.ctr.set(key)
}

// lease is a cross-process lease this process holds: the lease key and the
// token that proves it is ours.
type lease struct{ key, token string }

// releaseSource deletes a lease only if it still holds our token, so a slow
// loader never deletes a lease another process took after ours expired.
const releaseSource = `if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`

// acquireOrWait takes the cross-process lease for k, or waits for the
// process holding it to store the value. In foreground mode the lease
// request goes with a re-read of k in one pipeline, so a value stored since
// our miss is used at once. It returns the lease when it holds it; found
// with the value (or ErrNotFound) when another load stored it; neither when
// the wait timed out or Redis failed, and then the caller loads without a
// lease. In background mode it never waits.
func acquireOrWait[T any](ctx context.Context, c *Client, k string, mode loadMode) (held *lease, v T, found bool, err error) {
	var tok [16]byte
	_, _ = rand.Read(tok[:])
	l := &lease{key: k + "\x00lock", token: hex.EncodeToString(tok[:])}
	deadline := time.Now().Add(c.opt.LockTTL)
	for {
		if !c.brk.allow() {
			return nil, v, false, nil
		}
		pipe := c.one.Pipeline()
		setnx := pipe.SetNX(ctx, l.key, l.token, c.opt.LockTTL)
		var get *redis.StringCmd
		if mode == modeForeground {
			get = pipe.Get(ctx, k)
		}
		start := mono()
		_, perr := pipe.Exec(ctx)
		if errors.Is(perr, redis.Nil) {
			perr = nil
		}
		c.observe(k, start, perr)
		ok, serr := setnx.Result()
		if serr != nil {
			return nil, v, false, nil
		}
		if get != nil {
			if b, gerr := get.Bytes(); gerr == nil {
				if v, found, err := decodeLoaded[T](c, b); found {
					if ok {
						c.storeAndRelease(ctx, "", k, nil, 0, l)
					}
					return nil, v, true, err
				}
			}
		}
		if ok {
			return l, v, false, nil
		}
		if mode == modeBackground {
			return nil, v, false, nil
		}
		v, found, err, lockGone := waitForValue[T](ctx, c, k, l.key, deadline)
		if found || !lockGone || time.Now().After(deadline) {
			return nil, v, found, err
		}
		// The holder let go without storing a value: try to take over.
	}
}

// waitForValue polls for the value another process is loading, with
// backoff, until it appears, the lease disappears, or the deadline.
func waitForValue[T any](ctx context.Context, c *Client, k, lockKey string, deadline time.Time) (v T, found bool, err error, lockGone bool) {
	delay := 5 * time.Millisecond
	timer := time.NewTimer(delay)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return v, false, nil, false
		case <-timer.C:
		}
		pipe := c.rdb.Pipeline()
		get := pipe.Get(ctx, k)
		exists := pipe.Exists(ctx, lockKey)
		start := mono()
		_, perr := pipe.Exec(ctx)
		if errors.Is(perr, redis.Nil) {
			perr = nil
		}
		c.observe(k, start, perr)
		if perr != nil {
			return v, false, nil, false
		}
		if b, gerr := get.Bytes(); gerr == nil {
			v, found, err := decodeLoaded[T](c, b)
			return v, found, err, false // not found: unreadable, load ourselves
		}
		if exists.Val() == 0 {
			return v, false, nil, true
		}
		remaining := time.Until(deadline)
		if remaining <= 0 {
			return v, false, nil, false
		}
		delay = min(2*delay, 100*time.Millisecond, remaining)
		timer.Reset(delay)
	}
}
