package rediscache

import (
	"fmt"

	"github.com/klauspost/compress/s2"
)

// Compression is how a [Client] compresses the values it stores
// ([Options.Compression]). Every Client reads values of either form,
// whatever its own setting.
type Compression uint8

const (
	// CompressionNone stores every value as the Codec's bytes: the default,
	// and the bytes every earlier version wrote.
	CompressionNone Compression = iota
	// CompressionS2 compresses with S2 (github.com/klauspost/compress/s2)
	// each value whose Codec bytes are at least Options.CompressMinSize
	// long, and stores it compressed only when that makes it smaller.
	CompressionS2
)

// DefaultCompressMinSize is the default of [Options.CompressMinSize].
const DefaultCompressMinSize = 1 << 10

// maxDecodedSize bounds the decoded size of a compressed payload when
// MaxValueSize is -1 (no limit).
const maxDecodedSize = 64 << 20

// decodedLimit is the largest decoded payload c decompresses, and the
// largest it compresses: MaxValueSize, or maxDecodedSize without one.
func (c *Client) decodedLimit() int {
	if c.opt.MaxValueSize > 0 {
		return c.opt.MaxValueSize
	}
	return maxDecodedSize
}

// pack returns the payload to store for the Codec's bytes p and the
// envelope flags that say how it is stored: p compressed when c compresses,
// p is at least CompressMinSize long and no larger than c decompresses,
// and the compressed form is smaller; else p itself.
func (c *Client) pack(p []byte) ([]byte, byte) {
	if c.opt.Compression != CompressionS2 || len(p) < c.opt.CompressMinSize || len(p) > c.decodedLimit() || s2.MaxEncodedLen(len(p)) < 0 {
		return p, 0
	}
	if z := s2.Encode(nil, p); len(z) < len(p) {
		return z, flagCompressed
	}
	return p, 0
}

// unpack returns the Codec's bytes of e's payload: the payload itself, or
// decompressed when e says it is compressed. A compressed payload whose
// declared decoded size is over limit is refused before anything is
// allocated; that and a corrupt payload return an error wrapping
// [ErrCorruptValue].
func unpack(e envelope, limit int) ([]byte, error) {
	if e.flags&flagCompressed == 0 {
		return e.payload, nil
	}
	n, err := payloadSize(e)
	switch {
	case err != nil:
		return nil, err
	case n > limit:
		return nil, fmt.Errorf("%w: compressed payload declares %d bytes, limit %d", ErrCorruptValue, n, limit)
	}
	p, err := s2.Decode(nil, e.payload)
	if err != nil {
		return nil, fmt.Errorf("%w: compressed payload: %w", ErrCorruptValue, err)
	}
	return p, nil
}

// payloadSize returns the size of e's payload once decompressed, without
// decompressing it: an error wrapping [ErrCorruptValue] when the size a
// compressed payload declares cannot be read.
func payloadSize(e envelope) (int, error) {
	if e.flags&flagCompressed == 0 {
		return len(e.payload), nil
	}
	n, err := s2.DecodedLen(e.payload)
	if err != nil {
		return 0, fmt.Errorf("%w: compressed payload: %w", ErrCorruptValue, err)
	}
	return n, nil
}
