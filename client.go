package rediscache

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// Client is a Redis cache. All methods are safe for concurrent use. Every
// key a Client touches is stored at Options.Prefix + ":" + key (just key
// when Prefix is empty).
type Client struct {
	opt Options
	rdb redis.UniversalClient
	one redis.UniversalClient // single-key commands: rdb, or its auto-pipeliner
	// read is one for single-key reads, but rdb with LocalCache: go-redis's
	// client-side cache hears the invalidations of reads through its own
	// pool, not through the auto-pipeliner's connections.
	read   redis.UniversalClient
	near   *nearCache // Options.LocalCache, else nil
	owned  bool       // New built rdb, so Close closes it
	pfx    string     // Prefix + ":" or ""
	closed atomic.Bool
	ctr    counters
	gens   *generations  // nil when GenerationTTL is -1
	brk    *breaker      // nil when BreakerFailures is -1, or on a cluster
	nodes  *nodeBreakers // a cluster's breakers, one per master; else nil
	bg     *background
	flight flights // shared loads and refreshes, by stored key
	// keyLoads dedupes the keys GetManyOrLoad calls are loading.
	keyLoads keyLoadSet

	unhealthy   atomic.Bool  // the latest health check failed
	lastLog     atomic.Int64 // unix ns of the last log line
	droppedLogs atomic.Uint64

	obsMu sync.Mutex // serialises AddObserver
}

// maxBackground bounds the optional background work (early and stale
// refreshes) each Client runs at once.
const maxBackground = 16

// New returns a Client configured by opt, which is copied. It returns an
// error wrapping [ErrInvalidOptions] when opt is nil or inconsistent. New
// does not contact Redis; use [Client.Ping] to check the connection.
func New(opt *Options) (*Client, error) {
	if opt == nil {
		return nil, fmt.Errorf("%w: nil Options", ErrInvalidOptions)
	}
	o := *opt
	if err := o.init(); err != nil {
		return nil, err
	}
	c := &Client{opt: o, rdb: o.Redis, bg: newBackground(maxBackground)}
	c.ctr.off = o.DisableStats
	if c.rdb == nil {
		if o.LocalCache {
			c.near = newNearCache(o.LocalCacheEntries, o.LocalCacheTTL, o.DB, o.Username)
		}
		c.rdb = o.newRedis(c.near)
		c.owned = true
	} else {
		c.opt.MaxRetries = ownRetries(o.MaxRetries, o.Redis)
	}
	c.one = c.rdb
	if o.AutoPipeline {
		ap, err := c.rdb.AutoPipeline()
		if err != nil {
			if c.owned {
				_ = c.rdb.Close()
			}
			return nil, fmt.Errorf("%w: AutoPipeline: %w", ErrInvalidOptions, err)
		}
		c.one = ap
	}
	c.read = c.one
	if c.near != nil {
		c.read = c.rdb
	}
	if o.Prefix != "" {
		c.pfx = o.Prefix + ":"
	}
	if o.GenerationTTL > 0 {
		c.gens = newGenerations(c, o.GenerationTTL)
	}
	// One breaker per Client cannot tell one dead cluster node from a dead
	// cluster, and would cut off the healthy nodes too: a cluster has one
	// breaker per master.
	if o.BreakerFailures > 0 {
		if cc, ok := c.rdb.(*redis.ClusterClient); ok {
			c.nodes = &nodeBreakers{c: c, cc: cc}
		} else {
			c.brk = newBreaker(c, "")
		}
	}
	if o.HealthCheckInterval > 0 {
		c.bg.goRun(c.monitorHealth)
	}
	if c.near != nil {
		c.bg.goRun(func() { c.near.tick(c.bg.ctx) })
	}
	return c, nil
}

// Close releases the Client: it cancels the Client's loads and background
// work and waits for them to stop, at most one second (a loader that
// ignores its context is then left running: its goroutine ends when it
// returns, and its result is dropped). It closes the go-redis client only
// when New built it, returning that Close's error. A second Close returns
// nil. Afterwards every call that uses Redis returns [ErrClosed]
// (HealthCheck reports it in Health.Err); Stats, ResetStats, Healthy,
// StorageKey, TTLFor and Redis go on working.
func (c *Client) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	c.bg.close()
	if c.gens != nil {
		c.gens.stop()
	}
	if c.owned {
		return c.rdb.Close()
	}
	return nil
}

// Redis returns the underlying go-redis client, for commands the cache does
// not wrap. Keys written through it are not prefixed.
func (c *Client) Redis() redis.UniversalClient { return c.rdb }

// StorageKey returns the key as stored in Redis: Prefix + ":" + key.
func (c *Client) StorageKey(key string) string { return c.pfx + key }

var (
	errEmptyKey   = fmt.Errorf("%w: empty key", ErrInvalidKey)
	errKeyTooLong = fmt.Errorf("%w: longer than MaxKeySize", ErrInvalidKey)
	errKeyNUL     = fmt.Errorf("%w: holds a NUL byte", ErrInvalidKey)
	errNilValue   = fmt.Errorf("%w: nil", ErrInvalidValue)
	errBadDst     = fmt.Errorf("%w: destination must be a non-nil pointer", ErrInvalidValue)
	// errNegative marks a cached ErrNotFound: a miss for plain Get.
	errNegative = errors.New("rediscache: negative entry")
	// errLeaseOnly marks a key holding only a load's lease: a miss.
	errLeaseOnly = errors.New("rediscache: lease only")
)

// ready checks the context and Close.
func (c *Client) ready(ctx context.Context) error {
	if ctx == nil {
		return ErrNilContext
	}
	if c.closed.Load() {
		return ErrClosed
	}
	return nil
}

// admit asks the breaker guarding stored key k (the Client's for "", or
// for a call about no one key) whether a call may go to Redis now. A
// refused call is counted as an error and gets ErrCircuitOpen. A call asks
// once, after validating its input, and then either reports an outcome to
// that breaker (every round trip on k does, through observeOp) or releases
// its turn: during a half-open probe, a second ask is refused.
func (c *Client) admit(ctx context.Context, k string) (turn, error) {
	t, ok := c.breakerFor(ctx, k).allow()
	if !ok {
		c.ctr.fail("")
		return turn{}, ErrCircuitOpen
	}
	return t, nil
}

// check checks the context, Close and the key, and returns the stored key,
// without asking the breaker.
func (c *Client) check(ctx context.Context, key string) (string, error) {
	if err := c.ready(ctx); err != nil {
		return "", err
	}
	return c.storageKey(key)
}

// prepare is check, then admit for the stored key: on a cluster the breaker
// asked is that of the key's node.
func (c *Client) prepare(ctx context.Context, key string) (string, turn, error) {
	k, err := c.check(ctx, key)
	if err != nil {
		return "", turn{}, err
	}
	t, err := c.admit(ctx, k)
	if err != nil {
		return "", turn{}, err
	}
	return k, t, nil
}

func (c *Client) storageKey(key string) (string, error) {
	if key == "" {
		return "", errEmptyKey
	}
	if c.opt.MaxKeySize > 0 && len(c.pfx)+len(key) > c.opt.MaxKeySize {
		return "", errKeyTooLong
	}
	if strings.IndexByte(key, 0) >= 0 {
		return "", errKeyNUL
	}
	if c.pfx == "" {
		return key, nil
	}
	return c.pfx + key, nil
}
