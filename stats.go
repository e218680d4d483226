package rediscache

import (
	"sync/atomic"
	"time"
)

// Stats is a snapshot of a Client's counters since [New]. Each field is read
// atomically; fields read together may be a few operations apart under load.
type Stats struct {
	Hits    uint64 // Get calls that found the key
	Misses  uint64 // Get calls that did not find the key
	Errors  uint64 // calls that failed in Redis or in decoding (never a miss)
	Sets    uint64 // values written
	Deletes uint64 // keys deleted

	Loads          uint64 // loader calls by GetOrLoad and GetManyOrLoad
	LoadErrors     uint64 // loader calls that failed (ErrNotFound is not a failure)
	StaleServed    uint64 // GetOrLoad answers served from a stale entry
	EarlyRefreshes uint64 // background refreshes started by XFetch
	NegativeHits   uint64 // GetOrLoad answers of a cached ErrNotFound
	Fallbacks      uint64 // GetOrLoad answers served by the loader with Redis failing or skipped
	BreakerOpens   uint64 // times the circuit breaker opened
	// BreakerState is "closed", "half-open", "open", or "disabled".
	BreakerState string

	// AvgLatency is the mean duration of a Redis round trip, retries included.
	AvgLatency time.Duration
}

// HitRate returns Hits / (Hits + Misses), or 0 when there were no lookups.
func (s Stats) HitRate() float64 {
	if n := s.Hits + s.Misses; n > 0 {
		return float64(s.Hits) / float64(n)
	}
	return 0
}

// counters are the live, lock-free counters behind Stats.
type counters struct {
	hits, misses, errors, sets, deletes atomic.Uint64
	loads, loadErrors, staleServed      atomic.Uint64
	earlyRefreshes, negativeHits        atomic.Uint64
	fallbacks, breakerOpens             atomic.Uint64
	calls                               atomic.Uint64
	latencyNs                           atomic.Uint64
}

// observe records one Redis round trip that began at start and ended with
// err, for the latency average and the circuit breaker.
func (c *Client) observe(start time.Time, err error) {
	c.ctr.calls.Add(1)
	c.ctr.latencyNs.Add(uint64(time.Since(start)))
	c.brk.report(err)
}

// Stats returns a snapshot of the Client's counters. It never returns nil
// values and is safe to call from any goroutine, also after Close.
func (c *Client) Stats() Stats {
	s := Stats{
		Hits:    c.ctr.hits.Load(),
		Misses:  c.ctr.misses.Load(),
		Errors:  c.ctr.errors.Load(),
		Sets:    c.ctr.sets.Load(),
		Deletes: c.ctr.deletes.Load(),

		Loads:          c.ctr.loads.Load(),
		LoadErrors:     c.ctr.loadErrors.Load(),
		StaleServed:    c.ctr.staleServed.Load(),
		EarlyRefreshes: c.ctr.earlyRefreshes.Load(),
		NegativeHits:   c.ctr.negativeHits.Load(),
		Fallbacks:      c.ctr.fallbacks.Load(),
		BreakerOpens:   c.ctr.breakerOpens.Load(),
		BreakerState:   c.brk.state(),
	}
	if n := c.ctr.calls.Load(); n > 0 {
		s.AvgLatency = time.Duration(c.ctr.latencyNs.Load() / n)
	}
	return s
}
