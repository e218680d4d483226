package rediscache

import (
	"encoding/binary"
	"fmt"
	"time"
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

// CreatedAt returns when the value was written.
func (e envelope) CreatedAt() time.Time { return time.UnixMilli(e.created) }

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
