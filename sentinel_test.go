package rediscache_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rediscache/rediscache"
	"github.com/rediscache/rediscache/internal/redistest"
)

type sentinelItem struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
}

// TestSentinelFailover checks that one Client built with MasterName keeps
// working through a Sentinel failover, and that writes acknowledged before
// the master died are either read back intact or are misses.
func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	began := time.Now()
	s := redistest.StartSentinel(t, "mymaster", 1, 3)
	t.Logf("sentinel deployment ready in %s", time.Since(began).Round(time.Millisecond))

	c, err := rediscache.New(&rediscache.Options{
		Addrs:        s.SentinelAddrs(),
		MasterName:   "mymaster",
		Prefix:       "sent",
		DialTimeout:  time.Second,
		ReadTimeout:  time.Second,
		WriteTimeout: time.Second,
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()

	// Round trip through the master.
	want := sentinelItem{ID: 1, Name: "before"}
	require.NoError(t, rediscache.Set(ctx, c, "item:1", want, time.Minute))
	got, err := rediscache.Get[sentinelItem](ctx, c, "item:1")
	require.NoError(t, err)
	require.Equal(t, want, got)
	master := s.Master()
	n, err := master.Client(t).Exists(ctx, c.StorageKey("item:1")).Result()
	require.NoError(t, err)
	require.EqualValues(t, 1, n, "the value is stored on the master under the prefix")

	// More acknowledged writes, not waited on for replication: asynchronous
	// replication may lose the last of them in the failover.
	const acked = 20
	for i := 0; i < acked; i++ {
		require.NoError(t, rediscache.Set(ctx, c, fmt.Sprintf("acked:%d", i), sentinelItem{ID: i, Name: "acked"}, time.Minute))
	}

	old := master.Addr()
	killed := time.Now()
	master.Kill()

	// The same Client recovers through the promoted replica.
	var attempts int
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		attempts++
		actx, acancel := context.WithTimeout(ctx, 2*time.Second)
		defer acancel()
		after := sentinelItem{ID: 2, Name: "after"}
		if !assert.NoError(ct, rediscache.Set(actx, c, "item:2", after, time.Minute), "Set after the kill") {
			return
		}
		got, err := rediscache.Get[sentinelItem](actx, c, "item:2")
		if assert.NoError(ct, err, "Get after the kill") {
			assert.Equal(ct, after, got)
		}
	}, 20*time.Second, 100*time.Millisecond, "the Client did not recover from the failover of %s", old)
	t.Logf("Client writing and reading again %s after the kill (%d attempts)",
		time.Since(killed).Round(time.Millisecond), attempts)

	// The write went to the promoted replica.
	promoted := s.Master()
	require.NotEqual(t, old, promoted.Addr(), "the sentinels still report the killed master")
	require.Len(t, s.Replicas(), 1)
	require.Equal(t, old, s.Replicas()[0].Addr())
	n, err = promoted.Client(t).Exists(ctx, c.StorageKey("item:2")).Result()
	require.NoError(t, err)
	require.EqualValues(t, 1, n, "the new value is on the promoted replica %s", promoted.Addr())

	// Writes acknowledged before the kill: equal or a miss, never another value.
	check := func(key string, want sentinelItem) bool {
		got, err := rediscache.Get[sentinelItem](ctx, c, key)
		if errors.Is(err, rediscache.ErrCacheMiss) {
			return false
		}
		require.NoError(t, err, "Get %s after failover", key)
		require.Equal(t, want, got, "Get %s after failover", key)
		return true
	}
	kept := 0
	if check("item:1", want) {
		kept++
	}
	for i := 0; i < acked; i++ {
		if check(fmt.Sprintf("acked:%d", i), sentinelItem{ID: i, Name: "acked"}) {
			kept++
		}
	}
	t.Logf("%d of %d values written before the kill survived the failover", kept, acked+1)
}
