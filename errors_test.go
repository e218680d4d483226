package rediscache_test

import (
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rediscache/rediscache"
)

// An error names the library once, then the call and key, then the cause.
func TestErrorMessagesSayRediscacheOnce(t *testing.T) {
	t.Parallel()
	srv := miniredis.RunT(t)
	c, err := rediscache.New(&rediscache.Options{Addrs: []string{srv.Addr()}, MaxValueSize: 4})
	require.NoError(t, err)
	defer func() { _ = c.Close() }()
	ctx := t.Context()
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"invalid ttl", c.Set(ctx, "k", 1, -time.Second), `rediscache: set "k": invalid ttl`},
		{"invalid key", c.Set(ctx, "", 1, 0), `rediscache: set: invalid key: empty key`},
		{"too large", c.Set(ctx, "k", "12345678", 0), `rediscache: set "k": value too large`},
		{"batch", rediscache.SetMany(ctx, c, map[string]int{"a": 1}, -time.Second), `rediscache: setmany: invalid ttl`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.Error(t, tc.err)
			msg := tc.err.Error()
			assert.Contains(t, msg, tc.want)
			assert.Equal(t, 1, strings.Count(msg, "rediscache:"), "%s", msg)
		})
	}
}
