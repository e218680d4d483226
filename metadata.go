package rediscache

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Metadata describes one stored key. It never holds the value itself.
type Metadata struct {
	Key        string        // the logical key
	StorageKey string        // the key as stored in Redis
	Namespace  Namespace     // parsed from the key (its first segment)
	Version    Version       // parsed from a KeyGenerator key; 0 when the key has no version segment
	CreatedAt  time.Time     // when the value was written; zero for an Increment counter
	FreshUntil time.Time     // end of freshness for a GetOrLoad entry with StaleTTL; else zero
	TTL        time.Duration // time left; -1 when the key has no TTL
	ExpiresAt  time.Time     // zero when the key has no TTL
	Size       int           // bytes stored, envelope included
	Negative   bool          // a cached "not found" written by GetOrLoad
	Counter    bool          // a plain integer written by Increment
	// Compressed is true when the payload is stored compressed
	// ([Options.Compression]).
	Compressed bool
	// PayloadSize is the size of the value's Codec bytes once decoded:
	// the payload stored, or, when Compressed, the size its compressed
	// form declares. 0 for counters, negative entries and leases.
	PayloadSize int
	// Lease is true when the key holds only the placeholder of a load in
	// progress (GetOrLoad or GetManyOrLoad): no value yet, a miss for Get.
	Lease bool
	// Tags are the tags the entry was written with ([WithTags]), sorted.
	Tags []string
	// Generation is the namespace generation the entry was written under;
	// an entry whose Generation is not [Client.Generation] of its
	// namespace reads as a miss. 0 for counters, raw values and with
	// GenerationTTL -1.
	Generation int64
}

// Metadata returns what is known about key without decoding its value: its
// namespace and version, when it was written, the TTL left, its size and
// whether it is compressed. A missing key returns [ErrCacheMiss]; bytes
// this library did not write, and a compressed payload whose declared
// size cannot be read, return an error wrapping [ErrCorruptValue] (with
// what could be read of the Metadata); other errors wrap
// [ErrInvalidKey], [ErrNilContext], [ErrClosed], [ErrCircuitOpen] or the
// Redis error.
func (c *Client) Metadata(ctx context.Context, key string) (_ Metadata, err error) {
	const op = "metadata"
	if o := c.ctr.obs.Load(); o != nil {
		call := c.newCall(op, key, 1)
		ctx = o.start(ctx, call)
		defer func() { call.hitOf(err); o.end(ctx, call) }()
	}
	k, _, err := c.prepare(ctx, key) // then one round trip on k, which reports
	if err != nil {
		return Metadata{}, opErr(op, key, err)
	}
	start := mono()
	pipe := c.rdb.Pipeline()
	get := pipe.Get(ctx, k)
	pttl := pipe.PTTL(ctx, k)
	_, err = execPipe(ctx, pipe)
	if errors.Is(err, redis.Nil) {
		err = nil
	}
	c.observe(k, start, err)
	if err != nil {
		c.ctr.fail(key)
		return Metadata{}, opErr(op, key, err)
	}
	b, err := get.Bytes()
	if errors.Is(err, redis.Nil) {
		return Metadata{}, ErrCacheMiss
	}
	if err != nil {
		return Metadata{}, opErr(op, key, err)
	}
	md := Metadata{Key: key, StorageKey: k, Size: len(b), TTL: -1}
	if ns, v, _, perr := ParseKey(key); perr == nil {
		md.Namespace, md.Version = ns, v
	} else {
		first, _, _ := strings.Cut(key, ":")
		md.Namespace = Namespace(first)
	}
	if d := pttl.Val(); d >= 0 {
		md.TTL = d
		md.ExpiresAt = time.Now().Add(d)
	}
	e, kind, derr := parseStored(b)
	switch kind {
	case storedForeign:
		return md, opErr(op, key, derr)
	case storedCounter:
		md.Counter = true
		return md, nil
	}
	md.CreatedAt = time.UnixMilli(e.created)
	if e.freshUntil != 0 {
		md.FreshUntil = time.UnixMilli(e.freshUntil)
	}
	md.Negative = kind == storedNegative
	md.Lease = kind == storedLease
	md.Generation = int64(e.gen)
	md.Tags = tagNames(e.tags)
	md.Compressed = e.flags&flagCompressed != 0
	if md.PayloadSize, err = payloadSize(e); err != nil {
		return md, opErr(op, key, err)
	}
	return md, nil
}
