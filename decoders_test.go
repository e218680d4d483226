package rediscache_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rediscache/rediscache"
)

// Every read path decodes a stored value the same way: what Get of a type
// reads, GetMany, GetOrLoad and GetManyOrLoad of that type read too, and
// GetOrLoad never replaces it with the loader's value. Counters made by
// Increment and raw bytes written by MSet included.
func TestReadPathsAgreeOnStoredValues(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, e env) {
		ctx := t.Context()
		for _, local := range []bool{false, true} {
			if local && e.mini != nil {
				continue // LocalCache needs RESP3 tracking: real redis-server only
			}
			c := e.client(t, rediscache.Options{Prefix: fmt.Sprint("dec", local), LocalCache: local})
			_, err := c.Increment(ctx, "counter", 41)
			require.NoError(t, err)
			_, err = c.Increment(ctx, "counter", 1)
			require.NoError(t, err)
			require.NoError(t, c.MSet(ctx, map[string][]byte{"raw": []byte("7")}, time.Hour))

			loads := 0
			load := func(context.Context) (int64, error) { loads++; return -1, nil }
			loadMany := func(_ context.Context, ks []string) (map[string]int64, error) {
				loads++
				m := map[string]int64{}
				for _, k := range ks {
					m[k] = -1
				}
				return m, nil
			}
			for key, want := range map[string]int64{"counter": 42, "raw": 7} {
				got, err := rediscache.Get[int64](ctx, c, key)
				require.NoError(t, err, key)
				assert.Equal(t, want, got, "Get %s", key)
				m, err := rediscache.GetMany[int64](ctx, c, []string{key})
				require.NoError(t, err, key)
				assert.Equal(t, want, m[key], "GetMany %s", key)
				for range 2 { // the second read may come from the near cache
					got, err = rediscache.GetOrLoad(ctx, c, key, time.Hour, load)
					require.NoError(t, err, key)
					assert.Equal(t, want, got, "GetOrLoad %s", key)
					m, err = rediscache.GetManyOrLoad(ctx, c, []string{key}, time.Hour, loadMany)
					require.NoError(t, err, key)
					assert.Equal(t, want, m[key], "GetManyOrLoad %s", key)
				}
			}
			assert.Zero(t, loads, "no loader call: the values were there")
			n, err := c.Increment(ctx, "counter", 1)
			require.NoError(t, err, "the counter is still a counter")
			assert.Equal(t, int64(43), n)

			// A type the value does not decode into: an error, never an
			// overwrite of the caller's data.
			_, err = rediscache.GetOrLoad(ctx, c, "counter", time.Hour, func(context.Context) (string, error) { return "x", nil })
			if err == nil || !errors.Is(err, rediscache.ErrCorruptValue) {
				v, gerr := rediscache.Get[int64](ctx, c, "counter")
				assert.NoError(t, gerr, "GetOrLoad[string] (%v) replaced the counter", err)
				assert.Equal(t, int64(43), v)
			}
		}
	})
}
