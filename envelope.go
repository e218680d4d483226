package rediscache

import (
	"encoding/binary"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"reflect"
	"strconv"
	"time"
)

// Stored value format. Every value this library writes is an envelope:
//
//	offset size  field
//	0      1     format: 0xC2 (version 2); 0xC1 (version 1) is still read
//	1      1     flags: bit 0 negative entry (a cached "not found"),
//	             bit 1 lease (a placeholder of a load in progress; no payload),
//	             bit 2 tagged (a tags section follows the header),
//	             bit 3 compressed (the payload is an S2 block of the
//	             Codec's bytes; version 2 values only, never a negative
//	             entry or a lease);
//	             other bits reserved, 0
//	2      8     created: Unix milliseconds, big-endian int64
//	10     8     fresh until: Unix milliseconds, big-endian int64; 0 = fresh until Redis expires it
//	18     4     load cost: how long producing the value took, microseconds, big-endian uint32; 0 = unknown
//	22     8     stamp: random, new for every write (version 2 only)
//	30     8     generation: the key's namespace generation when it was
//	             written (version 2 only; 0 with GenerationTTL -1)
//	38     8     expires: Unix milliseconds when the key's TTL ends, as set
//	             by its writer or Expire; 0 = unknown (version 2 only)
//	46     t     tags, when tagged: uvarint count (1 to MaxTags), then per tag
//	             uvarint length, the tag, and its version (8 bytes) when written
//	46+t   n     payload: the Codec's bytes (22 in version 1), or with
//	             bit 3 their S2 block (github.com/klauspost/compress/s2:
//	             a uvarint of the decoded length, then the block)
//
// The stamp makes every write's header unique, so a store guarded by the
// header it expects (a load's lease, a refresh's read) is refused once
// anything else has written the key. An entry whose generation is not its
// namespace's current one (InvalidateNamespace moved it on) reads as a
// miss. The expiry lets a local copy (Options.LocalCache) end with the key
// even when Redis's expiry notice is late. Counters made by Increment are
// plain Redis integers and carry no envelope. Any other byte string is not
// ours.
const (
	envFormatV1     = 0xC1
	envFormatV2     = 0xC2
	envHeaderSizeV1 = 22
	envHeaderSize   = 46 // version 2, the one written

	flagNegative   = 1 << 0
	flagLease      = 1 << 1
	flagTagged     = 1 << 2
	flagCompressed = 1 << 3
	knownFlagsMask = flagNegative | flagLease | flagTagged | flagCompressed
)

// envelope is the decoded header of a stored value; payload aliases the
// stored bytes.
type envelope struct {
	format     byte // envFormatV1 or envFormatV2; 0 means V2 when encoding
	flags      byte
	created    int64 // Unix ms
	freshUntil int64 // Unix ms, 0 = none
	loadCost   uint32
	stamp      uint64 // V2 only
	gen        uint64 // V2 only: the namespace generation written under
	expires    int64  // V2 only: Unix ms when the key's TTL ends; 0 = unknown
	tags       []byte // the tags section when flagTagged (aliasing the stored bytes)
	payload    []byte // as stored: compressed when flagCompressed (see unpack)
}

// newStamp returns a random write stamp.
func newStamp() uint64 { return mrand.Uint64() | 1 } // never 0, so a stamp is always set

// headerSize is the length of e's header as stored.
func (e envelope) headerSize() int {
	if e.format == envFormatV1 {
		return envHeaderSizeV1
	}
	return envHeaderSize
}

// appendHeader appends e's header to dst and returns it.
func (e envelope) appendHeader(dst []byte) []byte {
	var h [envHeaderSize]byte
	h[0] = envFormatV2
	if e.format == envFormatV1 {
		h[0] = envFormatV1
	}
	h[1] = e.flags
	binary.BigEndian.PutUint64(h[2:], uint64(e.created))
	binary.BigEndian.PutUint64(h[10:], uint64(e.freshUntil))
	binary.BigEndian.PutUint32(h[18:], e.loadCost)
	binary.BigEndian.PutUint64(h[22:], e.stamp)
	binary.BigEndian.PutUint64(h[30:], e.gen)
	binary.BigEndian.PutUint64(h[38:], uint64(e.expires))
	return append(dst, h[:e.headerSize()]...)
}

// header returns e's header bytes: what a guarded store expects to find at
// the start of the key.
func (e envelope) header() string { return string(e.appendHeader(nil)) }

// encodeEnvelope returns a new buffer holding header, tags and payload.
func encodeEnvelope(e envelope) []byte {
	if len(e.tags) > 0 {
		e.flags |= flagTagged
	}
	b := e.appendHeader(make([]byte, 0, e.headerSize()+len(e.tags)+len(e.payload)))
	b = append(b, e.tags...)
	return append(b, e.payload...)
}

// decodeEnvelope parses b. It never panics and never allocates: any input
// that is not a version-1 or version-2 envelope yields an error wrapping
// ErrCorruptValue.
func decodeEnvelope(b []byte) (envelope, error) {
	if len(b) < 2 || (b[0] != envFormatV1 && b[0] != envFormatV2) {
		return envelope{}, errNotOurs
	}
	e := envelope{format: b[0], flags: b[1]}
	n := e.headerSize()
	if len(b) < n {
		return envelope{}, errTruncated
	}
	e.created = int64(binary.BigEndian.Uint64(b[2:]))
	e.freshUntil = int64(binary.BigEndian.Uint64(b[10:]))
	e.loadCost = binary.BigEndian.Uint32(b[18:])
	if e.format == envFormatV2 {
		e.stamp = binary.BigEndian.Uint64(b[22:])
		e.gen = binary.BigEndian.Uint64(b[30:])
		e.expires = int64(binary.BigEndian.Uint64(b[38:]))
	}
	e.payload = b[n:]
	if e.flags&flagTagged != 0 && e.format == envFormatV2 {
		var err error
		if e.tags, e.payload, err = splitTags(e.payload); err != nil {
			return envelope{}, err
		}
	}
	switch {
	case e.flags&^knownFlagsMask != 0 || (e.flags&(flagTagged|flagCompressed) != 0 && e.format != envFormatV2):
		return envelope{}, fmt.Errorf("%w: unknown flags %#x", ErrCorruptValue, e.flags)
	case e.flags&flagCompressed != 0 && e.flags&flagNegative != 0:
		return envelope{}, fmt.Errorf("%w: compressed negative entry", ErrCorruptValue)
	case e.flags&flagLease != 0 && (e.format != envFormatV2 || e.flags != flagLease || e.gen != 0 || len(e.payload) != 0):
		return envelope{}, fmt.Errorf("%w: malformed lease", ErrCorruptValue)
	}
	return e, nil
}

var (
	errNotOurs   = fmt.Errorf("%w: not a rediscache value", ErrCorruptValue)
	errTruncated = fmt.Errorf("%w: truncated", ErrCorruptValue)
)

// storedKind says what the bytes at a key are.
type storedKind uint8

const (
	storedForeign  storedKind = iota // not written by this library (or corrupt)
	storedValue                      // an envelope with a payload
	storedNegative                   // a cached "not found"
	storedLease                      // a load's placeholder: no value yet
	storedCounter                    // a plain integer made by Increment
)

// parseStored tells what b is and returns its envelope (zero for a counter
// or foreign bytes, with the decoding error for the latter).
func parseStored(b []byte) (envelope, storedKind, error) {
	e, err := decodeEnvelope(b)
	switch {
	case err == nil && e.flags&flagLease != 0:
		return e, storedLease, nil
	case err == nil && e.flags&flagNegative != 0:
		return e, storedNegative, nil
	case err == nil:
		return e, storedValue, nil
	case errors.Is(err, errNotOurs) && isCounter(b):
		return envelope{}, storedCounter, nil
	}
	return envelope{}, storedForeign, err
}

// decodeStored is the one decoder of stored values, used by every read
// path: it parses b and, for a value or a counter, decodes it into dst (a
// non-nil pointer). gen is the generation the key's namespace has now. It
// returns the envelope and the kind; the error is errNegative for a
// negative entry, errLeaseOnly for a lease placeholder, errOldGeneration
// for an entry (value or negative) of another generation, and wraps
// ErrCorruptValue for foreign bytes, a counter read into a non-integer
// dst, a compressed payload that is corrupt or would decode to more than
// MaxValueSize (64 MiB without one), or a payload the Codec cannot decode
// into dst. The envelope's payload is as stored (compressed or not).
func (c *Client) decodeStored(b []byte, dst any, gen uint64) (envelope, storedKind, error) {
	e, kind, err := parseStored(b)
	if (kind == storedValue || kind == storedNegative) && e.gen != gen {
		return e, kind, errOldGeneration
	}
	switch kind {
	case storedValue:
		p := e.payload
		if e.flags&flagCompressed != 0 {
			var perr error
			if p, perr = unpack(e, c.decodedLimit()); perr != nil {
				return e, kind, perr
			}
		}
		if uerr := c.opt.Codec.Unmarshal(p, dst); uerr != nil {
			return e, kind, fmt.Errorf("%w: %w", ErrCorruptValue, uerr)
		}
	case storedNegative:
		err = errNegative
	case storedLease:
		err = errLeaseOnly
	case storedCounter:
		if !decodeCounter(b, dst) {
			err = fmt.Errorf("%w: a counter does not decode into %T", ErrCorruptValue, dst)
		}
	}
	return e, kind, err
}

// isCounter reports whether b is a Redis integer as INCRBY writes it.
func isCounter(b []byte) bool {
	if len(b) == 0 || len(b) > 20 {
		return false
	}
	_, err := strconv.ParseInt(string(b), 10, 64)
	return err == nil
}

// decodeCounter stores the Redis integer in b into an integer destination
// and reports whether it did.
func decodeCounter(b []byte, dst any) bool {
	if !isCounter(b) {
		return false
	}
	n, _ := strconv.ParseInt(string(b), 10, 64)
	rv := reflect.ValueOf(dst)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return false
	}
	switch ev := rv.Elem(); ev.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if ev.OverflowInt(n) {
			return false
		}
		ev.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if n < 0 || ev.OverflowUint(uint64(n)) {
			return false
		}
		ev.SetUint(uint64(n))
	case reflect.Interface:
		if ev.NumMethod() != 0 {
			return false
		}
		ev.Set(reflect.ValueOf(n))
	default:
		return false
	}
	return true
}

// isLease reports whether b is a lease placeholder (a miss for readers).
func isLease(b []byte) bool {
	return len(b) == envHeaderSize && b[0] == envFormatV2 && b[1] == flagLease
}

// errOldGeneration marks an entry written under an older (or other)
// generation of its namespace: a miss, which a load replaces.
var errOldGeneration = errors.New("rediscache: entry of another namespace generation")

// marshal validates value and returns its payload as stored and the
// flags that say how (see encode), checking that its envelope with tags
// tags fits MaxValueSize.
func (c *Client) marshal(value any, tags []string) ([]byte, byte, error) {
	if value == nil {
		return nil, 0, errNilValue
	}
	if rv := reflect.ValueOf(value); rv.Kind() == reflect.Pointer && rv.IsNil() {
		return nil, 0, errNilValue
	}
	return c.encode(value, tagsSize(tags))
}

// encode returns v's payload as stored, the Codec's bytes compressed or
// not (see pack), and the envelope flags that say which. The envelope,
// with a tags section of tagsLen bytes, must fit MaxValueSize: else the
// error wraps ErrValueTooLarge; an unencodable v's wraps ErrInvalidValue.
func (c *Client) encode(v any, tagsLen int) ([]byte, byte, error) {
	p, err := c.opt.Codec.Marshal(v)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %w", ErrInvalidValue, err)
	}
	p, flags := c.pack(p)
	if n := envHeaderSize + tagsLen + len(p); c.opt.MaxValueSize > 0 && n > c.opt.MaxValueSize {
		return nil, 0, fmt.Errorf("%w: %d bytes, limit %d", ErrValueTooLarge, n, c.opt.MaxValueSize)
	}
	return p, flags, nil
}

// seal returns the stored envelope of payload p with flags (flagCompressed
// or 0), of generation gen, stored for ttl, tagged with tags at versions
// vers.
func seal(p []byte, flags byte, gen uint64, ttl time.Duration, tags []string, vers tagVersions) []byte {
	now := time.Now()
	e := envelope{flags: flags, created: now.UnixMilli(), stamp: newStamp(), gen: gen, expires: now.Add(ttl).UnixMilli(), payload: p}
	if len(tags) > 0 {
		e.tags = appendTags(nil, tags, vers)
	}
	return encodeEnvelope(e)
}
