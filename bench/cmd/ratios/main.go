// Command ratios reads the raw output of the bench module's benchmarks (go
// test -bench, any number of -count runs, from files or stdin) and prints
// the Markdown summary of docs/benchmarks.md: the median of each benchmark,
// its ratio to raw go-redis, and whether the targets of issue 6 are met.
//
//	go run ./cmd/ratios bench.txt > summary.md
//
// Benchmarks are named Benchmark<Op>/<variant>/g<goroutines>. Medians, not
// means, as benchstat reports; benchstat's tables give the spread.
package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

func main() {
	var rs results
	if len(os.Args) < 2 {
		if err := rs.parse(os.Stdin); err != nil {
			fail(err)
		}
	}
	for _, name := range os.Args[1:] {
		f, err := os.Open(name)
		if err != nil {
			fail(err)
		}
		err = rs.parse(f)
		_ = f.Close()
		if err != nil {
			fail(fmt.Errorf("%s: %w", name, err))
		}
	}
	if len(rs.order) == 0 {
		fail(fmt.Errorf("no benchmark lines in the input"))
	}
	write(os.Stdout, &rs)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "ratios:", err)
	os.Exit(1)
}

// id names one benchmark: BenchmarkGetHit/rediscache/g1 is {GetHit, rediscache, g1}.
type id struct{ op, variant, g string }

// samples are one benchmark's values per unit (ns/op, B/op, allocs/op), one per run.
type samples map[string][]float64

type results struct {
	order []id // first appearance
	byID  map[id]samples
}

// line matches "BenchmarkOp/variant/g1-2   2000   12345 ns/op   836 B/op   22 allocs/op".
var line = regexp.MustCompile(`^Benchmark([^/\s]+)/([^/\s]+)/(g\d+)(?:-\d+)?\s+\d+\s+(.*)$`)

func (rs *results) parse(r io.Reader) error {
	if rs.byID == nil {
		rs.byID = map[id]samples{}
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		m := line.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		k := id{m[1], m[2], m[3]}
		s, ok := rs.byID[k]
		if !ok {
			s = samples{}
			rs.byID[k] = s
			rs.order = append(rs.order, k)
		}
		f := strings.Fields(m[4])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return fmt.Errorf("%q: %w", sc.Text(), err)
			}
			s[f[i+1]] = append(s[f[i+1]], v)
		}
	}
	return sc.Err()
}

// median of unit for a benchmark; NaN when it is missing.
func (rs *results) median(op, variant, g, unit string) float64 {
	vs := rs.byID[id{op, variant, g}][unit]
	if len(vs) == 0 {
		return math.NaN()
	}
	vs = slices.Sorted(slices.Values(vs))
	n := len(vs)
	if n%2 == 1 {
		return vs[n/2]
	}
	return (vs[n/2-1] + vs[n/2]) / 2
}

func (rs *results) ns(op, variant, g string) float64 { return rs.median(op, variant, g, "ns/op") }

// spread returns the smallest and largest value of unit for a benchmark.
func (rs *results) spread(op, variant, g, unit string) (lo, hi float64) {
	vs := rs.byID[id{op, variant, g}][unit]
	if len(vs) == 0 {
		return math.NaN(), math.NaN()
	}
	return slices.Min(vs), slices.Max(vs)
}

func (rs *results) runs(op, variant, g string) int {
	return len(rs.byID[id{op, variant, g}]["ns/op"])
}

// pairedOp is the op of the paired benchmarks (BenchmarkPairedGetHit),
// whose variants are "a_vs_b" pairs reported with their own units.
const pairedOp = "PairedGetHit"

// ops and variants in order of appearance; the op order is the file's. The
// paired benchmarks are not an op of the tables.
func (rs *results) ops() []string {
	var out []string
	for _, k := range rs.order {
		if k.op != pairedOp && !slices.Contains(out, k.op) {
			out = append(out, k.op)
		}
	}
	return out
}

func (rs *results) variants(op string) []string {
	var out []string
	for _, k := range rs.order {
		if k.op == op && !slices.Contains(out, k.variant) {
			out = append(out, k.variant)
		}
	}
	return out
}

// ratio a/b, NaN when either is missing.
func ratio(a, b float64) float64 { return a / b }

func fx(r float64) string {
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return "—"
	}
	return fmt.Sprintf("%.2fx", r)
}

// dur formats nanoseconds.
func dur(ns float64) string {
	switch {
	case math.IsNaN(ns):
		return "—"
	case ns >= 1e6:
		return fmt.Sprintf("%.2f ms", ns/1e6)
	case ns >= 1e3:
		return fmt.Sprintf("%.2f µs", ns/1e3)
	default:
		return fmt.Sprintf("%.0f ns", ns)
	}
}

func num(v float64) string {
	if math.IsNaN(v) {
		return "—"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// opsPerSec is the throughput of a RunParallel benchmark: its ns/op is wall
// time per operation across all goroutines.
func opsPerSec(ns float64) string {
	if math.IsNaN(ns) || ns == 0 {
		return "—"
	}
	v := 1e9 / ns
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

// target is one goal of issue 6, judged on medians.
type target struct {
	goal   string
	value  float64 // the measured ratio
	detail string
	met    bool
	known  bool // false when a benchmark is missing
}

func (rs *results) targets() []target {
	var ts []target
	add := func(goal string, num, den float64, detail string, ok func(float64) bool) {
		r := ratio(num, den)
		known := !math.IsNaN(r) && !math.IsInf(r, 0)
		ts = append(ts, target{goal: goal, value: r, detail: detail, met: known && ok(r), known: known})
	}
	// paired judges a target on its paired benchmark when the run has one
	// (both sides interleaved: drift cancels), else on the sequential
	// medians; the detail shows both.
	paired := func(goal, pair, g string, num, den float64, seqDetail string, ok func(float64) bool) {
		r := rs.median(pairedOp, pair, g, "ratio")
		if math.IsNaN(r) {
			add(goal, num, den, seqDetail, ok)
			return
		}
		a, b := rs.median(pairedOp, pair, g, "a-ops/s"), rs.median(pairedOp, pair, g, "b-ops/s")
		side := fmt.Sprintf("%s vs %s ops/s", opsPerSec(1e9/a), opsPerSec(1e9/b))
		if g == "g1" {
			a, b = rs.median(pairedOp, pair, g, "a-ns/call"), rs.median(pairedOp, pair, g, "b-ns/call")
			side = fmt.Sprintf("%s vs %s", dur(a), dur(b))
		}
		lo, hi := rs.spread(pairedOp, pair, g, "ratio")
		detail := fmt.Sprintf("paired: %s (per run %.2fx–%.2fx); sequential: %s (%s)", side, lo, hi, seqDetail, fx(ratio(num, den)))
		ts = append(ts, target{goal: goal, value: r, detail: detail, met: ok(r), known: true})
	}
	// AutoPipeline on: throughput ratio = other's ns/op over ours.
	apNs := rs.ns("GetHit", "rediscache-autopipeline", "g64")
	gap := rs.ns("GetHit", "goredis-autopipeline", "g64")
	paired("AutoPipeline on: 64-goroutine typed Get throughput ≥ 0.9x raw go-redis auto-pipelined GET",
		"rediscache-autopipeline_vs_goredis-autopipeline", "g64",
		gap, apNs, fmt.Sprintf("%s vs %s ops/s", opsPerSec(apNs), opsPerSec(gap)),
		func(r float64) bool { return r >= 0.9 })
	rd := rs.ns("GetHit", "rueidis", "g64")
	paired("AutoPipeline on: 64-goroutine typed Get throughput above rueidis",
		"rediscache-autopipeline_vs_rueidis", "g64",
		rd, apNs, fmt.Sprintf("%s vs %s ops/s", opsPerSec(apNs), opsPerSec(rd)),
		func(r float64) bool { return r > 1 })
	// AutoPipeline off: latency ratio = our ns/op over raw's.
	rc := rs.ns("GetHit", "rediscache", "g1")
	raw := rs.ns("GetHit", "goredis", "g1")
	paired("AutoPipeline off: 1-goroutine Get latency within 1.10x raw go-redis + JSON",
		"rediscache_vs_goredis", "g1",
		rc, raw, fmt.Sprintf("%s vs %s", dur(rc), dur(raw)),
		func(r float64) bool { return r <= 1.10 })
	// Near cache: latency ratio, below 1 is faster.
	lc := rs.ns("GetHit", "rediscache-localcache", "g1")
	gl := rs.ns("GetHit", "gocache-local", "g1")
	add("LocalCache: typed hit faster than go-redis/cache's local TinyLFU hit",
		lc, gl, fmt.Sprintf("%s vs %s", dur(lc), dur(gl)),
		func(r float64) bool { return r < 1 })
	return ts
}

// write prints the Markdown summary.
func write(w io.Writer, rs *results) {
	ops := rs.ops()
	minRuns := math.MaxInt
	for _, k := range rs.order {
		minRuns = min(minRuns, rs.runs(k.op, k.variant, k.g))
	}
	fmt.Fprintf(w, "Medians of %d or more runs per benchmark. A ratio is a time ratio (ns/op over ns/op): below 1.00x is faster. At g64 the ns/op is wall time per operation across the 64 goroutines, so ops/s = 1e9 / ns/op.\n\n", minRuns)

	fmt.Fprintln(w, "### Targets (issue 6)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| target | measured | ratio | met |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, t := range rs.targets() {
		verdict := "no"
		switch {
		case !t.known:
			verdict = "not measured"
		case t.met:
			verdict = "yes"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", t.goal, t.detail, fx(t.value), verdict)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "The throughput ratios are rediscache-autopipeline's ops/s over the other's (above 1.00x: rediscache is faster); the latency ratios are rediscache's time over the other's (below 1.00x: rediscache is faster). A target with a paired benchmark (BenchmarkPairedGetHit: the two sides interleaved, call by call at g1, in alternating 100 ms slices at g64, so the machine's drift hits both alike) is judged on the paired ratio; the sequential medians are shown beside it.")
	fmt.Fprintln(w)

	fmt.Fprintln(w, "### Ratios to raw go-redis and to the peers")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| operation | rediscache ÷ goredis, g1 | rediscache ÷ goredis, g64 | rediscache-autopipeline ÷ goredis-autopipeline, g64 | rediscache-autopipeline ÷ rueidis, g64 | rediscache-localcache ÷ gocache-local, g1 | rediscache-localcache ÷ rueidis near cache, g1 |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, op := range ops {
		near := "rueidis-csc"
		if op == "GetOrLoadHit" {
			near = "rueidisaside"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", op,
			fx(ratio(rs.ns(op, "rediscache", "g1"), rs.ns(op, "goredis", "g1"))),
			fx(ratio(rs.ns(op, "rediscache", "g64"), rs.ns(op, "goredis", "g64"))),
			fx(ratio(rs.ns(op, "rediscache-autopipeline", "g64"), rs.ns(op, "goredis-autopipeline", "g64"))),
			fx(ratio(rs.ns(op, "rediscache-autopipeline", "g64"), rs.ns(op, "rueidis", "g64"))),
			fx(ratio(rs.ns(op, "rediscache-localcache", "g1"), rs.ns(op, "gocache-local", "g1"))),
			fx(ratio(rs.ns(op, "rediscache-localcache", "g1"), rs.ns(op, near, "g1"))))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "The rueidis near cache is rueidis-csc (DoCache) for Get and GetMany, rueidisaside for GetOrLoad.")
	fmt.Fprintln(w)

	fmt.Fprintln(w, "### Every variant")
	for _, op := range ops {
		fmt.Fprintf(w, "\n#### %s\n\n", op)
		fmt.Fprintln(w, "| variant | g1 time/op | g1 B/op | g1 allocs/op | g1 ÷ goredis | g64 time/op | g64 ops/s | g64 ÷ goredis |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
		base1, base64 := rs.ns(op, "goredis", "g1"), rs.ns(op, "goredis", "g64")
		for _, v := range rs.variants(op) {
			n1, n64 := rs.ns(op, v, "g1"), rs.ns(op, v, "g64")
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", v,
				dur(n1), num(rs.median(op, v, "g1", "B/op")), num(rs.median(op, v, "g1", "allocs/op")), fx(ratio(n1, base1)),
				dur(n64), opsPerSec(n64), fx(ratio(n64, base64)))
		}
	}
}
