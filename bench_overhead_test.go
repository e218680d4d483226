package rediscache_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/rediscache/rediscache"
)

// stubRedis answers GET and SET from memory without a network round trip,
// so BenchmarkGetOverhead measures only the CPU each library spends per call.
// Every other method panics (through the nil embedded interface).
type stubRedis struct {
	redis.UniversalClient
	vals map[string]string
}

func (s *stubRedis) Get(ctx context.Context, key string) *redis.StringCmd {
	cmd := redis.NewStringCmd(ctx, "get", key)
	if v, ok := s.vals[key]; ok {
		cmd.SetVal(v)
	} else {
		cmd.SetErr(redis.Nil)
	}
	return cmd
}

func (s *stubRedis) Set(ctx context.Context, key string, value any, _ time.Duration) *redis.StatusCmd {
	cmd := redis.NewStatusCmd(ctx, "set", key)
	s.vals[key] = string(value.([]byte))
	cmd.SetVal("OK")
	return cmd
}

func (s *stubRedis) HGetAll(ctx context.Context, key string) *redis.MapStringStringCmd {
	cmd := redis.NewMapStringStringCmd(ctx, "hgetall", key)
	cmd.SetVal(map[string]string{})
	return cmd
}

// BenchmarkGetOverhead is a typed Get of a small struct through rediscache
// next to GET plus json.Unmarshal on the same in-memory stub: the
// difference is rediscache's own CPU per call (key, envelope, stats,
// breaker), which is what limits throughput when many goroutines share an
// auto-pipelined connection on few cores.
func BenchmarkGetOverhead(b *testing.B) {
	ctx := context.Background()
	payload, _ := json.Marshal(benchValue)
	stub := &stubRedis{vals: map[string]string{"bench:raw:task": string(payload)}}
	c, err := rediscache.New(&rediscache.Options{Redis: stub, Prefix: "bench", HealthCheckInterval: -1, GenerationTTL: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	// The stub answers GET only: the entry is written on miniredis by a
	// Client of the same options and its bytes copied into the stub.
	mr := miniredis.RunT(b)
	w, err := rediscache.New(&rediscache.Options{Addrs: []string{mr.Addr()}, Prefix: "bench", HealthCheckInterval: -1, GenerationTTL: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = w.Close() })
	if err := rediscache.Set(ctx, w, "tasks:task", benchValue, time.Minute); err != nil {
		b.Fatal(err)
	}
	if stub.vals["bench:tasks:task"], err = mr.Get("bench:tasks:task"); err != nil {
		b.Fatal(err)
	}

	raw := func() error {
		bs, err := stub.Get(ctx, "bench:raw:task").Bytes()
		if err != nil {
			return err
		}
		var v benchTask
		return json.Unmarshal(bs, &v)
	}
	cached := func() error {
		_, err := rediscache.Get[benchTask](ctx, c, "tasks:task")
		return err
	}
	for _, v := range []struct {
		name string
		op   func() error
	}{{"goredis", raw}, {"rediscache", cached}} {
		b.Run(v.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := v.op(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(v.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := v.op(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
