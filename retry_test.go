package rediscache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestTransient(t *testing.T) {
	t.Parallel()
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	read := &net.OpError{Op: "read", Net: "tcp", Err: timeoutErr{}}
	cases := []struct {
		name      string
		err       error
		idem, non bool // retried when idempotent / when not
	}{
		{"nil", nil, false, false},
		{"miss", redis.Nil, false, false},
		{"closed client", redis.ErrClosed, false, false},
		{"canceled", context.Canceled, false, false},
		{"deadline", context.DeadlineExceeded, false, false},
		{"wrapped deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), false, false},
		{"wrongtype", errors.New("WRONGTYPE Operation against a key holding the wrong kind of value"), false, false},
		{"oom", errors.New("OOM command not allowed when used memory > 'maxmemory'."), false, false},
		{"codec", ErrCorruptValue, false, false},
		{"loading", errors.New("LOADING Redis is loading the dataset in memory"), true, true},
		{"tryagain", errors.New("TRYAGAIN Multiple keys request during rehashing of slot"), true, true},
		{"clusterdown", errors.New("CLUSTERDOWN The cluster is down"), true, true},
		{"masterdown", errors.New("MASTERDOWN Link with MASTER is down"), true, true},
		{"readonly", errors.New("READONLY You can't write against a read only replica."), true, true},
		{"dial refused", dial, true, true},
		{"pool timeout", redis.ErrPoolTimeout, true, true},
		{"eof", io.EOF, true, false},
		{"unexpected eof", io.ErrUnexpectedEOF, true, false},
		{"reset", &net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, true, false},
		{"read timeout", read, true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.idem, transient(tc.err, idempotent), "idempotent")
			assert.Equal(t, tc.non, transient(tc.err, notIdempotent), "not idempotent")
		})
	}
}

// failHook fails the first n commands named cmd with err.
type failHook struct {
	cmd   string
	n     int64
	err   error
	calls atomic.Int64
}

func (h *failHook) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessPipelineHook fails a whole pipeline that holds cmd, as a broken
// connection would (a Client that counts writes pipelines INCRBY with the
// bump of its counter).
func (h *failHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if !slices.ContainsFunc(cmds, func(cmd redis.Cmder) bool { return cmd.Name() == h.cmd }) || h.calls.Add(1) > h.n {
			return next(ctx, cmds)
		}
		for _, cmd := range cmds {
			cmd.SetErr(h.err)
		}
		return h.err
	}
}
func (h *failHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() != h.cmd {
			return next(ctx, cmd)
		}
		if h.calls.Add(1) <= h.n {
			cmd.SetErr(h.err)
			return h.err
		}
		return next(ctx, cmd)
	}
}

func newHooked(t *testing.T, h *failHook, opt Options) *Client {
	t.Helper()
	srv := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	rdb.AddHook(h)
	t.Cleanup(func() { _ = rdb.Close() })
	opt.Redis = rdb
	c, err := New(&opt)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestRetryTransientThenSucceed(t *testing.T) {
	t.Parallel()
	loading := errors.New("LOADING Redis is loading the dataset in memory")
	h := &failHook{cmd: "get", n: 2, err: loading}
	c := newHooked(t, h, Options{MinRetryBackoff: time.Millisecond})
	ctx := t.Context()
	require.NoError(t, c.Set(ctx, "k", 7, 0))
	v, err := Get[int](ctx, c, "k")
	require.NoError(t, err)
	assert.Equal(t, 7, v)
	assert.Equal(t, int64(3), h.calls.Load(), "two failures, then success")
	assert.Equal(t, uint64(0), c.Stats().Errors)
}

func TestRetryGivesUpAfterMaxRetries(t *testing.T) {
	t.Parallel()
	tryAgain := errors.New("TRYAGAIN slot migrating")
	h := &failHook{cmd: "set", n: 100, err: tryAgain}
	c := newHooked(t, h, Options{MaxRetries: 2, MinRetryBackoff: time.Millisecond})
	err := c.Set(t.Context(), "k", 1, 0)
	require.Error(t, err)
	require.ErrorIs(t, err, tryAgain)
	assert.Equal(t, int64(3), h.calls.Load(), "one attempt plus two retries")
	assert.Equal(t, uint64(1), c.Stats().Errors)
}

func TestRetryDisabled(t *testing.T) {
	t.Parallel()
	h := &failHook{cmd: "get", n: 100, err: errors.New("LOADING x")}
	c := newHooked(t, h, Options{MaxRetries: -1})
	_, err := Get[int](t.Context(), c, "k")
	require.Error(t, err)
	assert.Equal(t, int64(1), h.calls.Load())
}

func TestNoRetryForPermanentErrors(t *testing.T) {
	t.Parallel()
	h := &failHook{cmd: "get", n: 100, err: errors.New("WRONGTYPE Operation against a key holding the wrong kind of value")}
	c := newHooked(t, h, Options{MinRetryBackoff: time.Millisecond})
	_, err := Get[int](t.Context(), c, "k")
	require.Error(t, err)
	assert.Equal(t, int64(1), h.calls.Load())
}

func TestIncrementNotRetriedAfterTimeout(t *testing.T) {
	t.Parallel()
	h := &failHook{cmd: "incrby", n: 1, err: &net.OpError{Op: "read", Net: "tcp", Err: timeoutErr{}}}
	c := newHooked(t, h, Options{MinRetryBackoff: time.Millisecond})
	_, err := c.Increment(t.Context(), "n", 1)
	require.Error(t, err, "a timed-out INCRBY may have run: not sent again")
	assert.Equal(t, int64(1), h.calls.Load())

	h2 := &failHook{cmd: "incrby", n: 1, err: errors.New("LOADING x")}
	c2 := newHooked(t, h2, Options{MinRetryBackoff: time.Millisecond})
	n, err := c2.Increment(t.Context(), "n", 1)
	require.NoError(t, err, "LOADING proves INCRBY did not run: retried")
	assert.Equal(t, int64(1), n)
	assert.Equal(t, int64(2), h2.calls.Load())
}

func TestRetryStopsWhenContextDone(t *testing.T) {
	t.Parallel()
	loading := errors.New("LOADING x")
	h := &failHook{cmd: "get", n: 1 << 30, err: loading}
	c := newHooked(t, h, Options{MaxRetries: 1000, MinRetryBackoff: 20 * time.Millisecond})
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Get[int](ctx, c, "k")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorIs(t, err, loading, "the last Redis error is kept")
	assert.Less(t, time.Since(start), 5*time.Second)
}
