package rediscache

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"time"

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

// ownRetries is how often rediscache retries a call on the caller's
// client rdb, whose go-redis retries run inside each of its attempts: as
// often as keeps the attempts of a call within maxRetries+1 in all (none
// when rdb retries as much by itself). A client whose retries cannot be
// read is taken to retry as go-redis does by default, 3 times.
func ownRetries(maxRetries int, rdb redis.UniversalClient) int {
	theirs := 3
	switch r := rdb.(type) {
	case *redis.Client:
		theirs = r.Options().MaxRetries
	case *redis.ClusterClient:
		theirs = r.Options().MaxRetries
	case *redis.Ring:
		theirs = r.Options().MaxRetries
	}
	theirs = max(theirs, 0) // go-redis keeps -1 as "off" in some versions
	return max((maxRetries+1)/(theirs+1)-1, 0)
}

// retry runs fn again after the first attempt failed with err, waiting an
// exponential backoff with jitter before each attempt, until it succeeds,
// fails permanently, MaxRetries is reached or ctx is done. It is only
// entered on a failure, so the successful path pays nothing for it. When ctx
// ends the wait, the error wraps both ctx.Err() and the last failure.
func retry[T any](ctx context.Context, c *Client, idem bool, v T, err error, fn func(context.Context) (T, error)) (T, error) {
	if !transient(err, idem) {
		return v, err
	}
	reloadSlots(c)
	if c.opt.MaxRetries == 0 || ctx.Err() != nil {
		return v, err
	}
	eb := backoff.NewExponentialBackOff()
	eb.InitialInterval = c.opt.MinRetryBackoff
	eb.MaxInterval = c.opt.MaxRetryBackoff
	eb.RandomizationFactor = 0.5
	eb.MaxElapsedTime = 0
	eb.Reset() // NewExponentialBackOff drew the first interval from its 500ms default
	b := backoff.WithMaxRetries(eb, uint64(c.opt.MaxRetries))
	var timer *time.Timer
	for {
		d := b.NextBackOff()
		if d == backoff.Stop {
			return v, err
		}
		if timer == nil {
			timer = time.NewTimer(d)
			defer timer.Stop()
		} else {
			timer.Reset(d)
		}
		select {
		case <-ctx.Done():
			return v, errors.Join(ctx.Err(), err)
		case <-timer.C:
		}
		if v, err = fn(ctx); !transient(err, idem) {
			return v, err
		}
		reloadSlots(c)
	}
}

// reloadSlots asks a cluster client to reload its slot map in the
// background after a transient failure. A failed-over or resharded slot
// often gives no MOVED reply (its old master is down), and go-redis
// otherwise reloads the map only every 60s, so the slots of a dead master
// would stay unreachable that long after its replica took over. Concurrent
// requests share one reload.
func reloadSlots(c *Client) {
	if cc, ok := c.rdb.(*redis.ClusterClient); ok {
		cc.ReloadState(context.Background())
	}
}
