package rediscache_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rediscache/rediscache"
)

func TestAutoPipeline(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	c := e.client(t, rediscache.Options{Prefix: "ap", AutoPipeline: true})
	ctx := t.Context()
	var wg sync.WaitGroup
	for g := range 64 {
		wg.Go(func() {
			for i := range 50 {
				key := fmt.Sprintf("k%d-%d", g, i)
				if err := rediscache.Set(ctx, c, key, key, time.Minute); err != nil {
					t.Error(err)
					return
				}
				v, err := rediscache.Get[string](ctx, c, key)
				if err != nil || v != key {
					t.Errorf("%s: got %q, %v", key, v, err)
					return
				}
			}
		})
	}
	wg.Wait()
	assert.Equal(t, uint64(64*50), c.Stats().Hits)
	n, err := c.CountPrefix(ctx, "")
	require.NoError(t, err)
	assert.Equal(t, int64(64*50), n)
	v, err := rediscache.GetOrLoad(ctx, c, "loaded", 0, func(context.Context) (int, error) { return 7, nil })
	require.NoError(t, err)
	assert.Equal(t, 7, v)
}

func getCalls(t *testing.T, e env) int64 {
	t.Helper()
	info, err := e.raw.Info(t.Context(), "commandstats").Result()
	require.NoError(t, err)
	for _, line := range strings.Split(info, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_get:calls="); ok {
			n, err := strconv.ParseInt(rest[:strings.IndexByte(rest, ',')], 10, 64)
			require.NoError(t, err)
			return n
		}
	}
	return 0
}

func TestLocalCache(t *testing.T) {
	t.Parallel()
	e := newRealEnv(t)
	ctx := t.Context()
	near := e.client(t, rediscache.Options{Prefix: "lc", LocalCache: true})
	writer := e.client(t, rediscache.Options{Prefix: "lc"})
	require.NoError(t, rediscache.Set(ctx, writer, "k", "v1", time.Minute))

	v, err := rediscache.Get[string](ctx, near, "k")
	require.NoError(t, err)
	require.Equal(t, "v1", v)
	before := getCalls(t, e)
	for range 100 {
		v, err := rediscache.Get[string](ctx, near, "k")
		require.NoError(t, err)
		require.Equal(t, "v1", v)
	}
	assert.LessOrEqual(t, getCalls(t, e)-before, int64(2), "repeated hits are served locally")

	// The Client's own write is read back at once.
	require.NoError(t, rediscache.Set(ctx, near, "k", "own", time.Minute))
	v, err = rediscache.Get[string](ctx, near, "k")
	require.NoError(t, err)
	require.Equal(t, "own", v)

	// Another client's write invalidates the local copy.
	require.NoError(t, rediscache.Set(ctx, writer, "k", "v2", time.Minute))
	require.Eventually(t, func() bool {
		v, err := rediscache.Get[string](ctx, near, "k")
		return err == nil && v == "v2"
	}, 2*time.Second, 5*time.Millisecond)

	for _, bad := range []rediscache.Options{
		{Addrs: []string{e.addr, e.addr}, LocalCache: true},
		{Addrs: []string{e.addr}, DB: 1, LocalCache: true},
		{Redis: e.raw, LocalCache: true},
		{Addrs: []string{e.addr}, MasterName: "m", LocalCache: true},
	} {
		_, err := rediscache.New(&bad)
		require.ErrorIs(t, err, rediscache.ErrInvalidOptions)
	}
}
