package rediscache_test

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rediscache/rediscache"
	"github.com/rediscache/rediscache/internal/redistest"
)

// A loader that ignores its context and never returns: 2,000 callers of
// its key cost one goroutine (the load's), not one each; every caller is
// back by LoadTimeout though none has a deadline of its own; Close returns
// promptly instead of waiting for the loader.
func TestLoaderThatNeverReturns(t *testing.T) {
	srv := redistest.Start(t) // out of process: its connections add no goroutines here
	const loadTimeout = 200 * time.Millisecond
	c, err := rediscache.New(&rediscache.Options{Addrs: []string{srv.Addr()}, LoadTimeout: loadTimeout, HealthCheckInterval: -1, GenerationTTL: -1})
	require.NoError(t, err)
	stuck := make(chan struct{})
	defer close(stuck) // lets the loader go at last
	started := make(chan struct{})
	var once sync.Once
	load := func(context.Context) (int, error) { // ignores its context
		once.Do(func() { close(started) })
		<-stuck
		return 1, nil
	}

	base := runtime.NumGoroutine()
	const callers = 2000
	errs := make(chan error, callers)
	begin := time.Now()
	var ready sync.WaitGroup
	ready.Add(callers)
	for range callers {
		go func() {
			ready.Done()
			_, err := rediscache.GetOrLoad(context.Background(), c, "k", time.Minute, load)
			errs <- err
		}()
	}
	ready.Wait()
	<-started
	time.Sleep(50 * time.Millisecond) // all callers waiting on the load
	extra := runtime.NumGoroutine() - base - callers
	assert.LessOrEqual(t, extra, 10, "goroutines the Client added for one load with %d callers", callers)

	for range callers {
		err := <-errs
		require.Error(t, err)
	}
	back := time.Since(begin)
	t.Logf("%d callers back after %v (LoadTimeout %v); %d goroutines added", callers, back, loadTimeout, extra)
	assert.GreaterOrEqual(t, back, loadTimeout, "callers wait for the load up to LoadTimeout")
	assert.Less(t, back, loadTimeout+5*time.Second, "callers are back by LoadTimeout (sanity bound)")

	closed := time.Now()
	require.NoError(t, c.Close())
	assert.Less(t, time.Since(closed), 5*time.Second, "Close does not wait for the loader (sanity bound)")
}
