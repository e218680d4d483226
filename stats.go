package rediscache

import (
	"math/bits"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Stats is a snapshot of a Client's counters since [New] or the last
// [Client.ResetStats]. Every counter is read atomically and without locks;
// under load, counters read together may be a few operations apart.
type Stats struct {
	Hits    uint64 // lookups that found a value
	Misses  uint64 // lookups that found nothing
	Errors  uint64 // calls (or batch keys) that failed in Redis or decoding; never a miss
	Sets    uint64 // values written
	Deletes uint64 // keys deleted

	Loads          uint64 // loader calls by GetOrLoad and GetManyOrLoad
	LoadErrors     uint64 // loader calls that failed (ErrNotFound is not a failure)
	StaleServed    uint64 // answers served from a stale entry
	EarlyRefreshes uint64 // background refreshes started by XFetch
	NegativeHits   uint64 // answers of a cached ErrNotFound
	Fallbacks      uint64 // answers served by the loader with Redis failing or skipped
	BreakerOpens   uint64 // times the circuit breaker opened
	// StoresRefused counts loads (GetOrLoad, GetManyOrLoad, background
	// refreshes) whose guarded store was refused because the key was
	// written or removed while they loaded: an invalidation that held.
	StoresRefused uint64
	// BreakerState is "closed", "half-open", "open", or "disabled"; on a
	// cluster, the worst state of the masters' breakers.
	BreakerState string

	// AvgLatency and the percentiles are over Redis round trips (retries
	// included), from fixed-bucket histograms with 8 buckets per power of
	// two: a percentile is the upper bound of its bucket, at most 12.5% high.
	AvgLatency, P50, P95, P99 time.Duration

	// Namespaces holds the same counters per namespace, the first
	// ":"-separated segment of a logical key. At most 64 namespaces are
	// tracked; the rest are counted under "other".
	Namespaces map[string]NamespaceStats

	// Operations holds a latency histogram per kind of Redis round trip:
	// "get", "set", "delete", "batch", "scan", "other".
	Operations map[string]OperationStats
}

// NamespaceStats are the counters of one namespace.
type NamespaceStats struct {
	Hits, Misses, Errors, Sets, Deletes uint64
}

// OperationStats is the latency histogram of one kind of round trip.
type OperationStats struct {
	Count   uint64
	Sum     time.Duration
	Buckets []Bucket // cumulative, by increasing UpperBound; the last is the total count
}

// Bucket is one cumulative histogram bucket: Count round trips took at most
// UpperBound.
type Bucket struct {
	UpperBound time.Duration
	Count      uint64
}

// HitRate returns Hits / (Hits + Misses), or 0 when there were no lookups.
func (s Stats) HitRate() float64 { return ratio(s.Hits, s.Hits+s.Misses) }

// MissRate returns Misses / (Hits + Misses), or 0 when there were no lookups.
func (s Stats) MissRate() float64 { return ratio(s.Misses, s.Hits+s.Misses) }

// ErrorRate returns Errors / (Hits + Misses + Sets + Errors): the share of
// reads and writes that failed, or 0 when nothing happened.
func (s Stats) ErrorRate() float64 { return ratio(s.Errors, s.Hits+s.Misses+s.Sets+s.Errors) }

// HitRate returns Hits / (Hits + Misses), or 0 when there were no lookups.
func (s NamespaceStats) HitRate() float64 { return ratio(s.Hits, s.Hits+s.Misses) }

// MissRate returns Misses / (Hits + Misses), or 0 when there were no lookups.
func (s NamespaceStats) MissRate() float64 { return ratio(s.Misses, s.Hits+s.Misses) }

// ErrorRate returns Errors / (Hits + Misses + Sets + Errors), or 0.
func (s NamespaceStats) ErrorRate() float64 {
	return ratio(s.Errors, s.Hits+s.Misses+s.Sets+s.Errors)
}

func ratio(a, b uint64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// opKind classifies round trips for the latency histograms.
type opKind uint8

const (
	opGet opKind = iota
	opSet
	opDelete
	opBatch
	opScan
	opOther
	numOps
)

var opNames = [numOps]string{"get", "set", "delete", "batch", "scan", "other"}

// Histogram layout: bucket 0 holds durations under 1024ns; then 8 buckets
// per power of two up to 2^35ns (~34s); the last bucket holds the rest.
const (
	histMinExp  = 10
	histMaxExp  = 35
	histSubBits = 3
	histBuckets = 1 + (histMaxExp-histMinExp)<<histSubBits + 1
)

// histStripes is how many copies of each histogram a Client keeps: a round
// trip is recorded in a randomly chosen copy, so goroutines on different
// CPUs rarely write the same cache line, and readers add the copies up.
const histStripes = 4

type histogram struct {
	s [histStripes]histStripe
}

type histStripe struct {
	counts [histBuckets]atomic.Uint64
	sum    atomic.Uint64 // ns
	_      [64]byte      // keeps the next stripe off this one's cache lines
}

func bucketOf(d time.Duration) int {
	v := uint64(max(d, 0))
	if v < 1<<histMinExp {
		return 0
	}
	exp := bits.Len64(v) - 1
	if exp >= histMaxExp {
		return histBuckets - 1
	}
	sub := int(v>>(exp-histSubBits)) & (1<<histSubBits - 1)
	return 1 + (exp-histMinExp)<<histSubBits + sub
}

// bucketUpper returns the exclusive upper bound of bucket i.
func bucketUpper(i int) time.Duration {
	switch {
	case i == 0:
		return 1 << histMinExp
	case i >= histBuckets-1:
		return time.Duration(1<<63 - 1)
	}
	exp := (i-1)>>histSubBits + histMinExp
	sub := (i - 1) & (1<<histSubBits - 1)
	return time.Duration(uint64(1)<<exp + uint64(sub+1)<<(exp-histSubBits))
}

func (h *histogram) observe(d time.Duration) {
	// The low bits of a duration in nanoseconds are as good as random, and
	// free; with a coarse clock every round trip lands in one stripe,
	// which is slower under contention but still exact.
	st := &h.s[uint64(d)%histStripes]
	st.counts[bucketOf(d)].Add(1)
	st.sum.Add(uint64(max(d, 0)))
}

// load returns the bucket counts and the sum (ns) over all stripes.
func (h *histogram) load() (counts [histBuckets]uint64, sum uint64) {
	for i := range h.s {
		st := &h.s[i]
		for j := range counts {
			counts[j] += st.counts[j].Load()
		}
		sum += st.sum.Load()
	}
	return counts, sum
}

func (h *histogram) reset() {
	for i := range h.s {
		st := &h.s[i]
		for j := range st.counts {
			st.counts[j].Store(0)
		}
		st.sum.Store(0)
	}
}

// nsStripes is how many copies of its counters each namespace keeps, for
// the same reason as histStripes.
const nsStripes = 8

// tally is one stripe of a namespace's counters, on a cache line of its own.
type tally struct {
	hits, misses, errors, sets, deletes atomic.Uint64
	_                                   [64 - 5*8]byte
}

// nsCounters are one namespace's counters. The Client's totals are the sums
// over all namespaces and the unattributed counters.
type nsCounters struct {
	s    [nsStripes]tally
	name string // as in Stats.Namespaces; "" for the unattributed counters
}

// stripe returns a randomly chosen stripe to add to.
func (n *nsCounters) stripe() *tally { return &n.s[rand.Uint32()%nsStripes] }

// load returns the counters summed over the stripes.
func (n *nsCounters) load() NamespaceStats {
	var s NamespaceStats
	for i := range n.s {
		t := &n.s[i]
		s.Hits += t.hits.Load()
		s.Misses += t.misses.Load()
		s.Errors += t.errors.Load()
		s.Sets += t.sets.Load()
		s.Deletes += t.deletes.Load()
	}
	return s
}

func (n *nsCounters) reset() {
	for i := range n.s {
		t := &n.s[i]
		for _, a := range []*atomic.Uint64{&t.hits, &t.misses, &t.errors, &t.sets, &t.deletes} {
			a.Store(0)
		}
	}
}

const maxNamespaces = 64

// counters are the live, lock-free counters behind Stats.
type counters struct {
	off bool // Options.DisableStats

	// unattributed counts what has no key: errors of calls rejected
	// before a key was looked at, and keys deleted by DeleteMany.
	unattributed nsCounters

	loads, loadErrors, staleServed atomic.Uint64
	earlyRefreshes, negativeHits   atomic.Uint64
	fallbacks, breakerOpens        atomic.Uint64
	storesRefused                  atomic.Uint64

	lat [numOps]histogram

	obs atomic.Pointer[observers] // AddObserver's, told of every count

	nsMu sync.Mutex // serialises adding a namespace
	ns   atomic.Pointer[map[string]*nsCounters]
}

// namespace returns the counters of key's namespace, adding it on first use.
func (k *counters) namespace(key string) *nsCounters {
	ns := key
	if i := strings.IndexByte(key, ':'); i >= 0 {
		ns = key[:i]
	}
	if m := k.ns.Load(); m != nil {
		if n, ok := (*m)[ns]; ok {
			return n
		}
	}
	k.nsMu.Lock()
	defer k.nsMu.Unlock()
	old := k.ns.Load()
	var m map[string]*nsCounters
	if old != nil {
		if n, ok := (*old)[ns]; ok {
			return n
		}
		if len(*old) >= maxNamespaces {
			if n, ok := (*old)["other"]; ok {
				return n
			}
			ns = "other"
		}
		m = make(map[string]*nsCounters, len(*old)+1)
		for name, n := range *old {
			m[name] = n
		}
	} else {
		m = make(map[string]*nsCounters, 1)
	}
	n := &nsCounters{name: ns}
	m[ns] = n
	k.ns.Store(&m)
	return n
}

func (k *counters) hit(key string)  { k.tally(EventHit, key, 1) }
func (k *counters) miss(key string) { k.tally(EventMiss, key, 1) }
func (k *counters) fail(key string) { k.tally(EventError, key, 1) }
func (k *counters) set(key string)  { k.tally(EventSet, key, 1) }

func (k *counters) deleted(key string, n uint64) { k.tally(EventDelete, key, n) }

// tally adds n to the namespace counter ev of key ("": unattributed) and
// tells the observers.
func (k *counters) tally(ev Event, key string, n uint64) {
	o := k.obs.Load()
	if n == 0 || (k.off && o == nil) {
		return
	}
	ns := &k.unattributed
	if key != "" {
		ns = k.namespace(key)
	}
	if !k.off {
		t := ns.stripe()
		switch ev {
		case EventHit:
			t.hits.Add(n)
		case EventMiss:
			t.misses.Add(n)
		case EventError:
			t.errors.Add(n)
		case EventSet:
			t.sets.Add(n)
		case EventDelete:
			t.deletes.Add(n)
		}
	}
	if o != nil {
		o.count(ev, ns.name, n)
	}
}

// add adds n to the Client-wide counter a, which counts ev, and tells the
// observers, naming key's namespace ("" for none).
func (k *counters) add(a *atomic.Uint64, ev Event, key string, n uint64) {
	if !k.off {
		a.Add(n)
	}
	if o := k.obs.Load(); o != nil {
		ns := ""
		if key != "" {
			ns = k.namespace(key).name
		}
		o.count(ev, ns, n)
	}
}

// Stats returns a snapshot of the Client's counters. It is safe to call
// from any goroutine, also after Close, and never fails.
func (c *Client) Stats() Stats {
	k := &c.ctr
	s := Stats{
		Loads:          k.loads.Load(),
		LoadErrors:     k.loadErrors.Load(),
		StaleServed:    k.staleServed.Load(),
		EarlyRefreshes: k.earlyRefreshes.Load(),
		NegativeHits:   k.negativeHits.Load(),
		Fallbacks:      k.fallbacks.Load(),
		BreakerOpens:   k.breakerOpens.Load(),
		StoresRefused:  k.storesRefused.Load(),
		BreakerState:   c.breakerState(),

		Namespaces: map[string]NamespaceStats{},
		Operations: make(map[string]OperationStats, numOps),
	}
	add := func(n NamespaceStats) {
		s.Hits += n.Hits
		s.Misses += n.Misses
		s.Errors += n.Errors
		s.Sets += n.Sets
		s.Deletes += n.Deletes
	}
	add(k.unattributed.load())
	if m := k.ns.Load(); m != nil {
		for name, n := range *m {
			ns := n.load()
			s.Namespaces[name] = ns
			add(ns)
		}
	}
	var all [histBuckets]uint64
	var total, sum uint64
	for op := range numOps {
		counts, hsum := k.lat[op].load()
		o := OperationStats{Sum: time.Duration(hsum)}
		var cum uint64
		for i := range histBuckets {
			n := counts[i]
			all[i] += n
			cum += n
			// Export every power of two (every 8th bucket) and the total.
			if i == 0 || (i-1)&(1<<histSubBits-1) == 1<<histSubBits-1 || i == histBuckets-1 {
				o.Buckets = append(o.Buckets, Bucket{UpperBound: bucketUpper(i), Count: cum})
			}
		}
		o.Count = cum
		total += cum
		sum += uint64(o.Sum)
		s.Operations[opNames[op]] = o
	}
	if total > 0 {
		s.AvgLatency = time.Duration(sum / total)
		s.P50 = percentile(&all, total, 0.50)
		s.P95 = percentile(&all, total, 0.95)
		s.P99 = percentile(&all, total, 0.99)
	}
	return s
}

func percentile(counts *[histBuckets]uint64, total uint64, q float64) time.Duration {
	rank := uint64(q*float64(total) + 0.5)
	rank = max(rank, 1)
	var cum uint64
	for i, n := range counts {
		cum += n
		if cum >= rank {
			return bucketUpper(i)
		}
	}
	return bucketUpper(histBuckets - 1)
}

// ResetStats sets every counter and histogram to zero. Calls running
// meanwhile may be counted before or after the reset.
func (c *Client) ResetStats() {
	k := &c.ctr
	k.unattributed.reset()
	for _, a := range []*atomic.Uint64{
		&k.loads, &k.loadErrors,
		&k.staleServed, &k.earlyRefreshes, &k.negativeHits, &k.fallbacks, &k.breakerOpens, &k.storesRefused,
	} {
		a.Store(0)
	}
	for op := range numOps {
		k.lat[op].reset()
	}
	k.nsMu.Lock()
	k.ns.Store(nil)
	k.nsMu.Unlock()
}
