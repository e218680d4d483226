package rediscache

import (
	"crypto/tls"
	"fmt"
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
)

// Options configures a [Client]. The zero value of every field means its
// documented default; for the numeric limits, -1 switches the feature off,
// following go-redis's convention. [New] copies Options and never writes to
// the caller's struct.
type Options struct {
	// Redis is a go-redis client the caller already has (*redis.Client,
	// *redis.ClusterClient, *redis.Ring, a failover client). It keeps its own
	// hooks, TLS, ACL user, pool and retry settings, and Close does not close
	// it. When nil, New builds a client from Addrs and the fields below.
	//
	// NOTE: a caller's client retries by itself (go-redis defaults to 3
	// retries). Its retries run inside each of our attempts, so the worst case
	// is (MaxRetries+1) x (its MaxRetries+1) attempts: set one of the two to
	// -1. Set its ContextTimeoutEnabled so socket reads honour the context.
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
	// PoolSize is the connection pool size per node. Default 50.
	PoolSize int
	// DialTimeout, ReadTimeout and WriteTimeout are passed to go-redis; zero
	// keeps go-redis's defaults (5s, 3s, 3s). The context deadline of each call
	// is honoured as well.
	DialTimeout  time.Duration
	ReadTimeout  time.Duration
	WriteTimeout time.Duration

	// Prefix is the namespace of this Client: every key it touches is stored
	// at Prefix + ":" + key. Empty means no prefix.
	Prefix string

	// DefaultTTL is used when a call passes ttl 0 and the key's namespace has
	// no entry in NamespaceTTLs. Default TTLMedium (5m).
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
	// MaxRetryBackoff. Default 3; -1 disables retries. When New builds the
	// go-redis client it switches go-redis's own retries off, so attempts never
	// multiply.
	MaxRetries int
	// MinRetryBackoff is the first retry delay. Default 8ms.
	MinRetryBackoff time.Duration
	// MaxRetryBackoff caps the retry delay. Default 512ms.
	MaxRetryBackoff time.Duration

	// MaxValueSize is the largest encoded value Set accepts, in bytes.
	// Default 16 MiB; -1 means no limit.
	MaxValueSize int
	// MaxKeySize is the longest stored key (Prefix included), in bytes.
	// Default 4 KiB; -1 means no limit.
	MaxKeySize int
}

// init fills defaults and validates. It is called on New's private copy.
func (o *Options) init() error {
	if o.Redis == nil && len(o.Addrs) == 0 {
		return fmt.Errorf("%w: set Redis or Addrs", ErrInvalidOptions)
	}
	if o.DefaultTTL == 0 {
		o.DefaultTTL = TTLMedium
	}
	if o.DefaultTTL < 0 {
		return fmt.Errorf("%w: DefaultTTL %v is negative", ErrInvalidOptions, o.DefaultTTL)
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
	switch {
	case o.MaxRetries == 0:
		o.MaxRetries = DefaultMaxRetries
	case o.MaxRetries < 0:
		o.MaxRetries = 0
	}
	if o.MinRetryBackoff <= 0 {
		o.MinRetryBackoff = DefaultMinRetryBackoff
	}
	if o.MaxRetryBackoff <= 0 {
		o.MaxRetryBackoff = DefaultMaxRetryBackoff
	}
	if o.MaxRetryBackoff < o.MinRetryBackoff {
		o.MaxRetryBackoff = o.MinRetryBackoff
	}
	if o.MaxValueSize == 0 {
		o.MaxValueSize = DefaultMaxValueSize
	}
	if o.MaxKeySize == 0 {
		o.MaxKeySize = DefaultMaxKeySize
	}
	if o.PoolSize == 0 {
		o.PoolSize = DefaultPoolSize
	}
	if o.PoolSize < 0 {
		return fmt.Errorf("%w: PoolSize %d is negative", ErrInvalidOptions, o.PoolSize)
	}
	if o.DB != 0 && o.MasterName == "" && (len(o.Addrs) > 1 || o.ClusterMode) {
		return fmt.Errorf("%w: DB must be 0 on a cluster", ErrInvalidOptions)
	}
	return nil
}

// newRedis builds the go-redis client from the connection fields. Our own
// retry loop owns retries, so go-redis's are switched off (-1).
func (o *Options) newRedis() redis.UniversalClient {
	return redis.NewUniversalClient(&redis.UniversalOptions{
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
		ContextTimeoutEnabled: true,
	})
}
