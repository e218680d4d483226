package rediscache

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Observer watches a Client's cache calls, its loader runs and its
// counters, for tracing and metrics: the OpenTelemetry module
// (github.com/rediscache/rediscache/otel) is one. [Client.AddObserver]
// attaches it. The core knows no tracing or metrics library; with no
// Observer attached, a call and each count it makes cost one atomic load
// more, and nothing is allocated for observers.
//
// Methods are called synchronously on the goroutine of the call they
// report, so they must be quick, safe for concurrent use, and must not
// block. An Observer must not keep or change a *Call after End returns.
type Observer interface {
	// Start is called as a call (or a loader run: Op "load") begins,
	// before it touches Redis. The context it returns is the one the call
	// goes on with: its Redis commands run under it, and a loader run's
	// context descends from it, so what the loader traces nests under the
	// call. ctx is nil when the caller passed nil (the call then fails
	// with ErrNilContext): Start must return it as it is.
	Start(ctx context.Context, call *Call) context.Context
	// End is called once when the call returns, with the context Start
	// returned and call's outcome fields set.
	End(ctx context.Context, call *Call)
	// Count is called for every count Stats adds up, as it is counted,
	// with the same amount: over a run, the sums per Event equal the
	// Stats counters (with Options.DisableStats, Count is still called).
	// namespace is the one Stats.Namespaces counts it under ("" when the
	// count has no key, as for Stats' Client-wide counters).
	Count(ev Event, namespace string, n uint64)
}

// Call describes one cache call, or one run of a loader (Op "load"), to an
// [Observer]. The fields above Err are set before Start, the rest before
// End.
type Call struct {
	// Op names the call in lower case: "get", "set", "delete",
	// "deletemany", "exists", "increment", "expire", "metadata", "getmany",
	// "setmany", "mget", "mset", "getorload", "getmanyorload",
	// "invalidateprefix", "clearall", "invalidatenamespace",
	// "invalidatetags", or "load" for a loader run.
	Op string
	// Key is the logical key of a one-key call or load, else "". Keys
	// often carry user ids: record them only when asked to.
	Key string
	// Namespace is the namespace the call is about, as Stats.Namespaces
	// names it: the key's (or every key's, when a batch's keys share one),
	// the prefix's, or InvalidateNamespace's; "" when none or mixed.
	Namespace string
	// Keys is how many keys (or tags, for InvalidateTags) the call was
	// given: 1 for a one-key call.
	Keys int
	// Refresh reports a background refresh's loader run (a stale or
	// early refresh), which no caller waits for.
	Refresh bool
	// Start is when the call began.
	Start time.Time

	// Err is the error the call returned (nil on success and, for a read,
	// on a hit). A miss of Get is [ErrCacheMiss].
	Err error
	// Source is where a GetOrLoad answer came from: for a loader's error,
	// SourceLoaded or SourceFallback; 0 when the call failed before any
	// answer (bad input, its context, LoadTimeout, Close).
	Source Source
	// Hits counts keys answered from the cache, stale ones included: 1
	// or 0 for a one-key read (GetOrLoad's cached not-found is a hit;
	// GetManyOrLoad counts only the values it returns).
	Hits int
	// Loaded counts keys answered with a value by the loader (GetOrLoad,
	// GetManyOrLoad); a failed load counts none.
	Loaded int
	// Stale counts stale values served (also counted in Hits).
	Stale int
	// Fallbacks counts keys sent to the loader because Redis failed or was
	// skipped, whether or not the loader then found them.
	Fallbacks int
}

// Event names a counter of [Stats], for [Observer.Count].
type Event uint8

// Events, one per Stats counter.
const (
	EventHit          Event = iota + 1 // Stats.Hits
	EventMiss                          // Stats.Misses
	EventError                         // Stats.Errors
	EventSet                           // Stats.Sets
	EventDelete                        // Stats.Deletes
	EventLoad                          // Stats.Loads
	EventLoadError                     // Stats.LoadErrors
	EventStaleServed                   // Stats.StaleServed
	EventEarlyRefresh                  // Stats.EarlyRefreshes
	EventNegativeHit                   // Stats.NegativeHits
	EventFallback                      // Stats.Fallbacks
	EventBreakerOpen                   // Stats.BreakerOpens
	EventStoreRefused                  // Stats.StoresRefused
	numEvents
)

var eventNames = [numEvents]string{"", "hits", "misses", "errors", "sets", "deletes", "loads", "load_errors",
	"stale_served", "early_refreshes", "negative_hits", "fallbacks", "breaker_opens", "stores_refused"}

// String returns the event's name in lower snake case, as metrics name
// it ("hits", "load_errors", "stores_refused", ...), or "Event(n)" for an
// unknown one.
func (e Event) String() string {
	if e > 0 && e < numEvents {
		return eventNames[e]
	}
	return fmt.Sprintf("Event(%d)", uint8(e))
}

// AddObserver attaches o to the Client: calls that begin after it returns
// are reported to o. Start and Count reach o after the observers attached
// before it, End before them. A nil o
// returns an [*OpError] wrapping [ErrInvalidValue]; a closed Client,
// [ErrClosed]. Nothing is attached then.
func (c *Client) AddObserver(o Observer) error {
	if o == nil {
		return opErr("addobserver", "", fmt.Errorf("%w: nil Observer", ErrInvalidValue))
	}
	c.obsMu.Lock()
	defer c.obsMu.Unlock()
	if c.closed.Load() {
		return opErr("addobserver", "", ErrClosed)
	}
	next := &observers{}
	if cur := c.ctr.obs.Load(); cur != nil {
		next.list = append(next.list, cur.list...)
	}
	next.list = append(next.list, o)
	c.ctr.obs.Store(next)
	return nil
}

// observers are the Client's attached observers, replaced whole by
// AddObserver.
type observers struct {
	list []Observer
}

// start reports call's start to every observer, returning the context
// the call goes on with.
func (o *observers) start(ctx context.Context, call *Call) context.Context {
	for _, x := range o.list {
		ctx = x.Start(ctx, call)
	}
	return ctx
}

// end reports call's end, in reverse order of start.
func (o *observers) end(ctx context.Context, call *Call) {
	for i := len(o.list) - 1; i >= 0; i-- {
		o.list[i].End(ctx, call)
	}
}

func (o *observers) count(ev Event, ns string, n uint64) {
	for _, x := range o.list {
		x.Count(ev, ns, n)
	}
}

// newCall returns a Call of op about logical key ("" for none) and keys
// keys, with its namespace and start set.
func (c *Client) newCall(op, key string, keys int) *Call {
	call := &Call{Op: op, Key: key, Keys: keys, Start: time.Now()}
	if key != "" {
		call.Namespace = c.ctr.namespace(key).name
	}
	return call
}

// newBatchCall returns a Call of a batch op over keys: its namespace is
// the one all keys share, if they do.
func (c *Client) newBatchCall(op string, keys []string) *Call {
	call := c.newCall(op, "", len(keys))
	if len(keys) == 0 {
		return call
	}
	first := namespaceOf(keys[0])
	for _, k := range keys[1:] {
		if namespaceOf(k) != first {
			return call
		}
	}
	call.Namespace = c.ctr.namespace(keys[0]).name
	return call
}

// newPrefixCall returns a Call of a prefix op: its namespace is the
// prefix's first segment when the prefix names it whole.
func (c *Client) newPrefixCall(op, prefix string) *Call {
	call := c.newCall(op, "", 0)
	if strings.IndexByte(prefix, ':') > 0 {
		call.Namespace = c.ctr.namespace(prefix).name // its first segment
	}
	return call
}

// hitOf sets call's outcome of a one-key read that returned err.
func (call *Call) hitOf(err error) {
	call.Err = err
	if err == nil {
		call.Hits = 1
	}
}

// sourced sets call's outcome of a one-key GetOrLoad answered from src
// (a failed one counts no key).
func (call *Call) sourced(src Source, err error) {
	call.Err, call.Source = err, src
	if err != nil && !errors.Is(err, ErrNotFound) {
		if src == SourceFallback {
			call.Fallbacks = 1
		}
		return
	}
	switch src {
	case SourceHit:
		call.Hits = 1
	case SourceStale:
		call.Hits, call.Stale = 1, 1
	case SourceLoaded:
		call.Loaded = 1
	case SourceFallback:
		call.Loaded, call.Fallbacks = 1, 1
	}
}

// newItemsCall returns a Call of a batch op writing items.
func newItemsCall[V any](c *Client, op string, items map[string]V) *Call {
	keys := make([]string, 0, len(items))
	for k := range items {
		keys = append(keys, k)
	}
	return c.newBatchCall(op, keys)
}

// newNamespaceCall returns a Call of a namespace op.
func (c *Client) newNamespaceCall(op string, ns Namespace) *Call {
	call := c.newCall(op, "", 0)
	if ns != "" {
		call.Namespace = c.ctr.namespace(EscapeComponent(string(ns))).name
	}
	return call
}

// countNonNil counts the values read (MGet's nil is a miss).
func countNonNil(vals [][]byte) int {
	n := 0
	for _, v := range vals {
		if v != nil {
			n++
		}
	}
	return n
}
