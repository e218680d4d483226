package rediscache_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rediscache/rediscache"
	"github.com/rediscache/rediscache/internal/redistest"
)

// The fault tests run against real redis-server processes and break them
// on purpose: killed, restarted, their connections dropped, paused, full,
// failed over. Each one is bounded in time and stops by itself; timing
// assertions are generous sanity bounds, never measurements.

// faultVal names the key it was written at and carries a padding derived
// from that key, so a reply meant for another command or key, or a value
// cut or spliced on a broken connection, is detected.
type faultVal struct {
	Key string `json:"key"`
	Seq int64  `json:"seq"`
	Pad string `json:"pad"`
}

// faultPad is the padding every value of key carries: the key repeated to
// 16 to about 1,000 bytes, a length that differs from key to key.
func faultPad(key string) string {
	n := 1
	for _, b := range []byte(key) {
		n = (n*31 + int(b)) % 97
	}
	unit := key + "|"
	return strings.Repeat(unit, 1+(16+10*n)/len(unit))
}

func newFaultVal(key string, seq int64) faultVal {
	return faultVal{Key: key, Seq: seq, Pad: faultPad(key)}
}

// check returns an error when v is not a value written at key.
func (v faultVal) check(key string) error {
	if v.Key != key {
		return fmt.Errorf("key %q served the value of key %q", key, v.Key)
	}
	if v.Pad != faultPad(key) {
		return fmt.Errorf("key %q served a corrupted value (padding of %d bytes, want %d)", key, len(v.Pad), len(faultPad(key)))
	}
	return nil
}

// newFaultClient builds a Client closed on cleanup.
func newFaultClient(t testing.TB, opt rediscache.Options) *rediscache.Client {
	t.Helper()
	c, err := rediscache.New(&opt)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// faultConnErr reports whether err comes from a dropped, refused or timed-out
// connection: what a fault may cause, as opposed to a wrong reply.
func faultConnErr(err error) bool {
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, net.ErrClosed) ||
		errors.As(err, &ne)
}

// faultTimeoutErr reports whether err is a socket read or write timeout.
func faultTimeoutErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// faultWait waits for wg, failing the test if it takes longer than d:
// a goroutine still blocked then is a deadlock or a hang.
func faultWait(t *testing.T, wg *sync.WaitGroup, d time.Duration, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s: goroutines still running after %s", what, d)
	}
}

// faultLogTail logs the last lines of a server's log, to explain a failure.
func faultLogTail(t *testing.T, s *redistest.Server) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.Dir(), "redis.log"))
	if err != nil {
		t.Logf("%s: %v", s.Addr(), err)
		return
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	t.Logf("--- tail of the log of %s ---\n%s", s.Addr(), strings.Join(lines[max(0, len(lines)-25):], "\n"))
}

// faultOp is one operation of the Client, run against a server that may be
// down. fallback marks the operations that serve the loader's value (nil
// error) when Redis fails.
type faultOp struct {
	name     string
	fallback bool
	run      func(ctx context.Context, c *rediscache.Client) error
}

func faultOps() []faultOp {
	loadOne := func(context.Context) (faultVal, error) { return newFaultVal("gol", 7), nil }
	loadMany := func(_ context.Context, missing []string) (map[string]faultVal, error) {
		m := make(map[string]faultVal, len(missing))
		for _, k := range missing {
			m[k] = newFaultVal(k, 7)
		}
		return m, nil
	}
	return []faultOp{
		{name: "Set", run: func(ctx context.Context, c *rediscache.Client) error {
			return rediscache.Set(ctx, c, "k1", newFaultVal("k1", 2), time.Minute)
		}},
		{name: "Get", run: func(ctx context.Context, c *rediscache.Client) error {
			v, err := rediscache.Get[faultVal](ctx, c, "k1")
			if err == nil {
				err = v.check("k1")
			}
			return err
		}},
		{name: "Delete", run: func(ctx context.Context, c *rediscache.Client) error {
			_, err := c.Delete(ctx, "k2")
			return err
		}},
		{name: "Exists", run: func(ctx context.Context, c *rediscache.Client) error {
			_, err := c.Exists(ctx, "k1")
			return err
		}},
		{name: "Increment", run: func(ctx context.Context, c *rediscache.Client) error {
			_, err := c.Increment(ctx, "n", 1)
			return err
		}},
		{name: "GetMany", run: func(ctx context.Context, c *rediscache.Client) error {
			m, err := rediscache.GetMany[faultVal](ctx, c, []string{"k1", "k2", "k3"})
			for k, v := range m {
				if cerr := v.check(k); cerr != nil {
					return cerr
				}
			}
			return err
		}},
		{name: "SetMany", run: func(ctx context.Context, c *rediscache.Client) error {
			return rediscache.SetMany(ctx, c, map[string]faultVal{"k2": newFaultVal("k2", 2), "k3": newFaultVal("k3", 2)}, time.Minute)
		}},
		{name: "InvalidatePrefix", run: func(ctx context.Context, c *rediscache.Client) error {
			_, err := c.InvalidatePrefix(ctx, "gone:")
			return err
		}},
		{name: "GetOrLoad", fallback: true, run: func(ctx context.Context, c *rediscache.Client) error {
			v, err := rediscache.GetOrLoad(ctx, c, "gol", time.Minute, loadOne)
			if err != nil {
				return err
			}
			if v != newFaultVal("gol", 7) {
				return fmt.Errorf("GetOrLoad returned %+v, want the loader's value", v)
			}
			return nil
		}},
		{name: "GetManyOrLoad", fallback: true, run: func(ctx context.Context, c *rediscache.Client) error {
			m, err := rediscache.GetManyOrLoad(ctx, c, []string{"m1", "m2"}, time.Minute, loadMany)
			if err != nil {
				return err
			}
			for _, k := range []string{"m1", "m2"} {
				if m[k] != newFaultVal(k, 7) {
					return fmt.Errorf("GetManyOrLoad returned %+v for %s, want the loader's value", m[k], k)
				}
			}
			return nil
		}},
	}
}

// TestFaultServerKilledAndRestarted kills the server under a Client that
// has live pooled connections: every operation fails fast (well before its
// context deadline) instead of hanging, a failure is never reported as a
// miss, GetOrLoad serves the loader's value, and after a restart on the
// same port the same Client works again. It runs with the circuit breaker
// on (the default) and off, so the retry path itself is timed too.
func TestFaultServerKilledAndRestarted(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := t.Context()
	clients := []struct {
		name string
		c    *rediscache.Client
	}{
		{"breaker", newFaultClient(t, rediscache.Options{Addrs: []string{srv.Addr()}, Prefix: "kr"})},
		{"no-breaker", newFaultClient(t, rediscache.Options{Addrs: []string{srv.Addr()}, Prefix: "kr", BreakerFailures: -1})},
	}
	for _, cl := range clients {
		// Live pooled connections when the server dies.
		for _, op := range faultOps() {
			require.NoError(t, op.run(ctx, cl.c), "%s %s before the kill", cl.name, op.name)
		}
	}

	srv.Kill()
	const deadline = time.Second
	const limit = deadline + 500*time.Millisecond
	var slowest time.Duration
	for round := range 3 {
		for _, cl := range clients {
			for _, op := range faultOps() {
				cctx, cancel := context.WithTimeout(ctx, deadline)
				start := time.Now()
				err := op.run(cctx, cl.c)
				took := time.Since(start)
				cancel()
				slowest = max(slowest, took)
				what := fmt.Sprintf("round %d, %s, %s with the server down", round, cl.name, op.name)
				assert.Less(t, took, limit, "%s: took %s, want < %s", what, took, limit)
				if op.fallback {
					assert.NoError(t, err, "%s: want the loader's value", what)
					continue
				}
				if assert.Error(t, err, what) {
					assert.NotErrorIs(t, err, rediscache.ErrCacheMiss, "%s: a dead server is not a miss", what)
					assert.NotErrorIs(t, err, context.DeadlineExceeded, "%s: failed only at the deadline: %v", what, err)
				}
			}
		}
	}
	t.Logf("slowest call with the server down: %s (deadline %s)", slowest.Round(time.Millisecond), deadline)
	for _, cl := range clients {
		s := cl.c.Stats()
		t.Logf("%s: errors %d, fallbacks %d, breaker opens %d, breaker %s", cl.name, s.Errors, s.Fallbacks, s.BreakerOpens, s.BreakerState)
	}

	restarted := time.Now()
	srv.Restart(t)
	for _, cl := range clients {
		require.EventuallyWithT(t, func(ct *assert.CollectT) {
			cctx, cancel := context.WithTimeout(ctx, deadline)
			defer cancel()
			want := newFaultVal("k1", 3)
			if !assert.NoError(ct, rediscache.Set(cctx, cl.c, "k1", want, time.Minute)) {
				return
			}
			got, err := rediscache.Get[faultVal](cctx, cl.c, "k1")
			assert.NoError(ct, err)
			assert.Equal(ct, want, got)
		}, 10*time.Second, 50*time.Millisecond, "%s: the same Client works after the restart", cl.name)
		for _, op := range faultOps() {
			require.NoError(t, op.run(ctx, cl.c), "%s %s after the restart", cl.name, op.name)
		}
	}
	t.Logf("both Clients working %s after the restart", time.Since(restarted).Round(time.Millisecond))
}

// TestFaultClientKillUnderLoad drops every client connection of the server
// (CLIENT KILL TYPE normal) every 50ms for 3s while 32 goroutines Set, Get
// and GetMany values that name their key: no caller ever sees another
// key's value or a corrupted one, the only errors are connection errors,
// and the retries absorb nearly all of them.
func TestFaultClientKillUnderLoad(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx := t.Context()
	// The circuit breaker is off: this test is about the retries and the
	// replies. Twenty kills a second are a storm no real server sees, and
	// the few calls that fail every retry in it come in bursts, which open
	// the breaker by design (5 consecutive failures): see
	// TestFaultBatchRetryKeepsBreakerClosed for what must not open it.
	c := newFaultClient(t, rediscache.Options{Addrs: []string{srv.Addr()}, Prefix: "ck", BreakerFailures: -1})

	const (
		workers = 32
		keys    = 256
	)
	var (
		ops, failed atomic.Int64
		mu          sync.Mutex
		wrong       []error // values that do not belong to their key
		other       []error // errors that are not connection errors
		samples     []error
		stop        = make(chan struct{})
		wg          sync.WaitGroup
	)
	record := func(err error) {
		failed.Add(1)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case errors.Is(err, rediscache.ErrCorruptValue):
			wrong = append(wrong, err)
		case !faultConnErr(err):
			other = append(other, err)
		case len(samples) < 5:
			samples = append(samples, err)
		}
	}
	badValue := func(err error) {
		mu.Lock()
		wrong = append(wrong, err)
		mu.Unlock()
	}
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 2))
			for seq := int64(0); ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				key := fmt.Sprintf("k%d", r.IntN(keys))
				ops.Add(1)
				switch r.IntN(5) {
				case 0, 1:
					if err := rediscache.Set(cctx, c, key, newFaultVal(key, seq), time.Minute); err != nil {
						record(err)
					}
				case 2, 3:
					v, err := rediscache.Get[faultVal](cctx, c, key)
					switch {
					case err == nil:
						if err := v.check(key); err != nil {
							badValue(err)
						}
					case !errors.Is(err, rediscache.ErrCacheMiss):
						record(err)
					}
				case 4:
					ks := make([]string, 8)
					for i := range ks {
						ks[i] = fmt.Sprintf("k%d", r.IntN(keys))
					}
					m, err := rediscache.GetMany[faultVal](cctx, c, ks)
					if err != nil {
						record(err)
					}
					for k, v := range m {
						if err := v.check(k); err != nil {
							badValue(err)
						}
					}
				}
				cancel()
			}
		})
	}

	var kills, killed int64
	ticker := time.NewTicker(50 * time.Millisecond)
	end := time.After(3 * time.Second)
loop:
	for {
		select {
		case <-end:
			break loop
		case <-ticker.C:
			n, err := admin.Do(ctx, "client", "kill", "type", "normal", "skipme", "yes").Int64()
			require.NoError(t, err, "CLIENT KILL")
			kills++
			killed += n
		}
	}
	ticker.Stop()
	close(stop)
	faultWait(t, &wg, 20*time.Second, "workers")

	n, f := ops.Load(), failed.Load()
	t.Logf("%d ops, %d errors after retries (%.2f%%); %d CLIENT KILLs dropped %d connections",
		n, f, 100*float64(f)/float64(max(n, 1)), kills, killed)
	for _, err := range samples {
		t.Logf("sample error: %v", err)
	}
	assert.Positive(t, killed, "CLIENT KILL dropped no connection: the test injected nothing")
	assert.Empty(t, wrong, "values served for the wrong key or corrupted")
	assert.Empty(t, other, "errors other than connection errors")
	assert.Less(t, float64(f), 0.05*float64(n), "errors: got %d of %d ops, want < 5%%", f, n)

	// The pool is healthy afterwards.
	for i := range 50 {
		key := fmt.Sprintf("after%d", i)
		require.NoError(t, rediscache.Set(ctx, c, key, newFaultVal(key, 1), time.Minute))
		v, err := rediscache.Get[faultVal](ctx, c, key)
		require.NoError(t, err)
		require.NoError(t, v.check(key))
	}
}

// failFirstMGet fails the next `left` MGET round trips with io.EOF, as a
// connection dropped under them would, and lets every other command
// through.
type failFirstMGet struct{ left atomic.Int64 }

func (h *failFirstMGet) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *failFirstMGet) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (h *failFirstMGet) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "mget" && h.left.Add(-1) >= 0 {
			cmd.SetErr(io.EOF)
			return io.EOF
		}
		return next(ctx, cmd)
	}
}

// TestFaultBatchRetryKeepsBreakerClosed is the regression test for a batch
// whose round trips fail once and succeed on the retry, as under a single
// CLIENT KILL: the call succeeds, so the circuit breaker must stay closed.
// Each failed chunk used to be reported to the breaker before its retry,
// so one GetMany of 5 chunks opened it and the next second of calls all
// failed with ErrCircuitOpen on a healthy server.
func TestFaultBatchRetryKeepsBreakerClosed(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	hook := &failFirstMGet{}
	rdb.AddHook(hook)
	// No generations: their refresh (an HMGET every GenerationTTL/2) is a
	// success the hook lets through, which rightly resets the breaker's
	// count of consecutive failures, so a slow run (-race) would never
	// reach five in a row.
	c := newFaultClient(t, rediscache.Options{Redis: rdb, Prefix: "bb", GenerationTTL: -1})
	ctx := t.Context()

	const n = 2500 // 5 chunks of 500 keys
	items := make(map[string]faultVal, n)
	keys := make([]string, 0, n)
	for i := range n {
		key := fmt.Sprintf("k%d", i)
		items[key] = newFaultVal(key, 1)
		keys = append(keys, key)
	}
	require.NoError(t, rediscache.SetMany(ctx, c, items, time.Minute))

	for round := range 3 {
		hook.left.Store(5) // every chunk's first round trip fails
		m, err := rediscache.GetMany[faultVal](ctx, c, keys)
		require.NoError(t, err, "round %d: the retry reads every key", round)
		require.Equal(t, items, m)
		s := c.Stats()
		require.Zero(t, s.BreakerOpens, "round %d: a batch that succeeded on its retry opened the breaker", round)
		require.Equal(t, "closed", s.BreakerState)
		_, err = rediscache.Get[faultVal](ctx, c, keys[round])
		require.NoError(t, err, "round %d: a call after the batch", round)
	}

	// A batch that fails for good still counts: 5 such calls open it.
	hook.left.Store(1 << 30)
	for range 5 {
		_, err := rediscache.GetMany[faultVal](ctx, c, keys[:10])
		require.ErrorIs(t, err, io.EOF)
	}
	_, err := rediscache.GetMany[faultVal](ctx, c, keys[:10])
	require.ErrorIs(t, err, rediscache.ErrCircuitOpen)
	require.EqualValues(t, 1, c.Stats().BreakerOpens)
}

// TestFaultClientPause stalls the server (CLIENT PAUSE 3000 ALL) under
// Clients whose ReadTimeout is 300ms: every call returns a timeout error
// long before the pause ends (GetOrLoad serves the loader's value), no
// goroutine hangs, and once the pause is over the same Clients work again
// and read back values that belong to their keys (no stale reply left on a
// pooled connection).
func TestFaultClientPause(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx := t.Context()
	clients := []struct {
		name string
		c    *rediscache.Client
	}{
		{"no-retries", newFaultClient(t, rediscache.Options{
			Addrs: []string{srv.Addr()}, Prefix: "cp", ReadTimeout: 300 * time.Millisecond,
			MaxRetries: -1, BreakerFailures: -1,
		})},
		{"one-retry", newFaultClient(t, rediscache.Options{
			Addrs: []string{srv.Addr()}, Prefix: "cp", ReadTimeout: 300 * time.Millisecond,
			MaxRetries: 1, BreakerFailures: -1,
		})},
	}
	const keys = 16
	for _, cl := range clients {
		for i := range keys {
			key := fmt.Sprintf("k%d", i)
			require.NoError(t, rediscache.Set(ctx, cl.c, key, newFaultVal(key, 1), time.Minute))
		}
	}

	const pause = 3 * time.Second
	const limit = 2 * time.Second
	paused := time.Now()
	require.NoError(t, admin.Do(ctx, "client", "pause", pause.Milliseconds(), "all").Err())
	t.Cleanup(func() { _ = admin.Do(context.Background(), "client", "unpause").Err() })

	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		slowest time.Duration
		calls   int
	)
	for _, cl := range clients {
		for i := range keys {
			key := fmt.Sprintf("k%d", i)
			wg.Go(func() {
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				start := time.Now()
				var err error
				op := [...]string{"Get", "Set", "GetOrLoad"}[i%3]
				switch op {
				case "Get":
					_, err = rediscache.Get[faultVal](cctx, cl.c, key)
				case "Set":
					err = rediscache.Set(cctx, cl.c, key, newFaultVal(key, 2), time.Minute)
				case "GetOrLoad":
					var v faultVal
					v, err = rediscache.GetOrLoad(cctx, cl.c, "load"+key, time.Minute, func(context.Context) (faultVal, error) {
						return newFaultVal("load"+key, 9), nil
					})
					if err == nil && v != newFaultVal("load"+key, 9) {
						err = fmt.Errorf("GetOrLoad returned %+v, want the loader's value", v)
					}
				}
				took := time.Since(start)
				mu.Lock()
				slowest = max(slowest, took)
				calls++
				mu.Unlock()
				what := fmt.Sprintf("%s %s %s during the pause", cl.name, op, key)
				assert.Less(t, took, limit, "%s: took %s, want < %s", what, took, limit)
				if op == "GetOrLoad" {
					assert.NoError(t, err, "%s: want the loader's value", what)
					return
				}
				if assert.Error(t, err, what) {
					assert.True(t, faultTimeoutErr(err), "%s: want a timeout error, got %v", what, err)
				}
			})
		}
	}
	faultWait(t, &wg, 15*time.Second, "calls during the pause")
	t.Logf("%d calls during the pause, slowest %s, all back %s after CLIENT PAUSE %s",
		calls, slowest.Round(time.Millisecond), time.Since(paused).Round(time.Millisecond), pause)

	for _, cl := range clients {
		require.EventuallyWithT(t, func(ct *assert.CollectT) {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			_, err := rediscache.Get[faultVal](cctx, cl.c, "k0")
			assert.NoError(ct, err)
		}, 10*time.Second, 50*time.Millisecond, "%s: calls succeed after the pause", cl.name)
	}
	t.Logf("calls succeeding %s after CLIENT PAUSE", time.Since(paused).Round(time.Millisecond))

	// The pool recovered: concurrent calls all succeed and read values that
	// belong to their keys.
	for _, cl := range clients {
		var wg sync.WaitGroup
		for i := range 32 {
			key := fmt.Sprintf("k%d", i%keys)
			wg.Go(func() {
				v, err := rediscache.Get[faultVal](ctx, cl.c, key)
				if assert.NoError(t, err, "%s Get %s after the pause", cl.name, key) {
					assert.NoError(t, v.check(key))
				}
				fresh := fmt.Sprintf("fresh%d", i)
				assert.NoError(t, rediscache.Set(ctx, cl.c, fresh, newFaultVal(fresh, 3), time.Minute))
			})
		}
		faultWait(t, &wg, 15*time.Second, cl.name+" calls after the pause")
	}
}

// TestFaultOOM fills a server limited to 2 MB with noeviction: Set then
// fails with Redis's OOM error (not retried, not a breaker outage), reads
// of existing keys keep working, GetOrLoad of a new key serves the
// loader's value with a nil error while its store fails (counted), and
// deleting keys makes room again.
func TestFaultOOM(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, "--maxmemory", "2mb", "--maxmemory-policy", "noeviction")
	raw := srv.Client(t)
	ctx := t.Context()
	c := newFaultClient(t, rediscache.Options{Addrs: []string{srv.Addr()}, Prefix: "oom"})

	big := strings.Repeat("x", 8<<10)
	val := func(key string) faultVal { return faultVal{Key: key, Seq: 1, Pad: big} }
	var setErr error
	n := 0
	for ; n < 5000; n++ {
		key := fmt.Sprintf("fill%d", n)
		if setErr = rediscache.Set(ctx, c, key, val(key), time.Hour); setErr != nil {
			break
		}
	}
	require.Error(t, setErr, "5,000 values of 8 KiB fit in 2 MB")
	t.Logf("%d values of 8 KiB stored before: %v", n, setErr)
	require.Contains(t, setErr.Error(), "OOM")
	require.Positive(t, n)

	// Reads of what is there still work.
	for i := range n {
		key := fmt.Sprintf("fill%d", i)
		got, err := rediscache.Get[faultVal](ctx, c, key)
		require.NoError(t, err, key)
		require.Equal(t, val(key), got)
	}
	m, err := rediscache.GetMany[faultVal](ctx, c, []string{"fill0", fmt.Sprintf("fill%d", n-1), "absent"})
	require.NoError(t, err)
	require.Len(t, m, 2)

	// Batch writes fail per key with the same error.
	err = rediscache.SetMany(ctx, c, map[string]faultVal{"b1": val("b1"), "b2": val("b2")}, time.Hour)
	var be *rediscache.BatchError
	require.ErrorAs(t, err, &be)
	require.Len(t, be.Failed, 2)
	require.Contains(t, err.Error(), "OOM")

	// GetOrLoad serves the loader's value; the failed store is counted.
	before := c.Stats()
	var loads atomic.Int64
	load := func(context.Context) (faultVal, error) {
		loads.Add(1)
		return val("fresh"), nil
	}
	for range 3 {
		got, src, err := rediscache.GetOrLoadWithSource(ctx, c, "fresh", time.Hour, load)
		require.NoError(t, err)
		require.Equal(t, val("fresh"), got)
		require.Equal(t, rediscache.SourceLoaded, src, "nothing could be stored")
	}
	after := c.Stats()
	require.EqualValues(t, 3, loads.Load())
	require.Greater(t, after.Errors, before.Errors, "the failed stores are counted as errors")
	require.Equal(t, "closed", after.BreakerState, "OOM is not an outage: the breaker stays closed")
	exists, err := raw.Exists(ctx, c.StorageKey("fresh")).Result()
	require.NoError(t, err)
	require.Zero(t, exists)

	// Deleting makes room again.
	for i := range min(n, 64) {
		_, err := c.Delete(ctx, fmt.Sprintf("fill%d", i))
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool {
		return rediscache.Set(ctx, c, "again", val("again"), time.Hour) == nil
	}, 10*time.Second, 50*time.Millisecond, "Set works again once keys are deleted")
}

// TestFaultClusterFailover writes 1,000 keys to a 3-master, 3-replica
// Redis Cluster, kills a master and checks that the same Client resumes
// within 10 s, once its replica is promoted, and that every key written
// before the kill reads back as its acknowledged value or as a miss (a
// write the replica had not received yet), never as another value. Keys
// written after the failover read back exactly.
func TestFaultClusterFailover(t *testing.T) {
	t.Parallel()
	began := time.Now()
	cl := redistest.StartCluster(t, 3, 1)
	t.Logf("cluster ready in %s", time.Since(began).Round(time.Millisecond))
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range cl.Nodes() {
				faultLogTail(t, n)
			}
		}
	})
	ctx := t.Context()
	// StartCluster returns before the replicas' first sync, which Redis 7
	// delays 5s by default; a replica that never synced is never promoted.
	// Start from a steady cluster: every replica linked to its master.
	nodes := cl.Nodes()
	for _, n := range nodes {
		require.NoError(t, n.Client(t).ConfigSet(ctx, "repl-diskless-sync-delay", "0").Err())
	}
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		for _, n := range nodes[3:] {
			info, err := n.Client(t).Info(ctx, "replication").Result()
			if assert.NoError(ct, err) {
				assert.Contains(ct, info, "master_link_status:up", "replica %s", n.Addr())
			}
		}
	}, 30*time.Second, 100*time.Millisecond, "replicas not in sync")
	t.Logf("replicas in sync %s after start", time.Since(began).Round(time.Millisecond))
	c := newFaultClient(t, rediscache.Options{Addrs: cl.Addrs(), ClusterMode: true, Prefix: "cf"})

	const n = 1000
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%d", i)
	}
	for i, key := range keys {
		if i%2 == 0 {
			require.NoError(t, rediscache.Set(ctx, c, key, newFaultVal(key, 1), time.Hour))
		}
	}
	odd := map[string]faultVal{}
	for i, key := range keys {
		if i%2 == 1 {
			odd[key] = newFaultVal(key, 1)
		}
	}
	require.NoError(t, rediscache.SetMany(ctx, c, odd, time.Hour))

	victim := cl.Nodes()[0] // a master
	onVictim, err := victim.Client(t).DBSize(ctx).Result()
	require.NoError(t, err)
	killed := time.Now()
	victim.Kill()

	var attempts int
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		attempts++
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := rediscache.GetMany[faultVal](cctx, c, keys)
		assert.NoError(ct, err, "GetMany of every key")
		assert.NoError(ct, rediscache.Set(cctx, c, "probe", newFaultVal("probe", 1), time.Hour), "Set")
	}, 10*time.Second, 100*time.Millisecond, "the Client did not resume within 10s after the kill of %s", victim.Addr())
	t.Logf("operations resumed %s after the kill of master %s (%d attempts)",
		time.Since(killed).Round(time.Millisecond), victim.Addr(), attempts)

	// Acknowledged before the kill: that value or a miss, never another.
	misses := 0
	for _, key := range keys {
		got, err := rediscache.Get[faultVal](ctx, c, key)
		if errors.Is(err, rediscache.ErrCacheMiss) {
			misses++
			continue
		}
		require.NoError(t, err, key)
		require.Equal(t, newFaultVal(key, 1), got, key)
	}
	m, err := rediscache.GetMany[faultVal](ctx, c, keys)
	require.NoError(t, err)
	for k, v := range m {
		require.Equal(t, newFaultVal(k, 1), v, k)
	}
	t.Logf("after the failover: %d of %d keys are misses (%d keys lived on the killed master)", misses, n, onVictim)

	// Written after the failover: read back exactly.
	after := map[string]faultVal{}
	for _, key := range keys {
		after[key] = newFaultVal(key, 2)
	}
	require.NoError(t, rediscache.SetMany(ctx, c, after, time.Hour))
	for i := range 100 {
		key := fmt.Sprintf("new%d", i)
		require.NoError(t, rediscache.Set(ctx, c, key, newFaultVal(key, 2), time.Hour))
		after[key] = newFaultVal(key, 2)
	}
	all := make([]string, 0, len(after))
	for k := range after {
		all = append(all, k)
	}
	m, err = rediscache.GetMany[faultVal](ctx, c, all)
	require.NoError(t, err)
	require.Equal(t, after, m)
	for i := range 100 {
		key := fmt.Sprintf("new%d", i)
		got, err := rediscache.Get[faultVal](ctx, c, key)
		require.NoError(t, err)
		require.Equal(t, newFaultVal(key, 2), got)
	}
}

// TestFaultSentinelGetOrLoad kills the master of a Sentinel deployment
// while GetOrLoad runs: every call during the failover returns the right
// value with a nil error (from the cache, or from the loader while Redis
// fails), and once the replica is promoted, loaded values are stored and
// served as hits again.
func TestFaultSentinelGetOrLoad(t *testing.T) {
	t.Parallel()
	began := time.Now()
	s := redistest.StartSentinel(t, "faultmaster", 1, 3)
	t.Logf("sentinel deployment ready in %s", time.Since(began).Round(time.Millisecond))
	ctx := t.Context()
	c := newFaultClient(t, rediscache.Options{
		Addrs:        s.SentinelAddrs(),
		MasterName:   "faultmaster",
		Prefix:       "sg",
		DialTimeout:  time.Second,
		ReadTimeout:  time.Second,
		WriteTimeout: time.Second,
	})
	var loads atomic.Int64
	load := func(key string) func(context.Context) (faultVal, error) {
		return func(context.Context) (faultVal, error) {
			loads.Add(1)
			return newFaultVal(key, 5), nil
		}
	}
	const keys = 20
	for i := range keys {
		key := fmt.Sprintf("k%d", i)
		_, src, err := rediscache.GetOrLoadWithSource(ctx, c, key, time.Hour, load(key))
		require.NoError(t, err)
		require.Equal(t, rediscache.SourceLoaded, src)
		_, src, err = rediscache.GetOrLoadWithSource(ctx, c, key, time.Hour, load(key))
		require.NoError(t, err)
		require.Equal(t, rediscache.SourceHit, src)
	}

	// GetOrLoad in a loop through the failover.
	var (
		stop    = make(chan struct{})
		wg      sync.WaitGroup
		mu      sync.Mutex
		sources = map[rediscache.Source]int{}
		bad     []error
		slowest time.Duration
	)
	wg.Go(func() {
		for round := 0; ; round++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			for i := range keys {
				key := fmt.Sprintf("k%d", i)
				if round%2 == 1 {
					key = fmt.Sprintf("r%d-%d", round, i) // new keys: a load each
				}
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				start := time.Now()
				v, src, err := rediscache.GetOrLoadWithSource(cctx, c, key, time.Hour, load(key))
				took := time.Since(start)
				cancel()
				mu.Lock()
				slowest = max(slowest, took)
				sources[src]++
				if err != nil {
					bad = append(bad, fmt.Errorf("GetOrLoad %s: %w", key, err))
				} else if v != newFaultVal(key, 5) {
					bad = append(bad, fmt.Errorf("GetOrLoad %s returned %+v", key, v))
				}
				mu.Unlock()
			}
		}
	})

	old := s.Master()
	killed := time.Now()
	old.Kill()
	promoted := s.WaitFailover(t, old.Addr(), 30*time.Second)
	t.Logf("sentinels promoted %s %s after the kill", promoted, time.Since(killed).Round(time.Millisecond))

	// Hits again: a new key is loaded and stored once, then served from
	// Redis.
	var attempts int
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		attempts++
		key := fmt.Sprintf("after%d", attempts)
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, src, err := rediscache.GetOrLoadWithSource(cctx, c, key, time.Hour, load(key))
		assert.NoError(ct, err)
		assert.Equal(ct, rediscache.SourceLoaded, src, "stored, not a fallback")
		v, src, err := rediscache.GetOrLoadWithSource(cctx, c, key, time.Hour, load(key))
		assert.NoError(ct, err)
		assert.Equal(ct, rediscache.SourceHit, src)
		assert.Equal(ct, newFaultVal(key, 5), v)
	}, 20*time.Second, 100*time.Millisecond, "GetOrLoad hits did not return after the failover")
	t.Logf("GetOrLoad storing and hitting again %s after the kill", time.Since(killed).Round(time.Millisecond))
	time.Sleep(200 * time.Millisecond) // a few more rounds against the new master
	close(stop)
	faultWait(t, &wg, 30*time.Second, "GetOrLoad loop")

	mu.Lock()
	defer mu.Unlock()
	t.Logf("GetOrLoad through the failover: sources %v, slowest call %s, %d loader calls; stats: fallbacks %d, errors %d",
		sources, slowest.Round(time.Millisecond), loads.Load(), c.Stats().Fallbacks, c.Stats().Errors)
	assert.Empty(t, bad, "GetOrLoad must serve the right value with a nil error through the failover")
	assert.Positive(t, sources[rediscache.SourceFallback], "no call saw the outage: the test injected nothing")

	// Pre-kill keys: the cached value (replicated) or a reload, never another.
	for i := range keys {
		key := fmt.Sprintf("k%d", i)
		v, err := rediscache.GetOrLoad(ctx, c, key, time.Hour, load(key))
		require.NoError(t, err)
		require.Equal(t, newFaultVal(key, 5), v)
	}
}
