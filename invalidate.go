package rediscache

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// scanCount is the COUNT hint of every SCAN: how many hash-table slots one
// call visits, which bounds the work (and the latency other clients see)
// of one call.
const scanCount = 1000

var errEmptyPrefix = fmt.Errorf("%w: empty prefix (use ClearAll)", ErrInvalidKey)

// escapeGlob backslash-escapes the characters Redis's glob matching treats
// specially outside a bracket (* ? [ ] \), so the result, used as a SCAN
// MATCH pattern, matches s literally.
func escapeGlob(s string) string {
	if !strings.ContainsAny(s, `*?[]\`) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// InvalidatePrefix deletes every key of this Client whose logical key
// starts with prefix, and returns how many it deleted. prefix is literal:
// glob characters in it match only themselves, so "user_*" deletes
// "user_*1" but not "user_1". Keys outside the Client's Prefix are never
// touched. Entries of every namespace generation (see
// [Client.InvalidateNamespace]) live at the same keys, so they are deleted
// alike.
//
// It walks the keyspace with SCAN MATCH (never KEYS) on every master of a
// cluster (every live shard of a ring) and deletes each page with UNLINK,
// so the server is never blocked for long; a key written while the walk
// runs may or may not be deleted. Failed SCAN calls and UNLINKs are retried
// like every other command.
//
// Its cost grows with the whole database, not with what it deletes: SCAN
// MATCH visits every key of the database (on a cluster, of every master,
// walked concurrently), under this Client's Prefix or not, and filters
// them afterwards. Measured on a shared 2-core machine
// (BenchmarkInvalidatePrefixKeyspace), the walk visits 1.2 to 1.9 million
// keys per second: deleting 1,000 keys next to 200,000 others takes 115 to
// 180ms, whether those 200,000 are under the Prefix or not, and each SCAN
// call of 1,000 keys keeps Redis busy about 0.5ms. Keep it for maintenance
// and small databases; on hot paths invalidate by tag ([WithTags] when
// writing, [Client.InvalidateTags]) or by namespace
// ([Client.InvalidateNamespace], O(1)). Build prefixes with
// [KeyGenerator.Prefix], which ends with the separator, so that the prefix
// of "user_1" never deletes the keys of "user_10".
//
// An empty prefix, or one that is not a valid key, returns an [*OpError]
// wrapping [ErrInvalidKey] (use [Client.ClearAll] to delete everything); a
// nil context or a closed Client wraps [ErrNilContext] or [ErrClosed]. On a failure part way (a node down,
// the context ended) it returns the number deleted so far and an error:
// a [*BatchError] naming the keys it found but could not delete, joined
// with an [*OpError] for each node whose SCAN failed.
func (c *Client) InvalidatePrefix(ctx context.Context, prefix string) (_ int64, err error) {
	const op = "invalidateprefix"
	if o := c.ctr.obs.Load(); o != nil {
		call := c.newPrefixCall(op, prefix)
		ctx = o.start(ctx, call)
		defer func() { call.Err = err; o.end(ctx, call) }()
	}
	if err := c.ready(ctx); err != nil {
		return 0, opErr(op, prefix, err)
	}
	if prefix == "" {
		return 0, opErr(op, prefix, errEmptyPrefix)
	}
	literals, err := c.prefixLiterals(prefix)
	if err != nil {
		return 0, opErr(op, prefix, err)
	}
	t, err := c.admit(ctx, "")
	if err != nil {
		return 0, opErr(op, prefix, err)
	}
	defer t.release() // a ring with no live shard sends nothing
	return c.deletePrefix(ctx, op, prefix, literals)
}

// ClearAll deletes every key under the Client's Prefix and returns how many
// it deleted, by the same SCAN and UNLINK walk as [Client.InvalidatePrefix],
// which visits every key of the database, whosever it is (1.2 to 1.9
// million keys per second measured).
// It never runs FLUSHDB or FLUSHALL, and keys of other prefixes (even
// "Prefix" plus other characters without the ":") stay. The Client's own
// bookkeeping keys (a NUL byte right after the Prefix, which no logical key
// can produce) are kept.
//
// With an empty Options.Prefix it deletes nothing and returns an [*OpError]
// wrapping [ErrNoPrefix]: the Client cannot tell its keys from anyone
// else's. A nil context or a closed Client wraps [ErrNilContext] or
// [ErrClosed]. On a failure part way it returns the number deleted so far
// and an error as InvalidatePrefix does.
func (c *Client) ClearAll(ctx context.Context) (_ int64, err error) {
	const op = "clearall"
	if o := c.ctr.obs.Load(); o != nil {
		call := c.newCall(op, "", 0)
		ctx = o.start(ctx, call)
		defer func() { call.Err = err; o.end(ctx, call) }()
	}
	if err := c.ready(ctx); err != nil {
		return 0, opErr(op, "", err)
	}
	if c.pfx == "" {
		return 0, opErr(op, "", ErrNoPrefix)
	}
	t, err := c.admit(ctx, "")
	if err != nil {
		return 0, opErr(op, "", err)
	}
	defer t.release() // a ring with no live shard sends nothing
	return c.deletePrefix(ctx, op, "", []string{c.pfx})
}

// CountPrefix returns how many keys of this Client have a logical key
// starting with prefix (literal, as in [Client.InvalidatePrefix]), by
// walking the keyspace with SCAN on every master of a cluster. Like
// InvalidatePrefix it visits every key of the database, not only the
// matching ones: one round trip per 1,000 keys, about 150ms with 200,000
// keys in Redis. Options.HealthCountKeys runs the same walk at every health
// check of a Client with a Prefix. An empty
// prefix counts every key under the Client's Prefix (with no Prefix, every
// key in the database), including keys of old namespace generations that
// have not expired yet. It is meant for size figures: keys written or
// deleted during the walk may or may not be counted, and SCAN may return a
// key twice while Redis shrinks its hash table, so the count is exact only
// on a keyspace that is not changing.
//
// A nil context, a closed Client or a prefix that is not a valid key
// returns 0 and an [*OpError] wrapping [ErrNilContext], [ErrClosed] or
// [ErrInvalidKey]. When the walk fails on a node, CountPrefix returns the
// keys counted so far and an error naming the node.
func (c *Client) CountPrefix(ctx context.Context, prefix string) (int64, error) {
	const op = "countprefix"
	if err := c.ready(ctx); err != nil {
		return 0, opErr(op, prefix, err)
	}
	literals := []string{c.pfx}
	if prefix != "" {
		var err error
		if literals, err = c.prefixLiterals(prefix); err != nil {
			return 0, opErr(op, prefix, err)
		}
	}
	t, err := c.admit(ctx, "")
	if err != nil {
		return 0, opErr(op, prefix, err)
	}
	defer t.release() // a ring with no live shard sends nothing
	var n atomic.Int64
	err = c.scanPrefix(ctx, op, prefix, literals, func(_ context.Context, _ redis.Cmdable, _ bool, ks []string) {
		n.Add(int64(len(ks)))
	})
	return n.Load(), err
}

// prefixLiterals validates a non-empty logical prefix and returns the
// stored-key prefix its keys have: Prefix + ":" + prefix.
func (c *Client) prefixLiterals(prefix string) ([]string, error) {
	k, err := c.storageKey(prefix)
	if err != nil {
		return nil, err
	}
	return []string{k}, nil
}

// logicalKey returns the logical key of a stored key under the Client's
// Prefix.
func (c *Client) logicalKey(k string) string { return k[len(c.pfx):] }

// deletePrefix UNLINKs every stored key starting with one of literals,
// page by page as SCAN finds them, and returns the number deleted. First,
// on one server, it bumps the counter of all keys, so every batch load in
// progress stores nothing (see batchguard.go; loads of single keys and on
// a cluster hold leases in their keys, which the walk deletes).
func (c *Client) deletePrefix(ctx context.Context, op, prefix string, literals []string) (int64, error) {
	if c.near != nil {
		forget := func() {
			for _, l := range literals {
				c.near.writtenPrefix(l)
			}
		}
		forget()
		defer forget()
	}
	if c.countsDeletes() {
		start := mono()
		err := c.bumpAll(ctx)
		c.observe(c.pfx+delHashName, start, err)
		if err != nil {
			c.ctr.fail(prefix)
			return 0, opErr(op, prefix, err)
		}
	}
	var (
		n      atomic.Int64
		mu     sync.Mutex
		found  int
		failed = map[string]error{}
	)
	scanErr := c.scanPrefix(ctx, op, prefix, literals, func(ctx context.Context, rdb redis.Cmdable, multi bool, ks []string) {
		keys := make([]string, len(ks))
		for i, k := range ks {
			keys[i] = c.logicalKey(k)
		}
		b := &batch{c: c, op: op, keys: keys, ks: ks}
		b.run(ctx, unlinkSend(rdb, multi, ks, &n, nil))
		mu.Lock()
		defer mu.Unlock()
		found += len(ks)
		for _, f := range b.failed {
			failed[keys[f.i]] = f.err
		}
	})
	if !strings.Contains(prefix, ":") {
		prefix = "" // may span namespaces: global count only
	}
	c.ctr.deleted(prefix, uint64(n.Load()))
	return n.Load(), errors.Join(scanErr, c.newBatchError(op, found, failed))
}

// scanPrefix walks, for each literal, with SCAN MATCH
// escapeGlob(literal)+"*", every master of a cluster, every live shard of a
// ring, or the one server, and calls page with each page of stored keys
// that really start with literal (never a bookkeeping key), together with
// the client of the node that holds them and whether a multi-key command is
// safe there. Nodes are walked concurrently; page must be safe for that.
// The error joins an *OpError per node whose walk failed.
func (c *Client) scanPrefix(ctx context.Context, op, prefix string, literals []string, page func(ctx context.Context, rdb redis.Cmdable, multi bool, ks []string)) error {
	var (
		mu   sync.Mutex
		errs []error
	)
	fail := func(err error) {
		c.ctr.fail(prefix)
		mu.Lock()
		errs = append(errs, opErr(op, prefix, err))
		mu.Unlock()
	}
	for _, literal := range literals {
		walk := func(ctx context.Context, rdb redis.Cmdable, multi bool) error {
			return c.scanNode(ctx, rdb, literal, func(ks []string) { page(ctx, rdb, multi, ks) })
		}
		// each walks one node; a node's failure is recorded, not returned,
		// so the walk goes on with the other nodes.
		each := func(ctx context.Context, node *redis.Client, multi bool) {
			if err := walk(ctx, node, multi); err != nil {
				fail(fmt.Errorf("scan %s: %w", node.Options().Addr, err))
			}
		}
		var err error
		switch r := c.rdb.(type) {
		case *redis.ClusterClient:
			// Single-key UNLINKs even on one node: its keys are in many slots.
			err = r.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error { each(ctx, node, false); return nil })
		case *redis.Ring:
			err = r.ForEachShard(ctx, func(ctx context.Context, node *redis.Client) error { each(ctx, node, true); return nil })
		case *redis.Client:
			each(ctx, r, true)
		default:
			err = walk(ctx, c.rdb, false)
		}
		if err != nil {
			fail(err)
		}
	}
	return errors.Join(errs...)
}

// scanPage is one SCAN reply.
type scanPage struct {
	keys   []string
	cursor uint64
}

// scanNode runs SCAN MATCH escapeGlob(literal)+"*" on one server until the
// cursor returns to 0, retrying a failed call with the same cursor, and
// calls fn with every non-empty page of keys that start with literal (a
// safety net behind the pattern) and are not bookkeeping keys.
func (c *Client) scanNode(ctx context.Context, rdb redis.Cmdable, literal string, fn func(ks []string)) error {
	pattern := escapeGlob(literal) + "*"
	scan := func(cursor uint64) func(context.Context) (scanPage, error) {
		return func(ctx context.Context) (scanPage, error) {
			keys, next, err := rdb.Scan(ctx, cursor, pattern, scanCount).Result()
			return scanPage{keys, next}, err
		}
	}
	var cursor uint64
	for {
		start := mono()
		next := scan(cursor)
		p, err := next(ctx)
		if err != nil {
			p, err = retry(ctx, c, idempotent, p, err, next)
		}
		c.observeOp(opScan, "", start, err)
		if err != nil {
			return err
		}
		keep := p.keys[:0]
		for _, k := range p.keys {
			if strings.HasPrefix(k, literal) && !(len(k) > len(c.pfx) && k[len(c.pfx)] == 0) {
				keep = append(keep, k)
			}
		}
		if len(keep) > 0 {
			fn(keep)
		}
		if p.cursor == 0 {
			return nil
		}
		cursor = p.cursor
	}
}
