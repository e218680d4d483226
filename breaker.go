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

// breaker skips Redis during an outage. The state machine is sony/gobreaker's
// two-step breaker: it opens after BreakerFailures consecutive outage
// errors, stays open for BreakerCooldown, then half-opens and lets one call
// at a time probe (gobreaker alone decides which: MaxRequests 1); one
// success closes it, one failure opens it again. Every other call is
// refused meanwhile, as when open, so a Redis that is still down costs one
// call's retries, not every call's. A cancelled round trip (the caller's
// context, or Close) is neither: gobreaker excludes it (Settings.IsExcluded),
// and a cancelled probe leaves the breaker half-open for the next call.
//
// gobreaker takes a mutex per request, so the healthy path does not go
// through it: while the breaker is closed and no failure is pending, a call
// costs one atomic load. Outcomes are reported to gobreaker only when they
// can change its state (a failure, or the first success after failures).
//
// Calls ask (allow) at one point and report (report, per round trip, from
// observeOp) later, by key, not by call. While half-open the breaker holds
// the probe gobreaker let through, with its done: the first outcome
// reported to the breaker resolves it (the probing call's own round trip,
// unless background work reports first), and a call that asked and sent
// nothing ends its turn with [turn.release], which gobreaker counts as
// excluded. gobreaker's half-open has no expiry: a probe that never
// reports would hold its only request forever. So a probe has a turn of
// probeTurn (max(BreakerCooldown, 1s)); the first allow after its turn
// resolves it as a failure (errProbeLost), which opens the breaker for
// BreakerCooldown: a probe that hangs that long says Redis is unwell. So
// a probe that never reports refuses other calls for probeTurn, and one
// goes through again within probeTurn + BreakerCooldown.
type breaker struct {
	cb *gobreaker.TwoStepCircuitBreaker[struct{}]
	// st is gobreaker's state (the low two bits) and the number of changes
	// so far (the rest), written by OnStateChange under gobreaker's mutex.
	st        atomic.Uint64
	pending   atomic.Int64 // failures reported since the last success
	probe     atomic.Pointer[probe]
	probeTurn time.Duration
}

// probe is the half-open request gobreaker let through: the done that
// reports its outcome, and the end of its turn.
type probe struct {
	done  func(error)
	until time.Time
}

// turn is what allow gives a call it lets through: for the call that probes
// a half-open breaker, its probe. The zero turn (any other call) holds
// nothing.
type turn struct {
	b *breaker
	p *probe
}

// release ends a probe's turn unused if no outcome resolved it yet, for a
// call that asked and then sent nothing (answered from the near cache,
// stopped before Redis): gobreaker excludes it, and the next call probes.
// It does nothing for the zero turn, or once an outcome resolved the probe.
func (t turn) release() {
	if t.p != nil && t.b.probe.CompareAndSwap(t.p, nil) {
		t.p.done(errProbeUnused)
	}
}

var (
	// errProbeUnused resolves a probe that sent nothing: excluded.
	errProbeUnused = errors.New("rediscache: the probe sent nothing")
	// errProbeLost resolves a probe that did not report within its turn: a
	// failure.
	errProbeLost = errors.New("rediscache: the probe did not report within its turn")
)

// stateBits masks gobreaker's state in breaker.st.
const stateBits = 3

// newBreaker returns a breaker; node names the cluster node it guards ("" for
// the Client's single breaker), for the log.
func newBreaker(c *Client, node string) *breaker {
	b := &breaker{probeTurn: max(c.opt.BreakerCooldown, time.Second)}
	threshold := uint32(c.opt.BreakerFailures)
	logArgs := []any{}
	if node != "" {
		logArgs = append(logArgs, "node", node)
	}
	b.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        "rediscache",
		MaxRequests: 1,
		Timeout:     c.opt.BreakerCooldown,
		ReadyToTrip: func(n gobreaker.Counts) bool { return n.ConsecutiveFailures >= threshold },
		IsSuccessful: func(err error) bool {
			return !outage(err) && !errors.Is(err, errProbeLost)
		},
		IsExcluded: excluded,
		OnStateChange: func(_ string, from, to gobreaker.State) {
			b.st.Store((b.st.Load()>>2+1)<<2 | uint64(to))
			if to == gobreaker.StateClosed {
				b.pending.Store(0)
			}
			if to == gobreaker.StateOpen {
				c.ctr.add(&c.ctr.breakerOpens, EventBreakerOpen, "", 1)
			}
			c.warnf("rediscache: circuit breaker "+to.String(), append([]any{"from", from.String()}, logArgs...)...)
		},
	})
	return b
}

// excluded reports whether err is an outcome that says nothing about Redis
// (the round trip was cancelled, or nothing was sent): neither a success
// nor a failure.
func excluded(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, errProbeUnused)
}

// allow reports whether a call may go to Redis now, and gives it its turn.
// While half-open it lets one call probe at a time: a call asks once, and
// either reports an outcome to this breaker or releases its turn.
func (b *breaker) allow() (turn, bool) {
	if b == nil || gobreaker.State(b.st.Load()&stateBits) == gobreaker.StateClosed {
		return turn{}, true
	}
	return b.admit()
}

// admit is allow past the healthy path: gobreaker decides, after the probe
// whose turn is over, if any, is resolved as a failure.
func (b *breaker) admit() (turn, bool) {
	if p := b.probe.Load(); p != nil && time.Now().After(p.until) && b.probe.CompareAndSwap(p, nil) {
		p.done(errProbeLost)
	}
	before := b.st.Load()
	done, err := b.cb.Allow()
	if err != nil {
		return turn{}, false
	}
	// A request let through half-open is the probe. One let through closed
	// (the breaker closed since st was read above) is an ordinary call,
	// reported like any: its done is spent at once. Half-open now after
	// two changes or more since before means it was let through closed.
	after := b.st.Load()
	if gobreaker.State(after&stateBits) != gobreaker.StateHalfOpen || after>>2-before>>2 > 1 {
		done(errProbeUnused)
		return turn{}, true
	}
	p := &probe{done: done, until: time.Now().Add(b.probeTurn)}
	if old := b.probe.Swap(p); old != nil {
		old.done(errProbeUnused) // of an older generation, which gobreaker ignores
	}
	return turn{b: b, p: p}, true
}

// allowsNow reports whether a call could go to Redis now, without taking
// a half-open probe's turn: false only while the breaker is open.
func (b *breaker) allowsNow() bool {
	return b == nil || gobreaker.State(b.st.Load()&stateBits) == gobreaker.StateClosed || b.cb.State() != gobreaker.StateOpen
}

// report records the outcome of a round trip on a key this breaker guards.
// While the breaker is not closed it resolves the probe held, if any; an
// outcome with no probe out is handed to gobreaker as a request of its own
// (while open it refuses it; half-open it is the probe's outcome).
func (b *breaker) report(err error) {
	if b == nil {
		return
	}
	if gobreaker.State(b.st.Load()&stateBits) != gobreaker.StateClosed {
		if p := b.probe.Swap(nil); p != nil {
			p.done(err)
			return
		}
		b.feed(err)
		return
	}
	if outage(err) {
		b.pending.Add(1)
		b.feed(err)
		return
	}
	if b.pending.Load() > 0 && !excluded(err) {
		b.pending.Store(0)
		b.feed(err)
	}
}

// feed hands gobreaker one request with outcome err, if it lets one through.
func (b *breaker) feed(err error) {
	if done, aerr := b.cb.Allow(); aerr == nil {
		done(err)
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
