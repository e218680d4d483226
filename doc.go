// Package rediscache is a Redis cache layer for Go services. It builds
// versioned, namespaced keys ("tasks:v1:task_123"), stores typed values in a
// small versioned envelope, retries transient failures with backoff, and
// keeps hit, miss and error counters.
//
// A [Client] wraps any go-redis v9 client (standalone, Sentinel, Cluster,
// Ring) or builds a pooled one from [Options]. Typed access goes through the
// package functions [Get] and [Set], since Go methods cannot take type
// parameters:
//
//	c, err := rediscache.New(&rediscache.Options{Addrs: []string{"127.0.0.1:6379"}, Prefix: "myapp"})
//	...
//	keys := rediscache.NewKeyGenerator(rediscache.V1)
//	err = rediscache.Set(ctx, c, keys.TaskKey("task_123"), task, rediscache.TTLMedium)
//	task, err := rediscache.Get[Task](ctx, c, keys.TaskKey("task_123"))
//	if errors.Is(err, rediscache.ErrCacheMiss) { ... }
package rediscache
