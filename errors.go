package rediscache

import (
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"
)

// Sentinel errors. Every error the Client returns for one of these conditions
// wraps the matching sentinel, so callers test with [errors.Is].
var (
	// ErrCacheMiss is returned by the Get family when the key does not exist.
	// A miss is not a failure: it is counted as a miss, never as an error.
	ErrCacheMiss = errors.New("rediscache: cache miss")

	// ErrClosed is returned by the calls that use Redis made after
	// [Client.Close].
	ErrClosed = errors.New("rediscache: client is closed")

	// ErrInvalidKey is returned for an empty key, a key holding a NUL byte
	// (reserved for the library's bookkeeping keys) or a key longer than
	// Options.MaxKeySize. Nothing is read, written or deleted.
	ErrInvalidKey = errors.New("rediscache: invalid key")

	// ErrInvalidTTL is returned for a negative TTL. Nothing is written.
	ErrInvalidTTL = errors.New("rediscache: invalid ttl")

	// ErrInvalidValue is returned for a value that cannot be stored (nil, or
	// rejected by the Codec) and for a Get destination that is not a non-nil
	// pointer. Nothing is written.
	ErrInvalidValue = errors.New("rediscache: invalid value")

	// ErrValueTooLarge is returned when a value as it would be stored
	// (envelope included, after compression) is larger than
	// Options.MaxValueSize. Nothing is written.
	ErrValueTooLarge = errors.New("rediscache: value too large")

	// ErrCorruptValue is returned when the stored bytes cannot be decoded:
	// they were not written by this library, they were truncated, a
	// compressed payload is corrupt or declares more than
	// Options.MaxValueSize once decompressed, or the Codec cannot decode
	// them into the destination type.
	ErrCorruptValue = errors.New("rediscache: corrupt value")

	// ErrInvalidOptions is returned by [New] when the Options are inconsistent.
	ErrInvalidOptions = errors.New("rediscache: invalid options")

	// ErrNoPrefix is returned by [Client.ClearAll] when Options.Prefix is
	// empty: without a prefix the Client cannot tell its keys from anyone
	// else's, so it deletes nothing.
	ErrNoPrefix = errors.New("rediscache: no prefix")

	// ErrNotFound is what a loader returns (or wraps) to say "this record
	// does not exist". [GetOrLoad] caches that answer for Options.NegativeTTL
	// and returns ErrNotFound itself until then, without calling the loader.
	ErrNotFound = errors.New("rediscache: not found")

	// ErrCircuitOpen is returned, at once and without contacting Redis, by
	// calls made while the circuit breaker is open after consecutive Redis
	// failures: every call that reaches Redis may return it, except
	// GetOrLoad and GetManyOrLoad, which serve the loader's values.
	ErrCircuitOpen = errors.New("rediscache: circuit breaker open")

	// ErrLoaderPanic is wrapped by the [*LoaderPanicError] returned to every
	// caller sharing a load whose loader panicked.
	ErrLoaderPanic = errors.New("rediscache: loader panicked")

	// ErrNilContext is returned when a call is given a nil context.Context.
	ErrNilContext = errors.New("rediscache: nil context")
)

// OpError records the operation and the logical key (as the caller passed
// it, without the Client's Prefix) of a failed call. It never contains a
// cached value or a credential.
type OpError struct {
	Op  string // the operation: "get", "set", "delete", ...
	Key string // the logical key, or "" for multi-key operations
	Err error  // the underlying error; a sentinel of this package, a go-redis error, or a codec error
}

// Error returns "rediscache: <op> <key>: <err>".
func (e *OpError) Error() string {
	// The sentinels' own "rediscache: " is said once, in front.
	msg := strings.TrimPrefix(e.Err.Error(), "rediscache: ")
	if e.Key == "" {
		return "rediscache: " + e.Op + ": " + msg
	}
	return "rediscache: " + e.Op + " " + strconv.Quote(e.Key) + ": " + msg
}

// Unwrap returns the underlying error, so [errors.Is] and [errors.As] see it.
func (e *OpError) Unwrap() error { return e.Err }

func opErr(op, key string, err error) error {
	return &OpError{Op: op, Key: key, Err: err}
}

// LoaderPanicError is the error of a load whose loader panicked, returned
// to every caller sharing the load. It wraps [ErrLoaderPanic] and, when the
// loader panicked with an error, that error too, so [errors.Is] and
// [errors.As] see both.
type LoaderPanicError struct {
	Value any    // what the loader panicked with
	Stack []byte // the loader goroutine's stack at the panic
}

func newLoaderPanic(v any) *LoaderPanicError {
	return &LoaderPanicError{Value: v, Stack: debug.Stack()}
}

// Error returns "rediscache: loader panicked: <value>" and the stack.
func (e *LoaderPanicError) Error() string {
	return fmt.Sprintf("%v: %v\n\n%s", ErrLoaderPanic, e.Value, e.Stack)
}

// Unwrap returns ErrLoaderPanic and, if the panic value is an error, that
// error.
func (e *LoaderPanicError) Unwrap() []error {
	if err, ok := e.Value.(error); ok {
		return []error{ErrLoaderPanic, err}
	}
	return []error{ErrLoaderPanic}
}
