package rediscache_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/rediscache/rediscache"
)

// benchPageRow is one row of a page like cachebench's: ids, a title, a
// status and a few counters.
type benchPageRow struct {
	ID        string `json:"id"`
	UserID    string `json:"user_id"`
	Title     string `json:"title"`
	Status    string `json:"status"`
	CreatedAt int64  `json:"created_at"`
	Scenes    int    `json:"scenes"`
	Approved  int    `json:"approved_scenes"`
	Bytes     int64  `json:"resource_bytes"`
	Matching  int    `json:"matching"`
}

// benchPage is a 20-row page: 3.8 KB of JSON, which S2 stores in 1.2 KB
// (cachebench's pages are 1.5 to 4.5 KB, stored in 34% to 46%).
var benchPage = func() []benchPageRow {
	words := []string{"Render", "the", "storyboard", "final", "cut", "scene", "draft", "review", "audio", "mix"}
	statuses := []string{"pending", "running", "done", "failed"}
	rows := make([]benchPageRow, 20)
	for i := range rows {
		rows[i] = benchPageRow{ID: fmt.Sprintf("task_%d", 39_000+i*37), UserID: "user_1234",
			Title:  fmt.Sprintf("%s %s %s %d", words[i%10], words[(i*3)%10], words[(i*7)%10], i*i),
			Status: statuses[i%4], CreatedAt: 1_764_000_000_000 + int64(i)*86_400_123, Scenes: 3 + i%7, Approved: i % 5,
			Bytes: int64(i) * 1_048_731, Matching: 57}
	}
	return rows
}()

// BenchmarkCompressedGet is a typed Get of a cachebench-like page stored
// plain (CompressionNone) and S2-compressed, alternated call by call
// ("paired"), so the ratio s2/none is what decompressing costs (and the
// smaller reply saves).
func BenchmarkCompressedGet(b *testing.B) {
	ctx, addr := context.Background(), benchAddr(b)
	get := map[rediscache.Compression]func() error{}
	for _, comp := range []rediscache.Compression{rediscache.CompressionNone, rediscache.CompressionS2} {
		c := benchCompressionClient(b, addr, comp)
		if err := rediscache.Set(ctx, c, "page", benchPage, rediscache.TTLDay); err != nil {
			b.Fatal(err)
		}
		get[comp] = func() error {
			_, err := rediscache.Get[[]benchPageRow](ctx, c, "page")
			return err
		}
	}
	runCompressionPair(b, get)
}

// BenchmarkCompressedSet is BenchmarkCompressedGet for Set: the ratio
// s2/none is what compressing costs.
func BenchmarkCompressedSet(b *testing.B) {
	ctx, addr := context.Background(), benchAddr(b)
	set := map[rediscache.Compression]func() error{}
	for _, comp := range []rediscache.Compression{rediscache.CompressionNone, rediscache.CompressionS2} {
		c := benchCompressionClient(b, addr, comp)
		set[comp] = func() error { return rediscache.Set(ctx, c, "page", benchPage, rediscache.TTLDay) }
	}
	runCompressionPair(b, set)
}

// benchCompressionClient returns a Client with Compression comp on the
// server at addr, under a prefix of its own.
func benchCompressionClient(b *testing.B, addr string, comp rediscache.Compression) *rediscache.Client {
	c, err := rediscache.New(&rediscache.Options{Addrs: []string{addr}, Prefix: fmt.Sprint("bench-comp", comp), Compression: comp})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	return c
}

// runCompressionPair runs the two sides paired, then each on its own.
func runCompressionPair(b *testing.B, fns map[rediscache.Compression]func() error) {
	runPaired(b, "none", fns[rediscache.CompressionNone], "s2", fns[rediscache.CompressionS2])
	for _, v := range []struct {
		name string
		fn   func() error
	}{{"none", fns[rediscache.CompressionNone]}, {"s2", fns[rediscache.CompressionS2]}} {
		b.Run(v.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := v.fn(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
