package rediscache

import (
	"sync"
	"sync/atomic"
	"time"
)

// A flight is one shared load in progress: the first caller to miss a key
// starts it, and the callers that miss the same key meanwhile join it and
// wait for its outcome instead of loading again (x/sync/singleflight's
// idea, with one addition).
//
// The addition is what keeps "read after invalidation" true for joiners.
// An outcome is only as fresh as the Redis command or loader call it came
// from: a value read from Redis is as fresh as that read, a loaded value
// whose guarded store was refused is as fresh as the loader call (an
// invalidation may have come after it), and a stored value as fresh as its
// store. A caller that joins after that point may have started after an
// invalidation the outcome predates, so it must not take it. Each flight
// counts marks: it bumps the count just before each command or loader
// call that may decide its outcome, a joiner notes the count when it
// joins, and the outcome names the mark it is certified at: the callers
// that joined before it take the outcome, the others start over once.
type flight struct {
	done     chan struct{} // closed when the outcome is set
	deadline time.Time     // when its callers stop waiting: LoadTimeout after it started
	marks    atomic.Uint64
	callers  atomic.Int32 // how many calls joined it, its leader included

	// The outcome, set before done is closed.
	val  any
	src  Source
	err  error
	cert uint64 // callers that joined at a mark below cert may take it
}

// mark bumps the flight's mark count before a command or loader call that
// may decide its outcome, and returns the mark that certifies an outcome
// coming from it.
func (f *flight) mark() uint64 { return f.marks.Add(1) }

// takes reports whether a caller that joined at mark j may take the
// outcome.
func (f *flight) takes(j uint64) bool { return j < f.cert }

// flights are the flights in progress, by flight key.
type flights struct {
	mu sync.Mutex
	m  map[string]*flight
}

// join returns the flight of key and the mark the caller joined at,
// starting a new flight with the given timeout when none is in progress
// (lead is true then, and the caller must run it and call finish).
func (g *flights) join(key string, timeout time.Duration) (f *flight, joined uint64, lead bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if f, ok := g.m[key]; ok {
		f.callers.Add(1)
		return f, f.marks.Load(), false
	}
	if g.m == nil {
		g.m = make(map[string]*flight)
	}
	f = &flight{done: make(chan struct{}), deadline: time.Now().Add(timeout)}
	f.callers.Add(1)
	g.m[key] = f
	return f, 0, true
}

// finish sets the outcome of the flight of key, removes it (a later miss
// starts a new flight) and wakes its callers.
func (g *flights) finish(key string, f *flight, val any, src Source, err error, cert uint64) {
	f.val, f.src, f.err, f.cert = val, src, err, cert
	g.mu.Lock()
	if g.m[key] == f {
		delete(g.m, key)
	}
	g.mu.Unlock()
	close(f.done)
}

// get returns the flight of key in progress, or nil.
func (g *flights) get(key string) *flight {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.m[key]
}
