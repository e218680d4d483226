package rediscache

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults applied by [New] to zero-valued [Options] fields.
const (
	DefaultPoolSize        = 50
	DefaultMaxRetries      = 3
	DefaultMinRetryBackoff = 8 * time.Millisecond
	DefaultMaxRetryBackoff = 512 * time.Millisecond
	DefaultMaxValueSize    = 16 << 20
	DefaultMaxKeySize      = 4 << 10

	DefaultLocalCacheEntries = 10_000
	DefaultLocalCacheTTL     = time.Second

	DefaultNegativeTTL      = 30 * time.Second
	DefaultLoadTimeout      = 10 * time.Second
	DefaultLockTTL          = 3 * time.Second
	DefaultEarlyRefreshBeta = 1.0
	DefaultBreakerFailures  = 5
	DefaultBreakerCooldown  = time.Second
)

// Options configures a [Client]. The zero value of every field means its
// documented default. Every limit and duration follows one rule, go-redis's:
// 0 is the default, -1 switches it off where the field says it can be off,
// and any other negative value makes [New] return [ErrInvalidOptions].
// [New] copies Options and never writes to the caller's struct.
type Options struct {
	// Redis is a go-redis client the caller already has (*redis.Client,
	// *redis.ClusterClient, *redis.Ring, a failover client). It keeps its own
	// hooks, TLS, ACL user, pool and retry settings, and Close does not close
	// it. When nil, New builds a client from Addrs and the fields below.
	//
	// A caller's client retries by itself (go-redis defaults to 3 retries),
	// inside each of our attempts, and rediscache cannot change that. It
	// retries only as often as the budget leaves, so a call makes at most
	// max(MaxRetries, the client's retries)+1 attempts in all: with both at
	// their default of 3, go-redis retries and rediscache does not. Set its ContextTimeoutEnabled so socket reads
	// honour the context.
	Redis redis.UniversalClient

	// Addrs are the server addresses used when Redis is nil. One address
	// builds a *redis.Client; several build a *redis.ClusterClient; with
	// MasterName they are Sentinel addresses and build a failover client.
	Addrs []string
	// ClusterMode builds a *redis.ClusterClient even from a single seed address.
	ClusterMode bool
	// MasterName is the Sentinel master name; set it to use Sentinel.
	MasterName string
	// Username and Password authenticate (Redis ACL). They never appear in
	// errors, Stats or logs.
	Username string
	Password string
	// SentinelPassword authenticates to the Sentinels, when they need it.
	SentinelPassword string
	// DB selects the database on a standalone or Sentinel server (0 on a cluster).
	DB int
	// TLSConfig enables TLS when non-nil.
	TLSConfig *tls.Config
	// PoolSize is the connection pool size per node. Default 50; it cannot
	// be off.
	PoolSize int
	// DialTimeout, ReadTimeout and WriteTimeout are passed to go-redis; zero
	// keeps go-redis's defaults (5s each). ReadTimeout and WriteTimeout -1
	// mean no timeout; DialTimeout cannot be off (a dial with a negative
	// timeout fails at once). The context deadline of each call is
	// honoured as well.
	DialTimeout  time.Duration
	ReadTimeout  time.Duration
	WriteTimeout time.Duration

	// AutoPipeline routes single-key commands (Get, Set, Delete of one key,
	// Exists, Increment, Expire, GetOrLoad's reads and writes) through
	// go-redis's auto-pipeliner, so many concurrent callers share pipelines
	// and connections: more throughput under high concurrency, a little more
	// latency for a lone caller. Batches already pipeline. On a *redis.Ring,
	// New returns [ErrInvalidOptions].
	AutoPipeline bool

	// LocalCache turns on go-redis's server-assisted client-side caching
	// (RESP3 CLIENT TRACKING) under the Client: a repeated read of an
	// unchanged key is answered from process memory with no round trip, and
	// Redis tells the client to drop its copy when any client writes the key.
	// Reads may lag a write by another client by the time the invalidation
	// takes to arrive (sub-millisecond on a healthy link; bounded by the
	// connection's health otherwise). It needs New to build the client from
	// one address (no cluster, no Sentinel), DB 0 and RESP3; otherwise New
	// returns [ErrInvalidOptions]. Bring your own client with
	// ClientSideCacheConfig for other set-ups. Typed reads ([Get],
	// [GetMany], [GetOrLoad]) also keep the decoded value, so a hit costs no
	// decode either; GetOrLoad still applies its freshness rules (stale,
	// XFetch, NegativeTTL) to the kept value. A kept value is shared: every
	// typed hit returns the same value, so treat what [Get], [GetMany] and
	// [GetOrLoad] return as read-only (a map, slice or pointer in it is the
	// cache's copy).
	LocalCache bool
	// LocalCacheEntries bounds the local cache. Default 10,000; it cannot be
	// off.
	LocalCacheEntries int
	// LocalCacheTTL bounds how long a value kept by LocalCache is used
	// without hearing from Redis: past it, the next read fetches the key
	// again. Redis's invalidations normally drop a kept value within a few
	// milliseconds of another client's write; this is the backstop when one
	// is late or lost. Default 1s; -1 removes the bound (kept values then
	// end only by invalidation, or with their key's TTL).
	LocalCacheTTL time.Duration

	// Prefix is the namespace of this Client: every key it touches is stored
	// at Prefix + ":" + key. Empty means no prefix.
	Prefix string

	// DefaultTTL is used when a call passes ttl 0 and the key's namespace has
	// no entry in NamespaceTTLs. Default TTLMedium (5m); it cannot be off.
	DefaultTTL time.Duration
	// NamespaceTTLs maps a namespace (the first ":"-separated segment of a
	// logical key) to its TTL, used when a call passes ttl 0. A nil map means
	// every key uses DefaultTTL; [DefaultNamespaceTTLs] is a ready-made map to
	// start from. A zero entry means DefaultTTL.
	NamespaceTTLs map[Namespace]time.Duration
	// TTLJitter spreads each TTL uniformly by ±TTLJitter (0.1 = ±10%) so keys
	// set together do not expire together. 0 disables; must be in [0, 1).
	TTLJitter float64

	// Codec encodes values. Nil means JSON ([JSONCodec]).
	Codec Codec

	// MaxRetries is how many times a transient failure (network error,
	// timeout, LOADING, TRYAGAIN, CLUSTERDOWN, MASTERDOWN, READONLY) is
	// retried, with exponential backoff and jitter between MinRetryBackoff and
	// MaxRetryBackoff. Default 3; -1 disables retries. A call makes at most
	// MaxRetries+1 attempts in all when New builds the go-redis client (it
	// switches go-redis's own retries off); on the caller's client (Redis)
	// its own retries count against the budget, and a call makes at most
	// max(MaxRetries, its retries)+1 attempts.
	MaxRetries int
	// MinRetryBackoff is the first retry delay. Default 8ms; -1 (here or in
	// MaxRetryBackoff) retries at once, without waiting.
	MinRetryBackoff time.Duration
	// MaxRetryBackoff caps the retry delay. Default 512ms; -1 as for
	// MinRetryBackoff.
	MaxRetryBackoff time.Duration

	// MaxValueSize is the largest value stored, in bytes, envelope
	// included, after compression: larger values are refused
	// ([ErrValueTooLarge]). It also bounds decompression: a compressed
	// value whose Codec bytes are over it is neither written nor read
	// (reading it is [ErrCorruptValue]), so a value whose Codec bytes are
	// over MaxValueSize is refused even if it would compress under it.
	// Default 16 MiB; -1 means no limit (decompression is then bounded at
	// 64 MiB, and larger values are stored uncompressed).
	MaxValueSize int

	// Compression compresses the values this Client stores:
	// [CompressionNone] (the default) or [CompressionS2]. Only the
	// payload, the Codec's bytes, is compressed, and only when it is at
	// least CompressMinSize long and compressing makes it smaller; the
	// envelope says so, so every Client reads both forms whatever its own
	// setting. Raw bytes written by [Client.MSet] and counters are never
	// compressed. Any other value makes New return [ErrInvalidOptions].
	Compression Compression
	// CompressMinSize is the smallest payload (Codec bytes) Compression
	// compresses. Default 1 KiB; -1 removes the threshold, so every
	// value is compressed when that makes it smaller.
	CompressMinSize int
	// GenerationTTL bounds how long a Client may go on using a namespace
	// after another Client with the same Prefix invalidated it with
	// [Client.InvalidateNamespace]: each Client caches the namespace
	// generations for this long. Default 1s; -1 switches namespace
	// generations off (no bookkeeping reads, InvalidateNamespace refused).
	GenerationTTL time.Duration

	// NegativeTTL is how long GetOrLoad caches a loader's [ErrNotFound].
	// Default 30s; -1 disables negative caching.
	NegativeTTL time.Duration
	// StaleTTL keeps a GetOrLoad entry this long past its freshness: a stale
	// entry is served at once while one background load refreshes it, and
	// goes on being served while the loader fails. Off by default (0 or -1).
	StaleTTL time.Duration
	// LoadTimeout bounds a shared load. The load runs detached from the
	// cancellation of the caller that started it (each caller still leaves on
	// its own context). Default 10s; it cannot be off.
	LoadTimeout time.Duration
	// LockTTL is the lifetime of the short Redis lease (SET NX PX) that lets
	// one process load a missing key while other processes wait for the
	// value; it is also how long they wait before loading themselves.
	// Default 3s; -1 stops processes from waiting for each other's loads
	// (each process loads the key itself, once): the lease is still
	// written, for 3s, and still guards the store.
	LockTTL time.Duration
	// EarlyRefreshBeta is the XFetch beta of probabilistic early refresh: a
	// GetOrLoad hit refreshes the entry in the background with a probability
	// that grows as expiry nears, weighted by how long the last load took.
	// Larger refreshes earlier. 0 means the default 1.0; any negative value
	// (-1 by convention) disables it.
	EarlyRefreshBeta float64

	// BreakerFailures is how many consecutive Redis outage errors (network,
	// timeouts, LOADING, CLUSTERDOWN, ...) open the circuit breaker. While
	// open, calls skip Redis for BreakerCooldown: Get/Set/... return
	// [ErrCircuitOpen] at once and GetOrLoad serves the loader's value.
	// Default 5; -1 disables the breaker. On a *redis.ClusterClient there is
	// one breaker per master, so one dead node's keys fail fast while the
	// other nodes' keys are served; a batch's keys on a refused node fail
	// with ErrCircuitOpen in its [*BatchError].
	BreakerFailures int
	// BreakerCooldown is how long the breaker stays open before it
	// half-opens and lets one call at a time probe Redis. A probe cancelled
	// by its caller decides nothing; one that has not answered within
	// max(BreakerCooldown, 1s) counts as a failure. Default 1s; it cannot
	// be off (BreakerFailures -1 switches the breaker off).
	BreakerCooldown time.Duration

	// Logger receives fail-open warnings and breaker state changes, at most
	// one line per second per Client. Nil (the default) logs nothing. Values
	// and credentials are never logged.
	Logger *slog.Logger

	// HealthCheckInterval is how often a background monitor runs
	// [Client.HealthCheck]; its result is [Client.Healthy]. Default 30s; -1
	// disables the monitor.
	HealthCheckInterval time.Duration
	// OnHealthChange, when set, is called with the check's result each time
	// the healthy state flips. It runs on the goroutine of the check that saw
	// the flip: the background monitor's, a [Client.HealthCheck] caller's or
	// a Prometheus scrape's, so two calls may run at once; keep it short and
	// safe for concurrent use.
	OnHealthChange func(Health)
	// HealthCountKeys makes every health check ([Client.HealthCheck], the
	// background monitor, a Prometheus scrape) also count the keys under
	// Prefix into Health.Keys. Off by default: Health.Keys is then -1, and a
	// check is PING, INFO and DBSIZE on each master, whose cost does not
	// depend on how many keys Redis holds. The count is a SCAN of the whole
	// database (every master of a cluster): one round trip per 1,000 keys
	// of the database, the Client's or not, so it costs as much as the
	// database is large, not as the Client's share of it (about 150ms per
	// check with 200,000 keys on a 2-core machine). Without a Prefix the
	// count is DBSize and costs nothing more. [Client.CountPrefix] counts on
	// demand.
	HealthCountKeys bool

	// DisableStats turns off the counters and latency histograms behind
	// [Client.Stats] (which then reports zeros; BreakerState is still
	// reported, and an attached [Observer] still hears every count). They
	// cost a few atomic adds per call; this exists to measure that.
	DisableStats bool

	// MaxKeySize is the longest stored key (Prefix included), in bytes.
	// Default 4 KiB; -1 means no limit.
	MaxKeySize int
}

// init fills defaults and validates. It is called on New's private copy.
func (o *Options) init() error {
	if o.Redis == nil && len(o.Addrs) == 0 {
		return fmt.Errorf("%w: set Redis or Addrs", ErrInvalidOptions)
	}
	if err := o.initLimits(); err != nil {
		return err
	}
	for ns, ttl := range o.NamespaceTTLs {
		if ttl < 0 {
			return fmt.Errorf("%w: NamespaceTTLs[%q] %v is negative", ErrInvalidOptions, ns, ttl)
		}
	}
	if o.TTLJitter < 0 || o.TTLJitter >= 1 || o.TTLJitter != o.TTLJitter {
		return fmt.Errorf("%w: TTLJitter %v is outside [0, 1)", ErrInvalidOptions, o.TTLJitter)
	}
	if o.Codec == nil {
		o.Codec = JSONCodec{}
	}
	if o.Compression > CompressionS2 {
		return fmt.Errorf("%w: Compression %d is unknown", ErrInvalidOptions, o.Compression)
	}
	if o.MaxRetries < 0 {
		o.MaxRetries = 0
	}
	if o.MinRetryBackoff < 0 || o.MaxRetryBackoff < 0 { // -1: retry at once
		o.MinRetryBackoff, o.MaxRetryBackoff = 0, 0
	}
	o.MaxRetryBackoff = max(o.MaxRetryBackoff, o.MinRetryBackoff)
	if o.StaleTTL < 0 {
		o.StaleTTL = 0
	}
	switch {
	case o.EarlyRefreshBeta == 0:
		o.EarlyRefreshBeta = DefaultEarlyRefreshBeta
	case o.EarlyRefreshBeta != o.EarlyRefreshBeta:
		return fmt.Errorf("%w: EarlyRefreshBeta is NaN", ErrInvalidOptions)
	}
	if o.LocalCache {
		switch {
		case o.Redis != nil:
			return fmt.Errorf("%w: LocalCache needs New to build the client (set ClientSideCacheConfig on yours)", ErrInvalidOptions)
		case len(o.Addrs) != 1 || o.ClusterMode || o.MasterName != "":
			return fmt.Errorf("%w: LocalCache needs one standalone address", ErrInvalidOptions)
		case o.DB != 0:
			return fmt.Errorf("%w: LocalCache needs DB 0", ErrInvalidOptions)
		}
	}
	if o.DB != 0 && o.MasterName == "" && (len(o.Addrs) > 1 || o.ClusterMode) {
		return fmt.Errorf("%w: DB must be 0 on a cluster", ErrInvalidOptions)
	}
	return nil
}

// A limit is an Options field that follows the one rule every limit and
// duration follows, as go-redis's do: 0 is the default, -1 switches it off
// where it can be off, and any other negative value is
// [ErrInvalidOptions].
type limit[T time.Duration | int] struct {
	name string
	v    *T
	def  T
	off  bool // -1 is allowed: off
}

// apply sets the default for 0 and checks a negative value.
func (l limit[T]) apply() error {
	switch {
	case *l.v == 0:
		*l.v = l.def
	case *l.v == -1 && l.off:
	case *l.v < 0 && l.off:
		return fmt.Errorf("%w: %s is %v: 0 is the default, -1 switches it off, no other negative is allowed", ErrInvalidOptions, l.name, *l.v)
	case *l.v < 0:
		return fmt.Errorf("%w: %s is %v: 0 is the default, and it cannot be negative", ErrInvalidOptions, l.name, *l.v)
	}
	return nil
}

// initLimits applies the rule of limits to every such field.
func (o *Options) initLimits() error {
	durations := []limit[time.Duration]{
		{"DialTimeout", &o.DialTimeout, 0, false}, // 0 goes to go-redis as it is
		{"ReadTimeout", &o.ReadTimeout, 0, true},  // 0 and -1 go to go-redis as they are
		{"WriteTimeout", &o.WriteTimeout, 0, true},
		{"LocalCacheTTL", &o.LocalCacheTTL, DefaultLocalCacheTTL, true},
		{"DefaultTTL", &o.DefaultTTL, TTLMedium, false},
		{"MinRetryBackoff", &o.MinRetryBackoff, DefaultMinRetryBackoff, true},
		{"MaxRetryBackoff", &o.MaxRetryBackoff, DefaultMaxRetryBackoff, true},
		{"GenerationTTL", &o.GenerationTTL, DefaultGenerationTTL, true},
		{"NegativeTTL", &o.NegativeTTL, DefaultNegativeTTL, true},
		{"StaleTTL", &o.StaleTTL, 0, true},
		{"LoadTimeout", &o.LoadTimeout, DefaultLoadTimeout, false},
		{"LockTTL", &o.LockTTL, DefaultLockTTL, true},
		{"BreakerCooldown", &o.BreakerCooldown, DefaultBreakerCooldown, false},
		{"HealthCheckInterval", &o.HealthCheckInterval, DefaultHealthCheckInterval, true},
	}
	for _, l := range durations {
		if err := l.apply(); err != nil {
			return err
		}
	}
	ints := []limit[int]{
		{"PoolSize", &o.PoolSize, DefaultPoolSize, false},
		{"LocalCacheEntries", &o.LocalCacheEntries, DefaultLocalCacheEntries, false},
		{"MaxRetries", &o.MaxRetries, DefaultMaxRetries, true},
		{"MaxValueSize", &o.MaxValueSize, DefaultMaxValueSize, true},
		{"CompressMinSize", &o.CompressMinSize, DefaultCompressMinSize, true},
		{"BreakerFailures", &o.BreakerFailures, DefaultBreakerFailures, true},
		{"MaxKeySize", &o.MaxKeySize, DefaultMaxKeySize, true},
	}
	for _, l := range ints {
		if err := l.apply(); err != nil {
			return err
		}
	}
	return nil
}

// newRedis builds the go-redis client from the connection fields. Our own
// retry loop owns retries, so go-redis's are switched off (-1), and so are
// its dial retries (1 attempt instead of 5 with 100ms pauses, which made a
// down node cost 0.4s per connection attempt inside each of our attempts).
func (o *Options) newRedis(near *nearCache) redis.UniversalClient {
	var (
		csc    redis.Cache
		cscCfg *redis.ClientSideCacheConfig
	)
	if near != nil {
		csc = near
		// How often go-redis reads the invalidations waiting on idle
		// connections, which bounds how late another client's write reaches
		// the near cache: 1ms (go-redis's default is 5ms).
		cscCfg = &redis.ClientSideCacheConfig{DrainInterval: nearDrainInterval}
	}
	return redis.NewUniversalClient(&redis.UniversalOptions{
		ClientSideCache:       csc,
		ClientSideCacheConfig: cscCfg,
		Protocol:              3,
		Addrs:                 o.Addrs,
		IsClusterMode:         o.ClusterMode,
		MasterName:            o.MasterName,
		Username:              o.Username,
		Password:              o.Password,
		SentinelPassword:      o.SentinelPassword,
		DB:                    o.DB,
		TLSConfig:             o.TLSConfig,
		PoolSize:              o.PoolSize,
		DialTimeout:           o.DialTimeout,
		ReadTimeout:           o.ReadTimeout,
		WriteTimeout:          o.WriteTimeout,
		MaxRetries:            -1,
		DialerRetries:         1,
		ContextTimeoutEnabled: true,
	})
}
