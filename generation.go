package rediscache

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// Namespace generations make a whole namespace unreachable in one O(1)
// Redis command. Each Client Prefix has one bookkeeping hash,
//
//	Prefix + ":" + "\x00generations"   field: namespace, value: generation
//
// and a key whose namespace (first ":"-separated segment) has generation
// g > 0 is stored at Prefix + ":" + namespace + "\x00" + g + rest instead of
// Prefix + ":" + key. Logical keys may not contain NUL (ErrInvalidKey), so
// neither the hash nor a generation key can collide with a caller's key.
// Namespaces never invalidated keep the plain layout.
const genHashName = "\x00generations"

// DefaultGenerationTTL is how long a Client trusts its local copy of the
// namespace generations.
const DefaultGenerationTTL = time.Second

// genView is an immutable snapshot of the generations hash.
type genView struct {
	gens map[string]int64
}

// How old the local view is, as syncGenerations needs to know it.
const (
	genFresh   int32 = iota // younger than GenerationTTL/2
	genAging                // older than GenerationTTL/2: refresh in the background
	genExpired              // older than GenerationTTL (or never fetched): refresh first
)

// generations caches the bookkeeping hash. Readers load the view with one
// atomic load, and learn its age from due, which two timers armed at each
// refresh advance: a call never reads the clock for it.
type generations struct {
	key  string // the stored hash key
	ttl  time.Duration
	view atomic.Pointer[genView]
	due  atomic.Int32 // genFresh, genAging or genExpired

	mu      sync.Mutex // guards epoch, timers and stopped
	epoch   uint64     // counts refreshes; a timer of an older one does nothing
	timers  [2]*time.Timer
	stopped bool

	flight     singleflight.Group
	refreshing atomic.Bool
}

func newGenerations(key string, ttl time.Duration) *generations {
	g := &generations{key: key, ttl: ttl}
	g.view.Store(&genView{})
	g.due.Store(genExpired)
	return g
}

// fetched marks the view as read from Redis at sent: fresh now, aging at
// sent+ttl/2, expired at sent+ttl.
func (g *generations) fetched(sent time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped {
		return
	}
	g.epoch++
	epoch := g.epoch
	g.due.Store(genFresh)
	age := time.Since(sent)
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

// syncGenerations makes sure the local view is at most GenerationTTL old
// before a call maps keys: younger than half of it, nothing happens; older
// than half, a background refresh starts and the call goes on; older than
// all of it, the call waits for a refresh (shared by all waiting calls) or
// for its ctx. A failed refresh keeps the old view and is tried again by
// the next call.
func (c *Client) syncGenerations(ctx context.Context) {
	g := c.gens
	if g == nil {
		return
	}
	switch g.due.Load() {
	case genFresh:
		return
	case genAging:
		if g.refreshing.CompareAndSwap(false, true) && !c.bg.goRun(func() {
			defer g.refreshing.Store(false)
			_ = c.refreshGenerations()
		}) {
			g.refreshing.Store(false)
		}
	default:
		ch := make(chan struct{})
		if !c.bg.goRun(func() {
			defer close(ch)
			_, _, _ = g.flight.Do("", func() (any, error) { return nil, c.refreshGenerations() })
		}) {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
		}
	}
}

// refreshGenerations reads the generations hash and installs it. It runs on
// the Client's own context, so a caller leaving does not cancel it.
func (c *Client) refreshGenerations() error {
	g := c.gens
	ctx, cancel := context.WithTimeout(c.bg.ctx, 5*time.Second)
	defer cancel()
	sent := time.Now()
	m, err := c.rdb.HGetAll(ctx, g.key).Result()
	if err != nil {
		return err
	}
	gens := make(map[string]int64, len(m))
	for ns, v := range m {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
			gens[ns] = n
		}
	}
	// Never go backwards: keep a newer generation this Client set itself.
	for {
		old := g.view.Load()
		for ns, n := range old.gens {
			if n > gens[ns] {
				gens[ns] = n
			}
		}
		if g.view.CompareAndSwap(old, &genView{gens: gens}) {
			g.fetched(sent)
			return nil
		}
	}
}

// genKey returns the stored key for a logical key under the current view.
func (c *Client) genKey(key string) (string, bool) {
	if c.gens == nil {
		return "", false
	}
	v := c.gens.view.Load()
	if len(v.gens) == 0 {
		return "", false
	}
	ns := key
	if i := strings.IndexByte(key, ':'); i >= 0 {
		ns = key[:i]
	}
	gen := v.gens[ns]
	if gen == 0 {
		return "", false
	}
	return c.pfx + ns + "\x00" + strconv.FormatInt(gen, 10) + key[len(ns):], true
}

var errGenerationsOff = fmt.Errorf("%w: namespace generations are off (GenerationTTL -1)", ErrInvalidOptions)

// InvalidateNamespace makes every key of namespace ns (the first
// ":"-separated segment of a logical key, as [KeyGenerator] writes it)
// unreachable, whatever its size, with one O(1) Redis command (HINCRBY on
// the Client's generations hash). Later calls of this Client read and write
// the namespace under a new generation at once; other Clients with the same
// Prefix see the change within Options.GenerationTTL. The old keys are not
// deleted: they age out by their TTL, or [Client.PurgeNamespace] reclaims
// them. It returns the new generation.
//
// ns is escaped as KeyGenerator escapes it. An empty ns or one holding NUL
// returns an error wrapping [ErrInvalidKey]; with GenerationTTL -1 it wraps
// [ErrInvalidOptions]; otherwise [ErrNilContext], [ErrClosed] or the Redis
// error after retries.
func (c *Client) InvalidateNamespace(ctx context.Context, ns Namespace) (int64, error) {
	const op = "invalidatenamespace"
	if err := c.usable(ctx); err != nil {
		return 0, opErr(op, string(ns), err)
	}
	if c.gens == nil {
		return 0, opErr(op, string(ns), errGenerationsOff)
	}
	if ns == "" || strings.IndexByte(string(ns), 0) >= 0 {
		return 0, opErr(op, string(ns), fmt.Errorf("%w: bad namespace", ErrInvalidKey))
	}
	field := EscapeComponent(string(ns))
	start := mono()
	// A second HINCRBY after a lost reply only skips a generation: harmless.
	n, err := c.rdb.HIncrBy(ctx, c.gens.key, field, 1).Result()
	if err != nil {
		n, err = retry(ctx, c, idempotent, n, err, func(ctx context.Context) (int64, error) {
			return c.rdb.HIncrBy(ctx, c.gens.key, field, 1).Result()
		})
	}
	c.observe(c.gens.key, start, err)
	if err != nil {
		c.ctr.fail(string(ns))
		return 0, opErr(op, string(ns), err)
	}
	g := c.gens
	for {
		old := g.view.Load()
		if old.gens[field] >= n {
			break
		}
		gens := make(map[string]int64, len(old.gens)+1)
		for k, v := range old.gens {
			gens[k] = v
		}
		gens[field] = n
		if g.view.CompareAndSwap(old, &genView{gens: gens}) {
			break
		}
	}
	return n, nil
}

// Generation returns the generation of namespace ns as this Client sees it
// now (0 for a namespace never invalidated), refreshing its view first if
// it is older than GenerationTTL.
func (c *Client) Generation(ctx context.Context, ns Namespace) (int64, error) {
	if err := c.usable(ctx); err != nil {
		return 0, opErr("generation", string(ns), err)
	}
	if c.gens == nil {
		return 0, nil
	}
	return c.gens.view.Load().gens[EscapeComponent(string(ns))], nil
}
