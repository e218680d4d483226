package rediscache

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/redis/go-redis/v9"
)

// Batch bounds. A batch is cut into chunks of at most batchChunk keys; each
// chunk costs one round trip per node it touches (one MGET, one multi-key
// UNLINK or one pipeline of single-key commands), so a 100,000-key batch
// never builds one giant buffer or outlives a read timeout. At most
// batchParallel chunks of one call are in flight at a time.
const (
	batchChunk    = 500
	batchParallel = 4
	// batchErrKeys is how many failed keys BatchError.Error names.
	batchErrKeys = 10
	// batchErrCauses is how many distinct causes BatchError.Error quotes.
	batchErrCauses = 3
)

// keyErr is the failure of the key at index i of a batch.
type keyErr struct {
	i   int
	err error
}

// sendFunc sends the commands for the keys at idx, one round trip per node,
// records every success or miss itself and sets errs[j] to the failure of
// key idx[j]. It may be called again for keys that failed transiently, and
// from several goroutines at once for disjoint idx.
type sendFunc func(ctx context.Context, idx []int, errs []error)

// batch is one multi-key call in progress: its logical and stored keys and
// the keys that failed for good.
type batch struct {
	c      *Client
	op     string
	keys   []string // logical, as the caller passed them
	ks     []string // stored: c.storageKey(keys[i])
	quiet  bool     // get leaves hits and misses to the caller
	mu     sync.Mutex
	failed []keyErr
	// turn is the call's turn of the Client's breaker (newBatch): run
	// reports to it; a call that may not run releases it.
	turn turn
}

// newBatch validates the call and every key before anything is sent, then
// asks the Client's breaker (on a cluster run asks each node's). On an
// invalid input it returns an *OpError naming the first bad key. The
// caller releases b.turn when it may end without run.
func (c *Client) newBatch(ctx context.Context, op string, keys []string) (*batch, error) {
	if err := c.ready(ctx); err != nil {
		return nil, opErr(op, "", err)
	}
	b, err := c.mapBatch(op, keys)
	if err != nil {
		return nil, err
	}
	if b.turn, err = c.admit(ctx, ""); err != nil {
		return nil, opErr(op, "", err)
	}
	return b, nil
}

// mapBatch maps and validates every key of a call already checked
// (context, Close), without asking the breaker.
func (c *Client) mapBatch(op string, keys []string) (*batch, error) {
	b := &batch{c: c, op: op, keys: keys, ks: make([]string, len(keys))}
	for i, key := range keys {
		k, err := c.storageKey(key)
		if err != nil {
			if !errors.Is(err, ErrInvalidKey) {
				key = ""
			}
			return nil, opErr(op, key, err)
		}
		b.ks[i] = k
	}
	return b, nil
}

// outcome is what a batch reports to the circuit breaker once its retries
// are over, as a single-key call does: a failure only when every key
// failed. One dead node of a cluster fails some keys while the others
// answer; that must not open the breaker for the whole cluster. A failed
// round trip that a retry made good is no failure at all.
func (b *batch) outcome() error {
	if len(b.ks) == 0 || len(b.failed) < len(b.ks) {
		return nil
	}
	for _, f := range b.failed {
		if outage(f.err) {
			return f.err
		}
	}
	return b.failed[0].err
}

// run sends every key once, in chunks, then retries the keys that failed
// transiently (and only those) with the Client's retry policy, for the
// whole batch at once so a dead node costs one backoff sequence per call,
// not one per chunk. Keys still failing are recorded in b.failed.
//
// On a cluster each master's breaker is asked once for the keys it serves:
// the keys of a node whose breaker refuses fail with [ErrCircuitOpen]
// without being sent, and each node's breaker hears the outcome of its own
// keys.
func (b *batch) run(ctx context.Context, send sendFunc) {
	if b.c.nodes == nil {
		defer func() { b.c.brk.report(b.outcome()) }()
		all := make([]int, len(b.ks))
		for i := range all {
			all[i] = i
		}
		b.runIdx(ctx, all, send)
		return
	}
	groups := map[*breaker][]int{}
	for i, k := range b.ks {
		br := b.c.nodes.forKey(ctx, k)
		groups[br] = append(groups[br], i)
	}
	var idx []int
	for br, g := range groups {
		if _, ok := br.allow(); !ok { // asked once per node; each hears its group's outcome below
			for _, i := range g {
				b.failed = append(b.failed, keyErr{i, ErrCircuitOpen})
			}
			delete(groups, br)
			continue
		}
		idx = append(idx, g...)
	}
	slices.Sort(idx)
	b.runIdx(ctx, idx, send)
	failed := make(map[int]error, len(b.failed))
	for _, f := range b.failed {
		failed[f.i] = f.err
	}
	for br, g := range groups {
		br.report(groupOutcome(g, failed))
	}
}

// groupOutcome is outcome for the keys at idx: a failure only when every
// one of them failed.
func groupOutcome(idx []int, failed map[int]error) error {
	var first error
	for _, i := range idx {
		err, ok := failed[i]
		if !ok {
			return nil
		}
		if first == nil || (outage(err) && !outage(first)) {
			first = err
		}
	}
	return first
}

// runIdx is run for the keys at idx, without the breaker.
func (b *batch) runIdx(ctx context.Context, idx []int, send sendFunc) {
	if len(idx) == 0 {
		return
	}
	pending := b.pass(ctx, idx, send)
	if len(pending) == 0 {
		return
	}
	_, err := retry(ctx, b.c, idempotent, struct{}{}, pending[0].err, func(ctx context.Context) (struct{}, error) {
		idx := make([]int, len(pending))
		for j, p := range pending {
			idx[j] = p.i
		}
		if pending = b.pass(ctx, idx, send); len(pending) > 0 {
			return struct{}{}, pending[0].err
		}
		return struct{}{}, nil
	})
	ctxErr := ctx.Err()
	for _, p := range pending {
		if err != nil && ctxErr != nil && !errors.Is(p.err, ctxErr) {
			p.err = errors.Join(ctxErr, p.err)
		}
		b.failed = append(b.failed, p)
	}
}

// pass sends the keys at idx in chunks, at most batchParallel chunks at a
// time, records permanent failures and returns the transient ones.
func (b *batch) pass(ctx context.Context, idx []int, send sendFunc) []keyErr {
	var pending []keyErr
	chunk := func(idx []int) {
		errs := make([]error, len(idx))
		if err := ctx.Err(); err != nil {
			for j := range errs {
				errs[j] = err
			}
		} else {
			start := mono()
			send(ctx, idx, errs)
			if !b.c.ctr.off { // latency only: the breaker hears run's outcome
				b.c.ctr.lat[opBatch].observe(mono() - start)
			}
		}
		var failed, again []keyErr
		for j, err := range errs {
			switch {
			case err == nil:
			case transient(err, idempotent):
				again = append(again, keyErr{idx[j], err})
			default:
				failed = append(failed, keyErr{idx[j], err})
			}
		}
		if len(failed)+len(again) > 0 {
			b.mu.Lock()
			b.failed = append(b.failed, failed...)
			pending = append(pending, again...)
			b.mu.Unlock()
		}
	}
	if len(idx) <= batchChunk {
		chunk(idx)
		return pending
	}
	sem := make(chan struct{}, batchParallel)
	var wg sync.WaitGroup
	for lo := 0; lo < len(idx); lo += batchChunk {
		part := idx[lo:min(lo+batchChunk, len(idx))]
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			chunk(part)
		})
	}
	wg.Wait()
	return pending
}

// err returns nil or the *BatchError of the keys that failed.
func (b *batch) err() error {
	if len(b.failed) == 0 {
		return nil
	}
	m := make(map[string]error, len(b.failed))
	for _, f := range b.failed {
		m[b.keys[f.i]] = f.err
	}
	return b.c.newBatchError(b.op, len(b.keys), m)
}

// expectAll returns the namespace generation each key's entry must carry
// (see Client.expect), or the error of not knowing it, by index.
func (c *Client) expectAll(ctx context.Context, keys []string) ([]uint64, []error) {
	gens := make([]uint64, len(keys))
	errs := make([]error, len(keys))
	if c.gens == nil {
		return gens, errs
	}
	known := map[string]int{} // namespace -> index of a key already looked up
	for i, key := range keys {
		ns := namespaceOf(key)
		if j, ok := known[ns]; ok {
			gens[i], errs[i] = gens[j], errs[j]
			continue
		}
		known[ns] = i
		gens[i], errs[i] = c.expect(ctx, key)
	}
	return gens, errs
}

// single reports whether c talks to one server (a *redis.Client:
// standalone or a Sentinel failover client), where multi-key MGET and
// UNLINK are safe. Cluster, Ring and unknown clients get pipelines of
// single-key commands, which every client routes per key.
func (c *Client) single() bool {
	_, ok := c.rdb.(*redis.Client)
	return ok
}

// bytesOf returns the bytes of s without copying. s must be a reply string
// that nothing else refers to (go-redis's StringCmd.Bytes does the same).
// An empty s gives an empty, non-nil slice, so it never reads as a miss.
func bytesOf(s string) []byte {
	if len(s) == 0 {
		return []byte{}
	}
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

// get reads every key of b: MGET per chunk on one server, a pipeline of
// GETs elsewhere. hit is called with the stored bytes of a found key and
// may reject them (a corrupt value); misses and hits are counted here.
func (b *batch) get(ctx context.Context, hit func(i int, p []byte) error) {
	r := batchRead{b: b, hit: hit}
	if b.c.single() {
		b.run(ctx, r.mget)
		return
	}
	b.run(ctx, r.pipelinedGets)
}

// batchRead is one batch.get: the batch, and what to do with each value.
type batchRead struct {
	b   *batch
	hit func(i int, p []byte) error
}

// miss counts key i as a miss, unless the batch is quiet.
func (r batchRead) miss(i int) {
	if !r.b.quiet {
		r.b.c.ctr.miss(r.b.keys[i])
	}
}

// found hands key i's bytes to hit and counts the outcome: a hit, or a
// miss for a cached "not found", a load's lease or an invalidated entry.
// Bytes the near cache answered that it cannot vouch for (see nearStale)
// are read again from Redis first, for every batch read alike.
func (r batchRead) found(ctx context.Context, i int, p []byte) error {
	if c := r.b.c; c.near != nil && c.nearStale(p) {
		fresh, err := c.getFresh(ctx, r.b.ks[i])
		switch {
		case errors.Is(err, redis.Nil):
			r.miss(i)
			return nil
		case err != nil:
			return err
		}
		p = fresh
	}
	switch err := r.hit(i, p); {
	case errors.Is(err, errNegative) || errors.Is(err, errLeaseOnly) || errors.Is(err, errOldGeneration):
		r.miss(i)
		return nil
	case err != nil:
		return err
	}
	if !r.b.quiet {
		r.b.c.ctr.hit(r.b.keys[i])
	}
	return nil
}

// mget reads the keys at idx with one multi-key MGET (one server: no slots).
func (r batchRead) mget(ctx context.Context, idx []int, errs []error) {
	args := make([]any, 1+len(idx))
	args[0] = "mget"
	for j, i := range idx {
		args[1+j] = r.b.ks[i]
	}
	cmd := redis.NewSliceCmd(ctx, args...)
	_ = r.b.c.rdb.Process(ctx, cmd)
	vals, err := cmd.Result()
	if err == nil && len(vals) != len(idx) {
		err = fmt.Errorf("rediscache: MGET returned %d values for %d keys", len(vals), len(idx))
	}
	if err != nil {
		for j := range errs {
			errs[j] = err
		}
		return
	}
	for j, v := range vals {
		switch v := v.(type) {
		case nil:
			r.miss(idx[j])
		case string:
			errs[j] = r.found(ctx, idx[j], bytesOf(v))
		default:
			errs[j] = fmt.Errorf("rediscache: MGET returned a %T", v)
		}
	}
}

// pipelinedGets reads the keys at idx with a pipeline of single-key GETs
// (a cluster or ring: keys in many slots).
func (r batchRead) pipelinedGets(ctx context.Context, idx []int, errs []error) {
	pipe := r.b.c.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(idx))
	for j, i := range idx {
		cmds[j] = pipe.Get(ctx, r.b.ks[i])
	}
	_, _ = execPipe(ctx, pipe) // the first error; each command's own is read below
	for j, cmd := range cmds {
		s, err := cmd.Result()
		switch {
		case err == nil:
			errs[j] = r.found(ctx, idx[j], bytesOf(s))
		case errors.Is(err, redis.Nil):
			r.miss(idx[j])
		default:
			errs[j] = err
		}
	}
}

// set writes vals[i] at every key of b with SET PX ttls[i], in pipelines.
func (b *batch) set(ctx context.Context, vals [][]byte, ttls []time.Duration) {
	c := b.c
	counted := c.countsDeletes()
	b.run(ctx, func(ctx context.Context, idx []int, errs []error) {
		pipe := c.rdb.Pipeline()
		bumps := 0
		if counted { // before the SETs: a SET that ran has bumped (batchguard.go)
			ks := make([]string, len(idx))
			for j, i := range idx {
				ks[j] = b.ks[i]
			}
			c.bumpDeletes(ctx, pipe, ks)
			bumps = pipe.Len()
		}
		cmds := make([]*redis.StatusCmd, len(idx))
		for j, i := range idx {
			cmds[j] = redis.NewStatusCmd(ctx, "set", b.ks[i], vals[i], "px", ttls[i].Milliseconds())
			_ = pipe.Process(ctx, cmds[j])
		}
		all, _ := execPipe(ctx, pipe)
		berr := bumpErr(all[:min(bumps, len(all))])
		for j, cmd := range cmds {
			if errs[j] = cmd.Err(); errs[j] == nil {
				if errs[j] = berr; berr == nil {
					c.ctr.set(b.keys[idx[j]])
				}
			}
		}
	})
}

// unlinkSend deletes stored keys ks[i] on rdb and adds the number deleted
// to n: one multi-key UNLINK per chunk when multi (one server, no slots),
// else a pipeline of single-key UNLINKs (keys in different slots). With
// bump, the same round trip bumps the keys' write counters (see
// batchguard.go).
func unlinkSend(rdb redis.Cmdable, multi bool, ks []string, n *atomic.Int64, bump func(context.Context, redis.Pipeliner, []string)) sendFunc {
	return func(ctx context.Context, idx []int, errs []error) {
		keys := make([]string, len(idx))
		for j, i := range idx {
			keys[j] = ks[i]
		}
		pipe := rdb.Pipeline()
		if bump != nil { // before the UNLINKs: an UNLINK that ran has bumped
			bump(ctx, pipe, keys)
		}
		bumps := pipe.Len()
		var cmds []*redis.IntCmd
		if multi {
			cmds = []*redis.IntCmd{pipe.Unlink(ctx, keys...)}
		} else {
			cmds = make([]*redis.IntCmd, len(keys))
			for j, k := range keys {
				cmds[j] = pipe.Unlink(ctx, k)
			}
		}
		all, _ := execPipe(ctx, pipe) // each command's own result is read
		berr := bumpErr(all[:min(bumps, len(all))])
		if multi {
			d, err := cmds[0].Result()
			if err == nil {
				err = berr
			}
			if err != nil {
				for j := range errs {
					errs[j] = err
				}
				return
			}
			n.Add(d)
			return
		}
		for j, cmd := range cmds {
			d, err := cmd.Result()
			if errs[j] = err; err == nil {
				n.Add(d)
				errs[j] = berr
			}
		}
	}
}
