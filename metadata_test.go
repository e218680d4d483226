package rediscache

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	t.Parallel()
	now := time.Now().UnixMilli()
	cases := []envelope{
		{created: now, payload: []byte(`{"a":1}`)},
		{created: now, freshUntil: now + 1000, loadCost: 1234, payload: []byte("x")},
		{flags: flagNegative, created: now},
		{created: 0, payload: nil},
		{flags: flagCompressed, created: now, payload: hostilePayload(10)},
	}
	for _, in := range cases {
		b := encodeEnvelope(in)
		assert.Equal(t, envHeaderSize+len(in.payload), len(b))
		out, err := decodeEnvelope(b)
		require.NoError(t, err)
		assert.Equal(t, in.flags, out.flags)
		assert.Equal(t, in.created, out.created)
		assert.Equal(t, in.freshUntil, out.freshUntil)
		assert.Equal(t, in.loadCost, out.loadCost)
		assert.True(t, bytes.Equal(in.payload, out.payload))
	}
}

// FuzzDecodeEnvelope feeds arbitrary bytes to the decoder: it returns a
// value or an ErrCorruptValue, never panics, and what it accepts re-encodes
// to the same bytes. A compressed payload decompresses to at most the
// limit or is an ErrCorruptValue. The same bytes taken as a Codec payload
// come back as they were through compression and the envelope.
func FuzzDecodeEnvelope(f *testing.F) {
	const limit = 1 << 16
	c := &Client{opt: Options{Compression: CompressionS2, CompressMinSize: -1, MaxValueSize: limit}}
	f.Add([]byte{})
	f.Add([]byte("42"))
	f.Add([]byte(`{"id":"x"}`))
	f.Add(encodeEnvelope(envelope{created: 1, payload: []byte(`"v"`)}))
	f.Add(encodeEnvelope(envelope{flags: flagNegative}))
	f.Add(append([]byte{envFormatV1, 0xff}, make([]byte, 30)...))
	z, _ := c.pack(bytes.Repeat([]byte(`{"id":"x"},`), 200))
	f.Add(encodeEnvelope(envelope{flags: flagCompressed, created: 1, payload: z}))
	f.Add(encodeEnvelope(envelope{flags: flagCompressed, created: 1, payload: z[:len(z)/2]}))
	f.Add(encodeEnvelope(envelope{flags: flagCompressed, created: 1, payload: hostilePayload(1 << 30)}))
	f.Add(encodeEnvelope(envelope{flags: flagCompressed, created: 1, payload: hostilePayload(limit)}))
	f.Fuzz(func(t *testing.T, b []byte) {
		packed, flags := c.pack(b)
		pe, err := decodeEnvelope(encodeEnvelope(envelope{flags: flags, payload: packed}))
		if err != nil {
			t.Fatalf("payload %x: %v", b, err)
		}
		if got, err := unpack(pe, limit); err != nil || !bytes.Equal(got, b) {
			t.Fatalf("payload %x came back as %x, %v", b, got, err)
		}

		e, err := decodeEnvelope(b)
		if err != nil {
			if !errors.Is(err, ErrCorruptValue) {
				t.Fatalf("error %v does not wrap ErrCorruptValue", err)
			}
			return
		}
		if got := encodeEnvelope(e); !bytes.Equal(got, b) {
			t.Fatalf("re-encoding %x gave %x", b, got)
		}
		p, err := unpack(e, limit)
		switch {
		case err != nil && !errors.Is(err, ErrCorruptValue):
			t.Fatalf("unpack error %v does not wrap ErrCorruptValue", err)
		case len(p) > limit:
			t.Fatalf("unpack gave %d bytes, over the limit %d", len(p), limit)
		}
	})
}
