package rediscache

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// merge keeps every namespace at the largest generation it was given,
// whether the change stays in the view's small map of recent changes or
// folds it into a new base, and never changes a view already published.
func TestGenViewMerge(t *testing.T) {
	for _, tc := range []struct {
		name       string
		namespaces int
		merges     int
		batch      int
	}{
		{"few namespaces, one at a time", 10, 1000, 1},
		{"many namespaces, one at a time", 5000, 3000, 1},
		{"batches over the fold size", 2000, 50, genRecentMax + 7},
		{"one refresh of everything", 20_000, 1, 20_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGenerations(&Client{}, time.Second)
			g.view.Store(&genView{epoch: 7, seq: 0})
			want := map[string]uint64{}
			var published []*genView
			var snapshots []map[string]uint64
			for m := range tc.merges {
				gens := map[string]uint64{}
				for range tc.batch {
					ns := fmt.Sprint("ns", rand.IntN(tc.namespaces))
					gen := uint64(8 + rand.IntN(1000)) // goes down as well as up
					gens[ns] = max(gens[ns], gen)
					want[ns] = max(want[ns], gen)
				}
				g.merge(gens, int64(m+1))
				if m%97 == 0 { // a published view must never change
					v := g.view.Load()
					snap := map[string]uint64{}
					for ns := range want {
						snap[ns] = v.of(ns)
					}
					published, snapshots = append(published, v), append(snapshots, snap)
				}
			}
			v := g.view.Load()
			assert.LessOrEqual(t, len(v.recent), genRecentMax)
			assert.Equal(t, int64(tc.merges), v.seq)
			for ns, gen := range want {
				assert.Equal(t, gen, v.of(ns), ns)
			}
			assert.Equal(t, uint64(7), v.of("never invalidated"), "the epoch")
			for i, pv := range published {
				for ns, gen := range snapshots[i] {
					assert.Equal(t, gen, pv.of(ns), "published view %d changed for %s", i, ns)
				}
			}
		})
	}
}
