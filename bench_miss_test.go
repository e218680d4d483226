package rediscache_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rediscache/rediscache"
)

// missSeq makes every miss benchmark iteration use keys never used before.
var missSeq atomic.Int64

// BenchmarkGetOrLoadMiss measures a GetOrLoad miss (read, lease, loader,
// guarded store) paired, call by call, with hand-written cache-aside on
// raw go-redis: GET (a miss), encoding/json, SET. Each call uses a new
// key; the loader returns at once.
func BenchmarkGetOrLoadMiss(b *testing.B) {
	ctx := context.Background()
	raw, c := benchClients(b)
	const ttl = 10 * time.Second // the keys pile up: let them go
	rawMiss := func() error {
		k := "bench:raw:miss:" + strconv.FormatInt(missSeq.Add(1), 10)
		if err := raw.Get(ctx, k).Err(); !errors.Is(err, redis.Nil) {
			return err
		}
		v, _ := loadBenchTask(ctx)
		p, err := json.Marshal(v)
		if err != nil {
			return err
		}
		benchSink = v
		return raw.Set(ctx, k, p, ttl).Err()
	}
	miss := func() error {
		k := "miss:" + strconv.FormatInt(missSeq.Add(1), 10)
		v, err := rediscache.GetOrLoad(ctx, c, k, ttl, loadBenchTask)
		benchSink = v
		return err
	}
	runPaired(b, "raw", rawMiss, "GetOrLoad", miss)
	runNamed(b, []namedOp{{"GetOrLoad", miss}})
}

// BenchmarkGetManyOrLoadMiss measures GetManyOrLoad of 1,000 keys that all
// miss, paired with hand-written batch cache-aside on raw go-redis: MGET,
// encoding/json of each value, pipelined SET PX.
func BenchmarkGetManyOrLoadMiss(b *testing.B) {
	ctx := context.Background()
	raw, c := benchClients(b)
	const n, ttl = 1000, 10 * time.Second
	keys := func(prefix string) []string {
		base := missSeq.Add(n)
		ks := make([]string, n)
		for i := range ks {
			ks[i] = prefix + strconv.FormatInt(base+int64(i), 10)
		}
		return ks
	}
	loadMany := func(_ context.Context, missing []string) (map[string]benchTask, error) {
		out := make(map[string]benchTask, len(missing))
		for _, k := range missing {
			out[k] = benchValue
		}
		return out, nil
	}
	rawMany := func() error {
		ks := keys("bench:raw:many:")
		if _, err := raw.MGet(ctx, ks...).Result(); err != nil {
			return err
		}
		vals, _ := loadMany(ctx, ks)
		pipe := raw.Pipeline()
		for _, k := range ks {
			p, err := json.Marshal(vals[k])
			if err != nil {
				return err
			}
			pipe.Set(ctx, k, p, ttl)
		}
		_, err := pipe.Exec(ctx)
		return err
	}
	many := func() error {
		m, err := rediscache.GetManyOrLoad(ctx, c, keys("many:"), ttl, loadMany)
		if err == nil && len(m) != n {
			b.Fatalf("got %d values, want %d", len(m), n)
		}
		return err
	}
	runPaired(b, "raw", rawMany, "GetManyOrLoad", many)
	runNamed(b, []namedOp{{"GetManyOrLoad", many}})
}

// BenchmarkLocalCacheHit measures a typed Get and a GetOrLoad hit answered
// by the near cache (Options.LocalCache): no round trip, no decode.
func BenchmarkLocalCacheHit(b *testing.B) {
	ctx := context.Background()
	c, err := rediscache.New(&rediscache.Options{Addrs: []string{benchAddr(b)}, Prefix: "benchnear", LocalCache: true})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	if err := rediscache.Set(ctx, c, "task", benchValue, rediscache.TTLDay); err != nil {
		b.Fatal(err)
	}
	if _, err := rediscache.GetOrLoad(ctx, c, "loaded", rediscache.TTLDay, loadBenchTask); err != nil {
		b.Fatal(err)
	}
	get := func() error {
		v, err := rediscache.Get[benchTask](ctx, c, "task")
		benchSink = v
		return err
	}
	getOrLoad := func() error {
		v, err := rediscache.GetOrLoad(ctx, c, "loaded", rediscache.TTLDay, loadBenchTask)
		benchSink = v
		return err
	}
	for range 3 { // kept now
		_, _ = get(), getOrLoad()
	}
	runNamed(b, []namedOp{{"Get", get}, {"GetOrLoad", getOrLoad}})
}

// BenchmarkTaggedHit compares a typed Get and a GetOrLoad hit of an entry
// with 1 and 4 tags to an untagged one, with and without WithTags on the
// read (which reads the tags' versions in the same round trip), paired
// call by call with the untagged read.
func BenchmarkTaggedHit(b *testing.B) {
	ctx := context.Background()
	_, c := benchClients(b)
	four := []string{"user:42", "org:7", "team:3", "plan:pro"}
	if err := rediscache.Set(ctx, c, "untagged", benchValue, rediscache.TTLDay); err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{1, 4} {
		tags := four[:n]
		key := fmt.Sprint("tagged", n)
		if err := rediscache.Set(ctx, c, key, benchValue, rediscache.TTLDay, rediscache.WithTags(tags...)); err != nil {
			b.Fatal(err)
		}
		get := func(key string, opts ...rediscache.CallOption) func() error {
			return func() error {
				v, err := rediscache.Get[benchTask](ctx, c, key, opts...)
				benchSink = v
				return err
			}
		}
		getOrLoad := func(key string, opts ...rediscache.CallOption) func() error {
			return func() error {
				v, err := rediscache.GetOrLoad(ctx, c, key, rediscache.TTLDay, loadBenchTask, opts...)
				benchSink = v
				return err
			}
		}
		// The GetOrLoad entries: stored by GetOrLoad itself.
		if _, err := rediscache.GetOrLoad(ctx, c, key+":gol", rediscache.TTLDay, loadBenchTask, rediscache.WithTags(tags...)); err != nil {
			b.Fatal(err)
		}
		if _, err := rediscache.GetOrLoad(ctx, c, "untagged:gol", rediscache.TTLDay, loadBenchTask); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("Get/%dtags", n), func(b *testing.B) { runPaired(b, "untagged", get("untagged"), "tagged", get(key)) })
		b.Run(fmt.Sprintf("Get/%dtags/WithTags", n), func(b *testing.B) {
			runPaired(b, "untagged", get("untagged"), "tagged", get(key, rediscache.WithTags(tags...)))
		})
		b.Run(fmt.Sprintf("GetOrLoad/%dtags", n), func(b *testing.B) {
			runPaired(b, "untagged", getOrLoad("untagged:gol"), "tagged", getOrLoad(key+":gol"))
		})
		b.Run(fmt.Sprintf("GetOrLoad/%dtags/WithTags", n), func(b *testing.B) {
			runPaired(b, "untagged", getOrLoad("untagged:gol"), "tagged", getOrLoad(key+":gol", rediscache.WithTags(tags...)))
		})
	}
}
