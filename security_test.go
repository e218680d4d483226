package rediscache_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rediscache/rediscache"
	"github.com/rediscache/rediscache/internal/redistest"
)

// The minimal ACL in docs/deployment.md lets a Client do everything under
// its prefix and nothing outside it.
func TestACLScopedToPrefix(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx := t.Context()
	acl := []any{"ACL", "SETUSER", "myapp", "on", ">app-password", "resetkeys", "~myapp:*", "resetchannels", "-@all"}
	for _, c := range strings.Fields("+get +set +unlink +exists +incrby +pexpire +pttl +mget +scan +evalsha +eval +getrange +setrange +strlen +del +incr +hget +hmget +hset +hsetnx +hincrby +hscan +rpush +ltrim +lrange +ping +info +dbsize +hello") {
		acl = append(acl, c)
	}
	require.NoError(t, admin.Do(ctx, acl...).Err())
	require.NoError(t, admin.Set(ctx, "other:secret", "x", 0).Err())

	c, err := rediscache.New(&rediscache.Options{Addrs: []string{srv.Addr()}, Username: "myapp", Password: "app-password", Prefix: "myapp", MaxRetries: -1})
	require.NoError(t, err)
	defer func() { _ = c.Close() }()
	g := rediscache.NewKeyGenerator(rediscache.V1)
	key := g.TaskKey("1")

	require.NoError(t, c.Ping(ctx))
	require.NoError(t, c.Set(ctx, key, "v", time.Minute))
	_, err = rediscache.Get[string](ctx, c, key)
	require.NoError(t, err)
	_, err = c.Exists(ctx, key)
	require.NoError(t, err)
	_, err = c.Expire(ctx, key, time.Hour)
	require.NoError(t, err)
	_, err = c.Increment(ctx, "counter", 1)
	require.NoError(t, err)
	require.NoError(t, rediscache.SetMany(ctx, c, map[string]int{"a": 1, "b": 2}, time.Minute))
	m, err := rediscache.GetMany[int](ctx, c, []string{"a", "b", "c"})
	require.NoError(t, err)
	assert.Len(t, m, 2)
	_, err = c.DeleteMany(ctx, []string{"a"})
	require.NoError(t, err)
	_, err = c.Metadata(ctx, key)
	require.NoError(t, err)
	v, err := rediscache.GetOrLoad(ctx, c, g.TaskKey("2"), time.Minute, func(context.Context) (string, error) { return "loaded", nil })
	require.NoError(t, err)
	assert.Equal(t, "loaded", v)
	_, err = c.InvalidateNamespace(ctx, rediscache.NamespaceTasks)
	require.NoError(t, err)
	_, err = c.CountPrefix(ctx, "")
	require.NoError(t, err)
	h := c.HealthCheck(ctx)
	require.NoError(t, h.Err)
	_, err = c.InvalidatePrefix(ctx, "b")
	require.NoError(t, err)
	_, err = c.ClearAll(ctx)
	require.NoError(t, err)
	assert.Zero(t, c.Stats().Errors)

	// Outside the prefix: refused by Redis, and the other key survives.
	other, err := rediscache.New(&rediscache.Options{Addrs: []string{srv.Addr()}, Username: "myapp", Password: "app-password", Prefix: "other", MaxRetries: -1})
	require.NoError(t, err)
	defer func() { _ = other.Close() }()
	_, err = rediscache.Get[string](ctx, other, "secret")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "NOPERM")
	_, err = other.Delete(ctx, "secret")
	require.Error(t, err)
	n, err := admin.Exists(ctx, "other:secret").Result()
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)
	assert.NotErrorIs(t, admin.Get(ctx, "other:secret").Err(), redis.Nil)
}

// With a wrong password every call fails with Redis's WRONGPASS: none
// reports a success (go-redis leaves a pipeline's commands without an
// error when the connection fails to initialise) and nothing is written.
func TestWrongPasswordFailsEveryCall(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx := t.Context()
	require.NoError(t, admin.ConfigSet(ctx, "requirepass", "right").Err())
	c, err := rediscache.New(&rediscache.Options{Addrs: []string{srv.Addr()}, Password: "wrong", Prefix: "pw", MaxRetries: -1})
	require.NoError(t, err)
	defer func() { _ = c.Close() }()
	calls := []struct {
		name string
		do   func() error
	}{
		{"Set", func() error { return rediscache.Set(ctx, c, "k", 1, time.Minute) }},
		{"SetMany", func() error { return rediscache.SetMany(ctx, c, map[string]int{"a": 1, "b": 2}, time.Minute) }},
		{"MSet", func() error { return c.MSet(ctx, map[string][]byte{"a": []byte("1")}, time.Minute) }},
		{"Delete", func() error { _, err := c.Delete(ctx, "k"); return err }},
		{"DeleteMany", func() error { _, err := c.DeleteMany(ctx, []string{"a", "b"}); return err }},
		{"Increment", func() error { _, err := c.Increment(ctx, "n", 1); return err }},
		{"Get", func() error { _, err := rediscache.Get[int](ctx, c, "k"); return err }},
		{"GetMany", func() error { _, err := rediscache.GetMany[int](ctx, c, []string{"a", "b"}); return err }},
		{"MGet", func() error { _, err := c.MGet(ctx, []string{"a", "b"}); return err }},
		{"InvalidatePrefix", func() error { _, err := c.InvalidatePrefix(ctx, "a"); return err }},
	}
	for _, call := range calls {
		err := call.do()
		if assert.Error(t, err, call.name) {
			assert.ErrorContains(t, err, "WRONGPASS", call.name)
			assert.NotErrorIs(t, err, rediscache.ErrCacheMiss, call.name)
		}
	}
	require.NoError(t, admin.Do(ctx, "AUTH", "right").Err())
	n, err := admin.DBSize(ctx).Result()
	require.NoError(t, err)
	assert.Zero(t, n, "nothing written")
}
