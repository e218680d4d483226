package rediscache_test

import (
	"context"
	"errors"
	"maps"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rediscache/rediscache"
)

// snapshot returns every key and value on the server.
func snapshot(t *testing.T, e env) map[string]string {
	t.Helper()
	ctx := t.Context()
	keys, err := e.raw.Keys(ctx, "*").Result()
	require.NoError(t, err)
	out := make(map[string]string, len(keys))
	for _, k := range keys {
		v, err := e.raw.Dump(ctx, k).Result()
		require.NoError(t, err)
		out[k] = v
	}
	return out
}

// Every exported call refuses bad input with a sentinel error, writes and
// deletes nothing, and never panics.
func TestBadInputEveryCall(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	ctx := t.Context()
	c := e.client(t, rediscache.Options{Prefix: "bi", MaxKeySize: 64, MaxValueSize: 1024})
	closed := e.client(t, rediscache.Options{Prefix: "bi"})
	require.NoError(t, closed.Close())
	require.NoError(t, c.Set(ctx, "existing", "v", time.Hour))
	require.NoError(t, e.raw.Set(ctx, "outside", "v", 0).Err())

	var nilCtx context.Context // a nil context is what is under test
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	long := strings.Repeat("k", 100)
	nul := "a\x00b"
	load := func(context.Context) (int, error) { return 1, nil }
	loadMany := func(context.Context, []string) (map[string]int, error) { return nil, nil }
	type call struct {
		name string
		fn   func() error
		want error
	}
	var calls []call
	add := func(name string, want error, fn func() error) { calls = append(calls, call{name, fn, want}) }
	for _, bk := range []struct {
		name string
		key  string
		want error
	}{{"empty key", "", rediscache.ErrInvalidKey}, {"long key", long, rediscache.ErrInvalidKey}, {"NUL key", nul, rediscache.ErrInvalidKey}} {
		k, w := bk.key, bk.want
		add("Set "+bk.name, w, func() error { return c.Set(ctx, k, 1, 0) })
		add("typed Set "+bk.name, w, func() error { return rediscache.Set(ctx, c, k, 1, 0) })
		add("Get "+bk.name, w, func() error { var v int; return c.Get(ctx, k, &v) })
		add("typed Get "+bk.name, w, func() error { _, err := rediscache.Get[int](ctx, c, k); return err })
		add("Delete "+bk.name, w, func() error { _, err := c.Delete(ctx, "existing", k); return err })
		add("Exists "+bk.name, w, func() error { _, err := c.Exists(ctx, k); return err })
		add("Increment "+bk.name, w, func() error { _, err := c.Increment(ctx, k, 1); return err })
		add("Expire "+bk.name, w, func() error { _, err := c.Expire(ctx, k, time.Second); return err })
		add("Metadata "+bk.name, w, func() error { _, err := c.Metadata(ctx, k); return err })
		add("GetOrLoad "+bk.name, w, func() error { _, err := rediscache.GetOrLoad(ctx, c, k, 0, load); return err })
		add("GetMany "+bk.name, w, func() error { _, err := rediscache.GetMany[int](ctx, c, []string{"existing", k}); return err })
		add("SetMany "+bk.name, w, func() error { return rediscache.SetMany(ctx, c, map[string]int{"new": 1, k: 2}, 0) })
		add("DeleteMany "+bk.name, w, func() error { _, err := c.DeleteMany(ctx, []string{"existing", k}); return err })
		add("MGet "+bk.name, w, func() error { _, err := c.MGet(ctx, []string{"existing", k}); return err })
		add("MSet "+bk.name, w, func() error { return c.MSet(ctx, map[string][]byte{"new": {1}, k: {2}}, 0) })
		add("GetManyOrLoad "+bk.name, w, func() error {
			_, err := rediscache.GetManyOrLoad(ctx, c, []string{"existing", k}, 0, loadMany)
			return err
		})
	}
	add("InvalidatePrefix empty", rediscache.ErrInvalidKey, func() error { _, err := c.InvalidatePrefix(ctx, ""); return err })
	add("InvalidatePrefix NUL", rediscache.ErrInvalidKey, func() error { _, err := c.InvalidatePrefix(ctx, nul); return err })
	add("InvalidateNamespace empty", rediscache.ErrInvalidKey, func() error { _, err := c.InvalidateNamespace(ctx, ""); return err })
	for _, neg := range []time.Duration{-1, -time.Hour} {
		d := neg
		add("Set negative ttl", rediscache.ErrInvalidTTL, func() error { return c.Set(ctx, "new", 1, d) })
		add("Expire negative ttl", rediscache.ErrInvalidTTL, func() error { _, err := c.Expire(ctx, "existing", d); return err })
		add("SetMany negative ttl", rediscache.ErrInvalidTTL, func() error { return rediscache.SetMany(ctx, c, map[string]int{"new": 1}, d) })
		add("MSet negative ttl", rediscache.ErrInvalidTTL, func() error { return c.MSet(ctx, map[string][]byte{"new": {1}}, d) })
		add("GetOrLoad negative ttl", rediscache.ErrInvalidTTL, func() error { _, err := rediscache.GetOrLoad(ctx, c, "new", d, load); return err })
		add("GetManyOrLoad negative ttl", rediscache.ErrInvalidTTL, func() error {
			_, err := rediscache.GetManyOrLoad(ctx, c, []string{"new"}, d, loadMany)
			return err
		})
	}
	add("Set nil", rediscache.ErrInvalidValue, func() error { return c.Set(ctx, "new", nil, 0) })
	add("Set func", rediscache.ErrInvalidValue, func() error { return c.Set(ctx, "new", func() {}, 0) })
	add("Set NaN", rediscache.ErrInvalidValue, func() error { return c.Set(ctx, "new", math.NaN(), 0) })
	add("Set too large", rediscache.ErrValueTooLarge, func() error { return c.Set(ctx, "new", strings.Repeat("x", 2000), 0) })
	add("SetMany with a chan", rediscache.ErrInvalidValue, func() error {
		return rediscache.SetMany(ctx, c, map[string]any{"new": 1, "new2": make(chan int)}, 0)
	})
	add("Get non-pointer", rediscache.ErrInvalidValue, func() error { var v int; return c.Get(ctx, "existing", v) })
	add("Get nil dst", rediscache.ErrInvalidValue, func() error { return c.Get(ctx, "existing", nil) })
	add("Get wrong type", rediscache.ErrCorruptValue, func() error { _, err := rediscache.Get[int](ctx, c, "existing"); return err })
	add("GetOrLoad nil loader", rediscache.ErrInvalidValue, func() error { _, err := rediscache.GetOrLoad[int](ctx, c, "new", 0, nil); return err })
	add("GetManyOrLoad nil loader", rediscache.ErrInvalidValue, func() error {
		_, err := rediscache.GetManyOrLoad[int](ctx, c, []string{"new"}, 0, nil)
		return err
	})
	for name, cc := range map[string]context.Context{"nil ctx": nilCtx, "cancelled ctx": cancelled} {
		want := rediscache.ErrNilContext
		if cc != nil {
			want = context.Canceled
		}
		add("Set "+name, want, func() error { return c.Set(cc, "new", 1, 0) })
		add("Get "+name, want, func() error { _, err := rediscache.Get[string](cc, c, "existing"); return err })
		add("Delete "+name, want, func() error { _, err := c.Delete(cc, "existing"); return err })
		add("DeleteMany "+name, want, func() error { _, err := c.DeleteMany(cc, []string{"existing", "x"}); return err })
		add("SetMany "+name, want, func() error { return rediscache.SetMany(cc, c, map[string]int{"new": 1}, 0) })
		add("InvalidatePrefix "+name, want, func() error { _, err := c.InvalidatePrefix(cc, "exi"); return err })
		add("ClearAll "+name, want, func() error { _, err := c.ClearAll(cc); return err })
		add("GetOrLoad "+name, want, func() error { _, err := rediscache.GetOrLoad(cc, c, "new", 0, load); return err })
		add("Ping "+name, want, func() error { return c.Ping(cc) })
	}
	add("Set after Close", rediscache.ErrClosed, func() error { return closed.Set(ctx, "new", 1, 0) })
	add("Delete after Close", rediscache.ErrClosed, func() error { _, err := closed.Delete(ctx, "existing"); return err })
	add("DeleteMany after Close", rediscache.ErrClosed, func() error { _, err := closed.DeleteMany(ctx, []string{"existing"}); return err })
	add("InvalidatePrefix after Close", rediscache.ErrClosed, func() error { _, err := closed.InvalidatePrefix(ctx, "e"); return err })
	add("ClearAll after Close", rediscache.ErrClosed, func() error { _, err := closed.ClearAll(ctx); return err })
	add("GetOrLoad after Close", rediscache.ErrClosed, func() error { _, err := rediscache.GetOrLoad(ctx, closed, "new", 0, load); return err })
	add("Metadata after Close", rediscache.ErrClosed, func() error { _, err := closed.Metadata(ctx, "existing"); return err })

	before := snapshot(t, e)
	for _, tc := range calls {
		var err error
		require.NotPanics(t, func() { err = tc.fn() }, tc.name)
		require.Error(t, err, tc.name)
		assert.True(t, errors.Is(err, tc.want), "%s: got %v, want %v", tc.name, err, tc.want)
		if after := snapshot(t, e); !maps.Equal(before, after) {
			t.Fatalf("%s changed the keyspace: before %v after %v", tc.name, before, after)
		}
	}
}

// Odd but valid keys are binary-safe: they round-trip exactly, under the prefix.
func TestOddKeysRoundTrip(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	ctx := t.Context()
	c := e.client(t, rediscache.Options{Prefix: "odd"})
	for _, k := range []string{"日本語:キー", "line\nbreak", "tab\tand space", "glob*?[]\\", "emoji🙂", "{tag}", "%41", "\xff\xfe"} {
		require.NoError(t, c.Set(ctx, k, []byte(k), time.Minute), "%q", k)
		v, err := rediscache.Get[[]byte](ctx, c, k)
		require.NoError(t, err, "%q", k)
		assert.Equal(t, k, string(v))
		n, err := e.raw.Exists(ctx, "odd:"+k).Result()
		require.NoError(t, err)
		assert.Equal(t, int64(1), n, "%q stored at exactly odd:<key>", k)
	}
	// The largest TTL a time.Duration can hold is accepted.
	require.NoError(t, c.Set(ctx, "forever", 1, time.Duration(math.MaxInt64)))
	d, err := e.raw.PTTL(ctx, "odd:forever").Result()
	require.NoError(t, err)
	assert.Greater(t, d, 100*365*24*time.Hour)
	// A prefix of only glob characters deletes only keys that really start with it.
	require.NoError(t, c.Set(ctx, "*?[", 1, 0))
	require.NoError(t, c.Set(ctx, "*?[x", 1, 0))
	require.NoError(t, c.Set(ctx, "a*?[", 1, 0))
	n, err := c.InvalidatePrefix(ctx, "*?[")
	require.NoError(t, err)
	assert.Equal(t, int64(2), n)
	ok, err := c.Exists(ctx, "a*?[")
	require.NoError(t, err)
	assert.True(t, ok)
	// Empty batches are no-ops.
	m, err := rediscache.GetMany[int](ctx, c, nil)
	require.NoError(t, err)
	assert.Empty(t, m)
	require.NoError(t, rediscache.SetMany(ctx, c, map[string]int{}, 0))
	n, err = c.DeleteMany(ctx, nil)
	require.NoError(t, err)
	assert.Zero(t, n)
}
