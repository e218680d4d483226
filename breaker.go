package rediscache

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"
)

// breaker skips Redis during an outage. The state machine is sony/gobreaker:
// it opens after BreakerFailures consecutive outage errors, stays open for
// BreakerCooldown, then half-opens and lets one call at a time probe; one
// success closes it, one failure opens it again. Every other call is
// refused meanwhile, as when open, so a Redis that is still down costs one
// call's retries, not every call's.
//
// gobreaker takes a mutex twice per request, so the healthy path does not go
// through it: while the breaker is closed and no failure is pending, a call
// costs one atomic load. Outcomes are reported to gobreaker only when they
// can change its state (a failure, or the first success after failures).
type breaker struct {
	cb      *gobreaker.CircuitBreaker[struct{}]
	open    atomic.Bool  // gobreaker state is not closed
	pending atomic.Int64 // failures reported since the last success
	// probe is when the current half-open probe's turn ends (Unix ns, 0:
	// none). A probe that never reports (its call failed validation after
	// asking) loses its turn after probeTurn, and another call probes.
	probe     atomic.Int64
	probeTurn time.Duration
}

// newBreaker returns a breaker; node names the cluster node it guards ("" for
// the Client's single breaker), for the log.
func newBreaker(c *Client, node string) *breaker {
	b := &breaker{probeTurn: max(c.opt.BreakerCooldown, time.Second)}
	threshold := uint32(c.opt.BreakerFailures)
	logArgs := []any{}
	if node != "" {
		logArgs = append(logArgs, "node", node)
	}
	b.cb = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        "rediscache",
		MaxRequests: 1,
		Timeout:     c.opt.BreakerCooldown,
		ReadyToTrip: func(n gobreaker.Counts) bool { return n.ConsecutiveFailures >= threshold },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			b.open.Store(to != gobreaker.StateClosed)
			b.probe.Store(0)
			if to == gobreaker.StateOpen {
				c.ctr.add(&c.ctr.breakerOpens, EventBreakerOpen, "", 1)
			}
			c.warnf("rediscache: circuit breaker "+to.String(), append([]any{"from", from.String()}, logArgs...)...)
		},
	})
	return b
}

// allow reports whether a call may go to Redis now. While half-open it says
// yes to one call per probe turn: a call must ask once, and report.
func (b *breaker) allow() bool {
	if b == nil || !b.open.Load() {
		return true
	}
	switch b.cb.State() {
	case gobreaker.StateOpen:
		return false
	case gobreaker.StateHalfOpen:
		now := time.Now().UnixNano()
		turn := b.probe.Load()
		return now >= turn && b.probe.CompareAndSwap(turn, now+int64(b.probeTurn))
	}
	return true
}

// allowsNow reports whether a call could go to Redis now, without taking
// a half-open probe's turn: false only while the breaker is open.
func (b *breaker) allowsNow() bool {
	return b == nil || !b.open.Load() || b.cb.State() != gobreaker.StateOpen
}

// report records the outcome of a call that allow let through.
func (b *breaker) report(err error) {
	if b == nil {
		return
	}
	if outage(err) {
		b.pending.Add(1)
		_, _ = b.cb.Execute(func() (struct{}, error) { return struct{}{}, err })
		return
	}
	if b.pending.Load() > 0 || b.open.Load() {
		b.pending.Store(0)
		_, _ = b.cb.Execute(func() (struct{}, error) { return struct{}{}, nil })
	}
}

// state returns the breaker's state for Stats and metrics: "closed",
// "half-open" or "open".
func (b *breaker) state() string {
	if b == nil {
		return "disabled"
	}
	return b.cb.State().String()
}

// nodeBreakers are the breakers of a cluster, one per master node: a dead
// node opens its own breaker, and calls for keys on the other nodes go on.
type nodeBreakers struct {
	c  *Client
	cc *redis.ClusterClient
	m  sync.Map // master address -> *breaker
}

// forKey returns the breaker of the master serving stored key k, or nil
// when the cluster's slot map is not known (the call then runs unguarded
// and fails on its own).
func (n *nodeBreakers) forKey(ctx context.Context, k string) *breaker {
	node, err := n.cc.MasterForKey(ctx, k)
	if err != nil {
		return nil
	}
	addr := node.Options().Addr
	if b, ok := n.m.Load(addr); ok {
		return b.(*breaker)
	}
	b, _ := n.m.LoadOrStore(addr, newBreaker(n.c, addr))
	return b.(*breaker)
}

// state returns the worst state of any node's breaker: "open", else
// "half-open", else "closed".
func (n *nodeBreakers) state() string {
	worst := gobreaker.StateClosed
	n.m.Range(func(_, v any) bool {
		switch st := v.(*breaker).cb.State(); {
		case st == gobreaker.StateOpen:
			worst = st
			return false
		case st == gobreaker.StateHalfOpen:
			worst = st
		}
		return true
	})
	return worst.String()
}

// breakerFor returns the breaker guarding stored key k: the Client's, or on
// a cluster that of k's node. It may be nil (no breaker): nil allows all.
func (c *Client) breakerFor(ctx context.Context, k string) *breaker {
	if c.nodes == nil || k == "" {
		return c.brk
	}
	return c.nodes.forKey(ctx, k)
}

// nodeAllows asks the breaker of stored key k's cluster node, for calls that
// asked the Client's breaker (usable) before the key was mapped; off a
// cluster it is always true.
func (c *Client) nodeAllows(ctx context.Context, k string) bool {
	return c.nodes == nil || c.nodes.forKey(ctx, k).allow()
}

// breakerState is Stats().BreakerState.
func (c *Client) breakerState() string {
	if c.nodes != nil {
		return c.nodes.state()
	}
	return c.brk.state()
}

// outage reports whether err says Redis is unreachable or unwell, as
// opposed to a miss, a command error, or the caller giving up.
func outage(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	return transient(err, idempotent) || errors.Is(err, context.DeadlineExceeded)
}
