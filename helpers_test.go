package rediscache_test

import (
	"strconv"
	"strings"

	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/rediscache/rediscache"
	"github.com/rediscache/rediscache/internal/redistest"
)

// env is one Redis server under test with a way to build Clients on it and
// an unprefixed go-redis client for assertions.
type env struct {
	addr string
	raw  *redis.Client
	real bool
	mini *miniredis.Miniredis // nil on a real server
}

// client returns a Client on the env's server built from opt (Addrs is
// filled in), closed on cleanup.
func (e env) client(t testing.TB, opt rediscache.Options) *rediscache.Client {
	t.Helper()
	if opt.Redis == nil && len(opt.Addrs) == 0 {
		opt.Addrs = []string{e.addr}
	}
	c, err := rediscache.New(&opt)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func newMiniEnv(t testing.TB) env {
	srv := miniredis.RunT(t)
	raw := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = raw.Close() })
	return env{addr: srv.Addr(), raw: raw, mini: srv}
}

func newRealEnv(t testing.TB) env {
	srv := redistest.Start(t)
	return env{addr: srv.Addr(), raw: srv.Client(t), real: true}
}

// eachBackend runs fn on miniredis and on a real redis-server.
func eachBackend(t *testing.T, fn func(t *testing.T, e env)) {
	t.Run("miniredis", func(t *testing.T) {
		t.Parallel()
		fn(t, newMiniEnv(t))
	})
	t.Run("redis-server", func(t *testing.T) {
		t.Parallel()
		fn(t, newRealEnv(t))
	})
}

// dbsize returns the number of keys on e's server, bookkeeping keys (a
// NUL byte in the key: namespace generations) not counted.
func dbsize(t testing.TB, e env) int64 {
	t.Helper()
	keys, err := e.raw.Keys(t.Context(), "*").Result()
	require.NoError(t, err)
	n := int64(0)
	for _, k := range keys {
		if !strings.Contains(k, "\x00") {
			n++
		}
	}
	return n
}

func mustFloat(t testing.TB, s string) float64 {
	t.Helper()
	f, err := strconv.ParseFloat(s, 64)
	require.NoError(t, err)
	return f
}

type (
	redisDialHook     = redis.DialHook
	redisPipelineHook = redis.ProcessPipelineHook
	redisProcessHook  = redis.ProcessHook
	redisCmder        = redis.Cmder
)
