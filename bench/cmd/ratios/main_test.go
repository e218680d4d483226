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
