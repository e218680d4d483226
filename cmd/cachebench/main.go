// Command cachebench shows what rediscache does for a real service.
//
// It creates and seeds the database of a task service (users, tasks,
// conversations and messages, scripts, storyboards, resources, with the
// usual indexes), then runs the service's five reads with Zipf-distributed
// users and tasks, plus a fraction of writes, twice: against the database
// alone, and through rediscache.GetOrLoad with the writes invalidating the
// keys they made stale. It prints one table comparing the two.
//
//	cd cmd/cachebench                       # its own module: the drivers stay out of rediscache's
//	go run .                                # SQLite in a temp dir, redis-server on a free port
//	go run . -db postgres://user:pw@host/db # tables in a throwaway schema, dropped at exit
//	go run . -redis 127.0.0.1:6380 -c 16 -duration 30s -json
//	go run . -chart latency.png
//	go run . -db-rtt 1ms                    # SQLite plus a simulated 1ms network round trip per statement
//
// The table gives, per read, p50 and p99 latency without and with the
// cache, the speed-up, the throughput of each phase, the hit rate and the
// database queries the cache saved, then the Redis memory used. Both phases
// replay the same request sequences after an unrecorded warm-up (-warmup).
// The reads are the page queries a service runs: each page of rows with
// the joins and per-row aggregates the page shows (see readSQL). With
// SQLite the database is in-process, so a query pays no network round trip
// while every cache access does: the cache is faster where a query costs
// more than a Redis round trip, and a database across a network adds its
// round trip to every query. -db postgres://... measures a real one;
// -db-rtt DURATION simulates one by waiting that long before each database
// statement (the header says so, with the mean wait measured). By default
// it is 0: in-process SQLite as it is.
//
// With no -redis it starts redis-server on a free loopback port (and
// stops it at exit) when the binary is on PATH, else it falls back to an
// embedded miniredis, whose latencies are not Redis's.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

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
	Duration   time.Duration // per phase, when Ops is 0
	Warmup     time.Duration // unrecorded run before each phase
	Ops        int64         // operations per phase; overrides Duration
	Writes     float64       // fraction of operations that are writes
	Zipf       float64       // Zipf exponent of user and task popularity
	Invalidate string        // "exact" (Delete of the stale keys) or "prefix" (InvalidatePrefix of task pages)
	NoLease    bool          // Options.LockTTL -1: no cross-process lease on a miss
	LocalCache bool          // Options.LocalCache: repeated hits answered in process
	Seed       uint64        // of the data and the request sequences
	JSON       bool          // print the Result as JSON instead of the table
	Chart      string        // PNG file for the latency chart
	Quiet      bool          // no progress bars or notes on stderr
	CPUProfile string        // write a CPU profile of the cached phase to this file
}

func main() {
	var cfg Config
	flag.StringVar(&cfg.DB, "db", "", "database: empty for SQLite in a temp dir, or a postgres://... URL (tables go in a schema dropped at exit)")
	flag.DurationVar(&cfg.DBRTT, "db-rtt", 0, "SIMULATED network round trip to the database, e.g. 500us or 1ms: a wait (a timer, no CPU) before every database statement of the workload, to show a database across a network; 0 is none (in-process SQLite as it is). Sub-millisecond timers overshoot, so the header reports the mean wait measured")
	flag.Float64Var(&cfg.Scale, "scale", 1, "data size multiplier (1: 2,000 users, 40,000 tasks, ~1.3M rows)")
	flag.StringVar(&cfg.Redis, "redis", "", "Redis address; empty starts redis-server on a free port, or miniredis if it is not installed")
	flag.IntVar(&cfg.Workers, "c", 8, "concurrent workers")
	flag.DurationVar(&cfg.Duration, "duration", 10*time.Second, "length of each phase")
	flag.DurationVar(&cfg.Warmup, "warmup", 2*time.Second, "unrecorded warm-up before each phase (database pages, then the cache)")
	flag.Int64Var(&cfg.Ops, "ops", 0, "operations per phase (overrides -duration)")
	flag.Float64Var(&cfg.Writes, "writes", 0.05, "fraction of operations that write (and invalidate)")
	flag.Float64Var(&cfg.Zipf, "zipf", 1.0, "Zipf exponent of user and task popularity")
	flag.StringVar(&cfg.Invalidate, "invalidate", "exact", "how writes invalidate task pages: exact (Delete of every page key) or prefix (InvalidatePrefix)")
	flag.BoolVar(&cfg.NoLease, "no-lease", false, "run GetOrLoad without its cross-process lease (Options.LockTTL -1): a miss re-reads the key instead of taking the lease (3 Redis round trips either way)")
	flag.BoolVar(&cfg.LocalCache, "localcache", false, "turn on the near cache (Options.LocalCache): repeated hits are answered in process, Redis invalidates them on writes; needs a real redis-server")
	flag.Uint64Var(&cfg.Seed, "seed", 1, "random seed of the data and the workload")
	flag.BoolVar(&cfg.JSON, "json", false, "print the result as JSON instead of the table")
	flag.StringVar(&cfg.Chart, "chart", "", "write a latency chart to this PNG file")
	flag.BoolVar(&cfg.Quiet, "quiet", false, "no progress bars on stderr")
	flag.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write a CPU profile of the cached phase to this file")
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
	return nil
}

// Run seeds the database, runs both phases and returns what they measured.
// Progress bars and notes go to progress (nothing when cfg.Quiet). Every
// resource it creates (temp files, a PostgreSQL schema, a redis-server,
// the cache's keys on a Redis it was given) is removed before it returns.
func Run(ctx context.Context, cfg Config, progress io.Writer) (res *Result, err error) {
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
	if srv.Embedded && cfg.LocalCache {
		return nil, errors.New("-localcache needs a real redis-server (CLIENT TRACKING): install redis-server or pass -redis ADDR")
	}
	note := ""
	if srv.Embedded {
		note = "Redis is an embedded miniredis (redis-server is not on PATH): the cached latencies are NOT Redis's. Install redis-server or pass -redis ADDR."
		fmt.Fprintf(os.Stderr, "\n!!! WARNING: %s\n\n", note)
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

	lockTTL := time.Duration(0) // the library's default lease
	if cfg.NoLease {
		lockTTL = -1
	}
	// Prefix the keys per run, so a shared Redis never mixes runs.
	c, err := rediscache.New(&rediscache.Options{
		Addrs:         []string{srv.Addr},
		Prefix:        fmt.Sprintf("cachebench:%d-%d", os.Getpid(), time.Now().UnixNano()%1e9),
		LockTTL:       lockTTL,
		NamespaceTTLs: rediscache.DefaultNamespaceTTLs(),
		TTLJitter:     0.1,
		PoolSize:      max(50, 2*cfg.Workers),
		LocalCache:    cfg.LocalCache,
	})
	if err != nil {
		return nil, err
	}
	defer func() {
		if !srv.Spawned { // a Redis we were given: take our keys back out
			cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			_, cerr := c.ClearAll(cctx)
			cancel()
			err = errors.Join(err, cerr)
		}
		err = errors.Join(err, c.Close())
	}()
	if err := c.Ping(ctx); err != nil {
		return nil, fmt.Errorf("redis at %s: %w", srv.Addr, err)
	}
	w.cache = c

	// Each phase first runs unrecorded for cfg.Warmup on other request
	// sequences: the uncached one to bring the database's pages into
	// memory, the cached one also to fill the cache, as a service that has
	// been running would have them. Then the counters start from zero.
	pc := phaseConfig{Workers: cfg.Workers, Duration: cfg.Duration, Ops: cfg.Ops, Seed: cfg.Seed}
	warm := phaseConfig{Workers: cfg.Workers, Duration: cfg.Warmup, Seed: cfg.Seed + 0x3a3a}
	if cfg.Warmup > 0 {
		runPhase(ctx, w, warm, false, "warm-up (database)", pr)
	}
	unc := runPhase(ctx, w, pc, false, "uncached", pr)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	memBefore, _, _ := redisMemory(ctx, c.Redis())
	if cfg.Warmup > 0 {
		runPhase(ctx, w, warm, true, "warm-up (cache)", pr)
	}
	c.ResetStats()
	for k := range w.loads {
		w.loads[k].Store(0)
	}
	stopProfile, err := startProfile(cfg.CPUProfile)
	if err != nil {
		return nil, err
	}
	cac := runPhase(ctx, w, pc, true, "cached", pr)
	stopProfile()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}

	var loads [numKinds]uint64
	for k := range loads {
		loads[k] = w.loads[k].Load()
	}
	res = &Result{
		Config: RunConfig{Scale: cfg.Scale, Workers: cfg.Workers, Ops: cfg.Ops, Writes: cfg.Writes, Zipf: cfg.Zipf,
			Invalidate: cfg.Invalidate, Lease: !cfg.NoLease, LocalCache: cfg.LocalCache, WarmupSeconds: cfg.Warmup.Seconds(), Seed: cfg.Seed,
			GOMAXPROCS: runtime.GOMAXPROCS(0)},
		Database: DatabaseInfo{Engine: st.desc, InProcess: st.kind == "sqlite", Rows: cnt, TotalRows: cnt.Total(),
			SeedSeconds: seedTime.Seconds(), SimulatedRTTMs: ms(cfg.DBRTT), SimulatedRTTMeanMs: ms(st.rttMean())},
		Redis:    RedisInfo{Server: srv.Desc, Embedded: srv.Embedded, Note: note},
		Uncached: phaseInfo(unc),
		Cached:   phaseInfo(cac),
	}
	if cfg.Ops == 0 {
		res.Config.DurationSeconds = cfg.Duration.Seconds()
	}
	res.Queries, res.AllReads = compare(unc, cac, &loads)
	if b, human, ok := redisMemory(ctx, c.Redis()); ok {
		res.Redis.UsedMemoryBytes, res.Redis.UsedMemoryHuman, res.Redis.UsedMemoryAddedBytes = b, human, b-memBefore
	}
	for _, ns := range []rediscache.Namespace{rediscache.NamespaceTasks, rediscache.NamespaceConversations,
		rediscache.NamespaceScripts, rediscache.NamespaceStoryboards, rediscache.NamespaceResources} {
		n, err := c.CountPrefix(ctx, string(ns)+":")
		if err != nil {
			return nil, fmt.Errorf("count keys: %w", err)
		}
		res.Redis.Keys += n
	}
	s := c.Stats()
	res.Library = LibraryStats{Hits: s.Hits, Misses: s.Misses, HitRate: s.HitRate(), Loads: s.Loads,
		Sets: s.Sets, Deletes: s.Deletes, Errors: s.Errors}
	return res, nil
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
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
