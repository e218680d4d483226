package rediscache

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// GetManyOrLoad is the batch form of [GetOrLoad]. It reads every key in one
// batch ([Client.MGet]: one round trip per node per 500 keys), calls load
// once with only the keys that missed, stores what load returns for ttl
// (0: each key's namespace TTL or DefaultTTL), caches every missing key
// load did not return as not found for Options.NegativeTTL, and returns
// the union: a map holding the keys that exist. Keys cached as not found are absent without
// calling load.
//
// As GetOrLoad does, it writes a lease into each missing key before
// loading and stores a key's value only while the key still holds that
// lease, so a key invalidated while the loader runs is not stored
// (Stats.StoresRefused); a call that starts after the invalidation
// returned loads that key again rather than receive the refused value.
// Concurrent calls of one Client whose key sets overlap never load the same
// key twice: a key already being loaded by another call is waited for
// instead. The load runs detached from the caller's cancellation, bounded
// by LoadTimeout; the caller leaves on its own ctx with the keys it has.
// Entries are served stale within Options.StaleTTL like GetOrLoad's (one
// background load per call refreshes a call's stale keys); when
// Redis fails for some keys or the breaker is open, those keys are loaded
// and not stored (fail open). Keys another process is loading are loaded
// too, not waited for, and not stored.
//
// Errors: invalid input ([ErrInvalidKey], [ErrInvalidTTL], [ErrInvalidValue]
// for a nil load, [ErrNilContext], [ErrClosed]) returns before anything is
// sent. A load error (or panic, [*LoaderPanicError]) is returned with the
// values found so far; nothing it covers is cached. If ctx ends first,
// GetManyOrLoad returns what it has and ctx's error; if the loads it waits
// for outlive LoadTimeout, what it has and an error wrapping
// [context.DeadlineExceeded].
//
// [WithTags] tags what it stores (and names the tags expected on a hit, so
// their versions are read beside the entries): an entry of an invalidated
// tag is a miss and is loaded again.
func GetManyOrLoad[T any](ctx context.Context, c *Client, keys []string, ttl time.Duration, load func(ctx context.Context, missing []string) (map[string]T, error), opts ...CallOption) (result map[string]T, err error) {
	var call *Call
	if o := c.ctr.obs.Load(); o != nil {
		call = c.newBatchCall(opGetManyOrLoad, keys)
		ctx = o.start(ctx, call)
		defer func() { call.Err = err; call.Loaded = max(len(result)-call.Hits, 0); o.end(ctx, call) }()
	}
	if load == nil {
		return nil, opErr(opGetManyOrLoad, "", errNilLoader)
	}
	o, err := parseCallOptions(opts)
	if err != nil {
		return nil, opErr(opGetManyOrLoad, "", err)
	}
	if ttl < 0 {
		return nil, opErr(opGetManyOrLoad, "", ErrInvalidTTL)
	}
	if err := c.ready(ctx); err != nil {
		return nil, opErr(opGetManyOrLoad, "", err)
	}
	m := &manyCall[T]{c: c, ttl: ttl, load: load, tags: o.tags, out: make(map[string]T, len(keys))}
	m.call = call
	again, err := m.answer(ctx, keys, false)
	if err == nil && len(again) > 0 {
		// As for GetOrLoad: these keys' loads are older than this call,
		// and an invalidation may lie between. Answer them anew once.
		_, err = m.answer(ctx, again, true)
	}
	if err != nil && m.invalid {
		return nil, err
	}
	return m.out, err
}

const opGetManyOrLoad = "getmanyorload"

// manyCall is one GetManyOrLoad call: its TTL and loader, the answer so
// far, and the steps of answering it.
type manyCall[T any] struct {
	c       *Client
	tags    []string    // WithTags: what stores are tagged with
	known   tagVersions // versions of tags, read beside the batch
	ttl     time.Duration
	load    func(context.Context, []string) (map[string]T, error)
	out     map[string]T
	invalid bool  // the error is a validation error: return no map
	call    *Call // the observers' record of the call, or nil
}

// readState is what the batch read found.
type readState struct {
	missing []keyWant    // keys to load, with what their store may overwrite
	stale   []keyWant    // stale keys served, to refresh
	failed  map[int]bool // indexes whose Redis read failed or was skipped
}

// keyWant is a key to load: logical and stored, the namespace generation
// its entry is stamped with, and the guard its store needs ("" with lease:
// take a lease first; "" without: do not store).
type keyWant struct {
	key, k string
	gen    uint64
	guard  string
	lease  bool
}

// answer answers keys into m.out and returns the keys whose shared loads
// this call could not take (see flight); retried takes every outcome.
func (m *manyCall[T]) answer(ctx context.Context, keys []string, retried bool) ([]string, error) {
	c := m.c
	hits := len(m.out)
	st, err := m.read(ctx, keys)
	if err != nil {
		return nil, err
	}
	if m.call != nil {
		m.call.Hits += len(m.out) - hits
		m.call.Stale += len(st.stale)
		m.call.Fallbacks += len(st.failed)
	}
	if len(st.stale) > 0 {
		refreshManyInBackground(ctx, c, st.stale, m.ttl, m.load, m.tags)
	}
	if len(st.missing) == 0 {
		return nil, nil
	}
	if len(st.failed) > 0 {
		c.ctr.add(&c.ctr.fallbacks, EventFallback, "", uint64(len(st.failed)))
		c.warnf("rediscache: redis failed for a batch, serving from the loader", "op", opGetManyOrLoad, "keys", len(st.failed))
	}
	own, waits := c.keyLoads.claim(st.missing, c.opt.LoadTimeout)
	for _, w := range own {
		waits = append(waits, keyWait{w: w, key: w.key})
	}
	if len(own) > 0 {
		started := c.bg.goRun(func() {
			lctx, cancel := c.bg.detach(ctx, time.Now().Add(c.opt.LoadTimeout))
			defer cancel()
			loadBatch(lctx, c, own, m.ttl, m.load, m.tags, false)
		})
		if !started {
			c.keyLoads.finish(own, ErrClosed)
		}
	}
	return m.collect(ctx, waits, retried)
}

// read reads every key in one batch and sorts them: hits go to m.out, the
// rest to the state's lists.
func (m *manyCall[T]) read(ctx context.Context, keys []string) (readState, error) {
	c := m.c
	st := readState{failed: map[int]bool{}}
	var (
		raw  [][]byte
		gens []uint64
		err  error
	)
	b, err := c.mapBatch(opGetManyOrLoad, keys)
	if err != nil {
		m.invalid = true
		return st, err
	}
	ks := b.ks
	if t, ok := c.brk.allow(); !ok {
		for i := range keys {
			st.failed[i] = true
		}
		raw, gens = make([][]byte, len(keys)), make([]uint64, len(keys))
	} else {
		defer t.release() // for no keys: nothing sent (else the batch reports)
		var genErrs []error
		gens, genErrs = c.expectAll(ctx, keys)
		for i, err := range genErrs {
			if err != nil {
				c.ctr.fail(keys[i])
				st.failed[i] = true // not trusted: load, don't store
			}
		}
		prefetch := m.prefetchTags(ctx)
		raw, err = c.mgetBatch(ctx, b, true)
		m.known = <-prefetch
	}
	var be *BatchError
	switch {
	case err == nil:
	case errors.As(err, &be):
		for i, key := range keys {
			if be.Failed[key] != nil {
				st.failed[i] = true
			}
		}
	default:
		return st, err
	}
	invalid := m.checkTags(ctx, raw, st.failed)
	m.sort(&st, keys, ks, gens, raw, invalid)
	return st, nil
}

// prefetchTags reads the versions of the call's tags (WithTags) beside the
// batch read, when there is no near cache to read them through.
func (m *manyCall[T]) prefetchTags(ctx context.Context) <-chan tagVersions {
	ch := make(chan tagVersions, 1)
	if len(m.tags) == 0 || m.c.near != nil {
		ch <- nil
		return ch
	}
	go func() {
		vers, _ := m.c.readTagVersions(ctx, m.tags)
		ch <- vers
	}()
	return ch
}

// checkTags returns the indexes of raw values whose tags were invalidated
// (reading the versions, beside WithTags' ones, in one round trip); when
// the versions cannot be read, the tagged values are marked failed.
func (m *manyCall[T]) checkTags(ctx context.Context, raw [][]byte, failed map[int]bool) map[int]bool {
	var tagged []int
	envs := make(map[int]envelope)
	for i, b := range raw {
		if b == nil {
			continue
		}
		if e, kind, _ := parseStored(b); (kind == storedValue || kind == storedNegative) && len(e.tags) > 0 {
			tagged = append(tagged, i)
			envs[i] = e
		}
	}
	if len(tagged) == 0 {
		return nil
	}
	var need []string
	seen := map[string]bool{}
	for _, i := range tagged {
		eachTag(envs[i].tags, func(t []byte, _ uint64) bool {
			if !seen[string(t)] {
				seen[string(t)] = true
				need = append(need, string(t))
			}
			return true
		})
	}
	var missing []string
	for _, t := range need {
		if _, ok := m.known[t]; !ok {
			missing = append(missing, t)
		}
	}
	known := m.known
	var err error
	if len(missing) > 0 {
		var got tagVersions
		if got, err = m.c.readTagVersions(ctx, missing); err == nil {
			if known == nil {
				known = tagVersions{}
			}
			for t, v := range got {
				known[t] = v
			}
		}
	}
	invalid := map[int]bool{}
	for _, i := range tagged {
		if err != nil {
			failed[i] = true
			continue
		}
		if current, _ := m.c.tagsCurrent(ctx, envs[i], known); !current {
			invalid[i] = true
		}
	}
	return invalid
}

// sort decodes the raw values of keys (stored keys ks, generations gens)
// and files each key.
func (m *manyCall[T]) sort(st *readState, keys, ks []string, gens []uint64, raw [][]byte, invalid map[int]bool) {
	c := m.c
	now := time.Now().UnixMilli()
	seen := make(map[string]bool, len(keys))
	for i, key := range keys {
		if seen[key] {
			continue
		}
		seen[key] = true
		want := keyWant{key: key, k: ks[i], gen: gens[i], lease: true}
		switch {
		case st.failed[i]:
			want.lease = false
			st.missing = append(st.missing, want)
			continue
		case raw[i] == nil:
			c.ctr.miss(key)
			st.missing = append(st.missing, want)
			continue
		}
		var v T
		e, kind, err := c.decodeStored(raw[i], &v, gens[i])
		if invalid[i] && (err == nil || errors.Is(err, errNegative)) {
			err = errTagged
		}
		switch {
		case errors.Is(err, errTagged):
			c.ctr.miss(key)
			want.lease, want.guard = false, e.header() // a tag of it was invalidated: replace it
			st.missing = append(st.missing, want)
		case errors.Is(err, errNegative):
			c.ctr.hit(key)
			c.ctr.add(&c.ctr.negativeHits, EventNegativeHit, key, 1)
		case errors.Is(err, errOldGeneration):
			c.ctr.miss(key)
			want.lease, want.guard = false, e.header() // invalidated by InvalidateNamespace: replace it
			st.missing = append(st.missing, want)
		case err != nil:
			c.ctr.fail(key)
			want.lease = false
			if kind == storedValue {
				want.guard = e.header() // ours, not a T: replace it
			}
			st.missing = append(st.missing, want)
		case e.freshUntil != 0 && now >= e.freshUntil:
			c.ctr.hit(key)
			c.ctr.add(&c.ctr.staleServed, EventStaleServed, key, 1)
			m.out[key] = v
			want.lease, want.guard = false, e.header()
			st.stale = append(st.stale, want)
		default:
			c.ctr.hit(key)
			m.out[key] = v
		}
	}
}

// collect waits for the keys' loads and adds their values to m.out. It
// returns the keys whose outcome this call may not take (unless retried)
// and the load errors joined.
func (m *manyCall[T]) collect(ctx context.Context, waits []keyWait, retried bool) ([]string, error) {
	var (
		again []string
		errs  []error
	)
	if len(waits) == 0 {
		return nil, nil
	}
	// One timer for the call: the earliest LoadTimeout of the loads waited for.
	deadline := waits[0].w.deadline
	for _, kw := range waits[1:] {
		if kw.w.deadline.Before(deadline) {
			deadline = kw.w.deadline
		}
	}
	timeout := time.NewTimer(time.Until(deadline) + m.c.loadGrace())
	defer timeout.Stop()
	for _, kw := range waits {
		w := kw.w
		select {
		case <-w.done:
		case <-ctx.Done():
			return nil, opErr(opGetManyOrLoad, "", ctx.Err())
		case <-timeout.C:
			return nil, opErr(opGetManyOrLoad, "", errLoadTimeout)
		}
		switch {
		case !retried && !w.takes(kw.joined):
			again = append(again, kw.key)
		case w.err != nil:
			if !slices.ContainsFunc(errs, func(e error) bool { return errors.Is(e, w.err) }) {
				errs = append(errs, w.err)
			}
		case w.found:
			if v, ok := w.val.(T); ok {
				m.out[kw.key] = v
			}
		}
	}
	return again, errors.Join(errs...)
}

// refreshManyInBackground starts one bounded background load of the stale
// keys that no other call of this Client is loading, unless the Client is
// busy or closed. Each key's store is guarded by the value it refreshes.
// Unlike GetOrLoad's refresh it takes no cross-process lock: each process
// may refresh a stale batch once. It runs on ctx's values, not its
// cancellation.
func refreshManyInBackground[T any](ctx context.Context, c *Client, stale []keyWant, ttl time.Duration, load func(context.Context, []string) (map[string]T, error), tags []string) {
	c.bg.tryGo(func() {
		own, _ := c.keyLoads.claim(stale, c.opt.LoadTimeout)
		if len(own) == 0 {
			return
		}
		ctx, cancel := c.bg.detach(ctx, time.Now().Add(c.opt.LoadTimeout))
		defer cancel()
		loadBatch(ctx, c, own, ttl, load, tags, true)
	})
}

// loadBatch (refresh: in the background) takes the leases of the keys
// this call owns, calls load for them, stores the results and the
// negative entries under their guards, and hands every key's outcome to
// its waiters.
func loadBatch[T any](ctx context.Context, c *Client, own []*keyLoad, ttl time.Duration, load func(context.Context, []string) (map[string]T, error), tags []string, refresh bool) {
	defer func() {
		if r := recover(); r != nil { // a bug of ours: fail the waiters, not the process
			c.keyLoads.finish(own, newLoaderPanic(r))
		}
	}()
	var (
		leases []*keyLoad
		counts *deleteCounts
	)
	if c.countsDeletes() {
		counts = c.readDeletes(ctx, own)
	} else {
		leases = c.takeLeases(ctx, own)
	}
	keep := c.keepLeases(leases)
	// Read before the loader runs: an InvalidateTags after this makes what
	// the load stores a miss. None read: nothing is stored.
	vers, verr := c.writeTagVersions(ctx, tags)
	if verr != nil {
		vers = nil
	}
	keys := make([]string, len(own))
	for i, w := range own {
		keys[i] = w.key
		w.certLoad = w.mark()
	}
	vals, cost, err := callBatchLoader(ctx, c, keys, refresh, load)
	keep()
	if err != nil {
		c.releaseLeases(ctx, leases)
		c.keyLoads.finish(own, err)
		return
	}
	for _, w := range own {
		if v, ok := vals[w.key]; ok {
			w.val, w.found = v, true // boxed once, stored and handed out
		}
	}
	c.storeLoaded(ctx, own, cost, ttl, counts, tags, vers)
	// Each key's outcome is handed out only after its store, so a call that
	// starts after this one returns finds it in Redis.
	c.keyLoads.finishFound(own)
}

// callBatchLoader runs a GetManyOrLoad loader for keys (refresh: in the
// background), counting it, reporting it to the observers, and turning a
// panic into a *LoaderPanicError.
func callBatchLoader[T any](ctx context.Context, c *Client, keys []string, refresh bool, load func(context.Context, []string) (map[string]T, error)) (vals map[string]T, cost time.Duration, err error) {
	c.ctr.add(&c.ctr.loads, EventLoad, "", 1)
	if o := c.ctr.obs.Load(); o != nil {
		call := c.newBatchCall("load", keys)
		call.Refresh = refresh
		ctx = o.start(ctx, call)
		defer func() { call.Err, call.Loaded = err, len(vals); o.end(ctx, call) }()
	}
	start := mono()
	defer func() {
		if r := recover(); r != nil {
			err = newLoaderPanic(r)
		}
		if err != nil {
			c.ctr.add(&c.ctr.loadErrors, EventLoadError, "", 1)
		}
		cost = mono() - start
	}()
	vals, err = load(ctx, keys)
	return vals, cost, err
}

// takeLeases writes a lease into every owned key that wants one (SET NX
// PX: on one server one script per 500 keys, elsewhere a pipeline per node)
// and sets the guard of those it got. A key whose lease is refused (another
// process loads it, or a value appeared) is loaded and not stored. It
// returns the keys leased.
func (c *Client) takeLeases(ctx context.Context, own []*keyLoad) []*keyLoad {
	var want []*keyLoad
	for _, w := range own {
		if w.lease && w.guard == "" {
			want = append(want, w)
		}
	}
	if len(want) == 0 {
		return nil
	}
	if _, ok := c.brk.allow(); !ok { // then a round trip per chunk, which reports
		return nil
	}
	ks := make([]string, len(want))
	leases := make([]string, len(want))
	for i, w := range want {
		ks[i], leases[i] = w.k, newLease()
	}
	got := c.leaseMany(ctx, ks, leases, c.leaseTTL())
	var held []*keyLoad
	for i, w := range want {
		if got[i] {
			w.guard = leases[i]
			held = append(held, w)
		}
	}
	return held
}

// leaseMany runs SET ks[i] leases[i] NX PX ttl for every key, pipelined
// (one round trip per node per 500 keys; cheaper for Redis than a script),
// and reports which it set.
func (c *Client) leaseMany(ctx context.Context, ks, leases []string, ttl time.Duration) []bool {
	got := make([]bool, len(ks))
	c.chunked(ctx, len(ks), func(ctx context.Context, lo, hi int) {
		start := mono()
		pipe := c.rdb.Pipeline()
		cmds := make([]*redis.BoolCmd, hi-lo)
		for j := range cmds {
			cmds[j] = pipe.SetNX(ctx, ks[lo+j], leases[lo+j], ttl)
		}
		_, err := execPipe(ctx, pipe)
		c.observeOp(opBatch, "", start, err)
		for j, cmd := range cmds {
			ok, err := cmd.Result()
			got[lo+j] = err == nil && ok
		}
	})
	return got
}

// guardedStore is one value a batch load stores under its guard: the
// header the key must start with, or (absent) its write counter.
type guardedStore struct {
	k, guard  string
	absent    bool
	delBucket int
	val       []byte
	ttl       time.Duration
	n         int64 // 1 stored, 0 refused
	err       error
}

// storeMany runs the guarded stores: the keys that missed on one server
// with one script per 500 keys under the write counters, the others
// (leased, or replacing a value of ours) with one script per 500 keys on
// one server, elsewhere a pipeline of single-key scripts per node.
func (c *Client) storeMany(ctx context.Context, stores []*guardedStore, counts *deleteCounts) {
	var absent, guarded []*guardedStore
	for _, st := range stores {
		if st.absent {
			absent = append(absent, st)
		} else {
			guarded = append(guarded, st)
		}
	}
	c.chunked(ctx, len(absent), func(ctx context.Context, lo, hi int) {
		start := mono()
		c.storeAbsent(ctx, counts, absent[lo:hi])
		c.observeOp(opBatch, "", start, storesErr(absent[lo:hi]))
	})
	c.chunked(ctx, len(guarded), func(ctx context.Context, lo, hi int) {
		start := mono()
		part := guarded[lo:hi]
		defer func() { c.observeOp(opBatch, "", start, storesErr(part)) }()
		if rc, ok := c.rdb.(*redis.Client); ok {
			storeScripted(ctx, rc, part)
			return
		}
		cmds := make([]*guardedCmd, len(part))
		for j, st := range part {
			cmds[j] = &guardedCmd{s: casSetScript, keys: []string{st.k}, args: []any{st.guard, st.val, pxArg(st.ttl)}}
		}
		execGuarded(ctx, c.rdb, cmds)
		for j, st := range part {
			st.n, st.err = cmds[j].result()
		}
	})
}

// storesErr is what a chunk of stores reports to the breaker: the error of
// its first store that failed, else nil.
func storesErr(part []*guardedStore) error {
	for _, st := range part {
		if st.err != nil {
			return st.err
		}
	}
	return nil
}

// storeScripted stores part with one script call on rc.
func storeScripted(ctx context.Context, rc *redis.Client, part []*guardedStore) {
	ks := make([]string, len(part))
	args := make([]any, 0, 3*len(part))
	for j, st := range part {
		ks[j] = st.k
		args = append(args, st.guard, st.val, pxArg(st.ttl))
	}
	res, err := casSetManyScript.Run(ctx, rc, ks, args...).Int64Slice()
	for j, st := range part {
		if st.err = err; err == nil && j < len(res) {
			st.n = res[j]
		}
	}
}

// storeLoaded stores, under each key's guard, the loader's value or a
// negative entry, releases the leases of keys it does not store, and sets
// each key's certification mark: its store if it was written, else its
// loader call.
func (c *Client) storeLoaded(ctx context.Context, own []*keyLoad, cost time.Duration, ttl time.Duration, counts *deleteCounts, tags []string, vers tagVersions) {
	var (
		stores   []*guardedStore
		stored   []*keyLoad
		releases []*keyLoad
	)
	for _, w := range own {
		w.cert = w.certLoad
		if w.guard == "" && !w.absent {
			continue
		}
		var lerr error
		if !w.found {
			lerr = ErrNotFound
		}
		e, d, ok := c.loadedEnvelope(w.key, w.gen, w.val, lerr, cost, c.freshTTL(w.key, ttl), tags, vers)
		if !ok {
			if w.lease {
				releases = append(releases, w)
			}
			continue
		}
		w.certStore = w.mark()
		stores = append(stores, &guardedStore{k: w.k, guard: w.guard, absent: w.absent, delBucket: w.delBucket, val: encodeEnvelope(e), ttl: d})
		stored = append(stored, w)
	}
	if len(stores)+len(releases) == 0 {
		return
	}
	t, ok := c.brk.allow()
	if !ok {
		return
	}
	defer t.release() // releasing leases alone reports nothing
	written := func() {
		for _, w := range stored {
			if c.near != nil {
				c.near.written(w.k)
			}
		}
	}
	written()
	defer written()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second+time.Duration(len(stores))*time.Millisecond)
	defer cancel()
	c.storeMany(ctx, stores, counts)
	c.releaseLeases(ctx, releases)
	for i, st := range stores {
		w := stored[i]
		c.countStore(w.key, st.n, st.err)
		if st.err == nil && st.n == 1 && len(tags) == 0 { // a tagged store certifies nothing: see loadAndStore
			w.cert = w.certStore
		}
	}
}

// releaseLeases deletes the leases of keys a failed load leaves unstored.
func (c *Client) releaseLeases(ctx context.Context, held []*keyLoad) {
	if len(held) == 0 {
		return
	}
	cmds := make([]*guardedCmd, len(held))
	for i, w := range held {
		cmds[i] = &guardedCmd{s: casDelScript, keys: []string{w.k}, args: []any{w.guard}}
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	c.chunked(ctx, len(cmds), func(ctx context.Context, lo, hi int) { execGuarded(ctx, c.rdb, cmds[lo:hi]) })
}

// keepLeases extends held leases every half leaseTTL while a batch loader
// runs; the returned func stops it.
func (c *Client) keepLeases(held []*keyLoad) (stop func()) {
	if len(held) == 0 {
		return func() {}
	}
	ttl := c.leaseTTL()
	cmds := make([]*guardedCmd, len(held))
	for i, w := range held {
		cmds[i] = &guardedCmd{s: casPExpireScript, keys: []string{w.k}, args: []any{w.guard, pxArg(ttl)}}
	}
	return c.every(ttl/2, func(ctx context.Context) bool {
		c.chunked(ctx, len(cmds), func(ctx context.Context, lo, hi int) { execGuarded(ctx, c.rdb, cmds[lo:hi]) })
		return true
	})
}

// chunked calls fn for [lo, hi) chunks of n items, at most batchChunk long,
// with up to batchParallel chunks at a time.
func (c *Client) chunked(ctx context.Context, n int, fn func(ctx context.Context, lo, hi int)) {
	if n == 0 {
		return
	}
	if n <= batchChunk {
		fn(ctx, 0, n)
		return
	}
	sem := make(chan struct{}, batchParallel)
	var wg sync.WaitGroup
	for lo := 0; lo < n; lo += batchChunk {
		hi := min(lo+batchChunk, n)
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			fn(ctx, lo, hi)
		})
	}
	wg.Wait()
}

// freshTTL is the freshness of a loaded key: ttl, or its namespace TTL or
// DefaultTTL for 0.
func (c *Client) freshTTL(key string, ttl time.Duration) time.Duration {
	if ttl > 0 {
		return ttl
	}
	d, _ := c.ttl(key, 0)
	return d
}

// keyLoad is one key being loaded by a GetManyOrLoad call (or a batch
// refresh): a per-key flight, with the same marks (see flight).
type keyLoad struct {
	key      string // logical
	k        string // stored
	gen      uint64 // its namespace generation
	done     chan struct{}
	deadline time.Time
	marks    atomic.Uint64
	callers  atomic.Int32 // calls waiting for it, its owner included

	// The owner's: what the store must find at k, whether to take a lease
	// first (the key missed), or on one server to store it absent under its
	// write counter (see batchguard.go), and the marks of the loader call
	// and the store.
	guard               string
	lease               bool
	absent              bool
	delBucket           int
	certLoad, certStore uint64

	// The outcome, set before done is closed.
	val   any
	found bool
	err   error
	cert  uint64 // waiters that joined at a mark below it may take it
}

func (w *keyLoad) mark() uint64        { return w.marks.Add(1) }
func (w *keyLoad) takes(j uint64) bool { return j < w.cert }

// keyWait is a caller waiting for a keyLoad: its logical key and the mark
// it joined at.
type keyWait struct {
	w      *keyLoad
	key    string
	joined uint64
}

// keyLoadSet registers the keys being loaded by batch calls, by stored
// key, so that overlapping calls share them.
type keyLoadSet struct {
	mu sync.Mutex
	m  map[loadID]*keyLoad
}

// claim returns new keyLoads for the keys nobody is loading (the caller
// must finish them) and waits on the loads in progress for the rest.
func (s *keyLoadSet) claim(keys []keyWant, timeout time.Duration) (own []*keyLoad, waits []keyWait) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[loadID]*keyLoad)
	}
	deadline := time.Now().Add(timeout)
	for _, kw := range keys {
		id := loadID{kw.k, kw.gen}
		if w, ok := s.m[id]; ok {
			w.callers.Add(1)
			waits = append(waits, keyWait{w: w, key: kw.key, joined: w.marks.Load()})
			continue
		}
		w := &keyLoad{key: kw.key, k: kw.k, gen: kw.gen, guard: kw.guard, lease: kw.lease, done: make(chan struct{}), deadline: deadline}
		w.callers.Add(1)
		s.m[id] = w
		own = append(own, w)
	}
	return own, waits
}

// finish completes keyLoads with one error, certified for every waiter.
func (s *keyLoadSet) finish(ws []*keyLoad, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range ws {
		id := loadID{w.k, w.gen}
		if s.m[id] != w {
			continue // finished already
		}
		w.err, w.cert = err, w.marks.Load()+1
		delete(s.m, id)
		close(w.done)
	}
}

// finishFound completes keyLoads whose values (val, found) and cert the
// owner has set.
func (s *keyLoadSet) finishFound(ws []*keyLoad) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range ws {
		id := loadID{w.k, w.gen}
		if s.m[id] != w {
			continue
		}
		delete(s.m, id)
		close(w.done)
	}
}

// get returns the load of stored key k under generation gen in progress,
// or nil.
func (s *keyLoadSet) get(k string, gen uint64) *keyLoad {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[loadID{k, gen}]
}

// loadID is the key of a load in a keyLoadSet: its stored key and
// generation, so a call that expects a newer generation never waits for a
// load begun under an older one.
type loadID struct {
	k   string
	gen uint64
}
