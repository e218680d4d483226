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
// to the same bytes.
func FuzzDecodeEnvelope(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("42"))
	f.Add([]byte(`{"id":"x"}`))
	f.Add(encodeEnvelope(envelope{created: 1, payload: []byte(`"v"`)}))
	f.Add(encodeEnvelope(envelope{flags: flagNegative}))
	f.Add(append([]byte{envFormatV1, 0xff}, make([]byte, 30)...))
	f.Fuzz(func(t *testing.T, b []byte) {
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
	})
}
