package consistency

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Kind is what a [Violation] breaks.
type Kind uint8

const (
	// Stale means the read returned a version older than one whose
	// invalidation had returned before the read started.
	Stale Kind = iota
	// WrongKey means the read returned a value of another key.
	WrongKey
	// Future means the read returned a version that no recorded write had begun
	// by the time the read ended: the test itself is broken.
	Future
)

// String returns "stale", "wrong key" or "future".
func (k Kind) String() string {
	switch k {
	case Stale:
		return "stale"
	case WrongKey:
		return "wrong key"
	case Future:
		return "future"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Violation is one read that broke the guarantee.
type Violation struct {
	Kind      Kind
	Key       string
	Got       int64         // the version read
	ReadStart time.Duration // when the read started
	// Want is, for Stale, the newest version whose invalidation was
	// binding on the read when it started: the least it should have read.
	Want int64
	// Invalidated is, for Stale, when Write returned: Write is the first
	// binding invalidation that made Got obsolete.
	Invalidated time.Duration
	// Staleness is ReadStart - Invalidated: how long Got had been obsolete.
	Staleness time.Duration
	// InLagWindow is set on a Stale violation whose read started, or whose
	// Write ran, within the lag window of another, Lagged write of the key
	// (from its Began to its Returned plus the lag, confirmed or not):
	// Clients may then disagree about the key's namespace generation, so a
	// write by one may miss the copy another reads.
	InLagWindow bool
	Read        Read
	Write       Write // for Stale only
}

// String describes v on one line: the read, what it should have read and
// the invalidation that made its version obsolete, then the read's Note.
func (v Violation) String() string {
	s := v.describe()
	if v.Read.Note != "" {
		s += " (" + v.Read.Note + ")"
	}
	return s
}

func (v Violation) describe() string {
	r := v.Read
	switch v.Kind {
	case Stale:
		w := v.Write
		lag := ""
		if w.Lagged {
			lag = " (lagged)"
		}
		window := ""
		if v.InLagWindow {
			window = " in a lag window"
		}
		return fmt.Sprintf("%s: client %d %s [%v, %v] read version %d, want >= %d: version %d invalidated by client %d %s%s [%v, %v], stale for %v%s",
			v.Key, r.Client, r.Op, r.Start, r.End, v.Got, v.Want, w.Version, w.Client, w.Op, lag, w.Began, w.Returned, v.Staleness, window)
	case WrongKey:
		return fmt.Sprintf("%s: client %d %s [%v, %v] returned the value of key %q",
			v.Key, r.Client, r.Op, r.Start, r.End, r.ValueKey)
	default:
		return fmt.Sprintf("%s: client %d %s [%v, %v] read version %d, which no write had begun by then",
			v.Key, r.Client, r.Op, r.Start, r.End, v.Got)
	}
}

// Report is the result of [Check].
type Report struct {
	Ops         int // recorded events: Writes + Reads
	Writes      int
	Unconfirmed int // writes whose invalidation failed
	Reads       int
	Checked     int // reads that returned a value, all checked
	Misses      int // reads with Outcome Miss
	Failed      int // reads with Outcome Failed
	// Violations are ordered by ReadStart.
	Violations []Violation
	// InLagWindow counts the Stale violations with InLagWindow set.
	InLagWindow int
	// WorstStaleness is the largest Staleness of a Stale violation.
	WorstStaleness time.Duration
}

// Count returns the number of violations of kind k.
func (r Report) Count(k Kind) int {
	n := 0
	for _, v := range r.Violations {
		if v.Kind == k {
			n++
		}
	}
	return n
}

// String prints the figures of r in four lines: operations, reads
// checked, violations by kind, worst staleness. It lists no violation.
func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "operations: %d (%d writes, %d unconfirmed; %d reads)\n", r.Ops, r.Writes, r.Unconfirmed, r.Reads)
	fmt.Fprintf(&b, "reads checked: %d (misses %d, errors %d)\n", r.Checked, r.Misses, r.Failed)
	fmt.Fprintf(&b, "violations: %d (stale %d, %d of them in a lag window; wrong key %d; future %d)\n",
		len(r.Violations), r.Count(Stale), r.InLagWindow, r.Count(WrongKey), r.Count(Future))
	fmt.Fprintf(&b, "worst staleness: %v", r.WorstStaleness)
	return b.String()
}

// Check checks every read of h against the writes of h. A confirmed write
// binds a read of its key that starts after the write's Returned; a Lagged
// write binds the reads of other Clients only from Returned + lag. A read
// that returned a value must return at least the newest bound version, a
// value of its own key, and a version whose write began before the read
// ended. Misses and failed reads are counted only. Stale
// violations near a Lagged write are marked (see [Violation].InLagWindow)
// but count like the others. Check
// costs O((W + R) log W) for W writes and R reads.
func Check(h History, lag time.Duration) Report {
	return CheckLags(h, Lags{Namespace: lag})
}

// Lags are the bounds within which some writes need not be seen yet.
type Lags struct {
	// Namespace is the lag of Lagged writes (namespace invalidations) for
	// the Clients that did not make them.
	Namespace time.Duration
	// Near is, by Client, how late that Client may see the writes of other
	// Clients (a near cache's invalidation bound); never its own.
	Near map[int]time.Duration
}

// CheckLags is [Check] with a near-cache lag for some Clients: a read by
// Client c is bound by another Client's write only from its Returned +
// Near[c] (+ Namespace for a Lagged write, whichever is larger), and by
// c's own writes from their Returned.
func CheckLags(h History, lags Lags) Report {
	lag := lags.Namespace
	rep := Report{Ops: len(h.Writes) + len(h.Reads), Writes: len(h.Writes), Reads: len(h.Reads)}
	idx := make(map[string]*keyIndex)
	for i := range h.Writes {
		w := &h.Writes[i]
		if !w.Confirmed {
			rep.Unconfirmed++
		}
		k := idx[w.Key]
		if k == nil {
			k = &keyIndex{began: make(map[int64]time.Duration)}
			idx[w.Key] = k
		}
		k.add(w, lag)
	}
	for _, k := range idx {
		k.seal()
	}
	for _, r := range h.Reads {
		switch r.Outcome {
		case Miss:
			rep.Misses++
			continue
		case Failed:
			rep.Failed++
			continue
		}
		rep.Checked++
		if v, bad := checkRead(idx[r.Key], r, lags.Near[r.Client], lag); bad {
			rep.Violations = append(rep.Violations, v)
			if v.Kind == Stale {
				rep.WorstStaleness = max(rep.WorstStaleness, v.Staleness)
			}
			if v.InLagWindow {
				rep.InLagWindow++
			}
		}
	}
	slices.SortStableFunc(rep.Violations, func(a, b Violation) int { return cmp.Compare(a.ReadStart, b.ReadStart) })
	return rep
}

// checkRead checks one read that returned a value; k is nil for a key
// never written. near is the reading Client's near-cache lag, lag the
// namespace lag.
func checkRead(k *keyIndex, r Read, near, lag time.Duration) (Violation, bool) {
	v := Violation{Key: r.Key, Got: r.Version, ReadStart: r.Start, Read: r}
	if r.ValueKey != "" && r.ValueKey != r.Key {
		v.Kind = WrongKey
		return v, true
	}
	if r.Version != 0 {
		began, ok := time.Duration(0), false
		if k != nil {
			began, ok = k.began[r.Version]
		}
		if !ok || began > r.End {
			v.Kind = Future
			return v, true
		}
	}
	if k == nil {
		return v, false
	}
	var first *Write
	check := func(tl *timeline, shift time.Duration) {
		if tl == nil {
			return
		}
		want, w := tl.binding(r.Start-shift, r.Version)
		v.Want = max(v.Want, want)
		if w != nil && (first == nil || w.Returned < first.Returned) {
			first = w
		}
	}
	if near == 0 {
		check(&k.all, 0)
		check(&k.lagged, 0)
	} else {
		for c, tl := range k.byClient {
			if c == r.Client {
				check(tl, 0)
			} else {
				check(tl, near)
			}
		}
		check(&k.lagged, max(0, near-lag)) // already bound from Returned+lag
	}
	check(k.own[r.Client], 0)
	if first == nil {
		return v, false
	}
	v.Kind = Stale
	v.Write = *first
	v.Invalidated = first.Returned
	v.Staleness = r.Start - first.Returned
	v.InLagWindow = k.windows.overlaps(r.Start, r.Start, first) || k.windows.overlaps(first.Began, first.Returned, first)
	return v, true
}

// keyIndex holds one key's confirmed writes, by the time they bind.
type keyIndex struct {
	all      timeline                // non-lagged writes, binding from Returned
	byClient map[int]*timeline       // the same, by writing Client
	lagged   timeline                // lagged writes, binding from Returned+lag
	own      map[int]*timeline       // lagged writes by Client, binding on it from Returned
	began    map[int64]time.Duration // every write's Began, by version
	windows                          // of the lagged writes
}

func (k *keyIndex) add(w *Write, lag time.Duration) {
	if b, ok := k.began[w.Version]; !ok || w.Began < b {
		k.began[w.Version] = w.Began
	}
	if w.Lagged {
		k.windows.add(w, w.Began, w.Returned+lag)
	}
	if !w.Confirmed {
		return
	}
	if !w.Lagged {
		k.all.add(w.Returned, w)
		clientTimeline(&k.byClient, w.Client).add(w.Returned, w)
		return
	}
	k.lagged.add(w.Returned+lag, w)
	clientTimeline(&k.own, w.Client).add(w.Returned, w)
}

// clientTimeline returns client's timeline in *m, creating the map and the
// timeline as needed.
func clientTimeline(m *map[int]*timeline, client int) *timeline {
	if *m == nil {
		*m = make(map[int]*timeline)
	}
	tl := (*m)[client]
	if tl == nil {
		tl = &timeline{}
		(*m)[client] = tl
	}
	return tl
}

func (k *keyIndex) seal() {
	k.windows.seal()
	k.all.seal()
	for _, tl := range k.byClient {
		tl.seal()
	}
	k.lagged.seal()
	for _, tl := range k.own {
		tl.seal()
	}
}

// timeline is a list of writes sorted by the time from which they bind,
// with the running maximum of their versions.
type timeline struct {
	ev  []event
	max []int64 // max[i] is the newest version among ev[:i+1]
}

type event struct {
	at time.Duration
	w  *Write
}

func (tl *timeline) add(at time.Duration, w *Write) { tl.ev = append(tl.ev, event{at, w}) }

func (tl *timeline) seal() {
	slices.SortStableFunc(tl.ev, func(a, b event) int { return cmp.Compare(a.at, b.at) })
	tl.max = make([]int64, len(tl.ev))
	for i, e := range tl.ev {
		tl.max[i] = e.w.Version
		if i > 0 {
			tl.max[i] = max(tl.max[i], tl.max[i-1])
		}
	}
}

// binding returns the newest version binding on a read that started at
// start, and the first binding write newer than got (nil if there is none).
func (tl *timeline) binding(start time.Duration, got int64) (int64, *Write) {
	n := sort.Search(len(tl.ev), func(i int) bool { return tl.ev[i].at >= start })
	if n == 0 {
		return 0, nil
	}
	want := tl.max[n-1]
	if want <= got {
		return want, nil
	}
	i := sort.Search(n, func(i int) bool { return tl.max[i] > got })
	return want, tl.ev[i].w
}

// windows is the lag windows of a key's Lagged writes, sorted by start,
// with the two latest ends among each prefix, so that one write's own
// window can be left out of a search.
type windows struct {
	w   []window
	top [][2]int // top[i]: indexes into w[:i+1] of the two latest ends (-1: none)
}

type window struct {
	from, to time.Duration
	w        *Write
}

func (ws *windows) add(w *Write, from, to time.Duration) {
	ws.w = append(ws.w, window{from, to, w})
}

func (ws *windows) seal() {
	slices.SortFunc(ws.w, func(a, b window) int { return cmp.Compare(a.from, b.from) })
	ws.top = make([][2]int, len(ws.w))
	best := [2]int{-1, -1}
	for i := range ws.w {
		switch {
		case best[0] < 0 || ws.w[i].to > ws.w[best[0]].to:
			best = [2]int{i, best[0]}
		case best[1] < 0 || ws.w[i].to > ws.w[best[1]].to:
			best[1] = i
		}
		ws.top[i] = best
	}
}

// overlaps reports whether [from, to] meets the window of a write other
// than except.
func (ws *windows) overlaps(from, to time.Duration, except *Write) bool {
	n := sort.Search(len(ws.w), func(i int) bool { return ws.w[i].from > to })
	if n == 0 {
		return false
	}
	for _, i := range ws.top[n-1] {
		if i >= 0 && ws.w[i].w != except {
			return ws.w[i].to >= from
		}
	}
	return false
}
