package consistency

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const ms = time.Millisecond

// del is a confirmed, non-lagged write of key k to version v by client 0,
// begun at began and returned at ret (in milliseconds).
func del(k string, v int64, began, ret time.Duration) Write {
	return Write{Key: k, Version: v, Op: "Delete", Began: began * ms, Returned: ret * ms, Confirmed: true}
}

// got is a read of key k by client c over [start, end] ms that returned
// version v.
func got(k string, c int, v int64, start, end time.Duration) Read {
	return Read{Key: k, Client: c, Op: "GetOrLoad", Start: start * ms, End: end * ms, Version: v, ValueKey: k}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	const lag = 100 * ms
	lagged := func(w Write, client int) Write {
		w.Lagged, w.Client, w.Op = true, client, "InvalidateNamespace"
		return w
	}
	unconfirmed := func(w Write) Write {
		w.Confirmed = false
		return w
	}
	withClient := func(r Read, c int) Read {
		r.Client = c
		return r
	}
	tests := []struct {
		name   string
		writes []Write
		reads  []Read
		// want lists the violations as kind, key, got, want, staleness in ms.
		want []string
	}{
		{
			name:  "no writes, initial version",
			reads: []Read{got("a", 0, 0, 1, 2)},
		},
		{
			name:   "read after the delete returned sees the new version",
			writes: []Write{del("a", 1, 10, 20)},
			reads:  []Read{got("a", 0, 1, 21, 22)},
		},
		{
			name:   "read after the delete returned sees the old version",
			writes: []Write{del("a", 1, 10, 20)},
			reads:  []Read{got("a", 0, 0, 25, 26)},
			want:   []string{"stale a got 0 want 1 stale 5ms"},
		},
		{
			name:   "read overlapping the delete may see the old version",
			writes: []Write{del("a", 1, 10, 20)},
			reads:  []Read{got("a", 0, 0, 15, 30), got("a", 0, 0, 5, 12)},
		},
		{
			name:   "read starting exactly as the delete returned is not bound",
			writes: []Write{del("a", 1, 10, 20)},
			reads:  []Read{got("a", 0, 0, 20, 21)},
		},
		{
			name:   "a write of another key binds nothing",
			writes: []Write{del("b", 1, 10, 20)},
			reads:  []Read{got("a", 0, 0, 25, 26)},
		},
		{
			name:   "an unconfirmed write binds nothing",
			writes: []Write{unconfirmed(del("a", 1, 10, 20))},
			reads:  []Read{got("a", 0, 0, 25, 26), got("a", 0, 1, 27, 28)},
		},
		{
			name:   "want is the newest binding version, staleness from the first that obsoleted the read",
			writes: []Write{del("a", 1, 10, 20), del("a", 2, 30, 40), del("a", 3, 50, 60)},
			reads:  []Read{got("a", 0, 1, 70, 71), got("a", 0, 3, 72, 73), got("a", 0, 2, 55, 56)},
			want:   []string{"stale a got 1 want 3 stale 30ms"},
		},
		{
			name: "writes returning out of version order",
			// Version 2 returned first; a read between the two returns must
			// see at least 2, and 1 is not enough after both.
			writes: []Write{del("a", 1, 10, 50), del("a", 2, 20, 30)},
			reads:  []Read{got("a", 0, 1, 40, 41), got("a", 0, 2, 60, 61), got("a", 0, 1, 60, 61)},
			want:   []string{"stale a got 1 want 2 stale 10ms", "stale a got 1 want 2 stale 30ms"},
		},
		{
			name:   "lagged write: another client within the lag may read the old version",
			writes: []Write{lagged(del("a", 1, 10, 20), 1)},
			reads:  []Read{got("a", 0, 0, 25, 26), got("a", 0, 0, 119, 120)},
		},
		{
			name:   "lagged write: another client after the lag must not",
			writes: []Write{lagged(del("a", 1, 10, 20), 1)},
			reads:  []Read{got("a", 0, 0, 121, 122)},
			want:   []string{"stale a got 0 want 1 stale 101ms"},
		},
		{
			name:   "lagged write: the invalidating client is bound at once",
			writes: []Write{lagged(del("a", 1, 10, 20), 1)},
			reads:  []Read{withClient(got("a", 1, 0, 25, 26), 1), withClient(got("a", 1, 1, 27, 28), 1)},
			want:   []string{"stale a got 0 want 1 stale 5ms"},
		},
		{
			name:   "lagged and plain writes together",
			writes: []Write{lagged(del("a", 1, 10, 20), 1), del("a", 2, 30, 40)},
			reads:  []Read{got("a", 0, 1, 50, 51), got("a", 0, 0, 50, 51), got("a", 0, 2, 50, 51)},
			want:   []string{"stale a got 1 want 2 stale 10ms in lag window", "stale a got 0 want 2 stale 10ms in lag window"},
		},
		{
			name: "lag window: the read or the write within it, or neither",
			// The window of the lagged write is [10ms, 120ms].
			writes: []Write{lagged(del("a", 1, 10, 20), 1), del("a", 2, 100, 110), del("a", 3, 200, 210)},
			reads: []Read{
				got("a", 2, 1, 115, 116), // read and write in the window
				got("a", 2, 2, 130, 131), // fine
				got("a", 2, 1, 130, 131), // the write (of 2) in the window
				got("a", 2, 2, 300, 301), // neither
			},
			want: []string{
				"stale a got 1 want 2 stale 5ms in lag window",
				"stale a got 1 want 2 stale 20ms in lag window",
				"stale a got 2 want 3 stale 90ms",
			},
		},
		{
			name: "lag window of an unconfirmed lagged write",
			// The write of 2 ran in the window [10ms, 120ms].
			writes: []Write{unconfirmed(lagged(del("a", 1, 10, 20), 1)), del("a", 2, 30, 40)},
			reads:  []Read{got("a", 0, 0, 50, 51), got("a", 0, 1, 500, 501)},
			want:   []string{"stale a got 0 want 2 stale 10ms in lag window", "stale a got 1 want 2 stale 460ms in lag window"},
		},
		{
			name: "lag windows of two lagged writes",
			// Windows [10ms, 120ms] (version 1, client 1) and [50ms, 160ms]
			// (version 2, client 2); only the other write's window counts.
			writes: []Write{lagged(del("a", 1, 10, 20), 1), lagged(del("a", 2, 50, 60), 2)},
			reads: []Read{
				withClient(got("a", 1, 0, 30, 31), 1), // its own window only
				withClient(got("a", 2, 1, 70, 71), 2), // in version 1's window
				withClient(got("a", 2, 1, 130, 131), 2),
				got("a", 0, 1, 200, 201), // version 2 ran in version 1's window
			},
			want: []string{
				"stale a got 0 want 1 stale 10ms",
				"stale a got 1 want 2 stale 10ms in lag window",
				"stale a got 1 want 2 stale 70ms in lag window",
				"stale a got 1 want 2 stale 140ms in lag window",
			},
		},
		{
			name:  "value of another key",
			reads: []Read{{Key: "a", Op: "Get", Start: 1, End: 2, Version: 0, ValueKey: "b"}},
			want:  []string{"wrong key a got 0 want 0 stale 0s"},
		},
		{
			name:   "version never written",
			writes: []Write{del("a", 1, 10, 20)},
			reads:  []Read{got("a", 0, 2, 30, 31), got("b", 0, 1, 30, 31)},
			want:   []string{"future a got 2 want 0 stale 0s", "future b got 1 want 0 stale 0s"},
		},
		{
			name: "version whose write began after the read ended",
			// The version of an unconfirmed write may be read, but not
			// before the write began.
			writes: []Write{unconfirmed(del("a", 1, 10, 20))},
			reads:  []Read{got("a", 0, 1, 5, 9), got("a", 0, 1, 5, 11)},
			want:   []string{"future a got 1 want 0 stale 0s"},
		},
		{
			name:   "misses and failed reads are never violations",
			writes: []Write{del("a", 1, 10, 20)},
			reads: []Read{
				{Key: "a", Start: 30 * ms, End: 31 * ms, Outcome: Miss},
				{Key: "a", Start: 30 * ms, End: 31 * ms, Outcome: Failed, ValueKey: "b"},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rep := Check(History{Writes: tc.writes, Reads: tc.reads}, lag)
			var gotV []string
			for _, v := range rep.Violations {
				desc := fmt.Sprintf("%s %s got %d want %d stale %v", v.Kind, v.Key, v.Got, v.Want, v.Staleness)
				if v.InLagWindow {
					desc += " in lag window"
				}
				gotV = append(gotV, desc)
			}
			assert.Equal(t, tc.want, gotV, "violations")
			assert.Equal(t, len(tc.writes)+len(tc.reads), rep.Ops, "Ops")
		})
	}
}

// A near-cache Client may see other Clients' writes late, by its near lag,
// but never its own.
func TestCheckLagsNear(t *testing.T) {
	t.Parallel()
	const near = 50 * ms
	by := func(w Write, c int) Write {
		w.Client = c
		return w
	}
	tests := []struct {
		name  string
		write Write
		read  Read
		stale bool
	}{
		{"another Client's write, within the near lag", by(del("a", 1, 10, 20), 1), got("a", 0, 0, 60, 61), false},
		{"another Client's write, past the near lag", by(del("a", 1, 10, 20), 1), got("a", 0, 0, 71, 72), true},
		{"its own write, at once", by(del("a", 1, 10, 20), 0), got("a", 0, 0, 21, 22), true},
		{"a Client without a near lag", by(del("a", 1, 10, 20), 1), got("a", 2, 0, 21, 22), true},
		{"a lagged write by another Client: the larger lag", func() Write {
			w := by(del("a", 1, 10, 20), 1)
			w.Lagged = true
			return w
		}(), got("a", 0, 0, 90, 91), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rep := CheckLags(History{Writes: []Write{tc.write}, Reads: []Read{tc.read}},
				Lags{Namespace: 100 * ms, Near: map[int]time.Duration{0: near}})
			assert.Equal(t, tc.stale, rep.Count(Stale) == 1, "stale: %v", rep.Violations)
		})
	}
}

func TestCheckViolationDetails(t *testing.T) {
	t.Parallel()
	w := Write{Key: "a", Version: 2, Client: 3, Op: "SetMany", Began: 10 * ms, Returned: 20 * ms, Confirmed: true}
	r := Read{Key: "a", Client: 1, Op: "Get", Start: 45 * ms, End: 47 * ms, Version: 1, ValueKey: "a", Note: "loaded at 3ms"}
	rep := Check(History{
		Writes: []Write{del("a", 1, 1, 2), w, del("a", 3, 50, 60)},
		Reads:  []Read{r},
	}, 0)
	require.Len(t, rep.Violations, 1)
	want := Violation{
		Kind: Stale, Key: "a", Got: 1, Want: 2, ReadStart: 45 * ms,
		Invalidated: 20 * ms, Staleness: 25 * ms, Read: r, Write: w,
	}
	assert.Equal(t, want, rep.Violations[0])
	assert.Equal(t, 25*ms, rep.WorstStaleness)
	assert.Equal(t, "a: client 1 Get [45ms, 47ms] read version 1, want >= 2: version 2 invalidated by client 3 SetMany [10ms, 20ms], stale for 25ms (loaded at 3ms)",
		rep.Violations[0].String())
}

func TestReportCounts(t *testing.T) {
	t.Parallel()
	rep := Check(History{
		Writes: []Write{del("a", 1, 10, 20), del("b", 1, 10, 30), {Key: "a", Version: 2, Began: 40 * ms}},
		Reads: []Read{
			got("a", 0, 0, 25, 26),                // stale 5ms
			got("b", 0, 0, 70, 71),                // stale 40ms
			got("a", 0, 2, 50, 51),                // fine
			{Key: "a", Outcome: Miss},             // counted only
			{Key: "a", Outcome: Failed},           // counted only
			{Key: "c", Version: 0, ValueKey: "d"}, // wrong key
			{Key: "c", Version: 0, ValueKey: "c"}, // fine
			{Key: "c", Version: 0, Outcome: Miss}, // counted only
		},
	}, 0)
	want := Report{Ops: 11, Writes: 3, Unconfirmed: 1, Reads: 8, Checked: 5, Misses: 2, Failed: 1, WorstStaleness: 40 * ms}
	gotCounts := rep
	gotCounts.Violations = nil
	assert.Equal(t, want, gotCounts)
	assert.Equal(t, 2, rep.Count(Stale))
	assert.Equal(t, 1, rep.Count(WrongKey))
	assert.Equal(t, 0, rep.Count(Future))
	// Ordered by read start.
	require.Len(t, rep.Violations, 3)
	assert.Equal(t, []time.Duration{0, 25 * ms, 70 * ms},
		[]time.Duration{rep.Violations[0].ReadStart, rep.Violations[1].ReadStart, rep.Violations[2].ReadStart})
	assert.Equal(t, "operations: 11 (3 writes, 1 unconfirmed; 8 reads)\n"+
		"reads checked: 5 (misses 2, errors 1)\n"+
		"violations: 3 (stale 2, 0 of them in a lag window; wrong key 1; future 0)\n"+
		"worst staleness: 40ms", rep.String())
}

func TestTable(t *testing.T) {
	t.Parallel()
	var tab Table
	assert.Equal(t, int64(0), tab.Version("a"), "version of a key never bumped")
	assert.Equal(t, int64(1), tab.Bump("a"))
	assert.Equal(t, int64(2), tab.Bump("a"))
	assert.Equal(t, int64(1), tab.Bump("b"))
	assert.Equal(t, int64(2), tab.Version("a"))

	const goroutines, bumps = 8, 1000
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range bumps {
				tab.Bump("c")
				_ = tab.Version("c")
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int64(goroutines*bumps), tab.Version("c"))
}

func TestRecorder(t *testing.T) {
	t.Parallel()
	rec := NewRecorder()
	const goroutines, events = 8, 500
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range events {
				start := rec.Now()
				rec.Read(Read{Key: "a", Client: g, Start: start, End: rec.Now()})
				if i%10 == 0 {
					rec.Write(Write{Key: "a", Client: g, Began: start, Returned: rec.Now(), Confirmed: true})
				}
			}
		})
	}
	wg.Wait()
	h := rec.History()
	assert.Len(t, h.Reads, goroutines*events)
	assert.Len(t, h.Writes, goroutines*events/10)
	for _, r := range h.Reads {
		if !assert.LessOrEqual(t, r.Start, r.End, "read start after its end") {
			break
		}
	}
	h.Reads[0].Key = "changed"
	assert.Equal(t, "a", rec.History().Reads[0].Key, "History returns a copy")
}

// linearHistory is a consistent history of n reads over keys keys: one
// writer per key, each read returning the newest version confirmed before
// it started or one that was being written.
func linearHistory(n, keys int) History {
	r := rand.New(rand.NewPCG(1, 2))
	var h History
	now := time.Duration(0)
	ver := make([]int64, keys)
	for i := range n {
		now += time.Microsecond
		k := r.IntN(keys)
		key := fmt.Sprintf("k%d", k)
		if i%10 == 0 {
			ver[k]++
			h.Writes = append(h.Writes, Write{Key: key, Version: ver[k], Began: now, Returned: now + time.Microsecond/2, Confirmed: true})
			continue
		}
		h.Reads = append(h.Reads, Read{Key: key, Start: now, End: now + time.Microsecond/2, Version: ver[k], ValueKey: key})
	}
	return h
}

func TestCheckLargeHistory(t *testing.T) {
	t.Parallel()
	h := linearHistory(300_000, 40)
	rep := Check(h, 0)
	assert.Empty(t, rep.Violations)
	assert.Equal(t, len(h.Reads), rep.Checked)

	// One read set back by a version is found among them all.
	for i := len(h.Reads) / 2; ; i++ {
		if h.Reads[i].Version > 0 {
			h.Reads[i].Version--
			break
		}
	}
	rep = Check(h, 0)
	assert.Len(t, rep.Violations, 1)
}

func BenchmarkCheck(b *testing.B) {
	h := linearHistory(300_000, 40)
	b.ResetTimer()
	for b.Loop() {
		Check(h, 0)
	}
}

func TestWindowsOverlapsMatchesBruteForce(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	for round := range 200 {
		var ws windows
		writes := make([]Write, 1+r.IntN(6))
		for i := range writes {
			from := time.Duration(r.IntN(100))
			ws.add(&writes[i], from, from+time.Duration(r.IntN(50)))
		}
		all := append([]window(nil), ws.w...)
		ws.seal()
		for range 50 {
			from := time.Duration(r.IntN(160))
			to := from + time.Duration(r.IntN(20))
			except := &writes[r.IntN(len(writes))]
			want := false
			for _, w := range all {
				if w.w != except && w.from <= to && w.to >= from {
					want = true
				}
			}
			require.Equal(t, want, ws.overlaps(from, to, except), "round %d: [%d, %d] over %v", round, from, to, all)
		}
	}
}
