package rediscache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"time"
)

// GetManyOrLoad is the batch form of [GetOrLoad]. It reads every key in one
// batch ([Client.MGet]: one round trip per node), calls load once with only
// the keys that missed, stores what load returns for ttl (0: each key's
// namespace TTL or DefaultTTL), caches every missing key load did not
// return as not found for Options.NegativeTTL, and returns the union: a map
// holding the keys that exist. Keys cached as not found are absent without
// calling load.
//
// Concurrent calls of one Client whose key sets overlap never load the same
// key twice: a key already being loaded by another call is waited for
// instead. The load runs detached from the caller's cancellation, bounded
// by LoadTimeout; the caller leaves on its own ctx with the keys it has.
// Entries are served stale within Options.StaleTTL like GetOrLoad's (one
// background load per call refreshes a call's stale keys); when
// Redis fails for some keys or the breaker is open, those keys are loaded
// and not stored (fail open).
//
// Errors: invalid input ([ErrInvalidKey], [ErrInvalidTTL], [ErrInvalidValue]
// for a nil load, [ErrNilContext], [ErrClosed]) returns before anything is
// sent. A load error (or panic, [ErrLoaderPanic]) is returned with the
// values found so far; nothing it covers is cached. If ctx ends first,
// GetManyOrLoad returns what it has and ctx's error.
func GetManyOrLoad[T any](ctx context.Context, c *Client, keys []string, ttl time.Duration, load func(ctx context.Context, missing []string) (map[string]T, error)) (map[string]T, error) {
	const op = "getmanyorload"
	if load == nil {
		return nil, opErr(op, "", errNilLoader)
	}
	if ttl < 0 {
		return nil, opErr(op, "", ErrInvalidTTL)
	}
	out := make(map[string]T, len(keys))
	var (
		raw     [][]byte
		err     error
		be      *BatchError
		missing []string
		stale   []string
		noStore = map[string]bool{} // keys whose Redis read failed or was skipped: load, don't store
	)
	if err := c.ready(ctx); err != nil {
		return nil, opErr(op, "", err)
	}
	if !c.brk.allow() {
		for _, k := range keys {
			if _, err := c.storageKey(k); err != nil {
				return nil, opErr(op, k, err)
			}
			noStore[k] = true
		}
		raw = make([][]byte, len(keys))
	} else {
		var b *batch
		if b, err = c.mapBatch(ctx, op, keys); err == nil {
			raw, err = c.mgetBatch(ctx, b, true)
		}
	}
	switch {
	case err == nil:
	case errors.As(err, &be):
		for k := range be.Failed {
			noStore[k] = true
		}
	default:
		return nil, err
	}
	if len(keys) == 0 {
		return out, nil
	}
	now := time.Now().UnixMilli()
	for i, key := range keys {
		if _, dup := out[key]; dup || noStore[key] {
			continue
		}
		if raw[i] == nil {
			c.ctr.miss(key)
			missing = append(missing, key)
			continue
		}
		v, state := decodeForBatch[T](c, raw[i], now)
		switch state {
		case entryFresh:
			c.ctr.hit(key)
			out[key] = v
		case entryStale:
			c.ctr.hit(key)
			out[key] = v
			c.ctr.staleServed.Add(1)
			stale = append(stale, key)
		case entryNegative:
			c.ctr.hit(key)
			c.ctr.negativeHits.Add(1)
		case entryBad:
			c.ctr.fail(key)
			missing = append(missing, key)
		}
	}
	if len(stale) > 0 {
		refreshManyInBackground(c, stale, ttl, load)
	}
	for k := range noStore {
		missing = append(missing, k)
	}
	if len(missing) == 0 {
		return out, nil
	}
	slices.Sort(missing)
	missing = slices.Compact(missing)
	if len(noStore) > 0 {
		c.ctr.fallbacks.Add(uint64(len(noStore)))
		c.logf(slog.LevelWarn, "rediscache: redis failed for a batch, serving from the loader", "op", op, "keys", len(noStore))
	}

	own, waits := c.keyLoads.claim(missing)
	if len(own) > 0 {
		started := c.bg.goRun(func() {
			lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opt.LoadTimeout)
			defer cancel()
			stop := context.AfterFunc(c.bg.ctx, cancel)
			defer stop()
			loadBatch(lctx, c, own, ttl, load, noStore)
		})
		if !started {
			c.keyLoads.finish(own, nil, ErrClosed)
		}
	}
	var errs []error
	for _, w := range append(own, waits...) {
		select {
		case <-w.done:
		case <-ctx.Done():
			return out, opErr(op, "", ctx.Err())
		}
		if w.err != nil {
			if !slices.ContainsFunc(errs, func(e error) bool { return errors.Is(e, w.err) }) {
				errs = append(errs, w.err)
			}
			continue
		}
		if !w.found {
			continue
		}
		if v, ok := w.val.(T); ok {
			out[w.key] = v
		}
	}
	return out, errors.Join(errs...)
}

type entryState uint8

const (
	entryBad entryState = iota
	entryFresh
	entryStale
	entryNegative
)

func decodeForBatch[T any](c *Client, b []byte, nowMs int64) (v T, s entryState) {
	v, e, ok := decodeStored[T](c, b)
	switch {
	case !ok:
		return v, entryBad
	case e.flags&flagNegative != 0:
		return v, entryNegative
	case e.freshUntil != 0 && nowMs >= e.freshUntil:
		return v, entryStale
	}
	return v, entryFresh
}

// refreshManyInBackground starts one bounded background load of the stale
// keys that no other call of this Client is loading, unless the Client is
// busy or closed. Unlike GetOrLoad's refresh it takes no Redis lease: each
// process may refresh a stale batch once.
func refreshManyInBackground[T any](c *Client, keys []string, ttl time.Duration, load func(context.Context, []string) (map[string]T, error)) {
	c.bg.tryGo(func() {
		own, _ := c.keyLoads.claim(keys)
		if len(own) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(c.bg.ctx, c.opt.LoadTimeout)
		defer cancel()
		loadBatch(ctx, c, own, ttl, load, nil)
	})
}

// loadBatch calls load for the keys this call owns, stores the results and
// the negative entries, and hands every key's outcome to its waiters.
func loadBatch[T any](ctx context.Context, c *Client, own []*keyLoad, ttl time.Duration, load func(context.Context, []string) (map[string]T, error), noStore map[string]bool) {
	keys := make([]string, len(own))
	for i, w := range own {
		keys[i] = w.key
	}
	c.ctr.loads.Add(1)
	start := time.Now()
	vals, err := func() (m map[string]T, err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("%w: %v", ErrLoaderPanic, r)
			}
		}()
		return load(ctx, keys)
	}()
	cost := time.Since(start)
	if err != nil {
		c.ctr.loadErrors.Add(1)
		c.keyLoads.finish(own, nil, err)
		return
	}
	found := make(map[string]any, len(vals))
	values := map[string][]byte{}
	negatives := map[string][]byte{}
	now := time.Now()
	for _, k := range keys {
		v, ok := vals[k]
		if ok {
			found[k] = v
		}
		if noStore[k] {
			continue
		}
		switch {
		case ok:
			p, err := c.opt.Codec.Marshal(v)
			if err != nil || c.opt.MaxValueSize > 0 && len(p)+envHeaderSize > c.opt.MaxValueSize {
				continue
			}
			values[k] = encodeEnvelope(envelope{
				created:    now.UnixMilli(),
				freshUntil: now.Add(c.freshTTL(k, ttl)).UnixMilli(),
				loadCost:   uint32(min(cost.Microseconds(), math.MaxUint32)),
				payload:    p,
			})
		case c.opt.NegativeTTL > 0:
			negatives[k] = encodeEnvelope(envelope{flags: flagNegative, created: now.UnixMilli()})
		}
	}
	// Store before handing the values out, so a call that starts after this
	// one returns finds them in Redis.
	defer c.keyLoads.finishFound(own, found)
	if len(values) > 0 {
		if err := c.storeBatch(ctx, values, ttl, c.opt.StaleTTL); err != nil {
			c.logf(slog.LevelWarn, "rediscache: storing loaded values failed", "error", err)
		}
	}
	if len(negatives) > 0 {
		if err := c.storeBatch(ctx, negatives, c.opt.NegativeTTL, 0); err != nil {
			c.logf(slog.LevelWarn, "rediscache: storing negative entries failed", "error", err)
		}
	}
}

// freshTTL is the freshness of a loaded key: ttl, or its namespace TTL or
// DefaultTTL for 0.
func (c *Client) freshTTL(key string, ttl time.Duration) time.Duration {
	if ttl > 0 {
		return ttl
	}
	d, _ := c.ttl(key, 0)
	return d
}

// storeBatch writes stored envelopes with each key's TTL plus extra.
func (c *Client) storeBatch(ctx context.Context, items map[string][]byte, ttl, extra time.Duration) error {
	keys, b, err := newSetBatch(ctx, c, "store", items, ttl)
	if err != nil || b == nil {
		return err
	}
	vals := make([][]byte, len(keys))
	ttls := make([]time.Duration, len(keys))
	for i, k := range keys {
		vals[i] = items[k]
		d, err := c.ttl(k, ttl)
		if err != nil {
			return err
		}
		ttls[i] = d + extra
	}
	b.set(ctx, vals, ttls)
	return b.err()
}

// keyLoad is one key being loaded by a GetManyOrLoad call.
type keyLoad struct {
	key   string
	done  chan struct{} // closed when val, found and err are set
	val   any
	found bool
	err   error
}

// keyLoadSet registers the keys being loaded by batch calls, so that
// overlapping calls share them.
type keyLoadSet struct {
	mu sync.Mutex
	m  map[string]*keyLoad
}

// claim returns new keyLoads for the keys nobody is loading (the caller
// must finish them) and the existing ones for the rest.
func (s *keyLoadSet) claim(keys []string) (own, waits []*keyLoad) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[string]*keyLoad)
	}
	for _, k := range keys {
		if w, ok := s.m[k]; ok {
			waits = append(waits, w)
			continue
		}
		w := &keyLoad{key: k, done: make(chan struct{})}
		s.m[k] = w
		own = append(own, w)
	}
	return own, waits
}

// finish completes keyLoads with one outcome.
func (s *keyLoadSet) finish(ws []*keyLoad, val any, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range ws {
		w.val, w.err = val, err
		delete(s.m, w.key)
		close(w.done)
	}
}

// finishFound completes keyLoads with the loader's values.
func (s *keyLoadSet) finishFound(ws []*keyLoad, found map[string]any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range ws {
		w.val, w.found = found[w.key]
		delete(s.m, w.key)
		close(w.done)
	}
}
