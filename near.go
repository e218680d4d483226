package rediscache

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// nearCache is the client-side cache behind Options.LocalCache. go-redis's
// LocalCache keeps the stored bytes and receives Redis's invalidations
// (RESP3 CLIENT TRACKING); nearCache wraps it to keep decoded values too, so
// a typed hit costs neither a round trip nor a decode. Every invalidation
// go-redis applies to its bytes is applied to the decoded values as well.
//
// A kept value is never resurrected: an invalidation first drops the bytes
// (go-redis then refuses the fill of a fetch in flight), then bumps the
// mark of the key's stripe and drops the decoded value; a decoded value is
// kept only if the mark its reader took before reading is unchanged. So a
// reader that read old bytes before the invalidation cannot keep them
// after it.
type nearCache struct {
	redis.Cache

	mu    sync.Mutex // orders stores against invalidations
	epoch atomic.Uint64
	marks [nearStripes]atomic.Uint64 // bumped by an invalidation of a key of the stripe
	n     atomic.Int64               // entries in vals
	max   int64
	vals  sync.Map // stored key -> *nearEntry
	// ns is go-redis's namespace prefix of a cache entry's Redis key (DB and
	// ACL user), which its invalidations carry.
	ns string
	// ttl is Options.LocalCacheTTL in ms: how long a kept value is used at
	// most (0: no bound).
	ttl int64
	// clock is the Unix time in ms, advanced every millisecond by tick: a
	// hit checks expiry against it instead of reading the system clock,
	// which costs more than the rest of a hit.
	clock atomic.Int64
}

// now returns the near cache's clock, in Unix ms.
func (n *nearCache) now() int64 { return n.clock.Load() }

// tick advances the clock every millisecond until ctx ends.
func (n *nearCache) tick(ctx context.Context) {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n.clock.Store(time.Now().UnixMilli())
		}
	}
}

// nearDrainInterval is how often go-redis reads the invalidations waiting
// on the idle connections of a LocalCache Client.
const nearDrainInterval = time.Millisecond

// nearStripes is how many marks keys are spread over, so an invalidation
// refuses only the fills of keys of its stripe.
const nearStripes = 256

// nearMark is what a reader notes before reading a key, for store.
type nearMark struct {
	epoch, seq uint64
	stripe     uint8
}

// mark returns the mark of stored key k now.
func (n *nearCache) mark(k string) nearMark {
	i := stripeOf(k)
	return nearMark{n.epoch.Load(), n.marks[i].Load(), i}
}

// stripeOf returns the stripe of stored key k: FNV-1a.
func stripeOf(k string) uint8 {
	h := uint32(2166136261)
	for i := 0; i < len(k); i++ {
		h ^= uint32(k[i])
		h *= 16777619
	}
	return uint8(h)
}

var _ redis.Cache = (*nearCache)(nil)

func newNearCache(entries int, ttl time.Duration, db int, username string) *nearCache {
	ttl = max(ttl, 0) // -1: no bound
	n := &nearCache{
		Cache: redis.NewLocalCache(redis.CacheConfig{MaxEntries: entries, MaxStaleness: ttl}),
		max:   int64(entries),
		ttl:   ttl.Milliseconds(),
		ns:    strconv.Itoa(db) + "\x00" + strconv.Itoa(len(username)) + ":" + username + "\x00",
	}
	n.clock.Store(time.Now().UnixMilli())
	return n
}

// nearEntry is a decoded value the near cache keeps, with the envelope
// fields GetOrLoad decides freshness on.
type nearEntry struct {
	v        any  // a T; nil when negative
	negative bool // a cached ErrNotFound
	// env is the value's envelope without its payload: freshness
	// (freshUntil 0 = no bound, as for a plain Set), load cost for XFetch,
	// and the header a refresh's guarded store expects.
	env envelope
	// expires is when Redis drops the key as far as this Client knows
	// (Unix ms; 0 = unknown, as for a plain Set): an entry past it is not
	// used, even if Redis's invalidation has not arrived yet.
	expires int64
}

// nearEntryOf returns the near-cache entry of decoded value v stored in
// envelope e: it ends with the key's TTL (the envelope says when), or, for
// a version-1 envelope, with the end of GetOrLoad's freshness and staleness.
func (c *Client) nearEntryOf(e envelope, v any) *nearEntry {
	e.payload = nil
	e.tags = bytes.Clone(e.tags) // not the whole value's bytes
	ent := &nearEntry{v: v, env: e, expires: e.expires}
	if e.flags&flagNegative != 0 {
		ent.v, ent.negative = nil, true
	}
	defer func() {
		if c.near.ttl > 0 {
			bound := c.near.now() + c.near.ttl
			if ent.expires == 0 || bound < ent.expires {
				ent.expires = bound
			}
		}
	}()
	if e.expires != 0 {
		return ent
	}
	switch {
	case e.flags&flagNegative != 0:
		ent.v, ent.negative = nil, true
		if c.opt.NegativeTTL > 0 {
			ent.expires = e.created + c.opt.NegativeTTL.Milliseconds()
		}
	case e.freshUntil != 0:
		ent.expires = e.freshUntil + max(c.opt.StaleTTL, 0).Milliseconds()
	}
	return ent
}

// liveAt reports whether the entry may still be used at now (Unix ms).
func (e *nearEntry) liveAt(now int64) bool {
	return e.expires == 0 || now < e.expires
}

// load returns the entry kept for stored key k.
func (n *nearCache) load(k string) (*nearEntry, bool) {
	x, ok := n.vals.Load(k)
	if !ok {
		return nil, false
	}
	return x.(*nearEntry), true
}

// store keeps v for k unless an invalidation of k ran since m was taken,
// or the cache is full.
func (n *nearCache) store(k string, v *nearEntry, m nearMark) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.epoch.Load() != m.epoch || n.marks[m.stripe].Load() != m.seq || n.n.Load() >= n.max {
		return
	}
	if _, loaded := n.vals.Swap(k, v); !loaded {
		n.n.Add(1)
	}
}

// written forgets k's bytes and decoded value when this Client writes k:
// before the write, so it is not served meanwhile, and after it, so what a
// concurrent reader fetched before the write landed is not kept. The
// Client reads its own write at once, without waiting for Redis's
// invalidation.
func (n *nearCache) written(k string) {
	n.Cache.DeleteByRedisKey(n.ns + k)
	n.drop(k)
}

// nearWritten forgets the local copies of stored keys ks, before and after
// the Client writes or deletes them (see nearCache.written); without
// LocalCache it does nothing.
func (c *Client) nearWritten(ks []string) {
	if c.near == nil {
		return
	}
	for _, k := range ks {
		c.near.written(k)
	}
}

// nearMany answers the keys of b that have a live kept value that take
// accepts (take(i, ent) stores it for key i), counting them as hits, and
// returns a batch of the other keys with, for each, its index in b.
func (c *Client) nearMany(b *batch, take func(i int, ent *nearEntry) bool) (*batch, []int) {
	rest := &batch{c: c, op: b.op, quiet: b.quiet}
	var idx []int
	for i, k := range b.ks {
		if ent, ok := c.near.load(k); ok && !ent.negative && ent.liveAt(c.near.now()) && take(i, ent) {
			if !b.quiet {
				c.ctr.hit(b.keys[i])
			}
			continue
		}
		idx = append(idx, i)
		rest.keys = append(rest.keys, b.keys[i])
		rest.ks = append(rest.ks, k)
	}
	return rest, idx
}

// drop forgets the decoded value of k, after bumping its stripe's mark.
func (n *nearCache) drop(k string) {
	n.marks[stripeOf(k)].Add(1)
	n.mu.Lock()
	if _, ok := n.vals.LoadAndDelete(k); ok {
		n.n.Add(-1)
	}
	n.mu.Unlock()
}

// writtenPrefix forgets the local copies of every stored key starting
// with literal, for InvalidatePrefix and ClearAll, before and after their
// walk: also keys the walk does not find (deleted meanwhile by another
// Client, whose invalidation may not have arrived yet). go-redis's cache
// cannot be searched by prefix, so all its bytes go; the decoded values
// of other keys stay.
func (n *nearCache) writtenPrefix(literal string) {
	n.Cache.Flush()
	n.epoch.Add(1)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.vals.Range(func(k, _ any) bool {
		if strings.HasPrefix(k.(string), literal) {
			n.vals.Delete(k)
			n.n.Add(-1)
		}
		return true
	})
}

// clear forgets every decoded value, after bumping the epoch.
func (n *nearCache) clear() {
	n.epoch.Add(1)
	n.mu.Lock()
	n.vals.Clear()
	n.n.Store(0)
	n.mu.Unlock()
}

// DeleteByRedisKey drops a key's bytes, then its decoded value (an
// invalidation); nsKey is the Redis key behind go-redis's namespace prefix.
func (n *nearCache) DeleteByRedisKey(nsKey string) int {
	r := n.Cache.DeleteByRedisKey(nsKey)
	if k, ok := strings.CutPrefix(nsKey, n.ns); ok {
		n.drop(k)
	} else {
		n.clear()
	}
	return r
}

// DeleteByCacheKey drops one bytes entry; the decoded values are all
// dropped, since a cache key does not name its Redis key here.
func (n *nearCache) DeleteByCacheKey(ck string) bool {
	r := n.Cache.DeleteByCacheKey(ck)
	n.clear()
	return r
}

// EvictByConn drops what a connection that lost tracking fetched (it was
// killed, or the server restarted); the decoded values are all dropped.
func (n *nearCache) EvictByConn(id uint64) int {
	r := n.Cache.EvictByConn(id)
	n.clear()
	return r
}

// Flush drops everything.
func (n *nearCache) Flush() int {
	r := n.Cache.Flush()
	n.clear()
	return r
}

// nearExpired reports whether an entry read from the near cache's bytes
// is past the TTL its envelope records (Redis's notice of the expiry may
// be late); always false without LocalCache.
func (c *Client) nearExpired(e envelope) bool {
	return c.near != nil && e.expires != 0 && c.near.now() >= e.expires
}

// nowMs is the Unix time in ms: the near cache's clock with LocalCache,
// else the system clock.
func (c *Client) nowMs() int64 {
	if c.near != nil {
		return c.near.now()
	}
	return time.Now().UnixMilli()
}

// nearStale reports whether bytes that may have come from the near cache
// cannot be trusted to be current: an envelope past the TTL it records,
// or a counter or raw value, whose end the Client cannot know.
func (c *Client) nearStale(b []byte) bool {
	e, kind, _ := parseStored(b)
	return kind == storedCounter || kind == storedForeign || c.nearExpired(e)
}

// getFresh drops k's local copy and reads it from Redis itself: a
// pipeline, which the near cache never answers.
func (c *Client) getFresh(ctx context.Context, k string) ([]byte, error) {
	c.near.written(k)
	read := func(ctx context.Context) ([]byte, error) {
		pipe := c.one.Pipeline()
		get := pipe.Get(ctx, k)
		_, _ = execPipe(ctx, pipe)
		return get.Bytes()
	}
	b, err := read(ctx)
	if err != nil && !errors.Is(err, redis.Nil) {
		b, err = retry(ctx, c, idempotent, b, err, read)
	}
	return b, err
}

// nearGet is Get with Options.LocalCache: a decoded value kept from an
// earlier hit is returned as is (values holding slices, maps or pointers
// are shared between callers: treat them as read-only), once its tags, if
// it has any, are checked (through the near cache).
func nearGet[T any](ctx context.Context, c *Client, key string, tags []string) (T, error) {
	k, gen, t, err := c.prepareRead(ctx, key)
	if err != nil {
		var zero T
		return zero, opErr("get", key, err)
	}
	if ent, ok := c.near.load(k); ok && !ent.negative && ent.liveAt(c.near.now()) && ent.env.gen == gen {
		if v, ok := ent.v.(T); ok {
			current, err := c.tagsCurrent(ctx, ent.env, nil)
			switch {
			case err != nil:
				t.release()
				c.ctr.fail(key)
				var zero T
				return zero, opErr("get", key, err)
			case current:
				t.release() // answered here: nothing sent for k
				c.ctr.hit(key)
				return v, nil
			}
		}
	}
	// Declared here, not above: decoding into it moves it to the heap,
	// which a hit need not pay for.
	var v T
	m := c.near.mark(k)
	e, err := c.getInto(ctx, key, k, &v, gen, tags) // a round trip on k: it reports
	if err != nil {
		return v, err
	}
	c.near.store(k, c.nearEntryOf(e, v), m)
	return v, nil
}
