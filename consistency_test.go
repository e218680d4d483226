package rediscache_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rediscache/rediscache"
	"github.com/rediscache/rediscache/internal/consistency"
	"github.com/rediscache/rediscache/internal/redistest"
)

// The consistency harness drives several Clients, each on its own
// connection pool as separate processes would be, against one versioned
// source of truth (consistency.Table), records every write and read and
// checks the history: once an invalidation of a key has returned, a read
// of the key that starts afterwards, on any Client, returns that version or
// a newer one (InvalidateNamespace binds other Clients only after
// GenerationTTL).

// consistencyFor is how long each of the four TestConsistency runs lasts.
var consistencyFor = flag.Duration("consistency", 3*time.Second,
	"how long each of the 4 TestConsistency runs drives its Clients (CI: -consistency 60s); shortened to fit -timeout")

const (
	consNamespaces = 3
	consKeysPerNS  = 12
	consWriters    = 3
	consReaders    = 3 // per Client
	consGenTTL     = 500 * time.Millisecond
	// consLag is the bound after which other Clients must see an
	// InvalidateNamespace: GenerationTTL plus slack.
	consLag = consGenTTL + 50*time.Millisecond
	// consAttempts bounds the harness's own retries of a failed invalidation.
	consAttempts = 7
	// consWritePace is the pause between two writes of one writer; reads
	// go as fast as they can.
	consWritePace = 10 * time.Millisecond
	// consNSEvery spaces InvalidateNamespace calls, so most reads are
	// outside the lag window of one.
	consNSEvery = 2 * time.Second
)

// consMode selects what a run does besides its plain writers and readers.
type consMode struct {
	faults bool // inject faults
	plant  bool // run plantStale
	// control makes a run in which nothing can store a stale value: reads
	// are plain Gets (no loads) and no InvalidateNamespace.
	control bool
}

// consVal is what loaders return and writers store: a key, its version
// and, for the reports, who produced it.
type consVal struct {
	Key     string
	Version int64
	Origin  string
	// Pad makes every value long and compressible, so the compressed
	// Client stores its writes S2-compressed and every other Client reads
	// them (and it reads theirs, stored plain).
	Pad string
}

// consPad is every consVal's Pad.
var consPad = strings.Repeat("rediscache ", 40)

// consSpec is one Client of a run: its Options, the ttl its calls pass,
// and what is special about it.
type consSpec struct {
	name string
	ttl  time.Duration
	opt  rediscache.Options
	// near is the LocalCache bound within which it may see other Clients'
	// writes late (LocalCacheTTL plus slack); it runs on standalone only.
	near time.Duration
	// flaky makes its reads of the namespace generations fail now and then
	// (see consHarness.flaky), so its view of them goes past GenerationTTL.
	flaky bool
}

// consLocalTTL is the LocalCacheTTL of the near-cache Client.
const consLocalTTL = 200 * time.Millisecond

// consClients are the Clients of a run: their Options vary.
var consClients = []consSpec{
	{name: "default", ttl: 500 * time.Millisecond},
	{name: "stale", ttl: 100 * time.Millisecond, opt: rediscache.Options{StaleTTL: time.Second}},
	{name: "xfetch", ttl: 300 * time.Millisecond, opt: rediscache.Options{EarlyRefreshBeta: 50}},
	{name: "nolease", ttl: 50 * time.Millisecond, opt: rediscache.Options{LockTTL: -1}},
	{name: "local", ttl: 300 * time.Millisecond, opt: rediscache.Options{LocalCache: true, LocalCacheTTL: consLocalTTL}, near: consLocalTTL + 50*time.Millisecond},
	{name: "flaky", ttl: 500 * time.Millisecond, flaky: true},
	{name: "compressed", ttl: 300 * time.Millisecond, opt: rediscache.Options{Compression: rediscache.CompressionS2, CompressMinSize: 256}},
}

// consBackend is the Redis under test: a standalone server (srv set, so
// the faults may restart it) or a cluster, and a raw client for the faults.
type consBackend struct {
	addrs   []string
	cluster bool
	srv     *redistest.Server
	raw     redis.UniversalClient
}

// consStandalone starts a redis-server for a run.
func consStandalone(t *testing.T) consBackend {
	srv := redistest.Start(t)
	return consBackend{addrs: []string{srv.Addr()}, srv: srv, raw: srv.Client(t)}
}

// consCluster starts a 3-master cluster for a run.
func consCluster(t *testing.T) consBackend {
	cl := redistest.StartCluster(t, 3, 0)
	return consBackend{addrs: cl.Addrs(), cluster: true, raw: cl.Client(t)}
}

// eachMaster runs fn on the server, or on every master of the cluster.
func (b consBackend) eachMaster(ctx context.Context, fn func(context.Context, *redis.Client) error) error {
	if cc, ok := b.raw.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, fn)
	}
	return fn(ctx, b.raw.(*redis.Client))
}

// consHarness is one run: its Clients, the Table, the Recorder and what
// the workers count.
type consHarness struct {
	t       *testing.T
	b       consBackend
	table   consistency.Table
	rec     *consistency.Recorder
	specs   []consSpec // of clients
	clients []*rediscache.Client
	flaky   atomic.Bool  // the flaky Client's generations are unreadable
	keys    []string     // namespace by namespace
	locks   []sync.Mutex // by key index: writers of a key take turns
	ctx     context.Context
	mode    consMode
	lastNS  atomic.Int64 // when the last InvalidateNamespace began, as a Recorder time

	readErrs, writeFails atomic.Int64
	faults               map[string]int // by kind, counted by injectFaults
	faultErrs            int
	restarted            []time.Duration // when each restart ended

	plantedMu sync.Mutex
	planted   map[consVal]bool // the stale values plantStale stored
}

// newConsHarness empties b and builds the Clients, closed on cleanup.
func newConsHarness(t *testing.T, b consBackend) *consHarness {
	t.Helper()
	h := &consHarness{t: t, b: b, rec: consistency.NewRecorder(), ctx: t.Context(), planted: map[consVal]bool{}, faults: map[string]int{}}
	require.NoError(t, b.eachMaster(h.ctx, func(ctx context.Context, c *redis.Client) error {
		return c.FlushAll(ctx).Err()
	}))
	for ns := range consNamespaces {
		for k := range consKeysPerNS {
			h.keys = append(h.keys, fmt.Sprintf("ns%d:v1:k%d", ns+1, k))
		}
	}
	h.locks = make([]sync.Mutex, len(h.keys))
	for _, spec := range consClients {
		if spec.near > 0 && b.cluster {
			continue // LocalCache needs one standalone server
		}
		opt := spec.opt
		opt.Prefix, opt.GenerationTTL = "cons", consGenTTL
		if spec.flaky {
			opt.Redis, opt.MaxRetries = h.flakyRedis(), -1
		} else {
			opt.Addrs, opt.ClusterMode = b.addrs, b.cluster
		}
		c, err := rediscache.New(&opt)
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		h.specs = append(h.specs, spec)
		h.clients = append(h.clients, c)
	}
	return h
}

// flakyRedis returns a go-redis client whose commands on the namespace
// generations fail while h.flaky is set.
func (h *consHarness) flakyRedis() redis.UniversalClient {
	var rdb redis.UniversalClient
	if h.b.cluster {
		rdb = redis.NewClusterClient(&redis.ClusterOptions{Addrs: h.b.addrs, MaxRetries: -1})
	} else {
		rdb = redis.NewClient(&redis.Options{Addr: h.b.addrs[0], MaxRetries: -1})
	}
	rdb.AddHook(failGenerations{on: &h.flaky, prefix: "cons"})
	h.t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// toggleFlaky makes the flaky Client's generations unreadable for 700ms
// of every 2s (longer than GenerationTTL), until stop.
func (h *consHarness) toggleFlaky(stop context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for n := 0; ; n++ {
		select {
		case <-stop.Done():
			h.flaky.Store(false)
			return
		case <-t.C:
		}
		h.flaky.Store(n%2 == 0)
	}
}

// lags are the bounds the run's history is checked with.
func (h *consHarness) lags() consistency.Lags {
	l := consistency.Lags{Namespace: consLag, Near: map[int]time.Duration{}}
	for ci, spec := range h.specs {
		if spec.near > 0 {
			l.Near[ci] = spec.near
		}
	}
	return l
}

// run drives the Clients for d in mode m and checks the history.
func (h *consHarness) run(d time.Duration, m consMode) consistency.Report {
	h.mode = m
	h.lastNS.Store(int64(-consNSEvery))
	stop, cancel := context.WithTimeout(h.ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	h.startWorkers(stop, &wg)
	wg.Go(func() { h.toggleFlaky(stop) })
	if m.faults {
		h.injectFaults(stop, d)
	}
	<-stop.Done()
	faultWait(h.t, &wg, 30*time.Second, "consistency workers")
	rep := consistency.CheckLags(h.rec.History(), h.lags())
	h.logReport(rep)
	return rep
}

// startWorkers starts the writers, paced, the readers, as fast as they
// go, and the planted stale setter if asked, all running until stop.
func (h *consHarness) startWorkers(stop context.Context, wg *sync.WaitGroup) {
	for range consWriters {
		wg.Go(func() {
			tick := time.NewTicker(consWritePace)
			defer tick.Stop()
			for stop.Err() == nil {
				h.write()
				select {
				case <-stop.Done():
				case <-tick.C:
				}
			}
		})
	}
	for ci := range h.clients {
		for range consReaders {
			wg.Go(func() {
				for stop.Err() == nil {
					h.read(ci)
				}
			})
		}
	}
	if h.mode.plant {
		wg.Go(func() { h.plantStale(stop) })
	}
}

// logReport logs rep with what the harness counted and the state of the
// namespace generations.
func (h *consHarness) logReport(rep consistency.Report) {
	var names []string
	for ci, spec := range h.specs {
		names = append(names, fmt.Sprintf("%d %s", ci, spec.name))
	}
	h.t.Logf("%s\nclients: %s; read errors: %d, unconfirmed writes: %d\nfaults: %v (%d failed), restarts done at %v\n%s%s",
		rep, strings.Join(names, ", "), h.readErrs.Load(), h.writeFails.Load(), h.faults, h.faultErrs, h.restarted,
		h.generations(), byOrigin(rep))
}

// generations describes the namespace generations in Redis and as each
// Client saw them when the run ended: Clients that disagree read and write
// different copies of a key.
func (h *consHarness) generations() string {
	stored, err := h.b.raw.HGetAll(h.ctx, "cons:\x00generations").Result()
	if err != nil {
		return fmt.Sprintf("generations: %v", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "generations in Redis %v; as Clients 0..%d see them:", stored, len(h.clients)-1)
	for ns := range consNamespaces {
		name := rediscache.Namespace(fmt.Sprintf("ns%d", ns+1))
		gens := make([]int64, len(h.clients))
		for ci, c := range h.clients {
			gens[ci], _ = c.Generation(h.ctx, name)
		}
		fmt.Fprintf(&b, " %s %v", name, gens)
	}
	return b.String()
}

// byOrigin describes the violations by who stored the value read and
// whether they are in a lag window, with the first two of each group.
func byOrigin(rep consistency.Report) string {
	groups := map[string][]consistency.Violation{}
	for _, v := range rep.Violations {
		group, _, _ := strings.Cut(v.Read.Note, " ")
		if v.InLagWindow {
			group += ", in a lag window"
		}
		groups[group] = append(groups[group], v)
	}
	var b strings.Builder
	for _, group := range slices.Sorted(maps.Keys(groups)) {
		vs := groups[group]
		fmt.Fprintf(&b, "\nviolations reading a value %s: %d, e.g.", group, len(vs))
		for _, v := range vs[:min(2, len(vs))] {
			fmt.Fprintf(&b, "\n  %s", v)
		}
	}
	return b.String()
}

// requireConsistent fails the test if rep has violations, showing the
// first 20.
func (h *consHarness) requireConsistent(rep consistency.Report) {
	if len(rep.Violations) == 0 {
		return
	}
	var b strings.Builder
	for _, v := range rep.Violations[:min(20, len(rep.Violations))] {
		fmt.Fprintf(&b, "\n  %s", v)
	}
	h.t.Errorf("%d consistency violations; the first ones:%s", len(rep.Violations), b.String())
}

// loader is Client ci's loader of key: it reads the Table, then takes 0
// to 5ms, so loads and invalidations overlap.
func (h *consHarness) loader(ci int, key string) func(context.Context) (consVal, error) {
	return func(context.Context) (consVal, error) {
		v := h.loaded(ci, key)
		time.Sleep(rand.N(5 * time.Millisecond))
		return v, nil
	}
}

// loaderMany is loader for GetManyOrLoad.
func (h *consHarness) loaderMany(ci int) func(context.Context, []string) (map[string]consVal, error) {
	return func(_ context.Context, missing []string) (map[string]consVal, error) {
		m := make(map[string]consVal, len(missing))
		for _, k := range missing {
			m[k] = h.loaded(ci, k)
		}
		time.Sleep(rand.N(5 * time.Millisecond))
		return m, nil
	}
}

// loaded is key's value as Client ci's loaders read it from the Table now.
func (h *consHarness) loaded(ci int, key string) consVal {
	return consVal{Key: key, Version: h.table.Version(key), Origin: fmt.Sprintf("loaded by client %d at %v", ci, h.rec.Now()), Pad: consPad}
}

// read makes one random read on Client ci and records it.
func (h *consHarness) read(ci int) {
	key := h.keys[rand.IntN(len(h.keys))]
	switch n := rand.IntN(10); {
	case h.mode.control || n >= 8:
		start := h.rec.Now()
		var opts []rediscache.CallOption
		if n == 9 {
			opts = append(opts, rediscache.WithTags(tagsOf(key)...))
		}
		v, err := rediscache.Get[consVal](h.ctx, h.clients[ci], key, opts...)
		h.recordRead(ci, "Get", key, start, v, err)
	case n < 5:
		h.getOrLoad(ci, key)
	default:
		h.getManyOrLoad(ci, h.randomKeys(2+rand.IntN(3)))
	}
}

// getOrLoad is a GetOrLoad of key on Client ci, recorded.
func (h *consHarness) getOrLoad(ci int, key string) {
	start := h.rec.Now()
	v, err := rediscache.GetOrLoad(h.ctx, h.clients[ci], key, h.specs[ci].ttl, h.loader(ci, key), rediscache.WithTags(tagsOf(key)...))
	h.recordRead(ci, "GetOrLoad", key, start, v, err)
}

// getManyOrLoad is a GetManyOrLoad of keys on Client ci, recorded as one
// read per key.
func (h *consHarness) getManyOrLoad(ci int, keys []string) {
	start := h.rec.Now()
	m, err := rediscache.GetManyOrLoad(h.ctx, h.clients[ci], keys, h.specs[ci].ttl, h.loaderMany(ci), rediscache.WithTags(tagsOfAll(keys)...))
	for _, k := range keys {
		v, ok := m[k]
		switch {
		case ok:
			h.recordRead(ci, "GetManyOrLoad", k, start, v, nil)
		case err == nil:
			h.recordRead(ci, "GetManyOrLoad", k, start, v, errors.New("absent from the result"))
		default:
			h.recordRead(ci, "GetManyOrLoad", k, start, v, err)
		}
	}
}

// recordRead records a read of key on Client ci that started at start
// and returned v and err.
func (h *consHarness) recordRead(ci int, op, key string, start time.Duration, v consVal, err error) {
	r := consistency.Read{Key: key, Client: ci, Op: op, Start: start, End: h.rec.Now(), Version: v.Version, ValueKey: v.Key, Note: v.Origin}
	switch {
	case errors.Is(err, rediscache.ErrCacheMiss):
		r.Outcome = consistency.Miss
	case err != nil:
		r.Outcome = consistency.Failed
		h.readErrs.Add(1)
	}
	h.rec.Read(r)
}

// randomIdx returns n distinct random key indexes, ascending.
func (h *consHarness) randomIdx(n int) []int {
	return slices.Sorted(slices.Values(rand.Perm(len(h.keys))[:n]))
}

// randomKeys returns n distinct random keys.
func (h *consHarness) randomKeys(n int) []string {
	var out []string
	for _, i := range h.randomIdx(n) {
		out = append(out, h.keys[i])
	}
	return out
}

// keysWith returns the indexes of the keys starting with prefix.
// tagsOf returns the tags of key ("nsN:v1:kM"): its group, M mod 4, and
// its namespace.
func tagsOf(key string) []string {
	ns, rest, _ := strings.Cut(key, ":")
	m, _ := strconv.Atoi(rest[strings.LastIndexByte(rest, 'k')+1:])
	return []string{fmt.Sprint("grp:", m%4), "nst:" + ns}
}

// tagsOfAll returns the tags of keys, each once.
func tagsOfAll(keys []string) []string {
	var out []string
	for _, k := range keys {
		for _, t := range tagsOf(k) {
			if !slices.Contains(out, t) {
				out = append(out, t)
			}
		}
	}
	return out
}

// keysTagged returns the indexes of the keys whose tags hold tag.
func (h *consHarness) keysTagged(tag string) []int {
	var idx []int
	for i, k := range h.keys {
		if slices.Contains(tagsOf(k), tag) {
			idx = append(idx, i)
		}
	}
	return idx
}

func (h *consHarness) keysWith(prefix string) []int {
	var idx []int
	for i, k := range h.keys {
		if strings.HasPrefix(k, prefix) {
			idx = append(idx, i)
		}
	}
	return idx
}

// write makes one random write on a random Client.
func (h *consHarness) write() {
	ci := rand.IntN(len(h.clients))
	c, ttl := h.clients[ci], h.specs[ci].ttl
	ns := fmt.Sprintf("ns%d", 1+rand.IntN(consNamespaces))
	one, some := h.randomIdx(1), h.randomIdx(2+rand.IntN(3))
	switch n := rand.IntN(100); {
	case n >= 95 && h.namespaceTurn():
		h.invalidate(ci, "InvalidateNamespace", h.keysWith(ns+":"), true, func(ctx context.Context, _ map[string]consVal) error {
			_, err := c.InvalidateNamespace(ctx, rediscache.Namespace(ns))
			return err
		})
	case n < 25:
		h.invalidate(ci, "Delete", one, false, func(ctx context.Context, vals map[string]consVal) error {
			_, err := c.Delete(ctx, h.keys[one[0]])
			return err
		})
	case n < 45:
		h.invalidate(ci, "Set", one, false, func(ctx context.Context, vals map[string]consVal) error {
			k := h.keys[one[0]]
			v := vals[k]
			v.Origin = fmt.Sprintf("Set by client %d", ci)
			return rediscache.Set(ctx, c, k, v, ttl, rediscache.WithTags(tagsOf(k)...))
		})
	case n < 60:
		h.invalidate(ci, "DeleteMany", some, false, func(ctx context.Context, vals map[string]consVal) error {
			_, err := c.DeleteMany(ctx, slices.Collect(maps.Keys(vals)))
			return err
		})
	case n < 68:
		tag := tagsOf(h.keys[one[0]])[rand.IntN(2)]
		h.invalidate(ci, "InvalidateTags", h.keysTagged(tag), false, func(ctx context.Context, _ map[string]consVal) error {
			return c.InvalidateTags(ctx, tag)
		})
	case n < 75:
		h.invalidate(ci, "SetMany", some, false, func(ctx context.Context, vals map[string]consVal) error {
			for k, v := range vals {
				v.Origin = fmt.Sprintf("SetMany by client %d", ci)
				vals[k] = v
			}
			return rediscache.SetMany(ctx, c, vals, ttl, rediscache.WithTags(tagsOfAll(slices.Collect(maps.Keys(vals)))...))
		})
	default:
		prefix := ns + ":"
		if rand.IntN(3) > 0 {
			prefix = fmt.Sprintf("%s:v1:k%d", ns, rand.IntN(consKeysPerNS))
		}
		h.invalidate(ci, "InvalidatePrefix", h.keysWith(prefix), false, func(ctx context.Context, _ map[string]consVal) error {
			_, err := c.InvalidatePrefix(ctx, prefix)
			return err
		})
	}
}

// namespaceTurn reports whether an InvalidateNamespace may run now: never
// in a control run, and at most one per consNSEvery.
func (h *consHarness) namespaceTurn() bool {
	now, last := h.rec.Now(), h.lastNS.Load()
	return !h.mode.control && now-time.Duration(last) >= consNSEvery && h.lastNS.CompareAndSwap(last, int64(now))
}

// invalidate is one write of the keys at idx (ascending) by Client ci: it
// takes their locks (writes of a key are serialised, so a Set of an older
// version never lands after a newer one), bumps their versions, runs fn
// with the new values, retrying it when it fails, and records the write.
func (h *consHarness) invalidate(ci int, op string, idx []int, lagged bool, fn func(context.Context, map[string]consVal) error) {
	for _, i := range idx {
		h.locks[i].Lock()
		defer h.locks[i].Unlock()
	}
	began := h.rec.Now()
	vals := make(map[string]consVal, len(idx))
	for _, i := range idx {
		k := h.keys[i]
		vals[k] = consVal{Key: k, Version: h.table.Bump(k), Pad: consPad}
	}
	err := fn(h.ctx, vals)
	for attempt, pause := 1, 10*time.Millisecond; err != nil && attempt < consAttempts && h.ctx.Err() == nil; attempt++ {
		time.Sleep(pause) // a writer backing off before it retries
		pause *= 2
		err = fn(h.ctx, vals)
	}
	returned := h.rec.Now()
	if err != nil {
		h.writeFails.Add(1)
	}
	for _, v := range vals {
		h.rec.Write(consistency.Write{
			Key: v.Key, Version: v.Version, Client: ci, Op: op, Began: began,
			Returned: returned, Confirmed: err == nil, Lagged: lagged,
		})
	}
}

// plantStale is an unguarded cache-aside writer, until stop: it reads a
// key's version, lets a Delete of the key return, then stores the old
// version with a plain Set on another Client.
func (h *consHarness) plantStale(stop context.Context) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop.Done():
			return
		case <-tick.C:
		}
		i := rand.IntN(len(h.keys))
		key := h.keys[i]
		old := consVal{Key: key, Version: h.table.Version(key), Origin: "planted by client 1", Pad: consPad}
		h.invalidate(0, "Delete", []int{i}, false, func(ctx context.Context, _ map[string]consVal) error {
			_, err := h.clients[0].Delete(ctx, key)
			return err
		})
		if rediscache.Set(h.ctx, h.clients[1], key, old, time.Second) == nil {
			h.plantedMu.Lock()
			h.planted[old] = true
			h.plantedMu.Unlock()
		}
	}
}

// injectFaults breaks the backend until stop: CLIENT KILL TYPE normal
// every 300ms, CLIENT PAUSE 100 (ALL or WRITE) every second and, on a
// standalone server, a restart a third and two thirds of the way through.
// It runs on the test goroutine, which Restart needs.
func (h *consHarness) injectFaults(stop context.Context, d time.Duration) {
	kill := time.NewTicker(300 * time.Millisecond)
	defer kill.Stop()
	pause := time.NewTicker(time.Second)
	defer pause.Stop()
	restart := time.NewTicker(d / 3)
	defer restart.Stop()
	restarts := 0
	for {
		select {
		case <-stop.Done():
			return
		case <-kill.C:
			h.fault("CLIENT KILL", func(ctx context.Context, c *redis.Client) error {
				return c.ClientKillByFilter(ctx, "TYPE", "normal").Err()
			})
		case <-pause.C:
			mode := []string{"ALL", "WRITE"}[rand.IntN(2)]
			h.fault("CLIENT PAUSE "+mode, func(ctx context.Context, c *redis.Client) error {
				return c.Do(ctx, "CLIENT", "PAUSE", "100", mode).Err()
			})
		case <-restart.C:
			if h.b.srv != nil && restarts < 2 {
				restarts++
				h.faults["restart"]++
				h.b.srv.Restart(h.t)
				h.restarted = append(h.restarted, h.rec.Now())
			}
		}
	}
}

// fault runs fn on every master with a short deadline, counting it.
func (h *consHarness) fault(kind string, fn func(context.Context, *redis.Client) error) {
	ctx, cancel := context.WithTimeout(h.ctx, time.Second)
	defer cancel()
	h.faults[kind]++
	if err := h.b.eachMaster(ctx, fn); err != nil {
		h.faultErrs++
	}
}

func TestConsistency(t *testing.T) {
	backends := []struct {
		name  string
		start func(*testing.T) consBackend
	}{
		{name: "standalone", start: consStandalone},
		{name: "cluster", start: consCluster},
	}
	runsLeft := 2 * len(backends)
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			b := be.start(t)
			for _, faults := range []bool{false, true} {
				t.Run(map[bool]string{false: "calm", true: "faults"}[faults], func(t *testing.T) {
					h := newConsHarness(t, b)
					h.requireConsistent(h.run(consDuration(t, runsLeft), consMode{faults: faults}))
				})
				runsLeft--
			}
		})
	}
}

// consDuration returns how long a run may last: -consistency, shortened
// if need be so that runsLeft runs (this one included) end a minute before
// the test binary's -timeout.
func consDuration(t *testing.T, runsLeft int) time.Duration {
	d := *consistencyFor
	if deadline, ok := t.Deadline(); ok {
		if fit := max(time.Second, (time.Until(deadline)-time.Minute)/time.Duration(runsLeft)); fit < d {
			t.Logf("run shortened from %v to %v to end before -timeout", d, fit.Round(time.Second))
			d = fit
		}
	}
	return d
}

// TestConsistencyCheckerCatchesPlantedStaleSet shows that the harness and
// its checker are not vacuous: an unguarded store of an old version after
// a Delete returned is reported.
func TestConsistencyCheckerCatchesPlantedStaleSet(t *testing.T) {
	t.Run("one stale set", func(t *testing.T) {
		h := newConsHarness(t, consStandalone(t))
		key := h.keys[0]
		readOld := make(chan consVal)
		deleted := make(chan struct{})
		stored := make(chan error)
		go func() { // the stale setter
			old := consVal{Key: key, Version: h.table.Version(key), Origin: "planted by client 1", Pad: consPad}
			readOld <- old
			<-deleted
			stored <- rediscache.Set(h.ctx, h.clients[1], key, old, time.Minute)
		}()
		old := <-readOld
		h.invalidate(0, "Delete", []int{0}, false, func(ctx context.Context, _ map[string]consVal) error {
			_, err := h.clients[0].Delete(ctx, key)
			return err
		})
		close(deleted)
		require.NoError(t, <-stored)
		h.getOrLoad(3, key)

		rep := consistency.CheckLags(h.rec.History(), h.lags())
		t.Logf("%s", rep)
		require.Len(t, rep.Violations, 1, "violations")
		v := rep.Violations[0]
		assert.Equal(t, consistency.Stale, v.Kind)
		assert.Equal(t, key, v.Key)
		assert.Equal(t, old.Version, v.Got, "version read")
		assert.Equal(t, old.Version+1, v.Want, "version wanted")
		assert.Equal(t, "Delete", v.Write.Op)
		assert.Equal(t, 0, v.Write.Client, "invalidating Client")
		assert.Equal(t, 3, v.Read.Client, "reading Client")
		assert.Greater(t, v.ReadStart, v.Invalidated, "the read started after the Delete returned")
		assert.Equal(t, v.ReadStart-v.Invalidated, v.Staleness)
	})
	t.Run("harness", func(t *testing.T) {
		h := newConsHarness(t, consStandalone(t))
		rep := h.run(min(*consistencyFor, 3*time.Second), consMode{plant: true})
		require.NotEmpty(t, rep.Violations, "violations with a planted stale setter")
		caught := map[consVal]bool{}
		for _, v := range rep.Violations {
			pv := consVal{Key: v.Key, Version: v.Got, Origin: v.Read.Note, Pad: consPad}
			if v.Kind == consistency.Stale && h.planted[pv] {
				caught[pv] = true
			}
		}
		t.Logf("%d of %d planted stale values were read as violations", len(caught), len(h.planted))
		assert.NotEmpty(t, caught, "violations reading a planted stale value")
	})
}

// TestConsistencyControl runs the harness where nothing can store a stale
// value (plain Gets, no loads, no InvalidateNamespace; writes of a key take
// turns): it must report no violation, so the ones the full runs report
// are not made by the harness itself.
func TestConsistencyControl(t *testing.T) {
	b := consStandalone(t)
	for _, faults := range []bool{false, true} {
		t.Run(fmt.Sprintf("faults=%v", faults), func(t *testing.T) {
			h := newConsHarness(t, b)
			rep := h.run(min(*consistencyFor, 3*time.Second), consMode{control: true, faults: faults})
			assert.Positive(t, rep.Checked, "reads checked")
			h.requireConsistent(rep)
		})
	}
}
