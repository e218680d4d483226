// Package consistency records a history of cache writes and reads, as a
// Jepsen-style test sees them, and checks it against one guarantee: once
// an invalidation of a key has returned, every read of that key that starts
// afterwards returns the version it wrote or a newer one.
//
// A [Table] is the versioned source of truth that writers bump and loaders
// read. A [Recorder] collects [Write] and [Read] events on one monotonic
// clock, and [Check] turns its [History] into a [Report]. The package knows
// nothing about the cache under test: the test maps its calls onto events.
package consistency

import (
	"sync"
	"time"
)

// Table is a versioned source of truth: each key has a current version,
// 0 until the first [Table.Bump]. The zero value is an empty Table. It is
// safe for concurrent use.
type Table struct {
	mu sync.Mutex
	v  map[string]int64
}

// Version returns the current version of key.
func (t *Table) Version(key string) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.v[key]
}

// Bump increments the version of key and returns the new version.
func (t *Table) Bump(key string) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.v == nil {
		t.v = make(map[string]int64)
	}
	t.v[key]++
	return t.v[key]
}

// Write is one key's share of a write: the key's version was bumped to
// Version, then the cache was invalidated (deleted, overwritten, ...).
// Times are offsets on the [Recorder]'s clock.
type Write struct {
	Key     string
	Version int64
	Client  int    // the Client that invalidated
	Op      string // how, for reports: "Delete", "SetMany", ...
	// Began is when the write started, before the Table was bumped.
	Began time.Duration
	// Returned is when the invalidation returned successfully, or, for
	// an unconfirmed write, when the writer gave up.
	Returned time.Duration
	// Confirmed is false for a write whose invalidation failed (after its
	// retries): it constrains no read.
	Confirmed bool
	// Lagged marks an invalidation that other Clients see only within the
	// lag bound given to [Check] (a namespace invalidation); the
	// invalidating Client sees it at once. From its Began to Returned plus
	// the lag (its lag window), Clients may disagree about where the key
	// is stored: see [Violation].InLagWindow.
	Lagged bool
}

// Outcome is how a read ended.
type Outcome uint8

const (
	// Value means the read returned a value, of version Read.Version.
	Value Outcome = iota
	// Miss means the read found nothing (a plain Get); it is never a violation.
	Miss
	// Failed means the read returned an error; it is never a violation.
	Failed
)

// Read is one key's share of a read.
type Read struct {
	Key    string
	Client int
	Op     string // "GetOrLoad", "Get", ...
	Start  time.Duration
	End    time.Duration
	// Outcome tells whether Version and ValueKey mean anything.
	Outcome Outcome
	Version int64
	// ValueKey is the key the returned value says it belongs to; a value
	// of another key is a violation. Empty means not recorded.
	ValueKey string
	// Note is free text the test attaches (where the value came from, say);
	// violations show it.
	Note string
}

// History is everything a [Recorder] recorded.
type History struct {
	Writes []Write
	Reads  []Read
}

// Recorder collects a [History]. Its clock is the monotonic time since
// [NewRecorder]; all events of one test must use the same Recorder. It is
// safe for concurrent use.
type Recorder struct {
	epoch time.Time

	mu     sync.Mutex
	writes []Write
	reads  []Read
}

// NewRecorder returns an empty Recorder whose clock starts now.
func NewRecorder() *Recorder {
	return &Recorder{epoch: time.Now()}
}

// Now returns the Recorder's clock: the monotonic time since NewRecorder.
func (r *Recorder) Now() time.Duration { return time.Since(r.epoch) }

// Write records w.
func (r *Recorder) Write(w Write) {
	r.mu.Lock()
	r.writes = append(r.writes, w)
	r.mu.Unlock()
}

// Read records rd.
func (r *Recorder) Read(rd Read) {
	r.mu.Lock()
	r.reads = append(r.reads, rd)
	r.mu.Unlock()
}

// History returns a copy of what was recorded so far.
func (r *Recorder) History() History {
	r.mu.Lock()
	defer r.mu.Unlock()
	return History{
		Writes: append([]Write(nil), r.writes...),
		Reads:  append([]Read(nil), r.reads...),
	}
}
