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
	calls                               atomic.Uint64
	latencyNs                           atomic.Uint64
}

func (k *counters) observe(start time.Time) {
	k.calls.Add(1)
	k.latencyNs.Add(uint64(time.Since(start)))
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
	}
	if n := c.ctr.calls.Load(); n > 0 {
		s.AvgLatency = time.Duration(c.ctr.latencyNs.Load() / n)
	}
	return s
}
