package rediscache

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// Write counters guard GetManyOrLoad's stores on one server (standalone
// or Sentinel), where writing a lease into every missing key of a batch
// (as a cluster does) would cost the batch half again. A key that missed
// can be invalidated while its load runs, and the invalidation may leave
// no trace in the key by the time the load stores: a Delete, or a Set
// whose value expired or was evicted meanwhile. So every invalidating
// write of a key (Set, SetMany, MSet, Increment, Delete, DeleteMany) also
// bumps a counter of the key's bucket, before it writes, and
// InvalidatePrefix and ClearAll a counter of all keys, in one hash:
//
//	Prefix + ":" + "\x00dels"   field "all", and "b0" ... "b1023" by key hash
//
// A batch load reads the counters of its missing keys before calling the
// loader (creating "all" if it is missing), and stores each key (SET NX)
// only if its counters are unchanged. Counters grow by a random amount, so
// a counter lost and bumped again never comes back to an old value, and a
// lost hash (a restart, an eviction) refuses every store in flight: "all"
// was there when they read it.
const (
	delHashName = "\x00dels"
	delAll      = "all"
	delBuckets  = 1024
)

// delFields are the counter fields of the buckets: "b0" ... "b1023".
var delFields = func() (f [delBuckets]string) {
	for i := range f {
		f[i] = "b" + strconv.Itoa(i)
	}
	return f
}()

// delBucket returns the bucket of stored key k: FNV-1a, mod delBuckets.
func delBucket(k string) int {
	h := uint32(2166136261)
	for i := 0; i < len(k); i++ {
		h ^= uint32(k[i])
		h *= 16777619
	}
	return int(h % delBuckets)
}

// delBump is how much a counter grows per delete: random, so it never
// returns to an old value after the hash is lost.
func delBump() int64 { return 1 + mrand.Int64N(1<<30) }

// countsDeletes reports whether this Client keeps write counters (one
// server: see above).
func (c *Client) countsDeletes() bool { return c.single() }

// bumpDeletes queues, on pipe, a bump of the counter of every bucket of
// stored keys ks. A write queues it before the write itself, so a write
// that ran has always bumped.
func (c *Client) bumpDeletes(ctx context.Context, pipe redis.Pipeliner, ks []string) {
	var seen [delBuckets]bool
	for _, k := range ks {
		if b := delBucket(k); !seen[b] {
			seen[b] = true
			pipe.HIncrBy(ctx, c.pfx+delHashName, delFields[b], delBump())
		}
	}
}

// bumpAll bumps the counter of all keys, for InvalidatePrefix and ClearAll:
// every batch load in progress then stores nothing.
func (c *Client) bumpAll(ctx context.Context) error {
	bump := func(ctx context.Context) (int64, error) {
		return c.rdb.HIncrBy(ctx, c.pfx+delHashName, delAll, delBump()).Result()
	}
	_, err := bump(ctx)
	if err != nil {
		_, err = retry(ctx, c, idempotent, 0, err, bump)
	}
	return err
}

// deleteCounts is what a batch load read of the write counters: the
// counter of all keys and of each bucket ("" for none), and which buckets
// were read.
type deleteCounts struct {
	all    string
	bucket [delBuckets]string
	read   [delBuckets]bool
	ok     bool
}

// readDeletes reads the counters of the keys of own that missed, before
// their loader is called, and marks them to be stored with NX under those
// counters. On failure nothing is marked: they are loaded, not stored.
func (c *Client) readDeletes(ctx context.Context, own []*keyLoad) *deleteCounts {
	counts := &deleteCounts{}
	fields := []string{delAll}
	var (
		want    []*keyLoad
		buckets []int // in the order of fields[1:]
	)
	for _, w := range own {
		if w.lease && w.guard == "" {
			w.delBucket = delBucket(w.k)
			if !counts.read[w.delBucket] {
				counts.read[w.delBucket] = true
				fields = append(fields, delFields[w.delBucket])
				buckets = append(buckets, w.delBucket)
			}
			want = append(want, w)
		}
	}
	if len(want) == 0 {
		return nil
	}
	if _, ok := c.brk.allow(); !ok { // then one round trip, which reports
		return nil
	}
	start := mono()
	// A pipeline: go-redis's client-side cache never answers it. "all" is
	// created if missing, so a hash lost before the store is seen.
	pipe := c.rdb.Pipeline()
	pipe.HSetNX(ctx, c.pfx+delHashName, delAll, delBump())
	cmd := pipe.HMGet(ctx, c.pfx+delHashName, fields...)
	_, _ = execPipe(ctx, pipe)
	vals, err := cmd.Result()
	c.observeOp(opBatch, "", start, err)
	if err != nil || len(vals) != len(fields) {
		return nil
	}
	if counts.all, _ = vals[0].(string); counts.all == "" {
		return nil // not created (Redis refusing writes): load, don't store
	}
	for j, b := range buckets {
		counts.bucket[b], _ = vals[1+j].(string)
	}
	counts.ok = true
	for _, w := range want {
		w.absent = true
	}
	return counts
}

// storeAbsent stores part (keys that missed) on one server, guarded by
// the write counters read before the load: an optimistic transaction
// (WATCH the counters, read them, MULTI/EXEC the SET NX PX of the keys
// whose counters are unchanged), which costs Redis what plain SETs cost;
// when a delete lands between WATCH and EXEC (EXEC refused), one script
// does the same atomically.
func (c *Client) storeAbsent(ctx context.Context, counts *deleteCounts, part []*guardedStore) {
	rc, _ := c.rdb.(*redis.Client)
	fields := []string{delAll}
	var (
		seen    [delBuckets]bool
		buckets []int // in the order of fields[1:]
	)
	for _, st := range part {
		if !seen[st.delBucket] {
			seen[st.delBucket] = true
			fields = append(fields, delFields[st.delBucket])
			buckets = append(buckets, st.delBucket)
		}
	}
	hash := c.pfx + delHashName
	err := rc.Watch(ctx, func(tx *redis.Tx) error {
		var cur *redis.SliceCmd
		if _, err := tx.Pipelined(ctx, func(p redis.Pipeliner) error {
			cur = p.HMGet(ctx, hash, fields...)
			return nil
		}); err != nil {
			return err
		}
		vals := cur.Val()
		if len(vals) != len(fields) {
			return fmt.Errorf("rediscache: HMGET returned %d values for %d fields", len(vals), len(fields))
		}
		all, _ := vals[0].(string)
		var same [delBuckets]bool
		for j, b := range buckets {
			v, _ := vals[1+j].(string)
			same[b] = v == counts.bucket[b]
		}
		cmds := make([]*redis.BoolCmd, len(part))
		_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			for j, st := range part {
				if all == counts.all && same[st.delBucket] {
					cmds[j] = p.SetNX(ctx, st.k, st.val, st.ttl)
				}
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		for j, st := range part {
			if cmds[j] != nil && cmds[j].Val() {
				st.n = 1
			}
		}
		return nil
	}, hash)
	switch {
	case err == nil:
	case errors.Is(err, redis.TxFailedErr):
		c.storeAbsentScripted(ctx, counts, fields, buckets, part)
	default:
		for _, st := range part {
			st.err = err
		}
	}
}

// storeAbsentScript is storeAbsent's transaction as a script. KEYS[1] is
// the counters hash, KEYS[2...] the keys; ARGV[1] is the number m of
// counter fields, then m fields ("all" first), m values read before the
// load, and per key the index of its field, its value and its PX. It
// returns 1 or 0 per key.
var storeAbsentScript = redis.NewScript(`local m = tonumber(ARGV[1])
local fields = {}
for i = 1, m do fields[i] = ARGV[1 + i] end
local cur = redis.call("HMGET", KEYS[1], unpack(fields))
local same = {}
for i = 1, m do same[i] = (cur[i] or "") == ARGV[1 + m + i] end
local out = {}
local base = 2 + 2 * m
for i = 2, #KEYS do
  local j = base + 3 * (i - 2)
  if same[1] and same[tonumber(ARGV[j])] and redis.call("SET", KEYS[i], ARGV[j + 1], "NX", "PX", ARGV[j + 2]) then
    out[i - 1] = 1
  else
    out[i - 1] = 0
  end
end
return out`)

// storeAbsentScripted is storeAbsent with one script call; fields are
// "all" and the fields of buckets, in that order.
func (c *Client) storeAbsentScripted(ctx context.Context, counts *deleteCounts, fields []string, buckets []int, part []*guardedStore) {
	var idx [delBuckets]int
	for j, b := range buckets {
		idx[b] = j + 2
	}
	keys := make([]string, 1, 1+len(part))
	keys[0] = c.pfx + delHashName
	args := make([]any, 0, 1+2*len(fields)+3*len(part))
	args = append(args, len(fields))
	for _, f := range fields {
		args = append(args, f)
	}
	args = append(args, counts.all)
	for _, b := range buckets {
		args = append(args, counts.bucket[b])
	}
	for _, st := range part {
		keys = append(keys, st.k)
		args = append(args, idx[st.delBucket], st.val, pxArg(st.ttl))
	}
	res, err := storeAbsentScript.Run(ctx, c.rdb, keys, args...).Int64Slice()
	for j, st := range part {
		if st.err = err; err == nil && j < len(res) {
			st.n = res[j]
		}
	}
}

// counted runs one write of stored key k, which queue adds to a pipeline,
// on a Client that counts writes: the bump of k's bucket counter first,
// then the write, in one round trip. It returns the write's command; the
// error is the write's, else the bump's. A bump refused for OOM (Redis over
// maxmemory refuses writes, but not UNLINK) does not fail a Delete: while
// Redis refuses writes, no batch load can store either.
func counted[C redis.Cmder](ctx context.Context, c *Client, k string, queue func(redis.Pipeliner) C) (C, error) {
	pipe := c.one.Pipeline()
	c.bumpDeletes(ctx, pipe, []string{k})
	cmd := queue(pipe)
	cmds, _ := execPipe(ctx, pipe)
	if err := cmd.Err(); err != nil {
		return cmd, err
	}
	return cmd, bumpErr(cmds[:1])
}

// bumpErr is the first error of counter bumps that is not Redis refusing
// writes for OOM.
func bumpErr(cmds []redis.Cmder) error {
	for _, cmd := range cmds {
		if err := cmd.Err(); err != nil && !isOOM(err) {
			return err
		}
	}
	return nil
}

// isOOM reports whether err is Redis refusing a write over maxmemory.
func isOOM(err error) bool { return redis.HasErrorPrefix(err, "OOM") }
