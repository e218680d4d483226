package rediscache

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Stored value format (version 1). Every value Set writes is
//
//	offset size  field
//	0      1     format: 0xC1 (rediscache envelope, version 1)
//	1      1     flags: bit 0 = negative entry (a cached "not found"); others reserved, 0
//	2      8     created: Unix milliseconds, big-endian int64
//	10     8     fresh until: Unix milliseconds, big-endian int64; 0 = fresh until Redis expires it
//	18     4     load cost: how long producing the value took, microseconds, big-endian uint32; 0 = unknown
//	22     n     payload: the Codec's bytes
//
// Counters made by Increment are plain Redis integers and carry no envelope.
// Any other byte string is not ours and decodes to [ErrCorruptValue].
const (
	envFormatV1   = 0xC1
	envHeaderSize = 22

	flagNegative   = 1 << 0
	knownFlagsMask = flagNegative
)

// envelope is the decoded header of a stored value; payload aliases the
// stored bytes.
type envelope struct {
	flags      byte
	created    int64 // Unix ms
	freshUntil int64 // Unix ms, 0 = none
	loadCost   uint32
	payload    []byte
}

// appendEnvelope appends the header and payload to dst and returns it.
func appendEnvelope(dst []byte, e envelope) []byte {
	var h [envHeaderSize]byte
	h[0] = envFormatV1
	h[1] = e.flags
	binary.BigEndian.PutUint64(h[2:], uint64(e.created))
	binary.BigEndian.PutUint64(h[10:], uint64(e.freshUntil))
	binary.BigEndian.PutUint32(h[18:], e.loadCost)
	dst = append(dst, h[:]...)
	return append(dst, e.payload...)
}

// encodeEnvelope returns a new buffer holding header and payload.
func encodeEnvelope(e envelope) []byte {
	return appendEnvelope(make([]byte, 0, envHeaderSize+len(e.payload)), e)
}

// decodeEnvelope parses b. It never panics and never allocates: any input
// that is not a version-1 envelope yields an error wrapping ErrCorruptValue.
func decodeEnvelope(b []byte) (envelope, error) {
	if len(b) < envHeaderSize || b[0] != envFormatV1 {
		return envelope{}, fmt.Errorf("%w: not a rediscache value", ErrCorruptValue)
	}
	e := envelope{
		flags:      b[1],
		created:    int64(binary.BigEndian.Uint64(b[2:])),
		freshUntil: int64(binary.BigEndian.Uint64(b[10:])),
		loadCost:   binary.BigEndian.Uint32(b[18:]),
		payload:    b[envHeaderSize:],
	}
	if e.flags&^knownFlagsMask != 0 {
		return envelope{}, fmt.Errorf("%w: unknown flags %#x", ErrCorruptValue, e.flags)
	}
	return e, nil
}

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
}

// Metadata returns what is known about key without decoding its value: its
// namespace and version, when it was written, the TTL left and its size. A
// missing key returns [ErrCacheMiss]; bytes this library did not write
// return an error wrapping [ErrCorruptValue]; other errors wrap
// [ErrInvalidKey], [ErrClosed], [ErrCircuitOpen] or the Redis error.
func (c *Client) Metadata(ctx context.Context, key string) (Metadata, error) {
	const op = "metadata"
	k, err := c.prepare(ctx, key)
	if err != nil {
		return Metadata{}, opErr(op, key, err)
	}
	start := mono()
	pipe := c.rdb.Pipeline()
	get := pipe.Get(ctx, k)
	pttl := pipe.PTTL(ctx, k)
	_, err = pipe.Exec(ctx)
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
	e, derr := decodeEnvelope(b)
	switch {
	case derr == nil:
		md.CreatedAt = time.UnixMilli(e.created)
		if e.freshUntil != 0 {
			md.FreshUntil = time.UnixMilli(e.freshUntil)
		}
		md.Negative = e.flags&flagNegative != 0
	case decodeCounter(b, new(int64)):
		md.Counter = true
	default:
		return md, opErr(op, key, derr)
	}
	return md, nil
}
