package main

import (
	"bytes"
	"strings"
	"testing"
)

const sample = `goos: linux
pkg: github.com/rediscache/rediscache/bench
BenchmarkGetHit/rediscache/g1-2         	    2000	     100 ns/op	     836 B/op	      22 allocs/op
BenchmarkGetHit/rediscache/g1-2         	    2000	     300 ns/op	     836 B/op	      22 allocs/op
BenchmarkGetHit/rediscache/g1-2         	    2000	     104 ns/op	     836 B/op	      22 allocs/op
BenchmarkGetHit/goredis/g1              	    2000	     100 ns/op	     778 B/op	      21 allocs/op
BenchmarkGetHit/rediscache-autopipeline/g64-2 	    2000	     90 ns/op
BenchmarkGetHit/goredis-autopipeline/g64-2 	    2000	     100 ns/op
BenchmarkGetHit/rueidis/g64-2 	    2000	     95 ns/op
BenchmarkGetHit/rediscache-localcache/g1-2 	    2000	     500 ns/op
BenchmarkGetHit/gocache-local/g1-2 	    2000	     900 ns/op
PASS
`

func TestParseAndTargets(t *testing.T) {
	var rs results
	if err := rs.parse(strings.NewReader(sample)); err != nil {
		t.Fatal(err)
	}
	if got := rs.ns("GetHit", "rediscache", "g1"); got != 104 {
		t.Errorf("median = %v, want 104", got)
	}
	if got := rs.median("GetHit", "goredis", "g1", "allocs/op"); got != 21 {
		t.Errorf("allocs = %v, want 21", got)
	}
	want := []bool{true, true, true, true}
	for i, tg := range rs.targets() {
		if !tg.known || tg.met != want[i] {
			t.Errorf("target %q: known %v met %v (ratio %v)", tg.goal, tg.known, tg.met, tg.value)
		}
	}
	var out bytes.Buffer
	write(&out, &rs)
	for _, s := range []string{"| GetHit | 1.04x |", "1.11x | yes |", "| rediscache-localcache | 500 ns |"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("output lacks %q:\n%s", s, out.String())
		}
	}
}

// A paired benchmark, when present, decides its target.
func TestPairedDecides(t *testing.T) {
	var rs results
	in := sample + `BenchmarkPairedGetHit/rediscache-autopipeline_vs_goredis-autopipeline/g64-2 	 15	 200000000 ns/op	 80000 a-ops/s	 100000 b-ops/s	 0.80 ratio
BenchmarkPairedGetHit/rediscache-autopipeline_vs_goredis-autopipeline/g64-2 	 15	 200000000 ns/op	 85000 a-ops/s	 100000 b-ops/s	 0.85 ratio
BenchmarkPairedGetHit/rediscache-autopipeline_vs_goredis-autopipeline/g64-2 	 15	 200000000 ns/op	 95000 a-ops/s	 100000 b-ops/s	 0.95 ratio
BenchmarkPairedGetHit/rediscache_vs_goredis/g1-2 	 2000	 200 ns/op	 102 a-ns/call	 100 b-ns/call	 1.02 ratio
`
	if err := rs.parse(strings.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	ts := rs.targets()
	if ts[0].met || ts[0].value != 0.85 || !strings.Contains(ts[0].detail, "per run 0.80x–0.95x") {
		t.Errorf("AutoPipeline target: %+v (the sequential 1.11x must not decide it)", ts[0])
	}
	if !ts[1].met || strings.Contains(ts[1].detail, "paired") {
		t.Errorf("rueidis target without a paired benchmark: %+v", ts[1])
	}
	if !ts[2].met || ts[2].value != 1.02 {
		t.Errorf("latency target: %+v", ts[2])
	}
	var out bytes.Buffer
	write(&out, &rs)
	if strings.Contains(out.String(), "#### PairedGetHit") {
		t.Error("the paired benchmarks got a variant table")
	}
}

func TestMissingBenchmarkIsNotMet(t *testing.T) {
	var rs results
	if err := rs.parse(strings.NewReader("BenchmarkSet/goredis/g1-2 10 5 ns/op\n")); err != nil {
		t.Fatal(err)
	}
	for _, tg := range rs.targets() {
		if tg.known || tg.met {
			t.Errorf("target %q judged without its benchmarks", tg.goal)
		}
	}
}
