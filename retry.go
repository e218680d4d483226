package rediscache

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/cenkalti/backoff/v4"
	"github.com/redis/go-redis/v9"
)

// Retry classes: an idempotent command (GET, SET, UNLINK, EXPIRE, ...) may
// be sent again after any transient failure; a non-idempotent one (INCRBY)
// only when the failure proves it never ran.
const (
	idempotent    = true
	notIdempotent = false
)

// transient reports whether err is worth another attempt. A miss, a
// cancelled or expired context, a closed client and a command error such as
// WRONGTYPE or OOM never are.
func transient(err error, idem bool) bool {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, redis.ErrClosed) {
		return false
	}
	// Never executed: the connection was not made, or the server refused the
	// command as a whole before running it.
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, redis.ErrPoolTimeout) ||
		redis.IsLoadingError(err) || redis.IsTryAgainError(err) || redis.IsClusterDownError(err) ||
		redis.IsMasterDownError(err) || redis.IsReadOnlyError(err) {
		return true
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if !idem {
		return false
	}
	// Maybe executed: the connection broke or timed out mid-command.
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// retry runs fn again after the first attempt failed with err, with
// exponential backoff and jitter, until it succeeds, fails permanently,
// MaxRetries is reached or ctx is done. It is only entered on a failure, so
// the successful path pays nothing for it.
func retry[T any](ctx context.Context, c *Client, idem bool, v T, err error, fn func(context.Context) (T, error)) (T, error) {
	if c.opt.MaxRetries == 0 || !transient(err, idem) || ctx.Err() != nil {
		return v, err
	}
	eb := backoff.NewExponentialBackOff()
	eb.InitialInterval = c.opt.MinRetryBackoff
	eb.MaxInterval = c.opt.MaxRetryBackoff
	eb.RandomizationFactor = 0.5
	eb.MaxElapsedTime = 0
	b := backoff.WithContext(backoff.WithMaxRetries(eb, uint64(c.opt.MaxRetries)), ctx)
	last := err
	v, err = backoff.RetryWithData(func() (T, error) {
		r, err := fn(ctx)
		if err != nil {
			last = err
			if !transient(err, idem) {
				return r, backoff.Permanent(err)
			}
		}
		return r, err
	}, b)
	if err != nil && ctx.Err() != nil && !errors.Is(err, last) {
		// backoff reports only ctx.Err(); keep the failure that led here.
		err = errors.Join(err, last)
	}
	return v, err
}
