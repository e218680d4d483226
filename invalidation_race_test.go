package rediscache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rediscache/rediscache/internal/redistest"
)

// The stale-set races: a load that read the old row must not store it
// after an invalidation of its key returned, and a call that starts after
// the invalidation must not receive it. Each race is made deterministic
// with a loader that blocks on a channel, and runs on a standalone server
// and a 3-master cluster.

// topology is a Redis deployment the race tests run on.
type topology struct {
	name    string
	addrs   []string
	cluster bool
	raw     redis.UniversalClient // unprefixed, for assertions
}

// topologies starts a standalone redis-server and a 3-master cluster.
func topologies(t *testing.T) []topology {
	srv := redistest.Start(t)
	cl := redistest.StartCluster(t, 3, 0)
	return []topology{
		{name: "standalone", addrs: []string{srv.Addr()}, raw: srv.Client(t)},
		{name: "cluster", addrs: cl.Addrs(), cluster: true, raw: cl.Client(t)},
	}
}

// client returns a Client on the topology, closed on cleanup.
func (tp topology) client(t *testing.T, opt Options) *Client {
	t.Helper()
	opt.Addrs, opt.ClusterMode = tp.addrs, tp.cluster
	c, err := New(&opt)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// row is a record in the database the loaders read: its version.
type row struct{ version atomic.Int64 }

// gate is a loader that reads the row, says so on started, then blocks
// until release is closed (or its context ends) and returns what it read.
// Only its first call blocks; later calls return the row's version at once.
type gate struct {
	row     *row
	started chan struct{}
	release chan struct{}
	calls   atomic.Int64
	once    sync.Once
}

func newGate(r *row) *gate {
	return &gate{row: r, started: make(chan struct{}), release: make(chan struct{})}
}

func (g *gate) load(ctx context.Context) (int64, error) {
	g.calls.Add(1)
	v := g.row.version.Load()
	first := false
	g.once.Do(func() { first = true })
	if !first {
		return v, nil
	}
	close(g.started)
	select {
	case <-g.release:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	return v, nil
}

func (g *gate) loadMany(ctx context.Context, keys []string) (map[string]int64, error) {
	v, err := g.load(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(keys))
	for _, k := range keys {
		out[k] = v
	}
	return out, nil
}

type result struct {
	v   int64
	src Source
	err error
}

func goGetOrLoad(ctx context.Context, c *Client, key string, load func(context.Context) (int64, error), opts ...CallOption) <-chan result {
	ch := make(chan result, 1)
	go func() {
		v, src, err := GetOrLoadWithSource(ctx, c, key, time.Hour, load, opts...)
		ch <- result{v, src, err}
	}()
	return ch
}

// waitFor waits until cond holds, checking every millisecond (a signal we
// cannot get otherwise: another goroutine reaching a point inside the
// Client).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	require.Eventually(t, cond, 5*time.Second, time.Millisecond, what)
}

// invalidation is a writer's way of invalidating one key after its row
// moved to version v.
type invalidation struct {
	name string
	do   func(ctx context.Context, c *Client, key string, v int64) error
	// setsValue: a Get afterwards returns v, else a miss. all: it
	// invalidates every key of the Client, not only key, and allOne does
	// so for a batch load in progress on one server (InvalidatePrefix
	// bumps the write counter of all keys there: see batchguard.go).
	setsValue, all, allOne bool
}

var invalidations = []invalidation{
	{"Delete", func(ctx context.Context, c *Client, key string, _ int64) error {
		_, err := c.Delete(ctx, key)
		return err
	}, false, false, false},
	{"Set", func(ctx context.Context, c *Client, key string, v int64) error {
		return Set(ctx, c, key, v, time.Hour)
	}, true, false, false},
	{"DeleteMany", func(ctx context.Context, c *Client, key string, _ int64) error {
		_, err := c.DeleteMany(ctx, []string{key, key + ":other"})
		return err
	}, false, false, false},
	{"SetMany", func(ctx context.Context, c *Client, key string, v int64) error {
		return SetMany(ctx, c, map[string]int64{key: v, key + ":other": v}, time.Hour)
	}, true, false, false},
	{"InvalidatePrefix", func(ctx context.Context, c *Client, key string, _ int64) error {
		_, err := c.InvalidatePrefix(ctx, key)
		return err
	}, false, false, true},
	{"ClearAll", func(ctx context.Context, c *Client, _ string, _ int64) error {
		_, err := c.ClearAll(ctx)
		return err
	}, false, true, true},
	{"MSet", func(ctx context.Context, c *Client, key string, v int64) error {
		return c.MSet(ctx, map[string][]byte{key: []byte(fmt.Sprint(v))}, time.Hour)
	}, true, false, false}, // raw bytes "2": a counter, which Get[int64] reads
	// A newer value that is gone again when the load stores, leaving no
	// trace in the key: it expired (a short TTL, or a load slower than the
	// writer's TTL), or Redis evicted it (maxmemory; here an UNLINK by
	// someone else). The older value must not take its place.
	{"Set that expires", func(ctx context.Context, c *Client, key string, v int64) error {
		if err := Set(ctx, c, key, v, 20*time.Millisecond); err != nil {
			return err
		}
		return gone(ctx, c, key)
	}, false, false, false},
	{"Set then eviction", func(ctx context.Context, c *Client, key string, v int64) error {
		if err := Set(ctx, c, key, v, time.Hour); err != nil {
			return err
		}
		sk, err := c.storageKey(key)
		if err != nil {
			return err
		}
		return c.rdb.Unlink(ctx, sk).Err()
	}, false, false, false},
	// A restart without persistence loses the newer value and the write
	// counters with it (here: both deleted).
	{"Set then restart", func(ctx context.Context, c *Client, key string, v int64) error {
		if err := Set(ctx, c, key, v, time.Hour); err != nil {
			return err
		}
		sk, err := c.storageKey(key)
		if err != nil {
			return err
		}
		if err := c.rdb.Del(ctx, c.pfx+delHashName).Err(); err != nil {
			return err
		}
		return c.rdb.Unlink(ctx, sk).Err()
	}, false, false, true},
}

// gone waits until key's stored copy no longer exists in Redis.
func gone(ctx context.Context, c *Client, key string) error {
	sk, err := c.storageKey(key)
	if err != nil {
		return err
	}
	for {
		n, err := c.rdb.Exists(ctx, sk).Result()
		if err != nil || n == 0 {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// checkAfter asserts what a Get of key returns after the invalidation to
// version v: v when it wrote the value, else a miss (for Expire the key
// held only a lease: nothing to extend, still a miss).
func checkAfter(t *testing.T, ctx context.Context, c *Client, key string, v int64, setsValue bool) {
	t.Helper()
	got, err := Get[int64](ctx, c, key)
	if setsValue {
		require.NoError(t, err)
		assert.Equal(t, v, got, "the invalidation's value")
		return
	}
	assert.ErrorIs(t, err, ErrCacheMiss, "got %d", got)
}

func TestInvalidationRaces(t *testing.T) {
	t.Parallel()
	for _, tp := range topologies(t) {
		t.Run(tp.name, func(t *testing.T) {
			t.Parallel()
			for _, inv := range invalidations {
				t.Run("GetOrLoad then "+inv.name, func(t *testing.T) { raceGetOrLoad(t, tp, inv) })
				t.Run("GetManyOrLoad then "+inv.name, func(t *testing.T) { raceGetManyOrLoad(t, tp, inv) })
			}
			for _, inv := range refreshInvalidations {
				t.Run("stale refresh then "+inv.name, func(t *testing.T) { raceRefresh(t, tp, false, inv) })
				t.Run("early refresh then "+inv.name, func(t *testing.T) { raceRefresh(t, tp, true, inv) })
			}
			t.Run("batch stale refresh then Delete", func(t *testing.T) { raceBatchRefresh(t, tp) })
			for _, inv := range joinerInvalidations {
				t.Run("joiner after "+inv.name+" loads again", func(t *testing.T) { raceJoiner(t, tp, inv) })
				t.Run("batch joiner after "+inv.name+" loads again", func(t *testing.T) { raceBatchJoiner(t, tp, inv) })
			}
			t.Run("waiter for another Client after InvalidateTags", func(t *testing.T) { raceTaggedWaiter(t, tp) })
			t.Run("another Client after Delete", func(t *testing.T) { raceOtherClient(t, tp) })
		})
	}
}

// uniquePrefix gives each subtest its own keys on the shared servers.
var prefixSeq atomic.Int64

func uniquePrefix() string { return fmt.Sprintf("race%d", prefixSeq.Add(1)) }

// raceGetOrLoad: a GetOrLoad misses and its loader reads version 1; the
// row moves to 2 and the invalidation returns; then the load ends. Its
// store must be refused, and a later read must see the invalidation.
func raceGetOrLoad(t *testing.T, tp topology, inv invalidation) {
	ctx := t.Context()
	c := tp.client(t, Options{Prefix: uniquePrefix()})
	r := &row{}
	r.version.Store(1)
	g := newGate(r)
	const key = "tasks:v1:t1"
	res := goGetOrLoad(ctx, c, key, g.load)
	<-g.started
	r.version.Store(2)
	require.NoError(t, inv.do(ctx, c, key, 2))
	close(g.release)
	got := <-res
	require.NoError(t, got.err)
	assert.Equal(t, int64(1), got.v, "the overlapping call may get the old row")
	assert.Equal(t, uint64(1), c.Stats().StoresRefused, "the load's store was refused")
	checkAfter(t, ctx, c, key, 2, inv.setsValue)
	v, err := GetOrLoad(ctx, c, key, time.Hour, g.load)
	require.NoError(t, err)
	assert.Equal(t, int64(2), v, "a call after the invalidation")
}

// raceGetManyOrLoad is raceGetOrLoad for GetManyOrLoad.
func raceGetManyOrLoad(t *testing.T, tp topology, inv invalidation) {
	ctx := t.Context()
	c := tp.client(t, Options{Prefix: uniquePrefix()})
	r := &row{}
	r.version.Store(1)
	g := newGate(r)
	const key, untouched = "tasks:v1:t1", "other:v1:t2"
	done := make(chan error, 1)
	go func() {
		_, err := GetManyOrLoad(ctx, c, []string{key, untouched}, time.Hour, g.loadMany)
		done <- err
	}()
	<-g.started
	r.version.Store(2)
	require.NoError(t, inv.do(ctx, c, key, 2))
	close(g.release)
	require.NoError(t, <-done)
	checkAfter(t, ctx, c, key, 2, inv.setsValue)
	if inv.all || (inv.allOne && !tp.cluster) {
		assert.Equal(t, uint64(2), c.Stats().StoresRefused, "both keys' stores were refused")
	} else {
		assert.Equal(t, uint64(1), c.Stats().StoresRefused, "the invalidated key's store was refused")
		if v, err := Get[int64](ctx, c, untouched); assert.NoError(t, err, "the key nobody invalidated was stored") {
			assert.Equal(t, int64(1), v)
		}
	}
	m, err := GetManyOrLoad(ctx, c, []string{key}, time.Hour, g.loadMany)
	require.NoError(t, err)
	assert.Equal(t, map[string]int64{key: 2}, m, "a call after the invalidation")
}

// refreshInvalidations are the invalidations of a present value that a
// refresh in flight must not undo: after Expire the value stays, with the
// TTL Expire gave it.
var refreshInvalidations = []invalidation{
	invalidations[0], // Delete
	invalidations[1], // Set
	{"Expire", func(ctx context.Context, c *Client, key string, _ int64) error {
		ok, err := c.Expire(ctx, key, 10*time.Second)
		if err == nil && !ok {
			err = errors.New("Expire found no value")
		}
		return err
	}, false, false, false},
}

// raceRefresh: a stale (or XFetch) background refresh reads version 1
// and blocks; the row moves to 2 and the invalidation returns; the
// refresh's store must be refused.
func raceRefresh(t *testing.T, tp topology, early bool, inv invalidation) {
	ctx := t.Context()
	opt := Options{Prefix: uniquePrefix(), StaleTTL: time.Minute}
	ttl := 30 * time.Millisecond
	if early {
		opt = Options{Prefix: opt.Prefix, EarlyRefreshBeta: 1e12}
		ttl = time.Hour
	}
	c := tp.client(t, opt)
	r := &row{}
	r.version.Store(1)
	const key = "tasks:v1:t1"
	prime := func(context.Context) (int64, error) {
		time.Sleep(2 * time.Millisecond) // a load cost for XFetch to weigh
		return r.version.Load(), nil
	}
	_, err := GetOrLoad(ctx, c, key, ttl, prime)
	require.NoError(t, err)
	if !early {
		time.Sleep(2 * ttl) // stale now
	}
	g := newGate(r)
	v, src, err := GetOrLoadWithSource(ctx, c, key, ttl, g.load)
	require.NoError(t, err)
	assert.Equal(t, int64(1), v)
	if early {
		assert.Equal(t, SourceHit, src)
	} else {
		assert.Equal(t, SourceStale, src)
	}
	<-g.started // the refresh is loading
	r.version.Store(2)
	require.NoError(t, inv.do(ctx, c, key, 2))
	close(g.release)
	waitFor(t, "the refresh's store refused", func() bool { return c.Stats().StoresRefused == 1 })
	if inv.name != "Expire" {
		checkAfter(t, ctx, c, key, 2, inv.setsValue)
		return
	}
	got, err := Get[int64](ctx, c, key)
	require.NoError(t, err)
	assert.Equal(t, int64(1), got, "Expire kept the value")
	k, err := c.storageKey(key)
	require.NoError(t, err)
	pttl, err := tp.raw.PTTL(ctx, k).Result()
	require.NoError(t, err)
	assert.LessOrEqual(t, pttl, 10*time.Second, "the TTL Expire set")
}

// raceBatchRefresh is raceRefresh for GetManyOrLoad's stale refresh.
func raceBatchRefresh(t *testing.T, tp topology) {
	ctx := t.Context()
	c := tp.client(t, Options{Prefix: uniquePrefix(), StaleTTL: time.Minute})
	r := &row{}
	r.version.Store(1)
	const key = "tasks:v1:t1"
	const ttl = 30 * time.Millisecond
	_, err := GetManyOrLoad(ctx, c, []string{key}, ttl, newGate(r).loadManyNow)
	require.NoError(t, err)
	time.Sleep(2 * ttl)
	g := newGate(r)
	m, err := GetManyOrLoad(ctx, c, []string{key}, ttl, g.loadMany)
	require.NoError(t, err)
	assert.Equal(t, map[string]int64{key: 1}, m, "served stale")
	<-g.started
	r.version.Store(2)
	_, err = c.Delete(ctx, key)
	require.NoError(t, err)
	close(g.release)
	waitFor(t, "the refresh's store refused", func() bool { return c.Stats().StoresRefused == 1 })
	_, err = Get[int64](ctx, c, key)
	assert.ErrorIs(t, err, ErrCacheMiss)
}

// loadManyNow is loadMany without blocking.
func (g *gate) loadManyNow(_ context.Context, keys []string) (map[string]int64, error) {
	out := make(map[string]int64, len(keys))
	for _, k := range keys {
		out[k] = g.row.version.Load()
	}
	return out, nil
}

// joinerInvalidation is an invalidation of a key whose loads are made
// with opts.
type joinerInvalidation struct {
	name string
	opts []CallOption
	do   func(ctx context.Context, c *Client, key string) error
}

// joinerInvalidations: a Delete removes the load's lease, so its store is
// refused; an InvalidateTags leaves the key alone, so the load's store
// succeeds (and reads as a miss), which must not certify its value for a
// caller that joined after the invalidation.
var joinerInvalidations = []joinerInvalidation{
	{"Delete", nil, func(ctx context.Context, c *Client, key string) error {
		_, err := c.Delete(ctx, key)
		return err
	}},
	{"InvalidateTags", []CallOption{WithTags("owner:1")}, func(ctx context.Context, c *Client, _ string) error {
		return c.InvalidateTags(ctx, "owner:1")
	}},
}

// raceJoiner: A's load reads version 1 and blocks; the row moves to 2 and
// the invalidation returns; B starts after that and joins A's load in
// flight. B must not get version 1: it loads again (one more loader call,
// not a loop).
func raceJoiner(t *testing.T, tp topology, inv joinerInvalidation) {
	ctx := t.Context()
	c := tp.client(t, Options{Prefix: uniquePrefix()})
	r := &row{}
	r.version.Store(1)
	g := newGate(r)
	const key = "tasks:v1:t1"
	a := goGetOrLoad(ctx, c, key, g.load, inv.opts...)
	<-g.started
	r.version.Store(2)
	require.NoError(t, inv.do(ctx, c, key))
	k, err := c.storageKey(key)
	require.NoError(t, err)
	f := c.flight.get((&loadCall[int64]{k: k, gen: c.current(key)}).flightKey())
	require.NotNil(t, f, "A's load is in flight")
	b := goGetOrLoad(ctx, c, key, g.load, inv.opts...)
	waitFor(t, "B joined A's load", func() bool { return f.callers.Load() == 2 })
	close(g.release)
	ra, rb := <-a, <-b
	require.NoError(t, ra.err)
	require.NoError(t, rb.err)
	assert.Equal(t, int64(1), ra.v, "A overlaps the Delete: either version")
	assert.Equal(t, int64(2), rb.v, "B started after the invalidation returned")
	assert.Equal(t, int64(2), g.calls.Load(), "one more loader call")
	v, err := Get[int64](ctx, c, key)
	require.NoError(t, err)
	assert.Equal(t, int64(2), v, "B's load stored version 2")
}

// raceBatchJoiner is raceJoiner for GetManyOrLoad.
func raceBatchJoiner(t *testing.T, tp topology, inv joinerInvalidation) {
	ctx := t.Context()
	c := tp.client(t, Options{Prefix: uniquePrefix()})
	r := &row{}
	r.version.Store(1)
	g := newGate(r)
	const key = "tasks:v1:t1"
	type res struct {
		m   map[string]int64
		err error
	}
	run := func() <-chan res {
		ch := make(chan res, 1)
		go func() {
			m, err := GetManyOrLoad(ctx, c, []string{key}, time.Hour, g.loadMany, inv.opts...)
			ch <- res{m, err}
		}()
		return ch
	}
	a := run()
	<-g.started
	r.version.Store(2)
	require.NoError(t, inv.do(ctx, c, key))
	k, err := c.storageKey(key)
	require.NoError(t, err)
	w := c.keyLoads.get(k, c.current(key))
	require.NotNil(t, w, "A's load is in flight")
	b := run()
	waitFor(t, "B joined A's load", func() bool { return w.callers.Load() == 2 })
	close(g.release)
	ra, rb := <-a, <-b
	require.NoError(t, ra.err)
	require.NoError(t, rb.err)
	assert.Equal(t, map[string]int64{key: 1}, ra.m, "A overlaps the Delete")
	assert.Equal(t, map[string]int64{key: 2}, rb.m, "B started after the invalidation returned")
	assert.Equal(t, int64(2), g.calls.Load(), "one more loader call")
	m, err := GetManyOrLoad(ctx, c, []string{key}, time.Hour, g.loadMany, inv.opts...)
	require.NoError(t, err)
	assert.Equal(t, map[string]int64{key: 2}, m, "a call after both")
}

// raceTaggedWaiter: Client A's tagged load holds the key's lease and
// blocks; Client B's GetOrLoad misses, reads the tag's version with its
// lease attempt and waits for A's value. The row moves to 2 and
// InvalidateTags returns; C, on B's Client, joins B's call. A stores
// version 1 (InvalidateTags left its lease alone) under the tag's old
// version, and B's poll finds it: B must check it against the tag's
// version now, not the one it read before the invalidation, so neither B
// nor C gets version 1.
func raceTaggedWaiter(t *testing.T, tp topology) {
	ctx := t.Context()
	prefix := uniquePrefix()
	ca := tp.client(t, Options{Prefix: prefix})
	cb := tp.client(t, Options{Prefix: prefix, LockTTL: 10 * time.Second})
	r := &row{}
	r.version.Store(1)
	g := newGate(r)
	const key, tag = "tasks:v1:t1", "owner:1"
	a := goGetOrLoad(ctx, ca, key, g.load, WithTags(tag))
	<-g.started
	now := func(context.Context) (int64, error) { return r.version.Load(), nil }
	b := goGetOrLoad(ctx, cb, key, now, WithTags(tag))
	k, err := cb.storageKey(key)
	require.NoError(t, err)
	var f *flight
	waitFor(t, "B waits for A's lease", func() bool {
		f = cb.flight.get((&loadCall[int64]{k: k, gen: cb.current(key)}).flightKey())
		return f != nil && f.marks.Load() >= 2 // B's lease attempt and its first poll
	})
	r.version.Store(2)
	require.NoError(t, ca.InvalidateTags(ctx, tag))
	cc := goGetOrLoad(ctx, cb, key, now, WithTags(tag))
	waitFor(t, "C joined B's call", func() bool { return f.callers.Load() == 2 })
	close(g.release)
	ra, rb, rc := <-a, <-b, <-cc
	require.NoError(t, ra.err)
	require.NoError(t, rb.err)
	require.NoError(t, rc.err)
	assert.Equal(t, int64(1), ra.v, "A overlaps the invalidation")
	assert.Equal(t, int64(2), rb.v, "B checks what it found against the tag's current version")
	assert.Equal(t, int64(2), rc.v, "C started after the invalidation returned")
	v, err := GetOrLoad(ctx, cb, key, time.Hour, now)
	require.NoError(t, err)
	assert.Equal(t, int64(2), v, "a call after all")
}

// raceOtherClient: Client A's load holds the key's lease and blocks; after
// Delete returns, Client B's GetOrLoad must not wait for A's value: the
// lease went with the Delete, so B loads version 2, and A's late store is
// refused.
func raceOtherClient(t *testing.T, tp topology) {
	ctx := t.Context()
	prefix := uniquePrefix()
	ca := tp.client(t, Options{Prefix: prefix})
	cb := tp.client(t, Options{Prefix: prefix})
	r := &row{}
	r.version.Store(1)
	g := newGate(r)
	const key = "tasks:v1:t1"
	a := goGetOrLoad(ctx, ca, key, g.load)
	<-g.started
	md, err := cb.Metadata(ctx, key)
	require.NoError(t, err)
	assert.True(t, md.Lease, "A's lease is in the key")
	assert.ErrorIs(t, cb.Get(ctx, key, new(int64)), ErrCacheMiss, "a lease is a miss")
	r.version.Store(2)
	_, err = cb.Delete(ctx, key)
	require.NoError(t, err)
	v, err := GetOrLoad(ctx, cb, key, time.Hour, func(context.Context) (int64, error) { return r.version.Load(), nil })
	require.NoError(t, err)
	assert.Equal(t, int64(2), v)
	close(g.release)
	ra := <-a
	require.NoError(t, ra.err)
	assert.Equal(t, uint64(1), ca.Stats().StoresRefused)
	got, err := Get[int64](ctx, ca, key)
	require.NoError(t, err)
	assert.Equal(t, int64(2), got, "B's value stays")
}

// A load that takes longer than LockTTL still stores: its lease is
// extended while the loader runs.
func TestSlowLoadKeepsItsLease(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c, err := New(&Options{Addrs: []string{srv.Addr()}, Prefix: "p", LockTTL: 200 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	ctx := t.Context()
	v, err := GetOrLoad(ctx, c, "k", time.Hour, func(context.Context) (string, error) {
		time.Sleep(700 * time.Millisecond) // 3.5 LockTTLs
		return "slow", nil
	})
	require.NoError(t, err)
	assert.Equal(t, "slow", v)
	got, err := Get[string](ctx, c, "k")
	require.NoError(t, err, "the slow load was stored")
	assert.Equal(t, "slow", got)
	assert.Zero(t, c.Stats().StoresRefused)
}

// A load whose loader fails gives its lease back at once: the next miss
// loads without waiting for it to expire.
func TestFailedLoadReleasesItsLease(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	raw := srv.Client(t)
	c, err := New(&Options{Addrs: []string{srv.Addr()}, Prefix: "p", LockTTL: time.Minute})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	ctx := t.Context()
	boom := errors.New("db down")
	_, err = GetOrLoad(ctx, c, "k", time.Hour, func(context.Context) (string, error) { return "", boom })
	require.ErrorIs(t, err, boom)
	n, err := raw.Exists(ctx, c.StorageKey("k")).Result()
	require.NoError(t, err)
	assert.Zero(t, n, "no lease left behind")
}
