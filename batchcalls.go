package rediscache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// GetMany returns the values of the keys that exist, decoded as T, in a map
// keyed by the logical keys; a missing key is absent from the map, not an
// error, and duplicate keys are fine. It costs one round trip per node per
// 500 keys (MGET on one server, pipelined GETs on a cluster or ring, never
// a cross-slot MGET).
//
// Before anything is sent, a nil context, a closed Client or an invalid key
// returns a nil map and an [*OpError] wrapping [ErrNilContext], [ErrClosed]
// or [ErrInvalidKey]. An empty keys returns an empty map. When some keys
// fail (a node down, a Redis error after retries, a value that does not
// decode: [ErrCorruptValue], a namespace generation that cannot be read:
// [ErrGenerationUnknown]), GetMany returns the values it did read
// together with a [*BatchError] naming the failed keys; every key is then
// either in the map, a miss, or in BatchError.Failed.
func GetMany[T any](ctx context.Context, c *Client, keys []string, opts ...CallOption) (found map[string]T, err error) {
	if o := c.ctr.obs.Load(); o != nil {
		call := c.newBatchCall("getmany", keys)
		ctx = o.start(ctx, call)
		defer func() { call.Err, call.Hits = err, len(found); o.end(ctx, call) }()
	}
	o, err := parseCallOptions(opts)
	if err != nil {
		return nil, opErr("getmany", "", err)
	}
	b, err := c.newBatch(ctx, "getmany", keys)
	if err != nil {
		return nil, err
	}
	defer b.turn.release() // no keys, or all kept by the near cache: nothing sent
	if len(keys) == 0 {
		return map[string]T{}, nil
	}
	g := &getMany[T]{c: c, b: b, vals: make([]T, len(keys)), found: make([]bool, len(keys)), envs: make([]envelope, len(keys))}
	g.gens, g.genErrs = c.expectAll(ctx, keys)
	b.quiet = true            // counted here, once the tags are checked
	get, idx := b, []int(nil) // with LocalCache, get holds only the keys not kept locally: keys[idx[j]]
	if c.near != nil {
		g.marks, g.fresh = make([]nearMark, len(keys)), make([]bool, len(keys))
		for i, k := range b.ks {
			g.marks[i] = c.near.mark(k)
		}
		get, idx = c.nearMany(b, g.takeKept)
	}
	// With WithTags, the tags' versions are read beside the entries.
	var prefetch chan tagVersions
	if len(o.tags) > 0 && c.near == nil {
		prefetch = make(chan tagVersions, 1)
		go func() {
			vers, _ := c.readTagVersions(ctx, o.tags)
			prefetch <- vers
		}()
	}
	if len(get.keys) > 0 {
		get.get(ctx, func(j int, p []byte) error {
			i := j
			if idx != nil {
				i = idx[j]
			}
			return g.decode(i, p)
		})
	}
	var known tagVersions
	if prefetch != nil {
		known = <-prefetch
	}
	terr := g.checkTags(ctx, known)
	g.count(get)
	m := make(map[string]T)
	for i, ok := range g.found {
		if ok {
			m[keys[i]] = g.vals[i]
		}
	}
	err = get.err()
	if be, isBatch := errors.AsType[*BatchError](err); isBatch {
		be.Total = len(keys) // not only those sent
	}
	if terr != nil {
		err = errors.Join(err, terr)
	}
	return m, err
}

// getMany is one GetMany call: what it has read so far.
type getMany[T any] struct {
	c       *Client
	b       *batch
	gens    []uint64
	genErrs []error
	marks   []nearMark
	vals    []T
	found   []bool
	envs    []envelope // of found entries that carry tags: checked by checkTags
	// fresh marks the found entries read from Redis, to keep in the near
	// cache: one flag per key, since the chunks of a batch decode at once.
	fresh []bool
}

// takeKept takes the kept value of key i, if it is a T of the current
// generation.
func (g *getMany[T]) takeKept(i int, ent *nearEntry) bool {
	v, isT := ent.v.(T)
	if isT && g.genErrs[i] == nil && ent.env.gen == g.gens[i] {
		g.vals[i], g.found[i] = v, true
		g.envs[i] = ent.env
		return true
	}
	return false
}

// decode decodes the stored bytes p of key i.
func (g *getMany[T]) decode(i int, p []byte) error {
	c := g.c
	if g.genErrs[i] != nil {
		return g.genErrs[i]
	}
	e, _, err := c.decodeStored(p, &g.vals[i], g.gens[i])
	switch {
	case errors.Is(err, errNegative) || errors.Is(err, errLeaseOnly) || errors.Is(err, errOldGeneration):
		return nil // a miss here
	case err != nil:
		return err
	}
	g.found[i], g.envs[i] = true, e
	if c.near != nil {
		g.envs[i].tags = bytes.Clone(e.tags)
		g.fresh[i] = true
	}
	return nil
}

// checkTags drops the found entries one of whose tags was invalidated,
// reading the versions not in known in one round trip, then keeps the
// entries read from Redis in the near cache.
func (g *getMany[T]) checkTags(ctx context.Context, known tagVersions) error {
	var need []string
	seen := map[string]bool{}
	for i, ok := range g.found {
		if !ok {
			continue
		}
		eachTag(g.envs[i].tags, func(t []byte, _ uint64) bool {
			if _, have := known[string(t)]; !have && !seen[string(t)] {
				seen[string(t)] = true
				need = append(need, string(t))
			}
			return true
		})
	}
	var err error
	if len(need) > 0 {
		var got tagVersions
		if got, err = g.c.readTagVersions(ctx, need); err == nil {
			if known == nil {
				known = got
			} else {
				for t, v := range got {
					known[t] = v
				}
			}
		}
	}
	for i, ok := range g.found {
		if !ok || len(g.envs[i].tags) == 0 {
			continue
		}
		if err != nil { // unknown: not trusted
			g.found[i] = false
			continue
		}
		if current, _ := g.c.tagsCurrent(ctx, g.envs[i], known); !current {
			g.found[i] = false
		}
	}
	if err != nil {
		err = opErr("getmany", "", err)
	}
	if g.c.near != nil {
		for i, fresh := range g.fresh {
			if fresh && g.found[i] {
				g.c.near.store(g.b.ks[i], g.c.nearEntryOf(g.envs[i], g.vals[i]), g.marks[i])
			}
		}
	}
	return err
}

// count counts each key once: a hit, a miss, or (in get's BatchError) an
// error.
func (g *getMany[T]) count(get *batch) {
	failed := map[string]bool{}
	for _, f := range get.failed {
		failed[get.keys[f.i]] = true
	}
	for i, key := range g.b.keys {
		switch {
		case g.found[i]:
			g.c.ctr.hit(key)
		case !failed[key]:
			g.c.ctr.miss(key)
		}
	}
}

// SetMany stores every item for ttl, pipelining SET key value PX ttl (one
// round trip per node per 500 keys), so every key gets its TTL. A ttl of 0
// means each key's namespace TTL or DefaultTTL; TTLJitter is applied per
// key.
//
// Every key is validated and every value encoded before anything is sent:
// on a nil context, a closed Client, an invalid key, a negative ttl, a nil
// or unencodable value or one over MaxValueSize, nothing is written and the
// error is an [*OpError] wrapping [ErrNilContext], [ErrClosed],
// [ErrInvalidKey], [ErrInvalidTTL], [ErrInvalidValue] or [ErrValueTooLarge].
// An empty items writes nothing and returns nil. When some writes fail, the
// others are kept and SetMany returns a [*BatchError] naming the failed
// keys.
func SetMany[T any](ctx context.Context, c *Client, items map[string]T, ttl time.Duration, opts ...CallOption) (err error) {
	if o := c.ctr.obs.Load(); o != nil {
		call := newItemsCall(c, "setmany", items)
		ctx = o.start(ctx, call)
		defer func() { call.Err = err; o.end(ctx, call) }()
	}
	o, err := parseCallOptions(opts)
	if err != nil {
		return opErr("setmany", "", err)
	}
	keys, b, err := newSetBatch(ctx, c, "setmany", items, ttl)
	if err != nil || b == nil {
		return err
	}
	ttls, err := c.batchTTLs(b, ttl)
	if err != nil {
		return err
	}
	payloads := make([][]byte, len(keys))
	flags := make([]byte, len(keys))
	for i, key := range keys {
		if payloads[i], flags[i], err = c.marshal(items[key], o.tags); err != nil {
			return opErr("setmany", key, err)
		}
	}
	if b.turn, err = c.admit(ctx, ""); err != nil {
		return opErr("setmany", "", err)
	}
	// Past here every path reports to the Client's breaker: the tags'
	// round trip or the batch's.
	vers, err := c.writeTagVersions(ctx, o.tags)
	if err != nil {
		c.ctr.fail("")
		return opErr("setmany", "", err)
	}
	gens, _ := c.expectAll(ctx, keys) // unknown: 0, an entry nobody reads (it still replaces the old one)
	vals := make([][]byte, len(keys))
	for i := range keys {
		vals[i] = seal(payloads[i], flags[i], gens[i], ttls[i], o.tags, vers)
	}
	return c.setBatch(ctx, b, vals, ttls)
}

// newSetBatch checks a write batch and returns its keys in a fixed order,
// or a nil batch for an empty one. It does not ask the breaker: the caller
// does once every value is checked.
func newSetBatch[V any](ctx context.Context, c *Client, op string, items map[string]V, ttl time.Duration) ([]string, *batch, error) {
	if err := c.ready(ctx); err != nil {
		return nil, nil, opErr(op, "", err)
	}
	if ttl < 0 {
		return nil, nil, opErr(op, "", ErrInvalidTTL)
	}
	keys := slices.Sorted(maps.Keys(items))
	b, err := c.mapBatch(op, keys)
	if err != nil || len(keys) == 0 {
		return nil, nil, err
	}
	return keys, b, nil
}

// setBatch resolves every key's TTL and writes vals.
func (c *Client) setBatch(ctx context.Context, b *batch, vals [][]byte, ttls []time.Duration) error {
	c.nearWritten(b.ks)
	defer c.nearWritten(b.ks)
	b.set(ctx, vals, ttls)
	return b.err()
}

// batchTTLs resolves the TTL of every key of a write batch.
func (c *Client) batchTTLs(b *batch, ttl time.Duration) ([]time.Duration, error) {
	ttls := make([]time.Duration, len(b.keys))
	for i, key := range b.keys {
		d, err := c.ttl(key, ttl)
		if err != nil {
			return nil, opErr(b.op, key, err)
		}
		ttls[i] = d
	}
	return ttls, nil
}

// DeleteMany deletes keys with UNLINK (freed in the background) and returns
// how many existed: one multi-key UNLINK per 500 keys on one server, a
// pipeline of single-key UNLINKs on a cluster or ring.
//
// If the context is nil, the Client is closed or any key is invalid,
// nothing is deleted and the error is an [*OpError] wrapping
// [ErrNilContext], [ErrClosed] or [ErrInvalidKey]. No keys returns 0 and
// nil. When some deletes fail, DeleteMany returns the number it did delete
// and a [*BatchError] naming the keys that may remain. After a retried
// timeout the count may miss keys the lost attempt deleted.
func (c *Client) DeleteMany(ctx context.Context, keys []string) (_ int64, err error) {
	if o := c.ctr.obs.Load(); o != nil {
		call := c.newBatchCall("deletemany", keys)
		ctx = o.start(ctx, call)
		defer func() { call.Err = err; o.end(ctx, call) }()
	}
	b, err := c.newBatch(ctx, "deletemany", keys)
	if err != nil {
		return 0, err
	}
	defer b.turn.release() // for no keys: nothing sent
	if len(keys) == 0 {
		return 0, nil
	}
	var n atomic.Int64
	c.nearWritten(b.ks)
	defer c.nearWritten(b.ks)
	var bump func(context.Context, redis.Pipeliner, []string)
	if c.countsDeletes() {
		bump = c.bumpDeletes
	}
	b.run(ctx, unlinkSend(c.rdb, c.single(), b.ks, &n, bump))
	c.ctr.deleted("", uint64(n.Load())) // keys may span namespaces: global count only
	return n.Load(), b.err()
}

// MGet returns the raw stored bytes of keys, in key order, with nil for a
// missing key: the whole stored value as Redis holds it (for values written
// by [Set] or [SetMany], the envelope and the Codec's payload, compressed
// when the envelope says so (Options.Compression); for values
// written by [Client.MSet], the caller's bytes). It costs one round trip
// per node per 500 keys.
//
// A nil context, a closed Client or an invalid key returns nil and an
// [*OpError] wrapping [ErrNilContext], [ErrClosed] or [ErrInvalidKey]
// before anything is sent. When some keys fail, MGet returns every value it
// read (nil for the failed keys too) and a [*BatchError] naming them.
func (c *Client) MGet(ctx context.Context, keys []string) (vals [][]byte, err error) {
	if o := c.ctr.obs.Load(); o != nil {
		call := c.newBatchCall("mget", keys)
		ctx = o.start(ctx, call)
		defer func() { call.Err, call.Hits = err, countNonNil(vals); o.end(ctx, call) }()
	}
	return c.mget(ctx, "mget", keys, false)
}

// mget is MGet; quiet leaves hits and misses for the caller to count.
func (c *Client) mget(ctx context.Context, op string, keys []string, quiet bool) ([][]byte, error) {
	b, err := c.newBatch(ctx, op, keys)
	if err != nil {
		return nil, err
	}
	defer b.turn.release() // for no keys: nothing sent
	return c.mgetBatch(ctx, b, quiet)
}

// mgetBatch reads the keys of b.
func (c *Client) mgetBatch(ctx context.Context, b *batch, quiet bool) ([][]byte, error) {
	keys := b.keys
	b.quiet = quiet
	out := make([][]byte, len(keys))
	if len(keys) > 0 {
		b.get(ctx, func(i int, p []byte) error {
			if isLease(p) {
				return errLeaseOnly
			}
			out[i] = p
			return nil
		})
	}
	return out, b.err()
}

// MSet stores raw payloads as they are (no envelope, no Codec, never
// compressed, whatever Options.Compression says) for callers
// that encode values themselves, with SET key value PX ttl per key, one
// round trip per node per 500 keys. A ttl of 0 means each key's namespace
// TTL or DefaultTTL, with TTLJitter per key. Typed reads ([Get], [GetMany],
// [GetOrLoad], ...) cannot decode such values: they read as
// [ErrCorruptValue], and GetOrLoad loads without overwriting them. A
// payload that is a decimal integer is the exception: it reads as a counter
// into an integer type. Read raw values with [Client.MGet].
//
// Every key and payload is checked before anything is sent: on a nil
// context, a closed Client, an invalid key, a negative ttl, a nil payload
// (use []byte{} for an empty value) or one over MaxValueSize, nothing is
// written and the error is an [*OpError] wrapping [ErrNilContext],
// [ErrClosed], [ErrInvalidKey], [ErrInvalidTTL], [ErrInvalidValue] or
// [ErrValueTooLarge]. When some writes fail, MSet returns a [*BatchError]
// naming the failed keys.
func (c *Client) MSet(ctx context.Context, items map[string][]byte, ttl time.Duration) (err error) {
	if o := c.ctr.obs.Load(); o != nil {
		call := newItemsCall(c, "mset", items)
		ctx = o.start(ctx, call)
		defer func() { call.Err = err; o.end(ctx, call) }()
	}
	keys, b, err := newSetBatch(ctx, c, "mset", items, ttl)
	if err != nil || b == nil {
		return err
	}
	vals := make([][]byte, len(keys))
	for i, key := range keys {
		p := items[key]
		switch {
		case p == nil:
			return opErr("mset", key, errNilValue)
		case c.opt.MaxValueSize > 0 && len(p) > c.opt.MaxValueSize:
			return opErr("mset", key, fmt.Errorf("%w: %d bytes, limit %d", ErrValueTooLarge, len(p), c.opt.MaxValueSize))
		}
		vals[i] = p
	}
	ttls, err := c.batchTTLs(b, ttl)
	if err != nil {
		return err
	}
	if b.turn, err = c.admit(ctx, ""); err != nil {
		return opErr("mset", "", err)
	}
	return c.setBatch(ctx, b, vals, ttls) // run reports
}
