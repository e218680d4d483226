package rediscache

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// newTestBreaker returns a breaker that opens after failures outages and
// stays open for cooldown, and the Client whose Stats it counts in.
func newTestBreaker(failures int, cooldown time.Duration) (*breaker, *Client) {
	c := &Client{opt: Options{BreakerFailures: failures, BreakerCooldown: cooldown}}
	return newBreaker(c, ""), c
}

// errOutage is an outage as outage sees it: a timeout.
var errOutage = context.DeadlineExceeded

// halfOpen opens b with one outage and waits for it to half-open, without
// taking the probe's turn.
func halfOpen(t *testing.T, b *breaker) {
	t.Helper()
	b.report(errOutage)
	require.Equal(t, "open", b.state())
	require.Eventually(t, func() bool { return b.state() == "half-open" }, 5*time.Second, time.Millisecond)
}

// A probe that asks and never reports (a call that hangs, or a bug) does not
// leave gobreaker's half-open holding its one request forever: the first
// allow after the probe's turn resolves it as a failure, which opens the
// breaker for a cooldown, and then a new probe goes.
func TestBreakerProbeThatNeverReportsLosesItsTurn(t *testing.T) {
	t.Parallel()
	const cooldown = 50 * time.Millisecond
	b, c := newTestBreaker(1, cooldown)
	require.Equal(t, time.Second, b.probeTurn, "max(BreakerCooldown, 1s)")
	halfOpen(t, b)

	_, ok := b.allow()
	require.True(t, ok, "the probe")
	asked := time.Now()
	for range 20 {
		_, ok := b.allow()
		require.False(t, ok, "a second call while the probe is out")
		time.Sleep(5 * time.Millisecond)
	}
	require.Equal(t, "half-open", b.state())

	var probe turn
	require.Eventually(t, func() bool {
		probe, ok = b.allow()
		return ok
	}, 5*time.Second, 5*time.Millisecond, "still stuck half-open")
	t.Logf("a new probe %v after the lost one asked", time.Since(asked).Round(time.Millisecond))
	assert.GreaterOrEqual(t, time.Since(asked), b.probeTurn, "not before the lost probe's turn ended")
	assert.Equal(t, uint64(2), c.ctr.breakerOpens.Load(), "the lost probe counted as a failure: opened again")
	require.NotNil(t, probe.p, "the new call is half-open's probe")
	b.report(nil)
	assert.Equal(t, "closed", b.state())
}

// A probe whose caller cancelled it proves nothing: the breaker neither
// closes (a cancel is no success) nor opens (nor a failure); it stays
// half-open and the next call probes.
func TestBreakerCancelledProbeDoesNotClose(t *testing.T) {
	t.Parallel()
	b, c := newTestBreaker(1, 20*time.Millisecond)
	halfOpen(t, b)

	_, ok := b.allow()
	require.True(t, ok)
	b.report(opErr("get", "k", context.Canceled))
	assert.Equal(t, "half-open", b.state(), "a cancelled probe closed (or opened) the breaker")
	assert.Equal(t, uint64(1), c.ctr.breakerOpens.Load())

	_, ok = b.allow()
	require.True(t, ok, "the next call probes")
	_, ok = b.allow()
	require.False(t, ok, "one probe at a time")
	b.report(nil)
	assert.Equal(t, "closed", b.state())
}

// Half-open lets exactly one of many concurrent callers probe.
func TestBreakerHalfOpenOneProbeUnderConcurrency(t *testing.T) {
	t.Parallel()
	b, _ := newTestBreaker(1, 20*time.Millisecond)
	for round := range 3 {
		halfOpen(t, b)
		var (
			mu      sync.Mutex
			allowed int
			wg      sync.WaitGroup
		)
		start := make(chan struct{})
		for range 50 {
			wg.Go(func() {
				<-start
				if _, ok := b.allow(); ok {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
			})
		}
		close(start)
		wg.Wait()
		require.Equal(t, 1, allowed, "round %d: calls let through half-open", round)
		b.report(errOutage) // the probe failed: open again
		require.Equal(t, "open", b.state())
	}
}

// A call that asked and sent nothing releases its turn: the next call
// probes. A release after the probe was resolved does nothing, so it never
// frees the turn of a later probe.
func TestBreakerProbeRelease(t *testing.T) {
	t.Parallel()
	b, _ := newTestBreaker(1, 20*time.Millisecond)
	halfOpen(t, b)

	first, ok := b.allow()
	require.True(t, ok)
	first.release()
	assert.Equal(t, "half-open", b.state())

	second, ok := b.allow()
	require.True(t, ok, "a released turn is free for the next call")
	b.report(context.Canceled) // resolves second's probe: excluded
	third, ok := b.allow()
	require.True(t, ok)
	second.release() // late: second was resolved already
	first.release()
	_, ok = b.allow()
	require.False(t, ok, "a stale release freed the turn of the probe out")
	third.release()
	_, ok = b.allow()
	require.True(t, ok)

	// The zero turn (a call let through closed) releases nothing.
	turn{}.release()
}

// While closed, only outages count towards opening, consecutively: a
// success resets the run, a cancelled round trip neither counts nor resets
// it.
func TestBreakerClosedCountsConsecutiveOutages(t *testing.T) {
	t.Parallel()
	b, c := newTestBreaker(3, time.Minute)
	b.report(errOutage)
	b.report(errOutage)
	b.report(nil)
	b.report(errOutage)
	b.report(errOutage)
	assert.Equal(t, "closed", b.state(), "a success between resets the run")
	b.report(context.Canceled)
	b.report(errors.New("WRONGTYPE")) // a command error: Redis answered
	assert.Equal(t, "closed", b.state())
	b.report(errOutage)
	b.report(errOutage)
	b.report(context.Canceled)
	assert.Equal(t, "closed", b.state())
	b.report(errOutage)
	assert.Equal(t, "open", b.state(), "three in a row, a cancel between")
	assert.Equal(t, uint64(1), c.ctr.breakerOpens.Load())
	_, ok := b.allow()
	assert.False(t, ok)
	assert.False(t, b.allowsNow())
}
