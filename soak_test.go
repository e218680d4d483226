package rediscache_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/rediscache/rediscache"
	"github.com/rediscache/rediscache/internal/redistest"
)

// soakDuration is how long TestSoak runs: go test -run Soak . -soak 60s.
var soakDuration = flag.Duration("soak", 0,
	"run TestSoak for this long (e.g. -soak 60s); 0 skips it unless REDISCACHE_SOAK holds a duration")

// soakOp names the operations of the soak test, for its counters.
type soakOp int

const (
	soakSet soakOp = iota
	soakGet
	soakDelete
	soakGetOrLoad
	soakGetMany
	soakSetMany
	soakIncrement
	soakGetCounter
	numSoakOps
)

var soakOpNames = [numSoakOps]string{"Set", "Get", "Delete", "GetOrLoad", "GetMany", "SetMany", "Increment", "Get(counter)"}

const (
	soakWorkers  = 64
	soakValKeys  = 16 // Set/Get/Delete/GetMany/SetMany keys per worker
	soakLoadKeys = 8  // GetOrLoad keys per worker
	soakCounters = 4  // Increment keys per worker
	soakOpTime   = 10 * time.Second
)

// soakStats is what the workers count, shared by all of them.
type soakStats struct {
	ops, errs  [numSoakOps]atomic.Int64
	circuit    atomic.Int64 // ErrCircuitOpen, part of errs
	violations atomic.Int64

	mu      sync.Mutex
	samples []string // the first violations and unexpected errors
	loadErr []string // GetOrLoad errors: it must fail open
}

func (s *soakStats) violation(format string, args ...any) {
	s.violations.Add(1)
	s.sample(fmt.Sprintf(format, args...))
}

func (s *soakStats) sample(msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.samples) < 20 {
		s.samples = append(s.samples, msg)
	}
}

// soakWorker is one goroutine of the soak. It alone writes its keys, so it
// knows what each may hold: the values it wrote whose writes may have taken
// effect since the last one known to have succeeded (a failed write may
// still have run), or nothing (a miss is always allowed: deletes, restarts).
type soakWorker struct {
	id    int
	c     *rediscache.Client
	st    *soakStats
	epoch *atomic.Int64 // bumped before each server restart
	r     *rand.Rand
	seq   int64

	vals     map[string][]int64 // possible Seq values per key
	counters map[string][2]int64
	seen     int64 // the restart epoch this worker has accounted for
}

func (w *soakWorker) valKey(i int) string  { return fmt.Sprintf("s:%d:%d", w.id, i) }
func (w *soakWorker) loadKey(i int) string { return fmt.Sprintf("l:%d:%d", w.id, i) }
func (w *soakWorker) ctrKey(i int) string  { return fmt.Sprintf("n:%d:%d", w.id, i) }

// soakLoaded is the only value the loader of key ever returns.
func soakLoaded(key string) faultVal { return newFaultVal(key, -1) }

// wrote records the outcome of a write of seq at key: known to be stored,
// or maybe stored. ErrCircuitOpen proves nothing was sent.
func (w *soakWorker) wrote(key string, seq int64, err error) {
	switch {
	case err == nil:
		w.vals[key] = []int64{seq}
	case errors.Is(err, rediscache.ErrCircuitOpen):
	default:
		w.vals[key] = append(w.vals[key], seq)
	}
}

// read checks a value read at key against what the worker may have stored.
func (w *soakWorker) read(op, key string, v faultVal) {
	if err := v.check(key); err != nil {
		w.st.violation("%s: %v", op, err)
		return
	}
	if !slices.Contains(w.vals[key], v.Seq) {
		w.st.violation("%s %s: read seq %d, last written %v", op, key, v.Seq, w.vals[key])
	}
}

// failed counts an error of op; errors that no fault can explain are
// sampled.
func (w *soakWorker) failed(op soakOp, err error) {
	w.st.errs[op].Add(1)
	switch {
	case errors.Is(err, rediscache.ErrCircuitOpen):
		w.st.circuit.Add(1)
		time.Sleep(5 * time.Millisecond) // a caller that backs off, not one that spins
	case errors.Is(err, rediscache.ErrCorruptValue):
		w.st.violation("%s: %v", soakOpNames[op], err)
	case !faultConnErr(err) && !errors.Is(err, context.DeadlineExceeded):
		w.st.sample(fmt.Sprintf("unexpected error: %v", err))
	}
}

// sync widens what the counters may hold after a restart: they started
// again from 0, so any value from 1 to the number of increments since is
// possible.
func (w *soakWorker) sync() {
	if e := w.epoch.Load(); e != w.seen {
		w.seen = e
		for k, lh := range w.counters {
			w.counters[k] = [2]int64{1, lh[1]}
		}
	}
}

func (w *soakWorker) step(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, soakOpTime)
	defer cancel()
	w.sync()
	defer w.sync()
	r := w.r
	n := r.IntN(100)
	var op soakOp
	switch {
	case n < 20:
		op = soakSet
	case n < 40:
		op = soakGet
	case n < 48:
		op = soakDelete
	case n < 63:
		op = soakGetOrLoad
	case n < 73:
		op = soakGetMany
	case n < 80:
		op = soakSetMany
	case n < 92:
		op = soakIncrement
	default:
		op = soakGetCounter
	}
	w.st.ops[op].Add(1)
	switch op {
	case soakSet:
		key := w.valKey(r.IntN(soakValKeys))
		w.seq++
		err := rediscache.Set(ctx, w.c, key, newFaultVal(key, w.seq), time.Minute)
		w.wrote(key, w.seq, err)
		if err != nil {
			w.failed(op, err)
		}
	case soakGet:
		key := w.valKey(r.IntN(soakValKeys))
		v, err := rediscache.Get[faultVal](ctx, w.c, key)
		switch {
		case err == nil:
			w.read("Get", key, v)
		case !errors.Is(err, rediscache.ErrCacheMiss):
			w.failed(op, err)
		}
	case soakDelete:
		key := w.valKey(r.IntN(soakValKeys))
		if r.IntN(3) == 0 {
			key = w.loadKey(r.IntN(soakLoadKeys))
		}
		_, err := w.c.Delete(ctx, key)
		if err != nil {
			w.failed(op, err)
		} else if strings.HasPrefix(key, "s:") {
			w.vals[key] = nil
		}
	case soakGetOrLoad:
		key := w.loadKey(r.IntN(soakLoadKeys))
		v, err := rediscache.GetOrLoad(ctx, w.c, key, 2*time.Second, func(context.Context) (faultVal, error) {
			return soakLoaded(key), nil
		})
		if err != nil {
			w.failed(op, err)
			w.st.mu.Lock()
			if len(w.st.loadErr) < 10 {
				w.st.loadErr = append(w.st.loadErr, err.Error())
			}
			w.st.mu.Unlock()
		} else if v != soakLoaded(key) {
			w.st.violation("GetOrLoad %s: got %+v, want the loader's value", key, v)
		}
	case soakGetMany:
		keys := make([]string, 4)
		for i := range keys {
			keys[i] = w.valKey(r.IntN(soakValKeys))
		}
		m, err := rediscache.GetMany[faultVal](ctx, w.c, keys)
		if err != nil {
			w.failed(op, err)
		}
		for k, v := range m {
			w.read("GetMany", k, v)
		}
	case soakSetMany:
		items := map[string]faultVal{}
		for range 3 {
			key := w.valKey(r.IntN(soakValKeys))
			w.seq++
			items[key] = newFaultVal(key, w.seq)
		}
		err := rediscache.SetMany(ctx, w.c, items, time.Minute)
		var be *rediscache.BatchError
		for key, v := range items {
			switch {
			case err == nil:
				w.wrote(key, v.Seq, nil)
			case errors.As(err, &be):
				w.wrote(key, v.Seq, be.Failed[key]) // nil for the keys that were stored
			default:
				w.wrote(key, v.Seq, err)
			}
		}
		if err != nil {
			w.failed(op, err)
		}
	case soakIncrement:
		key := w.ctrKey(r.IntN(soakCounters))
		n, err := w.c.Increment(ctx, key, 1)
		lh := w.counters[key]
		switch {
		case err == nil:
			w.counters[key] = [2]int64{n, n}
		case errors.Is(err, rediscache.ErrCircuitOpen):
		default:
			w.counters[key] = [2]int64{lh[0], lh[1] + 1} // it may have run
		}
		if err != nil {
			w.failed(op, err)
		}
	case soakGetCounter:
		key := w.ctrKey(r.IntN(soakCounters))
		n, err := rediscache.Get[int64](ctx, w.c, key)
		switch {
		case err == nil:
			w.sync() // a restart during the read
			if lh := w.counters[key]; n < lh[0] || n > lh[1] {
				w.st.violation("Get(counter) %s: read %d, possible [%d, %d]", key, n, lh[0], lh[1])
			}
		case !errors.Is(err, rediscache.ErrCacheMiss):
			w.failed(op, err)
		}
	}
}

// TestSoak runs 64 goroutines of mixed operations for -soak (or
// REDISCACHE_SOAK) while faults are injected at random: CLIENT KILL of
// every connection, CLIENT PAUSE 500 ALL, and a server kill and restart.
// At the end no goroutine has leaked, the heap has not grown, and every
// value read equalled the last value its goroutine wrote to that key (or
// one whose write failed and so may have run), or was a miss: nothing wrong
// is ever served. It is not parallel: goleak compares goroutines with those
// present when it starts.
func TestSoak(t *testing.T) {
	d := *soakDuration
	if v := os.Getenv("REDISCACHE_SOAK"); d == 0 && v != "" {
		var err error
		d, err = time.ParseDuration(v)
		require.NoError(t, err, "REDISCACHE_SOAK")
	}
	if d <= 0 {
		t.Skip("soak test: run with -soak 60s (or REDISCACHE_SOAK=60s)")
	}
	ignore := goleak.IgnoreCurrent()
	srv := redistest.Start(t)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	c, err := rediscache.New(&rediscache.Options{
		Addrs:        []string{srv.Addr()},
		Prefix:       "soak",
		DialTimeout:  time.Second,
		ReadTimeout:  2 * time.Second, // longer than a pause: a paused command is not sent twice
		WriteTimeout: 2 * time.Second,
	})
	require.NoError(t, err)
	closeAll := sync.OnceFunc(func() {
		_ = c.Close()
		_ = admin.Close()
	})
	t.Cleanup(closeAll) // if the test stops early

	var (
		st    soakStats
		epoch atomic.Int64
		stop  = make(chan struct{})
		wg    sync.WaitGroup
	)
	ctx := context.Background()
	for id := range soakWorkers {
		w := &soakWorker{
			id: id, c: c, st: &st, epoch: &epoch,
			r:        rand.New(rand.NewPCG(uint64(id), uint64(time.Now().UnixNano()))),
			vals:     map[string][]int64{},
			counters: map[string][2]int64{},
		}
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				w.step(ctx)
			}
		})
	}

	// The fault injector.
	var (
		r                    = rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
		kills, pauses, rests int
		heap25               uint64
		start                = time.Now()
	)
	heapAlloc := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	for time.Since(start) < d {
		time.Sleep(time.Duration(200+r.IntN(800)) * time.Millisecond)
		if heap25 == 0 && time.Since(start) >= d/4 {
			heap25 = heapAlloc()
		}
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		switch n := r.IntN(10); {
		case n < 5:
			if err := admin.Do(actx, "client", "kill", "type", "normal", "skipme", "yes").Err(); err != nil {
				t.Logf("CLIENT KILL: %v", err)
			}
			kills++
		case n < 8:
			if err := admin.Do(actx, "client", "pause", 500, "all").Err(); err != nil {
				t.Logf("CLIENT PAUSE: %v", err)
			}
			pauses++
		default:
			epoch.Add(1) // before the data is lost
			srv.Restart(t)
			rests++
		}
		cancel()
	}
	heapEnd := heapAlloc()
	close(stop)
	faultWait(t, &wg, 30*time.Second, "soak workers")
	elapsed := time.Since(start)

	// Report.
	var b strings.Builder
	var total, totalErrs int64
	fmt.Fprintf(&b, "%s with %d workers: %d CLIENT KILLs, %d CLIENT PAUSEs, %d restarts\n", elapsed.Round(time.Millisecond), soakWorkers, kills, pauses, rests)
	fmt.Fprintf(&b, "%-14s %10s %8s\n", "op", "count", "errors")
	for op := range numSoakOps {
		n, e := st.ops[op].Load(), st.errs[op].Load()
		total += n
		totalErrs += e
		fmt.Fprintf(&b, "%-14s %10d %8d\n", soakOpNames[op], n, e)
	}
	fmt.Fprintf(&b, "%-14s %10d %8d (%d circuit open)\n", "total", total, totalErrs, st.circuit.Load())
	s := c.Stats()
	fmt.Fprintf(&b, "stats: hits %d, misses %d, errors %d, sets %d, loads %d, fallbacks %d, breaker opens %d\n",
		s.Hits, s.Misses, s.Errors, s.Sets, s.Loads, s.Fallbacks, s.BreakerOpens)
	fmt.Fprintf(&b, "heap after GC: %.1f MiB at 25%%, %.1f MiB at the end\n", float64(heap25)/(1<<20), float64(heapEnd)/(1<<20))
	t.Log(b.String())
	st.mu.Lock()
	sort.Strings(st.samples)
	for _, msg := range st.samples {
		t.Log(msg)
	}
	st.mu.Unlock()

	assert.Positive(t, total)
	assert.Positive(t, kills+pauses+rests, "no fault injected")
	assert.Zero(t, st.violations.Load(), "wrong values served (see the log)")
	assert.Empty(t, st.loadErr, "GetOrLoad must fail open")
	if heap25 > 0 {
		assert.Less(t, heapEnd, 2*heap25+8<<20, "heap grew: %d bytes at 25%%, %d at the end", heap25, heapEnd)
	}

	// Working after the faults, then no goroutine left behind.
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		assert.NoError(ct, rediscache.Set(ctx, c, "final", newFaultVal("final", 1), time.Minute))
	}, 10*time.Second, 50*time.Millisecond)
	closeAll()
	srv.Kill() // its reaper goroutine is redistest's, not the Client's
	goleak.VerifyNone(t, ignore)
}
