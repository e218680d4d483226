package rediscache

import (
	"context"
	"time"
)

// The observation point of every Redis round trip: its latency goes to
// the histograms behind Stats, its outcome to the circuit breaker of the
// key's node.

// epoch is the origin of mono.
var epoch = time.Now()

// mono returns the time on the monotonic clock, as a duration since the
// package started: one clock read, where time.Now reads two clocks. Round
// trips are timed with it.
func mono() time.Duration { return time.Since(epoch) }

// observe records one Redis round trip that began at start (a mono time)
// and ended with err, for the latency histograms and the circuit breaker.
func (c *Client) observe(k string, start time.Duration, err error) {
	c.observeOp(opOther, k, start, err)
}

// observeOp is observe for a round trip of a known kind on stored key k
// ("" for one that is not about a key, such as a SCAN page).
func (c *Client) observeOp(op opKind, k string, start time.Duration, err error) {
	if !c.ctr.off {
		c.ctr.lat[op].observe(mono() - start)
	}
	c.breakerFor(context.Background(), k).report(err)
}
