package rediscache

import (
	"bytes"
	"encoding/binary"
	"errors"
	mrand "math/rand/v2"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// compressingClient returns a Client that only packs payloads (it never
// talks to Redis): Compression and its limits as given, defaults filled.
func compressingClient(t testing.TB, comp Compression, minSize, maxValue int) *Client {
	t.Helper()
	o := Options{Addrs: []string{"127.0.0.1:1"}, Compression: comp, CompressMinSize: minSize, MaxValueSize: maxValue}
	require.NoError(t, o.init())
	return &Client{opt: o}
}

// randomBytes returns n bytes that do not compress.
func randomBytes(n int) []byte {
	r := mrand.NewChaCha8([32]byte{1})
	b := make([]byte, n)
	_, _ = r.Read(b)
	return b
}

// compressible returns n bytes that compress well.
func compressible(n int) []byte {
	return []byte(strings.Repeat(`{"id":"task_1","status":"running"},`, n/35+1)[:n])
}

// hostilePayload is an S2 block that declares n decoded bytes and holds
// none of them.
func hostilePayload(n uint64) []byte {
	return append(binary.AppendUvarint(nil, n), 0, 0, 0, 0)
}

func TestPackCompressesAtThreshold(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		comp       Compression
		minSize    int // 0: the default 1 KiB
		maxValue   int // 0: the default 16 MiB
		p          []byte
		compressed bool
	}{
		{"none", CompressionNone, 0, 0, compressible(10_000), false},
		{"below", CompressionS2, 0, 0, compressible(1023), false},
		{"at", CompressionS2, 0, 0, compressible(1024), true},
		{"above", CompressionS2, 0, 0, compressible(10_000), true},
		{"incompressible", CompressionS2, 0, 0, randomBytes(10_000), false},
		{"threshold off", CompressionS2, -1, 0, compressible(100), true},
		{"threshold off, tiny", CompressionS2, -1, 0, []byte("ab"), false},
		{"threshold off, empty", CompressionS2, -1, 0, []byte{}, false},
		{"over MaxValueSize", CompressionS2, 0, 4096, compressible(4097), false},
		{"at MaxValueSize", CompressionS2, 0, 4096, compressible(4096), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := compressingClient(t, tc.comp, tc.minSize, tc.maxValue)
			got, flags := c.pack(tc.p)
			assert.Equal(t, tc.compressed, flags == flagCompressed, "flags %#x", flags)
			if !tc.compressed {
				assert.Equal(t, tc.p, got, "stored as it is")
				return
			}
			assert.Less(t, len(got), len(tc.p))
			back, err := unpack(envelope{flags: flags, payload: got}, c.decodedLimit())
			require.NoError(t, err)
			assert.True(t, bytes.Equal(tc.p, back))
		})
	}
}

func TestUnpackRefusesCorruptAndHostilePayloads(t *testing.T) {
	t.Parallel()
	c := compressingClient(t, CompressionS2, 0, 0)
	valid, flags := c.pack(compressible(4096))
	require.Equal(t, byte(flagCompressed), flags)
	flipped := bytes.Clone(valid)
	flipped[len(flipped)/2] ^= 0xff
	for _, tc := range []struct {
		name    string
		payload []byte
		limit   int
	}{
		{"empty", nil, 1 << 20},
		{"bad length varint", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 1 << 20},
		{"declares over the limit", hostilePayload(1<<20 + 1), 1 << 20},
		{"declares 1 GiB", hostilePayload(1 << 30), maxDecodedSize},
		{"declares 4 GiB", hostilePayload(1<<32 - 1), maxDecodedSize},
		{"declares under the limit, holds nothing", hostilePayload(100), 1 << 20},
		{"truncated", valid[:len(valid)/2], 1 << 20},
		{"flipped byte", flipped, 1 << 20},
		{"valid, over a smaller reader's limit", valid, 4095},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := unpack(envelope{flags: flagCompressed, payload: tc.payload}, tc.limit)
			if tc.name == "flipped byte" && err == nil {
				// A flip inside a literal decodes, to other bytes: S2
				// blocks carry no checksum; the Codec is what refuses them.
				assert.NotEqual(t, compressible(4096), p)
				return
			}
			require.Error(t, err)
			assert.True(t, errors.Is(err, ErrCorruptValue), "%v", err)
			assert.Nil(t, p)
		})
	}
}

// A hostile declared length is refused before anything is allocated: the
// error is all a refused read allocates, never the declared gigabyte. Not
// parallel: MemStats counts the whole process (so the bound leaves room
// for what other goroutines allocate meanwhile).
func TestUnpackHostileLengthAllocatesNothing(t *testing.T) {
	e := envelope{flags: flagCompressed, payload: hostilePayload(1 << 30)}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 100 {
		if _, err := unpack(e, maxDecodedSize); err == nil {
			t.Fatal("a 1 GiB declared length was accepted")
		}
	}
	runtime.ReadMemStats(&after)
	assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(1<<20), "bytes allocated by 100 refused reads")
}

func TestEnvelopeCompressedFlag(t *testing.T) {
	t.Parallel()
	c := compressingClient(t, CompressionS2, 0, 0)
	want := strings.Repeat("abc", 2000)
	p, flags, err := c.encode(want, 0)
	require.NoError(t, err)
	require.Equal(t, byte(flagCompressed), flags)
	for _, tc := range []struct {
		name string
		b    []byte
		ok   bool
	}{
		{"compressed value", encodeEnvelope(envelope{flags: flags, created: 1, payload: p}), true},
		{"compressed tagged value", encodeEnvelope(envelope{flags: flags, tags: appendTags(nil, []string{"t"}, tagVersions{"t": 1}), payload: p}), true},
		{"compressed negative entry", encodeEnvelope(envelope{flags: flagCompressed | flagNegative}), false},
		{"compressed lease", encodeEnvelope(envelope{flags: flagCompressed | flagLease}), false},
		{"compressed version 1", append([]byte{envFormatV1, flagCompressed}, make([]byte, 30)...), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e, kind, err := parseStored(tc.b)
			if !tc.ok {
				assert.True(t, errors.Is(err, ErrCorruptValue), "%v", err)
				assert.Equal(t, storedForeign, kind)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, storedValue, kind)
			assert.NotZero(t, e.flags&flagCompressed)
			var got string
			_, _, err = c.decodeStored(tc.b, &got, 0)
			require.NoError(t, err)
			assert.Equal(t, want, got)
		})
	}
}
