package rediscache

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Namespace generations make a whole namespace unreachable in one O(1)
// Redis command. A namespace is the first ":"-separated segment of a
// logical key. Every entry records, in its envelope, the generation of its
// namespace when it was written, and an entry of another generation reads
// as a miss. InvalidateNamespace moves the namespace to a new generation;
// keys stay where they are, so a Set or Delete of a key by any Client acts
// on the one value every Client reads, whatever generation each believes
// current.
//
// The generations of a Prefix are one hash, with a log of the latest
// invalidations:
//
//	Prefix + ":" + "\x00{gens}"     hash: "\x00epoch" -> the generation of every namespace never
//	                                invalidated; namespace -> its generation; "\x00seq" -> invalidations so far
//	Prefix + ":" + "\x00{gens}log"  list: the last genLogMax invalidations, "seq namespace generation"
//
// (the {gens} hash tag keeps both in one cluster slot, for the script that
// updates them). A Client reads the whole hash once (HSCAN, in pages),
// then only the counter and the epoch every GenerationTTL/2: one O(1)
// command whatever the number of namespaces, and the log's new entries
// when the counter moved.
//
// Generations never repeat: the epoch and every new generation are taken
// from the clock (Unix ms x 1000 plus a random 0-999) and a generation
// only grows. If the hash is lost (evicted, a restart without
// persistence), the next Client creates a new epoch, and every entry
// written before reads as a miss, never as valid. Logical keys may not
// contain NUL (ErrInvalidKey), so these keys never collide with a caller's.
const (
	genHashName   = "\x00{gens}"
	genLogName    = "\x00{gens}log"
	genSeqField   = "\x00seq"
	genEpochField = "\x00epoch"
	genLogMax     = 1000
	genScanPage   = 1000
)

// DefaultGenerationTTL is how long a Client trusts its copy of the
// namespace generations without hearing from Redis.
const DefaultGenerationTTL = time.Second

// ErrGenerationUnknown is wrapped by the error of a read when this Client
// could not confirm the namespace generations within Options.GenerationTTL
// (Redis failing for the node that holds them): the Client does not trust
// entries it cannot check. [GetOrLoad] serves the loader instead.
var ErrGenerationUnknown = errors.New("rediscache: namespace generation unknown")

// genView is an immutable snapshot of the generations: the epoch, the
// namespaces invalidated so far, and the counter it is current with. The
// namespaces are a base map and a small map of the latest changes over
// it, so applying an invalidation copies the small map only, and the base
// is rebuilt once every genRecentMax changes: with 20,000 namespaces an
// invalidation costs no copy of 20,000 entries.
type genView struct {
	epoch  uint64
	base   map[string]uint64
	recent map[string]uint64 // newer than base where both hold a namespace
	seq    int64
}

// genRecentMax is how many namespaces genView.recent holds before merge
// folds them into a new base.
const genRecentMax = 256

// of returns the generation of namespace ns.
func (v *genView) of(ns string) uint64 {
	if len(v.recent) > 0 {
		if gen, ok := v.recent[ns]; ok {
			return gen
		}
	}
	if gen, ok := v.base[ns]; ok {
		return gen
	}
	return v.epoch
}

// How old the view is.
const (
	genFresh   int32 = iota // younger than GenerationTTL/2
	genAging                // older than GenerationTTL/2: refresh in the background
	genExpired              // older than GenerationTTL, or never read: refresh first
)

// generations caches the namespace generations. Readers load the view with
// one atomic load and learn its age from due, which two timers armed at
// each refresh advance: while it is fresh, a call never reads the clock
// for it.
type generations struct {
	c    *Client
	ttl  time.Duration
	hash string // stored key of the hash
	log  string // stored key of the log
	view atomic.Pointer[genView]
	due  atomic.Int32 // genFresh, genAging or genExpired

	mergeMu sync.Mutex // serialises merge

	mu      sync.Mutex // guards epoch, timers, stopped, run, lastErr
	epoch   uint64     // counts refreshes; a timer of an older one does nothing
	timers  [2]*time.Timer
	stopped bool
	run     chan struct{} // closed when the refresh in progress ends; nil when none
	lastErr error         // the last refresh's error
}

func newGenerations(c *Client, ttl time.Duration) *generations {
	g := &generations{c: c, ttl: ttl, hash: c.pfx + genHashName, log: c.pfx + genLogName}
	g.view.Store(&genView{seq: -1}) // -1: never read
	g.due.Store(genExpired)
	return g
}

// namespaceOf returns the namespace of a logical key: its first
// ":"-separated segment, as stored (escaped, for KeyGenerator keys).
func namespaceOf(key string) string {
	if i := strings.IndexByte(key, ':'); i >= 0 {
		return key[:i]
	}
	return key
}

// stampFor returns the generation a write of key is stamped with: what
// expect returns, or 0 when the generations are unknown, which makes an
// entry no Client reads once the namespace was invalidated (the write
// still replaces the old value).
func (c *Client) stampFor(ctx context.Context, key string) uint64 {
	gen, _ := c.expect(ctx, key)
	return gen
}

// current returns the generation this Client knows for key's namespace,
// without waiting (0 with generations off).
func (c *Client) current(key string) uint64 {
	if c.gens == nil {
		return 0
	}
	return c.gens.view.Load().of(namespaceOf(key))
}

// expect returns the generation an entry of key must carry to be read, or
// an error wrapping ErrGenerationUnknown when this Client could not
// confirm the generations within GenerationTTL. A view older than half of
// GenerationTTL is refreshed in the background; an older one, or none yet,
// waits for a refresh, at most half the time ctx has left and half of
// GenerationTTL, and not at all while the breaker of the node holding the
// generations refuses.
func (c *Client) expect(ctx context.Context, key string) (uint64, error) {
	g := c.gens
	if g == nil {
		return 0, nil
	}
	switch g.due.Load() {
	case genFresh:
		return g.view.Load().of(namespaceOf(key)), nil
	case genAging:
		g.start()
		return g.view.Load().of(namespaceOf(key)), nil
	}
	err := g.refreshWait(ctx)
	if g.due.Load() != genExpired {
		return g.view.Load().of(namespaceOf(key)), nil
	}
	if err == nil {
		err = errors.New("not refreshed in time")
	}
	return 0, fmt.Errorf("%w: %w", ErrGenerationUnknown, err)
}

// start starts a refresh unless one is running, and returns the channel
// closed when the running one ends (nil when the Client is closed).
func (g *generations) start() chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.run != nil || g.stopped {
		return g.run
	}
	run := make(chan struct{})
	if !g.c.bg.goRun(func() {
		err := g.refresh()
		g.mu.Lock()
		g.run, g.lastErr = nil, err
		g.mu.Unlock()
		close(run)
	}) {
		return nil
	}
	g.run = run
	return run
}

// refreshWait starts or joins a refresh and waits for it: at most half of
// what ctx has left and half of GenerationTTL. It does not wait when the
// breaker of the hash's node refuses. It returns the refresh's error, or
// why it stopped waiting.
func (g *generations) refreshWait(ctx context.Context) error {
	if !g.c.breakerFor(ctx, g.hash).allowsNow() {
		return ErrCircuitOpen
	}
	run := g.start()
	if run == nil {
		return ErrClosed
	}
	wait := g.ttl / 2
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(dl)/2)
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-run:
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.lastErr
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return errors.New("refresh still running")
	}
}

// refresh brings the view up to date: it reads the counter and the epoch,
// and when the counter moved, the log's new entries. A Client that never
// read the hash, fell more than genLogMax invalidations behind, or finds a
// new epoch (the hash was lost) reads the whole hash. It runs on the
// Client's own context, so a caller leaving does not cancel it. On failure
// the view keeps aging.
func (g *generations) refresh() error {
	c := g.c
	// Not allow: that would take a half-open probe's turn from the call
	// waiting for us. Our outcome is reported all the same.
	if !c.breakerFor(c.bg.ctx, g.hash).allowsNow() {
		return ErrCircuitOpen
	}
	ctx, cancel := context.WithTimeout(c.bg.ctx, max(g.ttl, time.Second))
	defer cancel()
	sent := mono()
	seq, epoch, err := g.readHead(ctx)
	if err != nil {
		return err
	}
	old := g.view.Load()
	switch {
	case epoch != old.epoch || old.seq < 0 || seq < old.seq || seq-old.seq > genLogMax:
		err = g.readAll(ctx, seq, epoch)
	case seq > old.seq:
		err = g.readLog(ctx, old.seq, seq)
	}
	if err != nil {
		return err
	}
	g.arm(sent)
	return nil
}

// readHead reads the counter and the epoch, creating the epoch when the
// hash has none. Reads of the generations go through pipelines, which
// go-redis's client-side cache (LocalCache) never answers from memory.
func (g *generations) readHead(ctx context.Context) (seq int64, epoch uint64, err error) {
	c := g.c
	for try := 0; ; try++ {
		start := mono()
		pipe := c.rdb.Pipeline()
		cmd := pipe.HMGet(ctx, g.hash, genSeqField, genEpochField)
		_, perr := execPipe(ctx, pipe)
		vals, err := cmd.Result()
		if err == nil && len(vals) != 2 {
			err = cmp.Or(perr, fmt.Errorf("rediscache: HMGET returned %d values", len(vals)))
		}
		c.observeOp(opOther, g.hash, start, err)
		if err != nil {
			return 0, 0, err
		}
		if s, ok := vals[0].(string); ok {
			if seq, err = strconv.ParseInt(s, 10, 64); err != nil {
				return 0, 0, fmt.Errorf("%w: generation counter %q", ErrCorruptValue, s)
			}
		}
		if s, ok := vals[1].(string); ok {
			if epoch, err = strconv.ParseUint(s, 10, 64); err != nil {
				return 0, 0, fmt.Errorf("%w: generation epoch %q", ErrCorruptValue, s)
			}
			return seq, epoch, nil
		}
		if try > 0 {
			return 0, 0, errors.New("rediscache: the generation epoch vanished")
		}
		start = mono()
		err = c.rdb.HSetNX(ctx, g.hash, genEpochField, newGeneration()).Err()
		c.observeOp(opOther, g.hash, start, err)
		if err != nil {
			return 0, 0, err
		}
	}
}

// readLog applies the log's entries after seq from, up to to.
func (g *generations) readLog(ctx context.Context, from, to int64) error {
	c := g.c
	start := mono()
	pipe := c.rdb.Pipeline()
	cmd := pipe.LRange(ctx, g.log, -(to - from), -1)
	_, perr := execPipe(ctx, pipe)
	entries, err := cmd.Result()
	if err == nil && perr != nil && !errors.Is(perr, redis.Nil) {
		err = perr
	}
	c.observeOp(opOther, g.log, start, err)
	if err != nil {
		return err
	}
	gens := map[string]uint64{}
	first := int64(-1)
	for _, line := range entries {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		s, err1 := strconv.ParseInt(f[0], 10, 64)
		gen, err2 := strconv.ParseUint(f[2], 10, 64)
		if err1 != nil || err2 != nil || s <= from {
			continue
		}
		if first < 0 || s < first {
			first = s
		}
		gens[f[1]] = max(gens[f[1]], gen)
	}
	if first != from+1 {
		return g.readAll(ctx, to, g.view.Load().epoch) // the log does not reach back far enough
	}
	g.merge(gens, to)
	return nil
}

// readAll reads the whole hash with HSCAN, a page at a time, and installs
// it as the view, with counter seq and epoch.
func (g *generations) readAll(ctx context.Context, seq int64, epoch uint64) error {
	c := g.c
	gens := map[string]uint64{}
	var cursor uint64
	for {
		start := mono()
		kv, next, err := c.rdb.HScan(ctx, g.hash, cursor, "", genScanPage).Result()
		c.observeOp(opScan, g.hash, start, err)
		if err != nil {
			return err
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if strings.HasPrefix(kv[i], "\x00") {
				continue // the counter and the epoch
			}
			if n, err := strconv.ParseUint(kv[i+1], 10, 64); err == nil {
				gens[kv[i]] = max(gens[kv[i]], n)
			}
		}
		if next == 0 {
			break
		}
		cursor = next
	}
	old := g.view.Load()
	if epoch == old.epoch {
		g.merge(gens, seq) // ours since are newer
		return nil
	}
	// A new epoch: what this Client knew belongs to a hash that is gone.
	for !g.view.CompareAndSwap(old, &genView{epoch: epoch, base: gens, seq: seq}) {
		old = g.view.Load()
	}
	return nil
}

// merge installs the view with gens applied (a namespace's generation
// never goes back: generations only grow) and the counter moved to seq if
// that is further.
func (g *generations) merge(gens map[string]uint64, seq int64) {
	g.mergeMu.Lock() // merges one at a time: a lost CompareAndSwap would copy again
	defer g.mergeMu.Unlock()
	for {
		cur := g.view.Load()
		next := &genView{epoch: cur.epoch, base: cur.base, seq: max(cur.seq, seq)}
		if len(cur.recent)+len(gens) <= genRecentMax {
			next.recent = make(map[string]uint64, len(cur.recent)+len(gens))
			for ns, gen := range cur.recent {
				next.recent[ns] = gen
			}
			for ns, gen := range gens {
				next.recent[ns] = max(cur.of(ns), gen)
			}
		} else { // fold everything into a new base
			next.base = make(map[string]uint64, len(cur.base)+len(cur.recent)+len(gens))
			for ns, gen := range cur.base {
				next.base[ns] = gen
			}
			for ns, gen := range cur.recent {
				next.base[ns] = max(next.base[ns], gen)
			}
			for ns, gen := range gens {
				next.base[ns] = max(next.base[ns], gen)
			}
		}
		if g.view.CompareAndSwap(cur, next) { // only a new epoch races us
			return
		}
	}
}

// arm marks the view as read from Redis at sent: fresh now, aging at
// sent+ttl/2, expired at sent+ttl.
func (g *generations) arm(sent time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped {
		return
	}
	g.epoch++
	epoch := g.epoch
	age := mono() - sent
	g.due.Store(genFresh)
	for i, at := range [2]time.Duration{g.ttl / 2, g.ttl} {
		if g.timers[i] != nil {
			g.timers[i].Stop()
		}
		state := genAging + int32(i)
		g.timers[i] = time.AfterFunc(at-age, func() {
			g.mu.Lock()
			defer g.mu.Unlock()
			if g.epoch == epoch && g.due.Load() < state {
				g.due.Store(state)
			}
		})
	}
}

// stop stops the timers, for Close.
func (g *generations) stop() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stopped = true
	for _, t := range g.timers {
		if t != nil {
			t.Stop()
		}
	}
}

// newGeneration returns a generation no namespace can have had: the clock
// in ms times 1000 plus a random 0-999, below 2^53 (Lua's exact integers)
// until the year 2255.
func newGeneration() uint64 {
	return uint64(time.Now().UnixMilli())*1000 + mrand.Uint64N(1000)
}

// bumpScript moves namespace ARGV[1] to its next generation: one more than
// its current one, and never below ARGV[2] (newGeneration), so it never
// repeats. It counts the invalidation (field ARGV[4]) and logs it (the log
// capped at ARGV[3] entries). It returns {generation, seq}.
var bumpScript = redis.NewScript(`local gen = tonumber(redis.call("HGET", KEYS[1], ARGV[1]) or "0") + 1
local floor = tonumber(ARGV[2])
if floor > gen then gen = floor end
gen = string.format("%.0f", gen)
redis.call("HSET", KEYS[1], ARGV[1], gen)
local seq = redis.call("HINCRBY", KEYS[1], ARGV[4], 1)
redis.call("RPUSH", KEYS[2], seq .. " " .. ARGV[1] .. " " .. gen)
redis.call("LTRIM", KEYS[2], -tonumber(ARGV[3]), -1)
return {gen, seq}`)

var errGenerationsOff = fmt.Errorf("%w: namespace generations are off (GenerationTTL -1)", ErrInvalidOptions)

// InvalidateNamespace makes every entry of namespace ns (the first
// ":"-separated segment of a logical key, as [KeyGenerator] writes it) a
// miss, whatever its size, with one O(1) Redis command: it moves the
// namespace to a new generation, and every entry records the generation
// it was written under. This Client reads the namespace under the new
// generation at once; other Clients with the same Prefix within
// Options.GenerationTTL. Keys do not move, so a Set or Delete by any Client
// acts on the value every Client reads. The old entries are not deleted:
// they are overwritten by the next load, or age out by their TTL. Counters
// (Increment) and raw values (MSet) carry no generation and are not
// invalidated. It returns the new generation.
//
// ns is escaped as KeyGenerator escapes it. An empty ns or one holding NUL
// returns an error wrapping [ErrInvalidKey]; with GenerationTTL -1 it wraps
// [ErrInvalidOptions]; otherwise [ErrNilContext], [ErrClosed] or the Redis
// error after retries.
func (c *Client) InvalidateNamespace(ctx context.Context, ns Namespace) (_ int64, err error) {
	const op = "invalidatenamespace"
	if o := c.ctr.obs.Load(); o != nil {
		call := c.newNamespaceCall(op, ns)
		ctx = o.start(ctx, call)
		defer func() { call.Err = err; o.end(ctx, call) }()
	}
	if err := c.ready(ctx); err != nil {
		return 0, opErr(op, string(ns), err)
	}
	if c.gens == nil {
		return 0, opErr(op, string(ns), errGenerationsOff)
	}
	if ns == "" || strings.IndexByte(string(ns), 0) >= 0 {
		return 0, opErr(op, string(ns), fmt.Errorf("%w: bad namespace", ErrInvalidKey))
	}
	if _, err := c.admit(ctx, ""); err != nil { // then one round trip, which reports
		return 0, opErr(op, string(ns), err)
	}
	g := c.gens
	field := EscapeComponent(string(ns))
	bump := func(ctx context.Context) ([]any, error) {
		return bumpScript.Run(ctx, c.rdb, []string{g.hash, g.log}, field, newGeneration(), genLogMax, genSeqField).Slice()
	}
	start := mono()
	// A second bump after a lost reply only skips a generation: harmless.
	res, err := bump(ctx)
	if err != nil {
		res, err = retry(ctx, c, idempotent, res, err, bump)
	}
	c.observe(g.hash, start, err)
	var gen uint64
	var seq int64
	if err == nil {
		gen, seq, err = parseBump(res)
	}
	if err != nil {
		c.ctr.fail(string(ns))
		return 0, opErr(op, string(ns), err)
	}
	// Our own bump is applied now; the counter moves only if it was the
	// next one, so the log gives any we missed.
	next := int64(-1)
	if v := g.view.Load(); v.seq >= 0 && seq == v.seq+1 {
		next = seq
	}
	g.merge(map[string]uint64{field: gen}, next)
	return int64(gen), nil
}

// parseBump reads bumpScript's reply.
func parseBump(res []any) (uint64, int64, error) {
	if len(res) == 2 {
		s, _ := res[0].(string)
		seq, ok := res[1].(int64)
		if gen, err := strconv.ParseUint(s, 10, 64); err == nil && ok {
			return gen, seq, nil
		}
	}
	return 0, 0, fmt.Errorf("rediscache: unexpected reply %v", res)
}

// Generation returns the generation of namespace ns as this Client sees it
// now (the value [Metadata].Generation must equal for an entry to be
// read), refreshing its view first if it is older than
// Options.GenerationTTL; 0 with GenerationTTL -1. A namespace never
// invalidated has a generation too (not 0), and every InvalidateNamespace
// moves it to a new one. Errors wrap [ErrGenerationUnknown] when the
// generations cannot be read, [ErrNilContext] or [ErrClosed].
func (c *Client) Generation(ctx context.Context, ns Namespace) (int64, error) {
	if err := c.ready(ctx); err != nil {
		return 0, opErr("generation", string(ns), err)
	}
	gen, err := c.expect(ctx, EscapeComponent(string(ns)))
	if err != nil {
		return 0, opErr("generation", string(ns), err)
	}
	return int64(gen), nil
}
