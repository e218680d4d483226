package rediscache

import (
	"context"
	"errors"
	"fmt"
	"strconv"
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
	// Keys is the number of keys under Options.Prefix, counted only when
	// Options.HealthCountKeys is set (by SCAN; DBSize without a Prefix).
	// -1 means not counted: HealthCountKeys is off (the default), Redis is
	// unhealthy, or the count failed. [Client.CountPrefix] counts on demand.
	Keys int64
	// DBSize is the number of keys in the database (summed over masters),
	// every key whoever wrote it; always reported (DBSIZE is O(1)).
	DBSize int64

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
// It returns [ErrNilContext] for a nil ctx, [ErrClosed] after Close, or the
// Redis error, not retried: a health check should see the failure.
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

// HealthCheck pings every master, reads its INFO and DBSIZE, and returns
// the result; it also becomes what [Client.Healthy] reports. Its cost does
// not depend on how many keys Redis holds (three O(1) commands per master),
// unless Options.HealthCountKeys asks it to count the Client's keys with a
// SCAN of the whole database. It bypasses the circuit breaker, so it sees
// Redis as it is. It never fails: problems are in Health.Err.
func (c *Client) HealthCheck(ctx context.Context) Health {
	h := c.healthCheck(ctx)
	c.recordHealth(h)
	return h
}

// healthCheck is HealthCheck without recording the result: the pool's
// figures, every node checked, and the sums over the nodes.
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
	h.Nodes, h.Err = c.checkNodes(ctx)
	h.sumNodes()
	h.Keys = -1
	if c.opt.HealthCountKeys && h.Healthy {
		h.Keys = c.countKeys(ctx, h.DBSize)
	}
	return h
}

// checkNodes checks every node of the Client: each master of a cluster,
// each shard of a ring, the server, or (for a client of another kind) a
// PING. The error is one of walking the nodes, not of a node.
func (c *Client) checkNodes(ctx context.Context) ([]NodeHealth, error) {
	var (
		mu    sync.Mutex
		nodes []NodeHealth
	)
	check := func(ctx context.Context, node *redis.Client) error {
		n := checkNode(ctx, node)
		mu.Lock()
		nodes = append(nodes, n)
		mu.Unlock()
		return nil
	}
	var err error
	switch rdb := c.rdb.(type) {
	case *redis.ClusterClient:
		err = rdb.ForEachMaster(ctx, check)
	case *redis.Ring:
		err = rdb.ForEachShard(ctx, check)
	case *redis.Client:
		_ = check(ctx, rdb)
	default:
		start := time.Now()
		perr := rdb.Ping(ctx).Err()
		nodes = append(nodes, NodeHealth{Addr: "unknown", Healthy: perr == nil, Latency: time.Since(start), Err: perr})
	}
	return nodes, err
}

// sumNodes sets h's totals from its nodes: healthy only if every node is
// (and there is one), the worst latency, summed memory, clients and keys,
// and the unhealthy nodes' errors joined into h.Err.
func (h *Health) sumNodes() {
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
}

// countKeys counts the keys under the Prefix for Options.HealthCountKeys:
// dbSize without a Prefix, else by SCAN, past the breaker. A count that
// fails or times out (a huge keyspace) says nothing about health: it is -1
// then.
func (c *Client) countKeys(ctx context.Context, dbSize int64) int64 {
	if c.pfx == "" {
		return dbSize
	}
	var n atomic.Int64
	err := c.scanPrefix(ctx, "health", "", []string{c.pfx}, func(_ context.Context, _ redis.Cmdable, _ bool, ks []string) {
		n.Add(int64(len(ks)))
	})
	if err != nil {
		return -1
	}
	return n.Load()
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
	// The default sections, in one call: INFO of several named sections
	// needs Redis 7.
	info, err := node.InfoMap(ctx).Result()
	if err != nil {
		n.Err = err
		return n
	}
	mem, clients := info["Memory"], info["Clients"]
	n.UsedMemory, _ = strconv.ParseInt(mem["used_memory"], 10, 64)
	n.UsedMemoryHuman = mem["used_memory_human"]
	n.MaxMemory, _ = strconv.ParseInt(mem["maxmemory"], 10, 64)
	n.ConnectedClients, _ = strconv.ParseInt(clients["connected_clients"], 10, 64)
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
