package rediscache_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/rediscache/rediscache"
)

type Task struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}

func ExampleNew() {
	srv, _ := miniredis.Run() // an in-process Redis, so the example runs anywhere
	defer srv.Close()

	c, err := rediscache.New(&rediscache.Options{
		Addrs:      []string{srv.Addr()},
		Prefix:     "myapp",
		DefaultTTL: rediscache.TTLMedium,
	})
	if err != nil {
		panic(err)
	}
	defer func() { _ = c.Close() }()

	ctx := context.Background()
	_ = c.Set(ctx, "greeting", "hello", 0)
	var s string
	_ = c.Get(ctx, "greeting", &s)
	fmt.Println(s, c.StorageKey("greeting"))
	// Output: hello myapp:greeting
}

func ExampleGet() {
	srv, _ := miniredis.Run()
	defer srv.Close()
	c, _ := rediscache.New(&rediscache.Options{Addrs: []string{srv.Addr()}, Prefix: "myapp"})
	defer func() { _ = c.Close() }()
	ctx := context.Background()
	keys := rediscache.NewKeyGenerator(rediscache.V1)

	_ = rediscache.Set(ctx, c, keys.TaskKey("task_123"), Task{ID: "task_123", Status: "done"}, rediscache.TTLLong)
	t, err := rediscache.Get[Task](ctx, c, keys.TaskKey("task_123"))
	fmt.Println(t.Status, err)

	_, err = rediscache.Get[Task](ctx, c, keys.TaskKey("task_404"))
	fmt.Println(errors.Is(err, rediscache.ErrCacheMiss))

	s := c.Stats()
	fmt.Printf("hits=%d misses=%d hit rate=%.2f\n", s.Hits, s.Misses, s.HitRate())
	// Output:
	// done <nil>
	// true
	// hits=1 misses=1 hit rate=0.50
}

func ExampleKeyGenerator() {
	g := rediscache.NewKeyGenerator(rediscache.V1)
	fmt.Println(g.TaskKey("task_123"))
	fmt.Println(g.UserTasksKey("user_abc", "pending", 20, 0))
	fmt.Println(g.UserKey("user_abc123", "user_profile"))
	fmt.Println(g.SessionKey("user_abc", "session_xyz", false))
	fmt.Println(g.AgentStateKey("style_agent", "task_123"))
	fmt.Println(g.APIResponseKey("/tasks", map[string]string{"status": "done", "page": "2"}))
	// Output:
	// tasks:v1:task_123
	// tasks:v1:user_tasks:user_abc:pending:20:0
	// user:v1:user_profile:user_abc123
	// sessions:v1:session:user_abc:session_xyz
	// agent:v1:agent_state:style_agent:task_123
	// api:v1:response:/tasks:page=2&status=done
}

func ExampleKeyGenerator_Key() {
	g := rediscache.NewKeyGenerator(rediscache.V2)
	// Components are escaped: an id can never reach into another key.
	fmt.Println(g.Key(rediscache.NamespaceUser, "settings", "abc:session:other"))
	fmt.Println(g.Key("billing", "invoice", "2026/11", "*"))
	ns, v, parts, _ := rediscache.ParseKey(g.Key(rediscache.NamespaceUser, "settings", "abc:session:other"))
	fmt.Println(ns, v, parts)
	// Output:
	// user:v2:settings:abc%3Asession%3Aother
	// billing:v2:invoice:2026/11:%2A
	// user v2 [settings abc:session:other]
}

func ExampleKeyGenerator_Prefix() {
	srv, _ := miniredis.Run()
	defer srv.Close()
	c, _ := rediscache.New(&rediscache.Options{Addrs: []string{srv.Addr()}, Prefix: "myapp"})
	defer func() { _ = c.Close() }()
	ctx := context.Background()
	g := rediscache.NewKeyGenerator(rediscache.V1)
	for _, user := range []string{"user_1", "user_10"} {
		_ = c.Set(ctx, g.UserTasksKey(user, "pending", 20, 0), []string{"task_1"}, 0)
		_ = c.Set(ctx, g.UserTasksKey(user, "done", 20, 0), []string{"task_2"}, 0)
	}

	// Every cached page of user_1's tasks, and none of user_10's.
	p := g.Prefix(rediscache.NamespaceTasks, "user_tasks", "user_1")
	n, _ := c.InvalidatePrefix(ctx, p)
	left, _ := c.CountPrefix(ctx, g.Prefix(rediscache.NamespaceTasks, "user_tasks"))
	fmt.Println(p)
	fmt.Println(n, "deleted,", left, "left")
	// Output:
	// tasks:v1:user_tasks:user_1:
	// 2 deleted, 2 left
}

func ExampleClient_TTLFor() {
	srv, _ := miniredis.Run()
	defer srv.Close()
	ttls := rediscache.DefaultNamespaceTTLs()
	ttls[rediscache.NamespaceTasks] = 2 * time.Minute // a service's own override
	c, _ := rediscache.New(&rediscache.Options{Addrs: []string{srv.Addr()}, NamespaceTTLs: ttls})
	defer func() { _ = c.Close() }()

	fmt.Println(c.TTLFor(rediscache.NamespaceTasks), c.TTLFor(rediscache.NamespaceSessions), c.TTLFor("other"))

	// ttl 0 picks the namespace TTL from the key's first segment.
	_ = c.Set(context.Background(), "sessions:v1:session:u:s", "token", 0)
	fmt.Println(srv.TTL("sessions:v1:session:u:s"))
	// Output:
	// 2m0s 24h0m0s 5m0s
	// 24h0m0s
}

func ExampleClient_Increment() {
	srv, _ := miniredis.Run()
	defer srv.Close()
	c, _ := rediscache.New(&rediscache.Options{Addrs: []string{srv.Addr()}, Prefix: "myapp"})
	defer func() { _ = c.Close() }()
	ctx := context.Background()

	_, _ = c.Increment(ctx, "views:task_123", 1)
	n, _ := c.Increment(ctx, "views:task_123", 2)
	v, _ := rediscache.Get[int](ctx, c, "views:task_123")
	fmt.Println(n, v)
	// Output: 3 3
}

func ExampleGetOrLoad() {
	srv, _ := miniredis.Run()
	defer srv.Close()
	c, _ := rediscache.New(&rediscache.Options{Addrs: []string{srv.Addr()}, Prefix: "myapp"})
	defer func() { _ = c.Close() }()
	ctx := context.Background()
	keys := rediscache.NewKeyGenerator(rediscache.V1)

	queries := 0
	loadTask := func(ctx context.Context) (Task, error) { // the database read on a miss
		queries++
		return Task{ID: "task_123", Status: "running"}, nil
	}
	for range 3 {
		t, src, err := rediscache.GetOrLoadWithSource(ctx, c, keys.TaskKey("task_123"), rediscache.TTLMedium, loadTask)
		fmt.Println(t.Status, src, err)
	}
	fmt.Println("queries:", queries)

	// After the row changes, invalidate: the next call loads again.
	_, _ = c.Delete(ctx, keys.TaskKey("task_123"))
	_, _ = rediscache.GetOrLoad(ctx, c, keys.TaskKey("task_123"), rediscache.TTLMedium, loadTask)
	fmt.Println("queries:", queries)
	// Output:
	// running loaded <nil>
	// running hit <nil>
	// running hit <nil>
	// queries: 1
	// queries: 2
}

func ExampleGetManyOrLoad() {
	srv, _ := miniredis.Run()
	defer srv.Close()
	c, _ := rediscache.New(&rediscache.Options{Addrs: []string{srv.Addr()}, Prefix: "myapp"})
	defer func() { _ = c.Close() }()
	ctx := context.Background()
	keys := rediscache.NewKeyGenerator(rediscache.V1)

	// One query for every key that missed; ids the database lacks are
	// cached as not found and left out of the result.
	loadTasks := func(ctx context.Context, missing []string) (map[string]Task, error) {
		fmt.Println("loading", len(missing), "tasks")
		out := map[string]Task{}
		for _, k := range missing {
			if k != keys.TaskKey("task_404") {
				out[k] = Task{ID: k, Status: "done"}
			}
		}
		return out, nil
	}
	ks := []string{keys.TaskKey("task_1"), keys.TaskKey("task_2"), keys.TaskKey("task_404")}
	for range 2 {
		m, err := rediscache.GetManyOrLoad(ctx, c, ks, rediscache.TTLMedium, loadTasks)
		fmt.Println(len(m), m[keys.TaskKey("task_2")].Status, err)
	}
	// Output:
	// loading 3 tasks
	// 2 done <nil>
	// 2 done <nil>
}

func ExampleCompression() {
	srv, _ := miniredis.Run()
	defer srv.Close()
	c, _ := rediscache.New(&rediscache.Options{Addrs: []string{srv.Addr()}, Prefix: "myapp",
		Compression: rediscache.CompressionS2}) // values of 1 KiB and more, when it makes them smaller
	defer func() { _ = c.Close() }()
	ctx := context.Background()

	page := make([]Task, 100)
	for i := range page {
		page[i] = Task{ID: fmt.Sprintf("task_%03d", i), Status: "done"}
	}
	_ = rediscache.Set(ctx, c, "page", page, rediscache.TTLMedium)
	_ = rediscache.Set(ctx, c, "task", page[0], rediscache.TTLMedium)
	for _, key := range []string{"page", "task"} {
		md, _ := c.Metadata(ctx, key)
		fmt.Printf("%s: compressed %v, %d bytes of JSON, stored in under a quarter: %v\n",
			key, md.Compressed, md.PayloadSize, md.Size < md.PayloadSize/4)
	}
	got, err := rediscache.Get[[]Task](ctx, c, "page")
	fmt.Println(len(got), got[99].ID, err)
	// Output:
	// page: compressed true, 3401 bytes of JSON, stored in under a quarter: true
	// task: compressed false, 33 bytes of JSON, stored in under a quarter: false
	// 100 task_099 <nil>
}
