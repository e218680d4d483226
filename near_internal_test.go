package rediscache

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rediscache/rediscache/internal/redistest"
)

func TestNearEntryExpiry(t *testing.T) {
	now := time.Now().UnixMilli()
	opt := Options{NegativeTTL: 30 * time.Second, StaleTTL: time.Minute}
	unbounded := &Client{opt: opt, near: newNearCache(10, -1, 0, "")}
	bounded := &Client{opt: opt, near: newNearCache(10, time.Second, 0, "")}
	for _, tc := range []struct {
		name     string
		c        *Client
		e        envelope
		expires  int64 // 0: none; -1: now + 1s (LocalCacheTTL), within the test's run time
		negative bool
		live     bool
	}{
		{"v2: the envelope's expiry", unbounded, envelope{created: now, expires: now + 5000}, now + 5000, false, true},
		{"v2: past its expiry", unbounded, envelope{created: now - 5000, expires: now - 1}, now - 1, false, false},
		{"v2: LocalCacheTTL first", bounded, envelope{created: now, expires: now + 5000}, -1, false, true},
		{"v2 negative: the envelope's expiry", unbounded, envelope{flags: flagNegative, created: now, expires: now + 30000}, now + 30000, true, true},
		{"v1 plain Set: no known expiry", unbounded, envelope{format: envFormatV1, created: now - 1e6}, 0, false, true},
		{"v1 plain Set: LocalCacheTTL", bounded, envelope{format: envFormatV1, created: now - 1e6}, -1, false, true},
		{"v1 negative, within NegativeTTL", unbounded, envelope{format: envFormatV1, flags: flagNegative, created: now - 1000}, now - 1000 + 30000, true, true},
		{"v1 negative, past NegativeTTL", unbounded, envelope{format: envFormatV1, flags: flagNegative, created: now - 31000}, now - 31000 + 30000, true, false},
		{"v1 fresh", unbounded, envelope{format: envFormatV1, created: now, freshUntil: now + 1000}, now + 1000 + 60000, false, true},
		{"v1 stale, within StaleTTL", unbounded, envelope{format: envFormatV1, created: now - 2000, freshUntil: now - 1000}, now - 1000 + 60000, false, true},
		{"v1 past StaleTTL", unbounded, envelope{format: envFormatV1, created: now - 70000, freshUntil: now - 61000}, now - 61000 + 60000, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ent := tc.c.nearEntryOf(tc.e, "v")
			if tc.expires == -1 {
				assert.InDelta(t, time.Now().UnixMilli()+1000, ent.expires, 100)
			} else {
				assert.Equal(t, tc.expires, ent.expires)
			}
			assert.Equal(t, tc.negative, ent.negative)
			assert.Equal(t, tc.negative, ent.v == nil)
			assert.Equal(t, tc.live, ent.liveAt(time.Now().UnixMilli()))
		})
	}
}

// InvalidatePrefix drops the Client's kept copies of every key under the
// prefix, also of keys its walk does not find: here one that another
// Client deleted, whose invalidation has not reached this Client yet (the
// kept copy is planted, the key absent from Redis).
func TestInvalidatePrefixDropsKeptCopiesItDoesNotFind(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c, err := New(&Options{Addrs: []string{srv.Addr()}, Prefix: "p", LocalCache: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	ctx := t.Context()
	for _, op := range []string{"InvalidatePrefix", "ClearAll"} {
		k := c.StorageKey("tasks:v1:gone")
		c.near.store(k, &nearEntry{v: 7}, c.near.mark(k))
		_, kept := c.near.load(k)
		require.True(t, kept)
		var err error
		if op == "ClearAll" {
			_, err = c.ClearAll(ctx)
		} else {
			_, err = c.InvalidatePrefix(ctx, "tasks:")
		}
		require.NoError(t, err)
		_, kept = c.near.load(k)
		assert.False(t, kept, "%s left a kept copy under its prefix", op)
	}
}

// nearCache embeds go-redis's experimental Cache interface and overrides
// the methods that drop entries, so the decoded values follow. A method
// go-redis adds to the interface in a minor release would pass through to
// the bytes alone, unseen: this test names every method and what nearCache
// does with it, fails on one it does not know, and checks that each
// dropping method drops the decoded value too.
func TestNearCacheKnowsEveryCacheMethod(t *testing.T) {
	passes := []string{"Get", "Reserve", "FulfillOwned", "Cancel"} // reads and fills: go-redis refuses a fill after an invalidation
	drops := map[string]func(n *nearCache){
		"DeleteByRedisKey": func(n *nearCache) { n.DeleteByRedisKey(n.ns + "k") },
		"DeleteByCacheKey": func(n *nearCache) { n.DeleteByCacheKey("any") },
		"EvictByConn":      func(n *nearCache) { n.EvictByConn(1) },
		"Flush":            func(n *nearCache) { n.Flush() },
	}
	iface := reflect.TypeFor[redis.Cache]()
	for i := range iface.NumMethod() {
		name := iface.Method(i).Name
		assert.True(t, slices.Contains(passes, name) || drops[name] != nil,
			"redis.Cache has a method nearCache does not know: %s (if it drops entries, override it to drop the decoded values)", name)
	}
	for name, drop := range drops {
		n := newNearCache(10, -1, 0, "")
		n.store("k", &nearEntry{v: 1}, n.mark("k"))
		_, kept := n.load("k")
		require.True(t, kept, name)
		drop(n)
		_, kept = n.load("k")
		assert.False(t, kept, "%s left the decoded value", name)
	}
}
