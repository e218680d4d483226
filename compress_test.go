package rediscache_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rediscache/rediscache"
)

// compString returns a string whose JSON encoding is n bytes long and
// compresses well.
func compString(n int) string {
	return strings.Repeat(`task_1 running; `, n/16+1)[:n-2]
}

// randString returns a string whose JSON encoding is n bytes long and does
// not compress (random letters and digits).
func randString(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	r := mrand.New(mrand.NewPCG(uint64(n), 7))
	b := make([]byte, n-2)
	for i := range b {
		b[i] = alphabet[r.IntN(len(alphabet))]
	}
	return string(b)
}

// compValues are the values every path is tried with: below, at and above
// the default threshold (1 KiB of JSON), and one that does not compress.
var compValues = []struct {
	name       string
	v          string
	compressed bool // with CompressionS2 and the default threshold
}{
	{"below threshold", compString(1023), false},
	{"at threshold", compString(1024), true},
	{"above threshold", compString(10_000), true},
	{"incompressible", randString(4096), false},
}

// compWriters are the write paths; each stores v at key through c.
var compWriters = []struct {
	name  string
	write func(t *testing.T, c *rediscache.Client, key, v string)
}{
	{"Set", func(t *testing.T, c *rediscache.Client, key, v string) {
		require.NoError(t, rediscache.Set(t.Context(), c, key, v, time.Hour))
	}},
	{"SetMany", func(t *testing.T, c *rediscache.Client, key, v string) {
		require.NoError(t, rediscache.SetMany(t.Context(), c, map[string]string{key: v, key + "-2": v}, time.Hour))
	}},
	{"GetOrLoad", func(t *testing.T, c *rediscache.Client, key, v string) {
		got, err := rediscache.GetOrLoad(t.Context(), c, key, time.Hour, func(context.Context) (string, error) { return v, nil })
		require.NoError(t, err)
		require.Equal(t, v, got)
	}},
	{"GetManyOrLoad", func(t *testing.T, c *rediscache.Client, key, v string) {
		got, err := rediscache.GetManyOrLoad(t.Context(), c, []string{key}, time.Hour,
			func(_ context.Context, keys []string) (map[string]string, error) {
				return map[string]string{key: v}, nil
			})
		require.NoError(t, err)
		require.Equal(t, v, got[key])
	}},
	{"GetOrLoad early refresh", func(t *testing.T, c *rediscache.Client, key, v string) {
		// EarlyRefreshBeta 1e12 (the writer's): every hit refreshes.
		ctx := t.Context()
		_, err := rediscache.GetOrLoad(ctx, c, key, time.Hour, func(context.Context) (string, error) {
			time.Sleep(2 * time.Millisecond) // a load cost for XFetch to weigh
			return "old", nil
		})
		require.NoError(t, err)
		var refreshed atomic.Bool
		old, src, err := rediscache.GetOrLoadWithSource(ctx, c, key, time.Hour, func(context.Context) (string, error) {
			refreshed.Store(true)
			return v, nil
		})
		require.NoError(t, err)
		require.Equal(t, "old", old)
		require.Equal(t, rediscache.SourceHit, src)
		require.Eventually(t, func() bool {
			got, err := rediscache.Get[string](ctx, c, key)
			return refreshed.Load() && err == nil && got == v
		}, 5*time.Second, 5*time.Millisecond, "the refresh stored the new value")
	}},
	{"GetManyOrLoad stale refresh", func(t *testing.T, c *rediscache.Client, key, v string) {
		// StaleTTL (the writer's): past its 30ms freshness the entry is
		// served stale while a background load refreshes it.
		ctx := t.Context()
		_, err := rediscache.GetManyOrLoad(ctx, c, []string{key}, 30*time.Millisecond,
			func(_ context.Context, keys []string) (map[string]string, error) {
				return map[string]string{key: "old"}, nil
			})
		require.NoError(t, err)
		time.Sleep(60 * time.Millisecond)
		got, err := rediscache.GetManyOrLoad(ctx, c, []string{key}, time.Hour,
			func(_ context.Context, keys []string) (map[string]string, error) {
				return map[string]string{key: v}, nil
			})
		require.NoError(t, err)
		require.Equal(t, "old", got[key], "served stale")
		require.Eventually(t, func() bool {
			got, err := rediscache.Get[string](ctx, c, key)
			return err == nil && got == v
		}, 5*time.Second, 5*time.Millisecond, "the refresh stored the new value")
	}},
}

// Every write path stores compressed what the rules say, and every read
// path of every Client, whatever its Compression and with or without the
// near cache, reads it back.
func TestCompressionRoundTripEveryPath(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	ctx := t.Context()
	var loaderCalls atomic.Int64
	failing := func(context.Context) (string, error) { loaderCalls.Add(1); return "", errors.New("not loaded") }
	failingMany := func(context.Context, []string) (map[string]string, error) {
		loaderCalls.Add(1)
		return nil, errors.New("not loaded")
	}
	writers := map[rediscache.Compression]*rediscache.Client{}
	for _, comp := range []rediscache.Compression{rediscache.CompressionNone, rediscache.CompressionS2} {
		writers[comp] = e.client(t, rediscache.Options{Prefix: "comp", Compression: comp,
			EarlyRefreshBeta: 1e12, StaleTTL: time.Hour})
	}
	type reader struct {
		name string
		c    *rediscache.Client
	}
	var readers []reader
	for _, comp := range []rediscache.Compression{rediscache.CompressionNone, rediscache.CompressionS2} {
		for _, near := range []bool{false, true} {
			readers = append(readers, reader{fmt.Sprintf("compression %d near %v", comp, near),
				e.client(t, rediscache.Options{Prefix: "comp", Compression: comp, LocalCache: near, EarlyRefreshBeta: -1})})
		}
	}
	for comp, w := range writers {
		for _, wr := range compWriters {
			for _, val := range compValues {
				key := fmt.Sprintf("%d/%s/%s", comp, wr.name, val.name)
				wr.write(t, w, key, val.v)
				want := val.compressed && comp == rediscache.CompressionS2
				md, err := w.Metadata(ctx, key)
				require.NoError(t, err, key)
				assert.Equal(t, want, md.Compressed, "%s: Metadata.Compressed", key)
				assert.Equal(t, len(val.v)+2, md.PayloadSize, "%s: Metadata.PayloadSize", key)
				n, err := e.raw.StrLen(ctx, "comp:"+key).Result()
				require.NoError(t, err)
				assert.Equal(t, int64(md.Size), n, "%s: Metadata.Size is STRLEN", key)
				if want {
					assert.Less(t, md.Size, md.PayloadSize, "%s: stored smaller", key)
				} else {
					assert.Greater(t, md.Size, md.PayloadSize, "%s: stored as it is, envelope and all", key)
				}
				for _, r := range readers {
					for range 2 { // the second read may come from the near cache
						got, err := rediscache.Get[string](ctx, r.c, key)
						require.NoError(t, err, "%s: Get by %s", key, r.name)
						assert.Equal(t, val.v, got, "%s: Get by %s", key, r.name)
						m, err := rediscache.GetMany[string](ctx, r.c, []string{key})
						require.NoError(t, err, "%s: GetMany by %s", key, r.name)
						assert.Equal(t, val.v, m[key], "%s: GetMany by %s", key, r.name)
						got, err = rediscache.GetOrLoad(ctx, r.c, key, time.Hour, failing)
						require.NoError(t, err, "%s: GetOrLoad by %s", key, r.name)
						assert.Equal(t, val.v, got, "%s: GetOrLoad by %s", key, r.name)
						m, err = rediscache.GetManyOrLoad(ctx, r.c, []string{key}, time.Hour, failingMany)
						require.NoError(t, err, "%s: GetManyOrLoad by %s", key, r.name)
						assert.Equal(t, val.v, m[key], "%s: GetManyOrLoad by %s", key, r.name)
					}
					md, err := r.c.Metadata(ctx, key)
					require.NoError(t, err)
					assert.Equal(t, want, md.Compressed, "%s: Metadata.Compressed by %s", key, r.name)
				}
			}
		}
	}
	assert.Zero(t, loaderCalls.Load(), "no reader loaded: every value was read")
}

// A near cache that kept a value sees another Client's rewrite of it, in
// the other form: compressed over plain and plain over compressed.
func TestCompressionNearCacheAcrossClients(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	ctx := t.Context()
	s2 := e.client(t, rediscache.Options{Prefix: "near", Compression: rediscache.CompressionS2})
	none := e.client(t, rediscache.Options{Prefix: "near"})
	for _, tc := range []struct {
		name           string
		writer, reader *rediscache.Client
		readerComp     rediscache.Compression
	}{
		{"S2 writes, None reads", s2, none, rediscache.CompressionNone},
		{"None writes, S2 reads", none, s2, rediscache.CompressionS2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			near := e.client(t, rediscache.Options{Prefix: "near", Compression: tc.readerComp, LocalCache: true})
			key := tc.name
			for i, v := range []string{compString(5000), compString(6000) + "!", randString(3000)} {
				if i%2 == 0 {
					require.NoError(t, rediscache.Set(ctx, tc.writer, key, v, time.Hour))
				} else {
					require.NoError(t, rediscache.Set(ctx, tc.reader, key, v, time.Hour))
				}
				require.Eventually(t, func() bool {
					got, err := rediscache.Get[string](ctx, near, key)
					return err == nil && got == v
				}, 5*time.Second, time.Millisecond, "write %d reaches the near cache", i)
				got, err := rediscache.GetOrLoad(ctx, near, key, time.Hour, func(context.Context) (string, error) { return "", errors.New("loaded") })
				require.NoError(t, err)
				assert.Equal(t, v, got)
			}
		})
	}
}

// A compressible 10 KB value takes much less room in Redis.
func TestCompressionStoresFewerBytes(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	ctx := t.Context()
	v := compString(10_000)
	size := map[rediscache.Compression]int64{}
	for _, comp := range []rediscache.Compression{rediscache.CompressionNone, rediscache.CompressionS2} {
		c := e.client(t, rediscache.Options{Prefix: fmt.Sprint("size", comp), Compression: comp})
		require.NoError(t, rediscache.Set(ctx, c, "page", v, time.Hour))
		n, err := e.raw.StrLen(ctx, c.StorageKey("page")).Result()
		require.NoError(t, err)
		size[comp] = n
	}
	assert.Equal(t, int64(10_000+46), size[rediscache.CompressionNone])
	assert.Less(t, size[rediscache.CompressionS2]*4, size[rediscache.CompressionNone], "S2 stores %d bytes", size[rediscache.CompressionS2])
}

// MSet writes the caller's bytes as they are, compressible or not.
func TestCompressionLeavesMSetRaw(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, e env) {
		ctx := t.Context()
		c := e.client(t, rediscache.Options{Prefix: "raw", Compression: rediscache.CompressionS2, CompressMinSize: -1})
		raw := []byte(compString(10_000))
		require.NoError(t, c.MSet(ctx, map[string][]byte{"k": raw}, time.Hour))
		got, err := e.raw.Get(ctx, c.StorageKey("k")).Bytes()
		require.NoError(t, err)
		assert.Equal(t, raw, got)
		vals, err := c.MGet(ctx, []string{"k"})
		require.NoError(t, err)
		assert.Equal(t, raw, vals[0])
	})
}

// MaxValueSize applies to the bytes stored, and bounds the decoded size.
func TestCompressionMaxValueSize(t *testing.T) {
	t.Parallel()
	const limit = 4096
	e := newMiniEnv(t)
	ctx := t.Context()
	for _, tc := range []struct {
		name    string
		comp    rediscache.Compression
		payload int // JSON bytes
		stored  bool
	}{
		{"fits either way", rediscache.CompressionS2, 2000, true},
		{"fits only compressed", rediscache.CompressionS2, limit - 10, true},
		{"does not fit uncompressed", rediscache.CompressionNone, limit - 10, false},
		{"payload over the limit, even compressible", rediscache.CompressionS2, limit + 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := e.client(t, rediscache.Options{Prefix: strings.ReplaceAll(tc.name, " ", "_"), Compression: tc.comp, MaxValueSize: limit})
			v := compString(tc.payload)
			err := rediscache.Set(ctx, c, "k", v, time.Hour)
			if !tc.stored {
				assert.True(t, errors.Is(err, rediscache.ErrValueTooLarge), "Set: %v", err)
				got, err := rediscache.GetOrLoad(ctx, c, "k", time.Hour, func(context.Context) (string, error) { return v, nil })
				require.NoError(t, err, "GetOrLoad answers with the value it does not store")
				assert.Equal(t, v, got)
				_, err = rediscache.Get[string](ctx, c, "k")
				assert.ErrorIs(t, err, rediscache.ErrCacheMiss)
				return
			}
			require.NoError(t, err)
			got, err := rediscache.Get[string](ctx, c, "k")
			require.NoError(t, err)
			assert.Equal(t, v, got)
			md, err := c.Metadata(ctx, "k")
			require.NoError(t, err)
			assert.LessOrEqual(t, md.Size, limit)
		})
	}
}

// hostileEnvelope returns the bytes stored at key (a value this library
// wrote, untagged) with the compressed flag set and payload as its payload.
func hostileEnvelope(t *testing.T, e env, k string, payload []byte) []byte {
	t.Helper()
	b, err := e.raw.Get(t.Context(), k).Bytes()
	require.NoError(t, err)
	require.Greater(t, len(b), 46)
	b = append(b[:46:46], payload...)
	b[1] |= 1 << 3
	return b
}

// A compressed value whose declared size is over the reader's bound, or
// whose block is corrupt, written by a raw client, reads as ErrCorruptValue
// on every path without the declared size being allocated. Not parallel:
// MemStats counts the whole process.
func TestCompressionHostileValue(t *testing.T) {
	e := newRealEnv(t)
	ctx := t.Context()
	huge := binary.AppendUvarint(nil, 1<<30) // declares 1 GiB, holds 4 bytes
	huge = append(huge, 0, 0, 0, 0)
	over64 := binary.AppendUvarint(nil, 64<<20+1)
	over64 = append(over64, 0, 0, 0, 0)
	for _, tc := range []struct {
		name     string
		opt      rediscache.Options
		payload  []byte
		declared int
	}{
		{"1 GiB declared", rediscache.Options{}, huge, 1 << 30},
		{"over MaxValueSize", rediscache.Options{MaxValueSize: 1 << 20}, binary.AppendUvarint(nil, 1<<20+1), 1<<20 + 1},
		{"over 64 MiB, no MaxValueSize", rediscache.Options{MaxValueSize: -1}, over64, 64<<20 + 1},
		{"corrupt block", rediscache.Options{}, []byte{100, 0xff, 0xff, 0xff}, 100},
		{"bad length", rediscache.Options{}, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, near := range []bool{false, true} {
				opt := tc.opt
				opt.Prefix, opt.LocalCache = fmt.Sprint("hostile", near), near
				c := e.client(t, opt)
				require.NoError(t, rediscache.Set(ctx, c, tc.name, "ok", time.Hour))
				k := c.StorageKey(tc.name)
				require.NoError(t, e.raw.Set(ctx, k, hostileEnvelope(t, e, k, tc.payload), time.Hour).Err())

				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				for range 3 {
					_, err := rediscache.Get[string](ctx, c, tc.name)
					assert.ErrorIs(t, err, rediscache.ErrCorruptValue, "Get")
					_, err = rediscache.GetMany[string](ctx, c, []string{tc.name})
					assert.ErrorIs(t, err, rediscache.ErrCorruptValue, "GetMany")
				}
				runtime.ReadMemStats(&after)
				assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(8<<20), "bytes allocated by 6 refused reads")

				md, err := c.Metadata(ctx, tc.name)
				if tc.declared < 0 {
					assert.ErrorIs(t, err, rediscache.ErrCorruptValue, "Metadata")
				} else {
					require.NoError(t, err)
					assert.Equal(t, tc.declared, md.PayloadSize)
				}
				assert.True(t, md.Compressed)

				// GetOrLoad loads, and replaces the corrupt value with its own.
				got, err := rediscache.GetOrLoad(ctx, c, tc.name, time.Hour, func(context.Context) (string, error) { return "loaded", nil })
				require.NoError(t, err)
				assert.Equal(t, "loaded", got)
				got, err = rediscache.Get[string](ctx, c, tc.name)
				require.NoError(t, err)
				assert.Equal(t, "loaded", got)
			}
		})
	}
}

func TestCompressionOptions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opt  rediscache.Options
		ok   bool
	}{
		{"none", rediscache.Options{Compression: rediscache.CompressionNone}, true},
		{"s2", rediscache.Options{Compression: rediscache.CompressionS2}, true},
		{"unknown", rediscache.Options{Compression: rediscache.CompressionS2 + 1}, false},
		{"threshold off", rediscache.Options{Compression: rediscache.CompressionS2, CompressMinSize: -1}, true},
		{"negative threshold", rediscache.Options{Compression: rediscache.CompressionS2, CompressMinSize: -2}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.opt.Addrs = []string{"127.0.0.1:1"}
			c, err := rediscache.New(&tc.opt)
			if !tc.ok {
				assert.ErrorIs(t, err, rediscache.ErrInvalidOptions)
				return
			}
			require.NoError(t, err)
			require.NoError(t, c.Close())
		})
	}
}
