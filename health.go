package rediscache

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultHealthCheckInterval is how often the background monitor checks
// Redis when Options.HealthCheckInterval is 0.
const DefaultHealthCheckInterval = 30 * time.Second

// Health is the result of one health check. It holds figures and error
// messages only: never a password or a cached value.
type Health struct {
	Healthy   bool
	CheckedAt time.Time
	Latency   time.Duration // PING round trip (the slowest master's on a cluster)
	Err       error         // why it is unhealthy; names the node on a cluster

	UsedMemory       int64  // bytes (summed over masters)
	UsedMemoryHuman  string // as Redis renders it (one node), or a sum on a cluster
	MaxMemory        int64  // bytes, 0 = no limit (summed over masters)
	ConnectedClients int64  // summed over masters
	Keys             int64  // keys under Options.Prefix, by SCAN (-1 when the count failed); DBSize when there is no Prefix
	DBSize           int64  // keys in the database (summed over masters)

	Pool PoolStats // go-redis connection pool

	Nodes []NodeHealth // one per master on a cluster; one entry otherwise
}

// NodeHealth is the health of one Redis server.
type NodeHealth struct {
	Addr             string
	Healthy          bool
	Latency          time.Duration
	Err              error
	UsedMemory       int64
	UsedMemoryHuman  string
	MaxMemory        int64
	ConnectedClients int64
	DBSize           int64
}

// PoolStats are go-redis connection pool figures.
type PoolStats struct {
	Hits       uint32 // a free connection was found in the pool
	Misses     uint32 // no free connection was found
	Timeouts   uint32 // waiting for a connection timed out
	TotalConns uint32
	IdleConns  uint32
	StaleConns uint32
}

// Ping checks that Redis answers (on a cluster, the node go-redis picks).
// It returns [ErrClosed] after Close, or the Redis error, not retried: a
// health check should see the failure.
func (c *Client) Ping(ctx context.Context) error {
	if ctx == nil {
		return opErr("ping", "", ErrNilContext)
	}
	if c.closed.Load() {
		return opErr("ping", "", ErrClosed)
	}
	if err := c.rdb.Ping(ctx).Err(); err != nil {
		return opErr("ping", "", err)
	}
	return nil
}

// HealthCheck pings every master, reads its INFO, counts the Client's keys
// and returns the result; it also becomes what [Client.Healthy] reports.
// It bypasses the circuit breaker, so it sees Redis as it is. It never
// fails: problems are in Health.Err.
func (c *Client) HealthCheck(ctx context.Context) Health {
	h := c.healthCheck(ctx)
	c.recordHealth(h)
	return h
}

func (c *Client) healthCheck(ctx context.Context) Health {
	h := Health{CheckedAt: time.Now()}
	switch {
	case ctx == nil:
		h.Err = ErrNilContext
		return h
	case c.closed.Load():
		h.Err = ErrClosed
		return h
	}
	if ps := c.rdb.PoolStats(); ps != nil {
		h.Pool = PoolStats{Hits: ps.Hits, Misses: ps.Misses, Timeouts: ps.Timeouts,
			TotalConns: ps.TotalConns, IdleConns: ps.IdleConns, StaleConns: ps.StaleConns}
	}
	var mu sync.Mutex
	check := func(ctx context.Context, node *redis.Client) error {
		n := checkNode(ctx, node)
		mu.Lock()
		h.Nodes = append(h.Nodes, n)
		mu.Unlock()
		return nil
	}
	switch rdb := c.rdb.(type) {
	case *redis.ClusterClient:
		if err := rdb.ForEachMaster(ctx, check); err != nil {
			h.Err = err
		}
	case *redis.Ring:
		if err := rdb.ForEachShard(ctx, check); err != nil {
			h.Err = err
		}
	case *redis.Client:
		_ = check(ctx, rdb)
	default:
		start := time.Now()
		err := rdb.Ping(ctx).Err()
		h.Nodes = append(h.Nodes, NodeHealth{Addr: "unknown", Healthy: err == nil, Latency: time.Since(start), Err: err})
	}
	h.Healthy = h.Err == nil && len(h.Nodes) > 0
	var errs []error
	for _, n := range h.Nodes {
		h.Latency = max(h.Latency, n.Latency)
		h.UsedMemory += n.UsedMemory
		h.MaxMemory += n.MaxMemory
		h.ConnectedClients += n.ConnectedClients
		h.DBSize += n.DBSize
		if !n.Healthy {
			h.Healthy = false
			errs = append(errs, fmt.Errorf("node %s: %w", n.Addr, n.Err))
		}
	}
	if len(errs) > 0 {
		h.Err = errors.Join(errs...)
	}
	if len(h.Nodes) == 1 {
		h.UsedMemoryHuman = h.Nodes[0].UsedMemoryHuman
	} else {
		h.UsedMemoryHuman = humanBytes(h.UsedMemory)
	}
	h.Keys = h.DBSize
	if c.pfx != "" && h.Healthy {
		// Counted by SCAN, past the breaker; a count that fails or times out
		// (a huge keyspace) says nothing about health: Keys is -1 then.
		var n atomic.Int64
		err := c.scanPrefix(ctx, "health", "", []string{c.pfx}, func(_ context.Context, _ redis.Cmdable, _ bool, ks []string) {
			n.Add(int64(len(ks)))
		})
		h.Keys = n.Load()
		if err != nil {
			h.Keys = -1
		}
	}
	return h
}

// checkNode pings one server and reads its memory, clients and size.
func checkNode(ctx context.Context, node *redis.Client) NodeHealth {
	n := NodeHealth{Addr: node.Options().Addr}
	start := time.Now()
	if err := node.Ping(ctx).Err(); err != nil {
		n.Latency, n.Err = time.Since(start), err
		return n
	}
	n.Latency = time.Since(start)
	info, err := node.Info(ctx).Result() // every section: multi-section INFO needs Redis 7
	if err != nil {
		n.Err = err
		return n
	}
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		switch k {
		case "used_memory":
			n.UsedMemory, _ = strconv.ParseInt(v, 10, 64)
		case "used_memory_human":
			n.UsedMemoryHuman = v
		case "maxmemory":
			n.MaxMemory, _ = strconv.ParseInt(v, 10, 64)
		case "connected_clients":
			n.ConnectedClients, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	if n.DBSize, err = node.DBSize(ctx).Result(); err != nil {
		n.Err = err
		return n
	}
	n.Healthy = true
	return n
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + "B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return strconv.FormatFloat(float64(n)/float64(div), 'f', 2, 64) + string("KMGTPE"[exp])
}

// Healthy reports the latest health result: from the background monitor
// (Options.HealthCheckInterval) or the last [Client.HealthCheck] call. It is
// true until a check has said otherwise.
func (c *Client) Healthy() bool { return !c.unhealthy.Load() }

// recordHealth stores a result and calls Options.OnHealthChange when the
// healthy state flips.
func (c *Client) recordHealth(h Health) {
	was := !c.unhealthy.Swap(!h.Healthy)
	if was != h.Healthy && c.opt.OnHealthChange != nil {
		c.opt.OnHealthChange(h)
	}
}

// monitorHealth runs a health check every HealthCheckInterval, the first
// one interval after New, until Close.
func (c *Client) monitorHealth() {
	t := time.NewTicker(c.opt.HealthCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-c.bg.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(c.bg.ctx, max(c.opt.HealthCheckInterval, 5*time.Second))
		h := c.healthCheck(ctx)
		cancel()
		if c.bg.ctx.Err() != nil {
			return
		}
		c.recordHealth(h)
	}
}
