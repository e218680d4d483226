package main

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/rediscache/rediscache"
)

// TestCompressionPaired measures what Options.Compression costs the redis
// tier's reads with machine noise hitting both sides alike: one workload,
// two Clients (CompressionNone and CompressionS2, each on its own keys),
// measured in alternating 350ms slices, 40 of each, on the same request
// sequences. It runs only when CACHEBENCH_PAIRED_REDIS names a Redis
// (for steady figures, one pinned with taskset -c 1, and this test under
// taskset -c 0):
//
//	CACHEBENCH_PAIRED_REDIS=127.0.0.1:16391 taskset -c 0 go test -run TestCompressionPaired -v .
func TestCompressionPaired(t *testing.T) {
	addr := os.Getenv("CACHEBENCH_PAIRED_REDIS")
	if addr == "" {
		t.Skip("set CACHEBENCH_PAIRED_REDIS to a Redis address to run")
	}
	const (
		workers = 8
		slices  = 40
		slice   = 350 * time.Millisecond
	)
	ctx := context.Background()
	st, err := openStore(ctx, "", workers+2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.close() })
	cnt, err := st.seed(ctx, 1, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	w, err := newWorkload(ctx, st, cnt, 1.0, 0.05, 1)
	if err != nil {
		t.Fatal(err)
	}
	comps := []string{"none", "s2"}
	var caches [2]*rediscache.Client
	for i, comp := range comps {
		c, err := newTierCache(ctx, Config{Workers: workers, Compression: comp}, &redisServer{Addr: addr},
			tier{ID: "paired-" + comp, Cache: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := closeTierCache(c); err != nil {
				t.Error(err)
			}
		})
		caches[i] = c
		w.cache = c
		w.run(ctx, phaseConfig{Workers: workers, Duration: defaultWarmup, Seed: 99}, true)
	}
	var all, hits [2]hist
	var ops [2]uint64
	var elapsed [2]time.Duration
	for s := range slices {
		for j := range 2 {
			i := (s + j) % 2 // none first in even slices, s2 first in odd ones
			w.cache = caches[i]
			p := w.run(ctx, phaseConfig{Workers: workers, Duration: slice, Seed: uint64(1000 + s)}, true)
			for k := range numReads {
				all[i].merge(&p.Lat[k])
				hits[i].merge(&p.HitLat[k])
			}
			ops[i] += p.ops()
			elapsed[i] += p.Elapsed
		}
	}
	w.cache = nil
	q := func(h *hist, p float64) float64 { return ms(h.quantile(p)) }
	for i, comp := range comps {
		t.Logf("%-4s all reads p50 %.3fms p99 %.3fms, hits p50 %.3fms p99 %.3fms, %.0f ops/s", comp,
			q(&all[i], 0.5), q(&all[i], 0.99), q(&hits[i], 0.5), q(&hits[i], 0.99), float64(ops[i])/elapsed[i].Seconds())
	}
	t.Logf("s2/none: all reads p50 %.3f p99 %.3f, hits p50 %.3f p99 %.3f, ops/s %.3f",
		q(&all[1], 0.5)/q(&all[0], 0.5), q(&all[1], 0.99)/q(&all[0], 0.99),
		q(&hits[1], 0.5)/q(&hits[0], 0.5), q(&hits[1], 0.99)/q(&hits[0], 0.99),
		(float64(ops[1])/elapsed[1].Seconds())/(float64(ops[0])/elapsed[0].Seconds()))
}
