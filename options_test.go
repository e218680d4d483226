package rediscache_test

import (
	"bufio"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rediscache/rediscache"
)

// Every limit and duration of Options follows one rule: 0 is the default,
// -1 switches it off where it can be off, any other negative value is
// ErrInvalidOptions.
func TestOptionsLimitsFollowOneRule(t *testing.T) {
	t.Parallel()
	fields := []struct {
		name string
		set  func(o *rediscache.Options, v int)
		off  bool // -1 is allowed
	}{
		{"PoolSize", func(o *rediscache.Options, v int) { o.PoolSize = v }, false},
		{"DialTimeout", func(o *rediscache.Options, v int) { o.DialTimeout = time.Duration(v) }, false},
		{"ReadTimeout", func(o *rediscache.Options, v int) { o.ReadTimeout = time.Duration(v) }, true},
		{"WriteTimeout", func(o *rediscache.Options, v int) { o.WriteTimeout = time.Duration(v) }, true},
		{"LocalCacheEntries", func(o *rediscache.Options, v int) { o.LocalCacheEntries = v }, false},
		{"LocalCacheTTL", func(o *rediscache.Options, v int) { o.LocalCacheTTL = time.Duration(v) }, true},
		{"DefaultTTL", func(o *rediscache.Options, v int) { o.DefaultTTL = time.Duration(v) }, false},
		{"MaxRetries", func(o *rediscache.Options, v int) { o.MaxRetries = v }, true},
		{"MinRetryBackoff", func(o *rediscache.Options, v int) { o.MinRetryBackoff = time.Duration(v) }, true},
		{"MaxRetryBackoff", func(o *rediscache.Options, v int) { o.MaxRetryBackoff = time.Duration(v) }, true},
		{"MaxValueSize", func(o *rediscache.Options, v int) { o.MaxValueSize = v }, true},
		{"CompressMinSize", func(o *rediscache.Options, v int) { o.CompressMinSize = v }, true},
		{"GenerationTTL", func(o *rediscache.Options, v int) { o.GenerationTTL = time.Duration(v) }, true},
		{"NegativeTTL", func(o *rediscache.Options, v int) { o.NegativeTTL = time.Duration(v) }, true},
		{"StaleTTL", func(o *rediscache.Options, v int) { o.StaleTTL = time.Duration(v) }, true},
		{"LoadTimeout", func(o *rediscache.Options, v int) { o.LoadTimeout = time.Duration(v) }, false},
		{"LockTTL", func(o *rediscache.Options, v int) { o.LockTTL = time.Duration(v) }, true},
		{"BreakerFailures", func(o *rediscache.Options, v int) { o.BreakerFailures = v }, true},
		{"BreakerCooldown", func(o *rediscache.Options, v int) { o.BreakerCooldown = time.Duration(v) }, false},
		{"HealthCheckInterval", func(o *rediscache.Options, v int) { o.HealthCheckInterval = time.Duration(v) }, true},
		{"MaxKeySize", func(o *rediscache.Options, v int) { o.MaxKeySize = v }, true},
	}
	for _, f := range fields {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			for _, v := range []int{0, -1, -2, -1000} {
				o := &rediscache.Options{Addrs: []string{"127.0.0.1:1"}}
				f.set(o, v)
				c, err := rediscache.New(o)
				if v == 0 || (v == -1 && f.off) {
					require.NoError(t, err, "%s = %d", f.name, v)
					require.NoError(t, c.Close())
					continue
				}
				require.ErrorIs(t, err, rediscache.ErrInvalidOptions, "%s = %d", f.name, v)
				assert.ErrorContains(t, err, f.name)
				assert.Nil(t, c)
			}
		})
	}
}

// A call on the caller's own go-redis client makes at most MaxRetries+1
// attempts in all, although that client retries by itself.
func TestRetriesOnCallersClientDoNotMultiply(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name          string
		clientRetries int // the caller's go-redis MaxRetries (0: its default 3)
		maxRetries    int // Options.MaxRetries (0: the default 3)
		want          int // attempts of one Get
	}{
		{"both default", 0, 0, 4},
		{"client retries off", -1, 0, 4},
		{"rediscache retries off", 0, -1, 4}, // the client's own 3 retries still run
		{"more than the client", 1, 5, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr, commands := loadingServer(t) // LOADING: transient, retried by both
			rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: tc.clientRetries, MinRetryBackoff: time.Millisecond, MaxRetryBackoff: time.Millisecond, Protocol: 2, DisableIdentity: true})
			t.Cleanup(func() { _ = rdb.Close() })
			c, err := rediscache.New(&rediscache.Options{Redis: rdb, MaxRetries: tc.maxRetries, MinRetryBackoff: time.Millisecond, BreakerFailures: -1, GenerationTTL: -1, HealthCheckInterval: -1})
			require.NoError(t, err)
			defer func() { _ = c.Close() }()
			_, err = rediscache.Get[int](t.Context(), c, "k")
			require.Error(t, err)
			assert.Equal(t, int64(tc.want), commands.Load(), "attempts")
		})
	}
}

// loadingServer is a fake Redis on loopback that answers every command
// with a LOADING error and counts the commands it got.
func loadingServer(t *testing.T) (string, *atomic.Int64) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	var n atomic.Int64
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { _ = conn.Close() }()
				r := bufio.NewReader(conn)
				for {
					line, err := r.ReadString('\n') // *<args>
					if err != nil {
						return
					}
					args, _ := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "*")))
					var cmd []string
					for i := range 2 * args { // $<len> and the argument
						a, err := r.ReadString('\n')
						if err != nil {
							return
						}
						if i%2 == 1 {
							cmd = append(cmd, strings.TrimSpace(a))
						}
					}
					if cmd[0] == "hello" {
						if _, err := conn.Write([]byte("-ERR unknown command\r\n")); err != nil {
							return
						}
						continue
					}
					n.Add(1)
					if _, err := conn.Write([]byte("-LOADING Redis is loading the dataset in memory\r\n")); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), &n
}
