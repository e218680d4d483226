// Command quickstart shows rediscache in ten lines: set, get, a miss, and
// the hit rate. It uses the Redis at REDIS_ADDR when set, else an embedded
// in-process Redis (miniredis), so it runs on a machine with nothing
// installed:
//
//	go run ./examples/quickstart
//	REDIS_ADDR=127.0.0.1:6379 go run ./examples/quickstart
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/rediscache/rediscache"
)

type Task struct {
	ID     string    `json:"id"`
	Title  string    `json:"title"`
	Status string    `json:"status"`
	Due    time.Time `json:"due"`
}

func main() {
	addr := os.Getenv("REDIS_ADDR")
	if addr == "" {
		srv, err := miniredis.Run()
		if err != nil {
			log.Fatal(err)
		}
		defer srv.Close()
		addr = srv.Addr()
		fmt.Println("REDIS_ADDR not set: using an embedded Redis at", addr)
	}

	c, err := rediscache.New(&rediscache.Options{
		Addrs:      []string{addr},
		Prefix:     "quickstart",
		DefaultTTL: rediscache.TTLMedium,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Ping(ctx); err != nil {
		log.Fatalf("cannot reach Redis at %s: %v", addr, err)
	}

	keys := rediscache.NewKeyGenerator(rediscache.V1)
	key := keys.TaskKey("task_123")
	task := Task{ID: "task_123", Title: "Render storyboard", Status: "running", Due: time.Now().Add(time.Hour).Truncate(time.Second)}

	if err := rediscache.Set(ctx, c, key, task, rediscache.TTLShort); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("set   %s (stored as %s, ttl %v)\n", key, c.StorageKey(key), rediscache.TTLShort)

	got, err := rediscache.Get[Task](ctx, c, key)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("get   %s -> %q is %s\n", key, got.Title, got.Status)

	missing := keys.TaskKey("task_404")
	if _, err := rediscache.Get[Task](ctx, c, missing); errors.Is(err, rediscache.ErrCacheMiss) {
		fmt.Printf("miss  %s\n", missing)
	} else if err != nil {
		log.Fatal(err)
	}

	if _, err := c.Delete(ctx, key); err != nil {
		log.Fatal(err)
	}
	s := c.Stats()
	fmt.Printf("stats hits=%d misses=%d errors=%d sets=%d hit rate=%.0f%% avg latency=%v\n",
		s.Hits, s.Misses, s.Errors, s.Sets, 100*s.HitRate(), s.AvgLatency.Round(time.Microsecond))
}
