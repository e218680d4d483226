// Command cachebench shows what rediscache does for a real service.
//
// It creates and seeds the database of a task service (users, tasks,
// conversations and messages, scripts, storyboards, resources, with the
// usual indexes), then runs the service's five reads with Zipf-distributed
// users and tasks, plus a fraction of writes, in three tiers on the same
// request sequences: the database alone; rediscache.GetOrLoad on Redis;
// and GetOrLoad on Redis with Options.LocalCache (the near cache). Through
// a cache, the writes invalidate the keys they made stale. It prints one
// table comparing the tiers.
//
//	cd cmd/cachebench                       # its own module: the drivers stay out of rediscache's
//	go run .                                # SQLite in a temp dir, redis-server on a free port, all three tiers
//	go run . -tiers db,local                # only some tiers (always run in the order db, redis, local)
//	go run . -db postgres://user:pw@host/db # tables in a throwaway schema, dropped at exit
//	go run . -redis 127.0.0.1:6380 -c 16 -duration 30s -json
//	go run . -chart latency.png
//	go run . -db-rtt 1ms                    # SQLite plus a simulated 1ms network round trip per statement
//	go run . -compression s2                # the cache tiers store pages S2-compressed (Options.Compression)
//
// The table gives, per read and tier, p50 and p99 latency, the speed-up
// over the database alone, the throughput, the hit rate, the database
// queries the cache saved and the stale reads, then per cache tier the
// Redis memory it used. Each tier replays the same request sequences after
// an unrecorded warm-up of its own (-warmup), and runs on a cache of its
// own (a key prefix per tier, cleared when the tier ends). The reads are
// the page queries a service runs: each page of rows with the joins and
// per-row aggregates the page shows (see readSQL). With SQLite the
// database is in-process, so a query pays no network round trip while
// every Redis access does: Redis is faster where a query costs more than a
// Redis round trip, and a database across a network adds its round trip to
// every query. -db postgres://... measures a real one; -db-rtt DURATION
// simulates one by waiting that long before each database statement (the
// header says so, with the mean wait measured). By default it is 0:
// in-process SQLite as it is.
//
// Every read is checked against the source of truth: each page carries the
// version of what it shows (see Page), and a read that returns a page older
// than a write that had finished (committed, then invalidated) before the
// read began is a stale read. The table counts them per tier; the
// database alone is checked the same way, as a control, and never is.
//
// With no -redis it starts redis-server on a free loopback port (and
// stops it at exit) when the binary is on PATH, else it falls back to an
// embedded miniredis, whose latencies are not Redis's, and skips the
// LocalCache tier (it needs CLIENT TRACKING, which miniredis lacks), saying
// so in the header.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rediscache/rediscache"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Config is what the command line sets.
type Config struct {
	DB         string        // "" for SQLite in a temp dir, or a postgres:// URL
	DBRTT      time.Duration // simulated network round trip waited before every database statement
	Scale      float64       // seed size multiplier: 1 is 2,000 users and 40,000 tasks
	Redis      string        // address of a Redis to use; "" starts one
	Workers    int           // concurrent workers
	Duration   time.Duration // per tier, when Ops is 0
	Warmup     time.Duration // unrecorded run before each tier
	Ops        int64         // operations per tier; overrides Duration
	Writes     float64       // fraction of operations that are writes
	Zipf       float64       // Zipf exponent of user and task popularity
	Invalidate string        // "exact" (Delete of the stale keys) or "prefix" (InvalidatePrefix of task pages)
	NoLease    bool          // Options.LockTTL -1: no cross-process lease on a miss
	// Compression is Options.Compression of the cache tiers: "none" (or
	// "", the default) or "s2".
	Compression string
	// Tiers are the tier ids to run (see tiers); nil runs every tier the
	// Redis can serve and skips the others with a note, while a tier named
	// here that cannot run is an error.
	Tiers      []string
	LocalCache bool   // the former -localcache: Tiers db,local
	Seed       uint64 // of the data and the request sequences
	JSON       bool   // print the Result as JSON instead of the table
	Chart      string // PNG file for the latency chart
	Quiet      bool   // no progress bars or notes on stderr
	CPUProfile string // CPU profiles of the cache tiers' measured phases, one file per tier
}

// A tier is one way of serving the reads.
type tier struct {
	ID    string // as -tiers names it
	Name  string // in the table
	Costs string // what it costs and when it pays, for the header
	Cache bool   // through GetOrLoad
	Near  bool   // with Options.LocalCache
}

// tiers are every tier, in the order they run.
var tiers = []tier{
	{ID: "db", Name: "database",
		Costs: "the database alone: every read runs its query; the reference for latency and for staleness"},
	{ID: "redis", Name: "redis", Cache: true,
		Costs: "GetOrLoad on Redis: every read pays a Redis round trip (a miss also the query and a store); pays when a query costs more than that"},
	{ID: "local", Name: "local", Cache: true, Near: true,
		Costs: "GetOrLoad on Redis with Options.LocalCache: a repeated hit costs no round trip; another process's write reaches it within the invalidation's travel time"},
}

func tierIDs() []string {
	ids := make([]string, len(tiers))
	for i, t := range tiers {
		ids[i] = t.ID
	}
	return ids
}

func main() {
	var cfg Config
	flag.StringVar(&cfg.DB, "db", "", "database: empty for SQLite in a temp dir, or a postgres://... URL (tables go in a schema dropped at exit)")
	flag.DurationVar(&cfg.DBRTT, "db-rtt", 0, "SIMULATED network round trip to the database, e.g. 500us or 1ms: a wait (a timer, no CPU) before every database statement of the workload, to show a database across a network; 0 is none (in-process SQLite as it is). Sub-millisecond timers overshoot, so the header reports the mean wait measured")
	flag.Float64Var(&cfg.Scale, "scale", 1, "data size multiplier (1: 2,000 users, 40,000 tasks, ~1.3M rows)")
	flag.StringVar(&cfg.Redis, "redis", "", "Redis address; empty starts redis-server on a free port, or miniredis if it is not installed")
	flag.IntVar(&cfg.Workers, "c", 8, "concurrent workers")
	flag.DurationVar(&cfg.Duration, "duration", defaultDuration, "length of each tier's measured phase")
	flag.DurationVar(&cfg.Warmup, "warmup", defaultWarmup, "unrecorded warm-up before each tier (database pages, then the tier's cache)")
	flag.Int64Var(&cfg.Ops, "ops", 0, "operations per tier (overrides -duration)")
	flag.Float64Var(&cfg.Writes, "writes", 0.05, "fraction of operations that write (and invalidate)")
	flag.Float64Var(&cfg.Zipf, "zipf", 1.0, "Zipf exponent of user and task popularity")
	flag.StringVar(&cfg.Invalidate, "invalidate", "exact", "how writes invalidate task pages: exact (Delete of every page key) or prefix (InvalidatePrefix)")
	flag.StringVar(&cfg.Compression, "compression", "none", "Options.Compression of the cache tiers: none, or s2 (values of 1 KiB and more stored S2-compressed when that makes them smaller)")
	flag.BoolVar(&cfg.NoLease, "no-lease", false, "run GetOrLoad without its cross-process lease (Options.LockTTL -1): a miss re-reads the key instead of taking the lease (3 Redis round trips either way)")
	flag.Func("tiers", "comma-separated tiers to run, always in this order: db (the database alone), redis (GetOrLoad on Redis), local (GetOrLoad with Options.LocalCache; needs a real redis-server). Default: all three, skipping local with a note when the Redis cannot serve it", func(s string) error {
		cfg.Tiers = strings.Split(s, ",")
		return nil
	})
	flag.BoolVar(&cfg.LocalCache, "localcache", false, "the same as -tiers db,local (kept from when the cached phase was one tier)")
	flag.Uint64Var(&cfg.Seed, "seed", 1, "random seed of the data and the workload")
	flag.BoolVar(&cfg.JSON, "json", false, "print the result as JSON instead of the table")
	flag.StringVar(&cfg.Chart, "chart", "", "write a latency chart to this PNG file")
	flag.BoolVar(&cfg.Quiet, "quiet", false, "no progress bars on stderr")
	flag.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write CPU profiles of the cache tiers' measured phases: FILE with the tier inserted before its extension (cpu.pprof: cpu.redis.pprof, cpu.local.pprof)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "cachebench: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	res, err := Run(ctx, cfg, os.Stderr)
	stop()
	if err == nil {
		if cfg.JSON {
			err = writeJSON(os.Stdout, res)
		} else {
			err = writeTable(os.Stdout, res)
		}
	}
	if err == nil && cfg.Chart != "" {
		if err = writeChart(cfg.Chart, res); err == nil && !cfg.Quiet {
			fmt.Fprintf(os.Stderr, "chart written to %s\n", cfg.Chart)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "cachebench:", err)
		os.Exit(1)
	}
}

// The default length of a tier's phases: three tiers, each a warm-up and
// a measured phase, plus the seed (about 11s at scale 1) stay under a
// minute on a 2-core machine.
const (
	defaultDuration = 7 * time.Second
	defaultWarmup   = 1500 * time.Millisecond
)

// validate checks cfg and fills defaults.
func (cfg *Config) validate() error {
	switch {
	case cfg.DBRTT < 0:
		return fmt.Errorf("-db-rtt %v: must be >= 0", cfg.DBRTT)
	case cfg.Scale <= 0:
		return fmt.Errorf("-scale %v: must be > 0", cfg.Scale)
	case cfg.Workers < 1:
		return fmt.Errorf("-c %d: must be >= 1", cfg.Workers)
	case cfg.Ops < 0:
		return fmt.Errorf("-ops %d: must be >= 0", cfg.Ops)
	case cfg.Ops == 0 && cfg.Duration <= 0:
		return fmt.Errorf("-duration %v: must be > 0", cfg.Duration)
	case cfg.Warmup < 0:
		return fmt.Errorf("-warmup %v: must be >= 0", cfg.Warmup)
	case cfg.Writes < 0 || cfg.Writes > 1:
		return fmt.Errorf("-writes %v: must be in [0, 1]", cfg.Writes)
	case cfg.Zipf <= 0:
		return fmt.Errorf("-zipf %v: must be > 0", cfg.Zipf)
	}
	if cfg.Invalidate == "" {
		cfg.Invalidate = "exact"
	}
	if cfg.Invalidate != "exact" && cfg.Invalidate != "prefix" {
		return fmt.Errorf("-invalidate %q: want exact or prefix", cfg.Invalidate)
	}
	if cfg.Compression == "" {
		cfg.Compression = "none"
	}
	if _, ok := compressions[cfg.Compression]; !ok {
		return fmt.Errorf("-compression %q: want none or s2", cfg.Compression)
	}
	if cfg.LocalCache {
		if cfg.Tiers != nil {
			return errors.New("-localcache is -tiers db,local: give one of the two")
		}
		cfg.Tiers = []string{"db", "local"}
	}
	if cfg.Tiers == nil {
		return nil
	}
	seen := map[string]bool{}
	for i, id := range cfg.Tiers {
		id = strings.TrimSpace(id)
		cfg.Tiers[i] = id
		if !slices.Contains(tierIDs(), id) {
			return fmt.Errorf("-tiers: unknown tier %q (want some of %s)", id, strings.Join(tierIDs(), ","))
		}
		if seen[id] {
			return fmt.Errorf("-tiers: %s named twice", id)
		}
		seen[id] = true
	}
	if len(cfg.Tiers) == 0 {
		return errors.New("-tiers: no tier")
	}
	return nil
}

// chooseTiers returns the tiers to run, in order, and the tiers skipped
// with the reason. The LocalCache tier needs CLIENT TRACKING on one
// standalone Redis: on an embedded miniredis, or on a server that rejects
// it, it is skipped when cfg.Tiers is nil and an error when cfg.Tiers
// names it.
func chooseTiers(ctx context.Context, cfg Config, srv *redisServer) (run []tier, skipped []SkippedTier, err error) {
	for _, t := range tiers {
		if cfg.Tiers != nil && !slices.Contains(cfg.Tiers, t.ID) {
			continue
		}
		if t.Near {
			if why := nearUnavailable(ctx, srv); why != "" {
				if cfg.Tiers != nil {
					return nil, nil, fmt.Errorf("-tiers %s: %s", t.ID, why)
				}
				skipped = append(skipped, SkippedTier{ID: t.ID, Name: t.Name, Costs: t.Costs, Reason: why})
				continue
			}
		}
		run = append(run, t)
	}
	return run, skipped, nil
}

// nearUnavailable says why srv cannot serve Options.LocalCache, "" when it
// can: it must be a real Redis that accepts CLIENT TRACKING (RESP3).
func nearUnavailable(ctx context.Context, srv *redisServer) string {
	if srv.Embedded {
		return "Redis is an embedded miniredis, and LocalCache needs a real redis-server (CLIENT TRACKING on one standalone address): install redis-server or pass -redis ADDR"
	}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, Protocol: 3, MaxRetries: -1, DialTimeout: 2 * time.Second, PoolSize: 1})
	defer func() { _ = rdb.Close() }()
	if err := rdb.Do(ctx, "CLIENT", "TRACKING", "ON").Err(); err != nil {
		return fmt.Sprintf("%s rejects CLIENT TRACKING, which LocalCache needs (%v)", srv.Desc, err)
	}
	return ""
}

// Run seeds the database, runs the tiers and returns what they measured.
// Progress bars and notes go to progress (nothing when cfg.Quiet). Every
// resource it creates (temp files, a PostgreSQL schema, a redis-server,
// the cache's keys on a Redis it was given) is removed before it returns;
// res.ElapsedSeconds includes that clean-up.
func Run(ctx context.Context, cfg Config, progress io.Writer) (res *Result, err error) {
	start := time.Now()
	defer func() { // deferred first, so it runs after every clean-up
		if res != nil {
			res.ElapsedSeconds = time.Since(start).Seconds()
		}
	}()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Quiet {
		progress = io.Discard
	}
	pr := newProgress(progress)

	srv, err := startRedis(ctx, cfg.Redis)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, srv.Close()) }()
	run, skipped, err := chooseTiers(ctx, cfg, srv)
	if err != nil {
		return nil, err
	}
	note := ""
	if srv.Embedded {
		note = "Redis is an embedded miniredis (redis-server is not on PATH): the cached latencies are NOT Redis's. Install redis-server or pass -redis ADDR."
		fmt.Fprintf(pr.w, "\n!!! WARNING: %s\n\n", note)
	}

	st, err := openStore(ctx, cfg.DB, cfg.Workers+2)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, st.close()) }()

	est := int64(652 * scaled(2000, cfg.Scale)) // expected rows: see store.seed
	bar := pr.bar(est, "seeding")
	t0 := time.Now()
	cnt, err := st.seed(ctx, cfg.Scale, cfg.Seed, func(n int64) { _ = bar.Set64(min(n, est)) })
	_ = bar.Finish()
	if err != nil {
		return nil, err
	}
	seedTime := time.Since(t0)
	fmt.Fprintf(pr.w, "seeded %s rows in %.1fs into %s\n", fmtInt(uint64(cnt.Total())), seedTime.Seconds(), st.desc)

	st.rtt = cfg.DBRTT // the seed above paid none: it stands for a database that exists already
	w, err := newWorkload(ctx, st, cnt, cfg.Zipf, cfg.Writes, cfg.Seed)
	if err != nil {
		return nil, err
	}
	w.prefix = cfg.Invalidate == "prefix"

	res = &Result{
		Config: RunConfig{Scale: cfg.Scale, Workers: cfg.Workers, Ops: cfg.Ops, Writes: cfg.Writes, Zipf: cfg.Zipf,
			Invalidate: cfg.Invalidate, Lease: !cfg.NoLease, Compression: cfg.Compression,
			WarmupSeconds: cfg.Warmup.Seconds(), Seed: cfg.Seed,
			GOMAXPROCS: runtime.GOMAXPROCS(0)},
		Database: DatabaseInfo{Engine: st.desc, InProcess: st.kind == "sqlite", Rows: cnt, TotalRows: cnt.Total(),
			SeedSeconds: seedTime.Seconds()},
		Redis:   RedisInfo{Server: srv.Desc, Embedded: srv.Embedded, Note: note},
		Skipped: skipped,
	}
	if cfg.Ops == 0 {
		res.Config.DurationSeconds = cfg.Duration.Seconds()
	}
	for _, t := range run {
		res.Config.Tiers = append(res.Config.Tiers, t.ID)
		tr, err := runTier(ctx, cfg, w, srv, t, pr)
		if err != nil {
			return nil, fmt.Errorf("tier %s: %w", t.ID, err)
		}
		res.Tiers = append(res.Tiers, tr)
	}
	res.Database.SimulatedRTTMs, res.Database.SimulatedRTTMeanMs = ms(cfg.DBRTT), ms(st.rttMean())
	res.compareToDatabase()
	return res, nil
}

// runTier runs one tier: an unrecorded warm-up on other request sequences
// (bringing the database's pages into memory and, through a cache, filling
// it, as a service that has been running would have them), then the
// measured phase on the same sequences as every other tier. A cache tier
// runs on a Client and a key prefix of its own, whose keys it removes
// when it ends, so no tier starts on another's cache.
func runTier(ctx context.Context, cfg Config, w *Workload, srv *redisServer, t tier, pr *progress) (tr TierResult, err error) {
	pc := phaseConfig{Workers: cfg.Workers, Duration: cfg.Duration, Ops: cfg.Ops, Seed: cfg.Seed}
	warm := phaseConfig{Workers: cfg.Workers, Duration: cfg.Warmup, Seed: cfg.Seed + 0x3a3a}
	if !t.Cache {
		if cfg.Warmup > 0 {
			runPhase(ctx, w, warm, false, "warm-up ("+t.ID+")", pr)
		}
		p := runPhase(ctx, w, pc, false, t.ID, pr)
		if err := ctx.Err(); err != nil {
			return tr, err
		}
		return tierResult(t, p, nil), nil
	}

	c, err := newTierCache(ctx, cfg, srv, t)
	if err != nil {
		return tr, err
	}
	defer func() { err = errors.Join(err, closeTierCache(c)) }()
	w.cache = c
	defer func() { w.cache = nil }()
	memBefore, _, _ := redisMemory(ctx, c.Redis())
	if cfg.Warmup > 0 {
		runPhase(ctx, w, warm, true, "warm-up ("+t.ID+")", pr)
	}
	c.ResetStats()
	for k := range w.loads {
		w.loads[k].Store(0)
	}
	stopProfile, err := startProfile(profileFile(cfg.CPUProfile, t.ID))
	if err != nil {
		return tr, err
	}
	p := runPhase(ctx, w, pc, true, t.ID, pr)
	stopProfile()
	if err := ctx.Err(); err != nil {
		return tr, err
	}

	var loads [numKinds]uint64
	for k := range loads {
		loads[k] = w.loads[k].Load()
	}
	tr = tierResult(t, p, &loads)
	s := c.Stats()
	tr.Library = &LibraryStats{Hits: s.Hits, Misses: s.Misses, HitRate: s.HitRate(), Loads: s.Loads,
		Sets: s.Sets, Deletes: s.Deletes, Errors: s.Errors}
	tr.Redis = &TierRedis{}
	if b, human, ok := redisMemory(ctx, c.Redis()); ok {
		tr.Redis.UsedMemoryBytes, tr.Redis.UsedMemoryHuman, tr.Redis.UsedMemoryAddedBytes = b, human, b-memBefore
	}
	for _, ns := range []rediscache.Namespace{rediscache.NamespaceTasks, rediscache.NamespaceConversations,
		rediscache.NamespaceScripts, rediscache.NamespaceStoryboards, rediscache.NamespaceResources} {
		n, err := c.CountPrefix(ctx, string(ns)+":")
		if err != nil {
			return tr, fmt.Errorf("count keys: %w", err)
		}
		tr.Redis.Keys += n
	}
	return tr, nil
}

// newTierCache returns the Client of cache tier t, under a key prefix of
// its own for this run and tier, so a shared Redis never mixes runs or
// tiers.
func newTierCache(ctx context.Context, cfg Config, srv *redisServer, t tier) (*rediscache.Client, error) {
	lockTTL := time.Duration(0) // the library's default lease
	if cfg.NoLease {
		lockTTL = -1
	}
	c, err := rediscache.New(&rediscache.Options{
		Addrs:         []string{srv.Addr},
		Prefix:        fmt.Sprintf("cachebench:%d-%d:%s", os.Getpid(), time.Now().UnixNano()%1e9, t.ID),
		LockTTL:       lockTTL,
		NamespaceTTLs: rediscache.DefaultNamespaceTTLs(),
		TTLJitter:     0.1,
		PoolSize:      max(50, 2*cfg.Workers),
		LocalCache:    t.Near,
		Compression:   compressions[cfg.Compression],
	})
	if err != nil {
		return nil, err
	}
	if err := c.Ping(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("redis at %s: %w", srv.Addr, err), c.Close())
	}
	return c, nil
}

// compressions are the values of -compression.
var compressions = map[string]rediscache.Compression{"none": rediscache.CompressionNone, "s2": rediscache.CompressionS2}

// closeTierCache removes the tier's keys (on a Redis we were given they
// are not ours to leave; on ours they would weigh on the next tier) and
// closes its Client.
func closeTierCache(c *rediscache.Client) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := c.ClearAll(ctx)
	return errors.Join(err, c.Close())
}

// profileFile returns the CPU profile file of tier id: file with the id
// inserted before its extension, "" for none.
func profileFile(file, id string) string {
	if file == "" {
		return ""
	}
	ext := filepath.Ext(file)
	return strings.TrimSuffix(file, ext) + "." + id + ext
}

// progress shows what is running on stderr: progress bars when it is a
// terminal, else one line per finished step.
type progress struct {
	w    io.Writer
	bars bool
}

func newProgress(w io.Writer) *progress {
	f, ok := w.(*os.File)
	return &progress{w: w, bars: ok && term.IsTerminal(int(f.Fd()))}
}

// bar returns a progress bar to max, invisible unless p draws bars.
func (p *progress) bar(max int64, desc string) *progressbar.ProgressBar {
	return progressbar.NewOptions64(max,
		progressbar.OptionSetWriter(p.w),
		progressbar.OptionSetVisibility(p.bars),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetRenderBlankState(true),
	)
}

// runPhase runs one phase with a progress bar: by time, or by operations
// with -ops.
func runPhase(ctx context.Context, w *Workload, pc phaseConfig, cached bool, name string, pr *progress) *phaseStats {
	total := pc.Ops
	if total == 0 {
		total = pc.Duration.Milliseconds()
	}
	bar := pr.bar(total, name)
	start := time.Now()
	pc.Progress = func(done int64) {
		bar.Describe(fmt.Sprintf("%-18s %9s ops", name, fmtInt(uint64(done))))
		if pc.Ops > 0 {
			_ = bar.Set64(min(done, total))
		} else {
			_ = bar.Set64(min(time.Since(start).Milliseconds(), total))
		}
	}
	p := w.run(ctx, pc, cached)
	_ = bar.Finish()
	fmt.Fprintf(pr.w, "%-18s %9s ops in %.1fs (%s ops/s)\n", name+":", fmtInt(p.ops()), p.Elapsed.Seconds(),
		fmtRate(float64(p.ops())/p.Elapsed.Seconds()))
	return p
}

// startProfile starts a CPU profile into file ("" for none); the returned
// function stops it.
func startProfile(file string) (stop func(), err error) {
	if file == "" {
		return func() {}, nil
	}
	f, err := os.Create(file)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); _ = f.Close() }, nil
}
