package rediscache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
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

// BatchError is returned by the batch calls ([GetMany], [SetMany],
// [Client.DeleteMany], [Client.MGet], [Client.MSet], [Client.InvalidatePrefix],
// [Client.ClearAll]) when some keys failed after the input was accepted: a
// node was down, a reply was an error, a stored value was corrupt, or the
// context ended before every key was sent. The keys not in Failed
// succeeded; nothing is dropped silently. Use [errors.As] to get it:
//
//	var be *rediscache.BatchError
//	if errors.As(err, &be) {
//		for key, err := range be.Failed { ... }
//	}
//
// [errors.Is] sees every per-key error, so errors.Is(err, ErrCorruptValue)
// reports whether any key was corrupt.
type BatchError struct {
	// Op is the operation: "getmany", "setmany", "deletemany", "mget",
	// "mset", "invalidateprefix" or "clearall".
	Op string
	// Total is the number of keys in the batch (for a prefix walk, the number
	// of keys the walk found).
	Total int
	// Failed maps each failed logical key to its error, an [*OpError] whose
	// Err is a go-redis error, a context error or a sentinel of this package
	// such as [ErrCorruptValue].
	Failed map[string]error
}

// Error returns a bounded message: the number of failed keys, the first
// (sorted) ten of them, and up to three distinct causes. The full list is
// in Failed.
func (e *BatchError) Error() string {
	keys := e.keys()
	var b strings.Builder
	fmt.Fprintf(&b, "rediscache: %s: %d of %d keys failed (", e.Op, len(keys), e.Total)
	for i, k := range keys[:min(len(keys), batchErrKeys)] {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Quote(k))
	}
	if n := len(keys) - batchErrKeys; n > 0 {
		fmt.Fprintf(&b, " and %d more", n)
	}
	b.WriteString(")")
	var causes []string
	for _, k := range keys {
		msg := causeText(e.Failed[k])
		if slices.Contains(causes, msg) {
			continue
		}
		if len(causes) == batchErrCauses {
			causes = append(causes, "...")
			break
		}
		causes = append(causes, msg)
	}
	if len(causes) > 0 {
		b.WriteString(": ")
		b.WriteString(strings.Join(causes, "; "))
	}
	return b.String()
}

// Unwrap returns the per-key errors, ordered by key, so [errors.Is] and
// [errors.As] look through them.
func (e *BatchError) Unwrap() []error {
	keys := e.keys()
	errs := make([]error, len(keys))
	for i, k := range keys {
		errs[i] = e.Failed[k]
	}
	return errs
}

func (e *BatchError) keys() []string { return slices.Sorted(maps.Keys(e.Failed)) }

// causeText is a per-key error without the op and key an *OpError adds.
func causeText(err error) string {
	var op *OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err.Error()
	}
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// newBatchError returns nil when nothing failed, else a *BatchError whose
// values are *OpErrors. It counts the failed keys in Stats.Errors.
func (c *Client) newBatchError(op string, total int, failed map[string]error) error {
	if len(failed) == 0 {
		return nil
	}
	e := &BatchError{Op: op, Total: total, Failed: make(map[string]error, len(failed))}
	for k, err := range failed {
		c.ctr.fail(k)
		e.Failed[k] = &OpError{Op: op, Key: k, Err: err}
	}
	return e
}

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
}

// newBatch validates the call and every key before anything is sent. On
// an invalid input it returns an *OpError naming the first bad key.
func (c *Client) newBatch(ctx context.Context, op string, keys []string) (*batch, error) {
	if err := c.usable(ctx); err != nil {
		return nil, opErr(op, "", err)
	}
	return c.mapBatch(op, keys)
}

// mapBatch is newBatch for a call already checked (context, Close,
// breaker): it maps and validates every key.
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
		if !br.allow() {
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
	c := b.c
	miss := func(i int) {
		if !b.quiet {
			c.ctr.miss(b.keys[i])
		}
	}
	found := func(i int, p []byte) error {
		switch err := hit(i, p); {
		case errors.Is(err, errNegative) || errors.Is(err, errLeaseOnly) || errors.Is(err, errOldGeneration): // a cached "not found", a load's lease, an invalidated entry: a miss here
			miss(i)
			return nil
		case err != nil:
			return err
		}
		if !b.quiet {
			c.ctr.hit(b.keys[i])
		}
		return nil
	}
	if c.single() {
		b.run(ctx, func(ctx context.Context, idx []int, errs []error) {
			args := make([]any, 1+len(idx))
			args[0] = "mget"
			for j, i := range idx {
				args[1+j] = b.ks[i]
			}
			cmd := redis.NewSliceCmd(ctx, args...)
			_ = c.rdb.Process(ctx, cmd)
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
					miss(idx[j])
				case string:
					errs[j] = found(idx[j], bytesOf(v))
				default:
					errs[j] = fmt.Errorf("rediscache: MGET returned a %T", v)
				}
			}
		})
		return
	}
	b.run(ctx, func(ctx context.Context, idx []int, errs []error) {
		pipe := c.rdb.Pipeline()
		cmds := make([]*redis.StringCmd, len(idx))
		for j, i := range idx {
			cmds[j] = pipe.Get(ctx, b.ks[i])
		}
		_, _ = execPipe(ctx, pipe) // the first error; each command's own is read below
		for j, cmd := range cmds {
			s, err := cmd.Result()
			switch {
			case err == nil:
				errs[j] = found(idx[j], bytesOf(s))
			case errors.Is(err, redis.Nil):
				miss(idx[j])
			default:
				errs[j] = err
			}
		}
	})
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

// GetMany returns the values of the keys that exist, decoded as T, in a map
// keyed by the logical keys; a missing key is absent from the map, not an
// error, and duplicate keys are fine. It costs one round trip per node per
// 500 keys (MGET on one server, pipelined GETs on a cluster or ring, never
// a cross-slot MGET).
//
// Before anything is sent, a nil context, a closed Client or an invalid key
// returns a nil map and an [*OpError] wrapping [ErrNilContext], [ErrClosed]
// or [ErrInvalidKey]. An empty keys returns an empty map. When some keys
// fail (a node down, a Redis error after retries, a value that does not
// decode: [ErrCorruptValue]), GetMany returns the values it did read
// together with a [*BatchError] naming the failed keys; every key is then
// either in the map, a miss, or in BatchError.Failed.
func GetMany[T any](ctx context.Context, c *Client, keys []string, opts ...CallOption) (map[string]T, error) {
	o, err := parseCallOptions(opts)
	if err != nil {
		return nil, opErr("getmany", "", err)
	}
	b, err := c.newBatch(ctx, "getmany", keys)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return map[string]T{}, nil
	}
	g := &getMany[T]{c: c, b: b, vals: make([]T, len(keys)), found: make([]bool, len(keys)), envs: make([]envelope, len(keys))}
	g.gens, g.genErrs = c.expectAll(ctx, keys)
	b.quiet = true            // counted here, once the tags are checked
	get, idx := b, []int(nil) // with LocalCache, get holds only the keys not kept locally: keys[idx[j]]
	if c.near != nil {
		g.marks, g.fresh = make([]nearMark, len(keys)), make([]bool, len(keys))
		for i, k := range b.ks {
			g.marks[i] = c.near.mark(k)
		}
		get, idx = c.nearMany(b, g.takeKept)
	}
	// With WithTags, the tags' versions are read beside the entries.
	var prefetch chan tagVersions
	if len(o.tags) > 0 && c.near == nil {
		prefetch = make(chan tagVersions, 1)
		go func() {
			vers, _ := c.readTagVersions(ctx, o.tags)
			prefetch <- vers
		}()
	}
	if len(get.keys) > 0 {
		get.get(ctx, func(j int, p []byte) error {
			i := j
			if idx != nil {
				i = idx[j]
			}
			return g.decode(ctx, i, p)
		})
	}
	var known tagVersions
	if prefetch != nil {
		known = <-prefetch
	}
	terr := g.checkTags(ctx, known)
	g.count(get)
	m := make(map[string]T)
	for i, ok := range g.found {
		if ok {
			m[keys[i]] = g.vals[i]
		}
	}
	err = get.err()
	if be, isBatch := errors.AsType[*BatchError](err); isBatch {
		be.Total = len(keys) // not only those sent
	}
	if terr != nil {
		err = errors.Join(err, terr)
	}
	return m, err
}

// getMany is one GetMany call: what it has read so far.
type getMany[T any] struct {
	c       *Client
	b       *batch
	gens    []uint64
	genErrs []error
	marks   []nearMark
	vals    []T
	found   []bool
	envs    []envelope // of found entries that carry tags: checked by checkTags
	// fresh marks the found entries read from Redis, to keep in the near
	// cache: one flag per key, since the chunks of a batch decode at once.
	fresh []bool
}

// takeKept takes the kept value of key i, if it is a T of the current
// generation.
func (g *getMany[T]) takeKept(i int, ent *nearEntry) bool {
	v, isT := ent.v.(T)
	if isT && g.genErrs[i] == nil && ent.env.gen == g.gens[i] {
		g.vals[i], g.found[i] = v, true
		g.envs[i] = ent.env
		return true
	}
	return false
}

// decode decodes the stored bytes p of key i.
func (g *getMany[T]) decode(ctx context.Context, i int, p []byte) error {
	c := g.c
	if g.genErrs[i] != nil {
		return g.genErrs[i]
	}
	if c.near != nil && c.nearStale(p) {
		// Bytes from the near cache that may be past their end.
		fresh, err := c.getFresh(ctx, g.b.ks[i])
		switch {
		case errors.Is(err, redis.Nil):
			return nil // a miss
		case err != nil:
			return err
		}
		p = fresh
	}
	e, _, err := c.decodeStored(p, &g.vals[i], g.gens[i])
	switch {
	case errors.Is(err, errNegative) || errors.Is(err, errLeaseOnly) || errors.Is(err, errOldGeneration):
		return nil // a miss here
	case err != nil:
		return err
	}
	g.found[i], g.envs[i] = true, e
	if c.near != nil {
		g.envs[i].tags = bytes.Clone(e.tags)
		g.fresh[i] = true
	}
	return nil
}

// checkTags drops the found entries one of whose tags was invalidated,
// reading the versions not in known in one round trip, then keeps the
// entries read from Redis in the near cache.
func (g *getMany[T]) checkTags(ctx context.Context, known tagVersions) error {
	var need []string
	seen := map[string]bool{}
	for i, ok := range g.found {
		if !ok {
			continue
		}
		eachTag(g.envs[i].tags, func(t []byte, _ uint64) bool {
			if _, have := known[string(t)]; !have && !seen[string(t)] {
				seen[string(t)] = true
				need = append(need, string(t))
			}
			return true
		})
	}
	var err error
	if len(need) > 0 {
		var got tagVersions
		if got, err = g.c.readTagVersions(ctx, need); err == nil {
			if known == nil {
				known = got
			} else {
				for t, v := range got {
					known[t] = v
				}
			}
		}
	}
	for i, ok := range g.found {
		if !ok || len(g.envs[i].tags) == 0 {
			continue
		}
		if err != nil { // unknown: not trusted
			g.found[i] = false
			continue
		}
		if current, _ := g.c.tagsCurrent(ctx, g.envs[i], known); !current {
			g.found[i] = false
		}
	}
	if err != nil {
		err = opErr("getmany", "", err)
	}
	if g.c.near != nil {
		for i, fresh := range g.fresh {
			if fresh && g.found[i] {
				g.c.near.store(g.b.ks[i], g.c.nearEntryOf(g.envs[i], g.vals[i]), g.marks[i])
			}
		}
	}
	return err
}

// count counts each key once: a hit, a miss, or (in get's BatchError) an
// error.
func (g *getMany[T]) count(get *batch) {
	failed := map[string]bool{}
	for _, f := range get.failed {
		failed[get.keys[f.i]] = true
	}
	for i, key := range g.b.keys {
		switch {
		case g.found[i]:
			g.c.ctr.hit(key)
		case !failed[key]:
			g.c.ctr.miss(key)
		}
	}
}

// SetMany stores every item for ttl, pipelining SET key value PX ttl (one
// round trip per node per 500 keys), so every key gets its TTL. A ttl of 0
// means each key's namespace TTL or DefaultTTL; TTLJitter is applied per
// key.
//
// Every key is validated and every value encoded before anything is sent:
// on a nil context, a closed Client, an invalid key, a negative ttl, a nil
// or unencodable value or one over MaxValueSize, nothing is written and the
// error is an [*OpError] wrapping [ErrNilContext], [ErrClosed],
// [ErrInvalidKey], [ErrInvalidTTL], [ErrInvalidValue] or [ErrValueTooLarge].
// An empty items writes nothing and returns nil. When some writes fail, the
// others are kept and SetMany returns a [*BatchError] naming the failed
// keys.
func SetMany[T any](ctx context.Context, c *Client, items map[string]T, ttl time.Duration, opts ...CallOption) error {
	o, err := parseCallOptions(opts)
	if err != nil {
		return opErr("setmany", "", err)
	}
	keys, b, err := newSetBatch(ctx, c, "setmany", items, ttl)
	if err != nil || b == nil {
		return err
	}
	ttls, err := c.batchTTLs(b, ttl)
	if err != nil {
		return err
	}
	payloads := make([][]byte, len(keys))
	for i, key := range keys {
		if payloads[i], err = c.marshal(items[key], o.tags); err != nil {
			return opErr("setmany", key, err)
		}
	}
	vers, err := c.writeTagVersions(ctx, o.tags)
	if err != nil {
		c.ctr.fail("")
		return opErr("setmany", "", err)
	}
	gens, _ := c.expectAll(ctx, keys) // unknown: 0, an entry nobody reads (it still replaces the old one)
	vals := make([][]byte, len(keys))
	for i := range keys {
		vals[i] = seal(payloads[i], gens[i], ttls[i], o.tags, vers)
	}
	return c.setBatch(ctx, b, vals, ttls)
}

// newSetBatch checks a write batch and returns its keys in a fixed order,
// or a nil batch for an empty one.
func newSetBatch[V any](ctx context.Context, c *Client, op string, items map[string]V, ttl time.Duration) ([]string, *batch, error) {
	if err := c.usable(ctx); err != nil {
		return nil, nil, opErr(op, "", err)
	}
	if ttl < 0 {
		return nil, nil, opErr(op, "", ErrInvalidTTL)
	}
	keys := slices.Sorted(maps.Keys(items))
	b, err := c.mapBatch(op, keys)
	if err != nil || len(keys) == 0 {
		return nil, nil, err
	}
	return keys, b, nil
}

// setBatch resolves every key's TTL and writes vals.
func (c *Client) setBatch(ctx context.Context, b *batch, vals [][]byte, ttls []time.Duration) error {
	c.nearWritten(b.ks)
	defer c.nearWritten(b.ks)
	b.set(ctx, vals, ttls)
	return b.err()
}

// batchTTLs resolves the TTL of every key of a write batch.
func (c *Client) batchTTLs(b *batch, ttl time.Duration) ([]time.Duration, error) {
	ttls := make([]time.Duration, len(b.keys))
	for i, key := range b.keys {
		d, err := c.ttl(key, ttl)
		if err != nil {
			return nil, opErr(b.op, key, err)
		}
		ttls[i] = d
	}
	return ttls, nil
}

// DeleteMany deletes keys with UNLINK (freed in the background) and returns
// how many existed: one multi-key UNLINK per 500 keys on one server, a
// pipeline of single-key UNLINKs on a cluster or ring.
//
// If the context is nil, the Client is closed or any key is invalid,
// nothing is deleted and the error is an [*OpError] wrapping
// [ErrNilContext], [ErrClosed] or [ErrInvalidKey]. No keys returns 0 and
// nil. When some deletes fail, DeleteMany returns the number it did delete
// and a [*BatchError] naming the keys that may remain. After a retried
// timeout the count may miss keys the lost attempt deleted.
func (c *Client) DeleteMany(ctx context.Context, keys []string) (int64, error) {
	b, err := c.newBatch(ctx, "deletemany", keys)
	if err != nil || len(keys) == 0 {
		return 0, err
	}
	var n atomic.Int64
	c.nearWritten(b.ks)
	defer c.nearWritten(b.ks)
	var bump func(context.Context, redis.Pipeliner, []string)
	if c.countsDeletes() {
		bump = c.bumpDeletes
	}
	b.run(ctx, unlinkSend(c.rdb, c.single(), b.ks, &n, bump))
	c.ctr.deleted("", uint64(n.Load())) // keys may span namespaces: global count only
	return n.Load(), b.err()
}

// MGet returns the raw stored bytes of keys, in key order, with nil for a
// missing key: the whole stored value as Redis holds it (for values written
// by [Set] or [SetMany], the envelope and the Codec's payload; for values
// written by [Client.MSet], the caller's bytes). It costs one round trip
// per node per 500 keys.
//
// A nil context, a closed Client or an invalid key returns nil and an
// [*OpError] wrapping [ErrNilContext], [ErrClosed] or [ErrInvalidKey]
// before anything is sent. When some keys fail, MGet returns every value it
// read (nil for the failed keys too) and a [*BatchError] naming them.
func (c *Client) MGet(ctx context.Context, keys []string) ([][]byte, error) {
	return c.mget(ctx, "mget", keys, false)
}

// mget is MGet; quiet leaves hits and misses for the caller to count.
func (c *Client) mget(ctx context.Context, op string, keys []string, quiet bool) ([][]byte, error) {
	b, err := c.newBatch(ctx, op, keys)
	if err != nil {
		return nil, err
	}
	return c.mgetBatch(ctx, b, quiet)
}

// mgetBatch reads the keys of b.
func (c *Client) mgetBatch(ctx context.Context, b *batch, quiet bool) ([][]byte, error) {
	keys := b.keys
	b.quiet = quiet
	out := make([][]byte, len(keys))
	if len(keys) > 0 {
		b.get(ctx, func(i int, p []byte) error {
			if isLease(p) {
				return errLeaseOnly
			}
			out[i] = p
			return nil
		})
	}
	return out, b.err()
}

// MSet stores raw payloads as they are (no envelope, no Codec) for callers
// that encode values themselves, with SET key value PX ttl per key, one
// round trip per node per 500 keys. A ttl of 0 means each key's namespace
// TTL or DefaultTTL, with TTLJitter per key. [GetMany] cannot decode such
// values (they read as [ErrCorruptValue]); read them with [Client.MGet].
//
// Every key and payload is checked before anything is sent: on a nil
// context, a closed Client, an invalid key, a negative ttl, a nil payload
// (use []byte{} for an empty value) or one over MaxValueSize, nothing is
// written and the error is an [*OpError] wrapping [ErrNilContext],
// [ErrClosed], [ErrInvalidKey], [ErrInvalidTTL], [ErrInvalidValue] or
// [ErrValueTooLarge]. When some writes fail, MSet returns a [*BatchError]
// naming the failed keys.
func (c *Client) MSet(ctx context.Context, items map[string][]byte, ttl time.Duration) error {
	keys, b, err := newSetBatch(ctx, c, "mset", items, ttl)
	if err != nil || b == nil {
		return err
	}
	vals := make([][]byte, len(keys))
	for i, key := range keys {
		p := items[key]
		switch {
		case p == nil:
			return opErr("mset", key, errNilValue)
		case c.opt.MaxValueSize > 0 && len(p) > c.opt.MaxValueSize:
			return opErr("mset", key, fmt.Errorf("%w: %d bytes, limit %d", ErrValueTooLarge, len(p), c.opt.MaxValueSize))
		}
		vals[i] = p
	}
	ttls, err := c.batchTTLs(b, ttl)
	if err != nil {
		return err
	}
	return c.setBatch(ctx, b, vals, ttls)
}
