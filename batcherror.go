package rediscache

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// BatchError is returned by the batch calls ([GetMany], [SetMany],
// [Client.DeleteMany], [Client.MGet], [Client.MSet], [Client.InvalidatePrefix],
// [Client.ClearAll]) when some keys failed after the input was accepted: a
// node was down, a reply was an error, a stored value was corrupt, or the
// context ended before every key was sent. The keys not in Failed
// succeeded; nothing is dropped silently. Use [errors.As] to get it:
//
//	var be *rediscache.BatchError
//	if errors.As(err, &be) {
//		for key, err := range be.Failed { ... }
//	}
//
// [errors.Is] sees every per-key error, so errors.Is(err, ErrCorruptValue)
// reports whether any key was corrupt.
type BatchError struct {
	// Op is the operation: "getmany", "setmany", "deletemany", "mget",
	// "mset", "invalidateprefix" or "clearall".
	Op string
	// Total is the number of keys in the batch (for a prefix walk, the number
	// of keys the walk found).
	Total int
	// Failed maps each failed logical key to its error, an [*OpError] whose
	// Err is a go-redis error, a context error or a sentinel of this package
	// such as [ErrCorruptValue].
	Failed map[string]error
}

// Error returns a bounded message: the number of failed keys, the first
// (sorted) ten of them, and up to three distinct causes. The full list is
// in Failed.
func (e *BatchError) Error() string {
	keys := e.keys()
	var b strings.Builder
	fmt.Fprintf(&b, "rediscache: %s: %d of %d keys failed (", e.Op, len(keys), e.Total)
	for i, k := range keys[:min(len(keys), batchErrKeys)] {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Quote(k))
	}
	if n := len(keys) - batchErrKeys; n > 0 {
		fmt.Fprintf(&b, " and %d more", n)
	}
	b.WriteString(")")
	var causes []string
	for _, k := range keys {
		msg := causeText(e.Failed[k])
		if slices.Contains(causes, msg) {
			continue
		}
		if len(causes) == batchErrCauses {
			causes = append(causes, "...")
			break
		}
		causes = append(causes, msg)
	}
	if len(causes) > 0 {
		b.WriteString(": ")
		b.WriteString(strings.Join(causes, "; "))
	}
	return b.String()
}

// Unwrap returns the per-key errors, ordered by key, so [errors.Is] and
// [errors.As] look through them.
func (e *BatchError) Unwrap() []error {
	keys := e.keys()
	errs := make([]error, len(keys))
	for i, k := range keys {
		errs[i] = e.Failed[k]
	}
	return errs
}

func (e *BatchError) keys() []string { return slices.Sorted(maps.Keys(e.Failed)) }

// causeText is a per-key error without the op and key an *OpError adds.
func causeText(err error) string {
	var op *OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err.Error()
	}
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// newBatchError returns nil when nothing failed, else a *BatchError whose
// values are *OpErrors. It counts the failed keys in Stats.Errors.
func (c *Client) newBatchError(op string, total int, failed map[string]error) error {
	if len(failed) == 0 {
		return nil
	}
	e := &BatchError{Op: op, Total: total, Failed: make(map[string]error, len(failed))}
	for k, err := range failed {
		c.ctr.fail(k)
		e.Failed[k] = &OpError{Op: op, Key: k, Err: err}
	}
	return e
}
