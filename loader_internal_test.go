package rediscache

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rediscache/rediscache/internal/redistest"
)

// A miss that joins a background refresh which skips its load (another
// process holds the lease) must not fail: it loads, or waits, by itself.
func TestGetOrLoadJoiningASkippedRefresh(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	raw := srv.Client(t)
	c, err := New(&Options{Addrs: []string{srv.Addr()}, Prefix: "p"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	ctx := t.Context()
	k := c.StorageKey("k")
	lockKey := k + "\x00lock"

	// Another process holds the lease on k.
	require.NoError(t, raw.Set(ctx, lockKey, "other process", time.Minute).Err())
	load := func(context.Context) (string, error) { return "loaded", nil }

	// A background refresh of k is in flight, held open until release; it
	// will skip its load, as refreshInBackground's does when the lease is
	// taken.
	release, inFlight, bgDone := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(bgDone)
		_, _, _ = c.flight.Do(k, func() (any, error) {
			close(inFlight)
			<-release
			return loadAndStore(ctx, c, "k", k, time.Minute, load, modeBackground)
		})
	}()
	<-inFlight

	type result struct {
		v   string
		src Source
		err error
	}
	res := make(chan result, 1)
	go func() {
		v, src, err := GetOrLoadWithSource(ctx, c, "k", time.Minute, load)
		res <- result{v, src, err}
	}()
	time.Sleep(100 * time.Millisecond) // the miss joins the refresh's flight
	close(release)
	<-bgDone
	// The other process gives up without storing a value.
	require.NoError(t, raw.Del(ctx, lockKey).Err())

	select {
	case r := <-res:
		require.NoError(t, r.err)
		assert.Equal(t, "loaded", r.v)
		assert.Equal(t, SourceLoaded, r.src)
	case <-time.After(10 * time.Second):
		t.Fatal("GetOrLoad did not return")
	}
}
