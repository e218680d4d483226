package rediscache

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Tags invalidate any group of entries in O(1). An entry written with
// [WithTags] records, in its envelope, the version each of its tags had
// when it was written; [Client.InvalidateTags] moves a tag to a new version
// (one O(1) command per tag), and an entry that records an old version of
// any of its tags reads as a miss. Every read checks the current versions
// of the entry's tags, so an invalidation holds at once in every Client; a
// Client with LocalCache reads the versions through its near cache, which
// Redis invalidates, and sees an invalidation within that invalidation's
// travel time, bounded by Options.LocalCacheTTL. Readers need not name the
// tags: an entry knows them.
//
// A tag's version is kept at Prefix + ":" + "\x00tag:" + tag, under the
// Prefix with the NUL marker, so ClearAll and InvalidatePrefix never touch
// it. Versions are taken from the clock and only grow, so they never
// repeat: if a tag's key is evicted or lost, the entries that recorded it
// read as misses, never as valid, and the next write of the tag starts a
// new version. Nothing grows with the number of entries carrying a tag.
const (
	tagKeyPrefix = "\x00tag:"
	// MaxTags is how many tags one entry may carry.
	MaxTags = 16
)

// CallOption is a per-call option, passed as the last arguments of a call
// that accepts them; calls without any behave as they always have.
type CallOption func(*callOptions)

// callOptions are the options of one call.
type callOptions struct {
	tags []string
}

// WithTags tags the entries a call writes (Set, SetMany, and what GetOrLoad
// and GetManyOrLoad store) with tags, so [Client.InvalidateTags] of any of
// them makes those entries misses. On a read (Get, GetMany, GetOrLoad, ...)
// it names the tags the entries are expected to carry, so their versions
// are read in the same round trip as the entries. A tag is any non-empty
// string without a NUL byte; an entry carries at most [MaxTags]. A bad tag
// makes the call return an error wrapping [ErrInvalidKey] before anything
// is sent.
func WithTags(tags ...string) CallOption {
	return func(o *callOptions) { o.tags = append(o.tags, tags...) }
}

var (
	errBadTag     = fmt.Errorf("%w: a tag is empty or holds a NUL byte", ErrInvalidKey)
	errTooManyTag = fmt.Errorf("%w: more than %d tags", ErrInvalidKey, MaxTags)
)

// parseCallOptions applies opts and validates them. The tags come back
// sorted and without duplicates.
func parseCallOptions(opts []CallOption) (callOptions, error) {
	var o callOptions
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if len(o.tags) == 0 {
		return o, nil
	}
	tags, err := normTags(o.tags)
	o.tags = tags
	return o, err
}

// normTags validates tags and returns them sorted, without duplicates.
func normTags(tags []string) ([]string, error) {
	for _, t := range tags {
		if t == "" || strings.IndexByte(t, 0) >= 0 {
			return nil, errBadTag
		}
	}
	tags = slices.Clone(tags)
	slices.Sort(tags)
	tags = slices.Compact(tags)
	if len(tags) > MaxTags {
		return nil, errTooManyTag
	}
	return tags, nil
}

// tagKey returns the stored key of tag's version.
func (c *Client) tagKey(tag string) string { return c.pfx + tagKeyPrefix + tag }

// tagVersions are the versions of some tags, by tag.
type tagVersions map[string]uint64

// appendTags appends the tags section of an envelope: the count, then
// each tag's length, name and version.
func appendTags(dst []byte, tags []string, vers tagVersions) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(tags)))
	for _, t := range tags {
		dst = binary.AppendUvarint(dst, uint64(len(t)))
		dst = append(dst, t...)
		dst = binary.BigEndian.AppendUint64(dst, vers[t])
	}
	return dst
}

var errBadTags = fmt.Errorf("%w: malformed tags", ErrCorruptValue)

// tagsSize is the size of the tags section of tags (0 for none).
func tagsSize(tags []string) int {
	if len(tags) == 0 {
		return 0
	}
	n := binary.PutUvarint(make([]byte, binary.MaxVarintLen64), uint64(len(tags)))
	for _, t := range tags {
		n += binary.PutUvarint(make([]byte, binary.MaxVarintLen64), uint64(len(t))) + len(t) + 8
	}
	return n
}

// splitTags returns the tags section at the start of b and the rest; it
// checks the section's shape and never panics.
func splitTags(b []byte) (section, rest []byte, err error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n == 0 || n > MaxTags {
		return nil, nil, errBadTags
	}
	i := w
	for range n {
		l, w := binary.Uvarint(b[i:])
		if w <= 0 || l == 0 || uint64(len(b)-i-w) < l+8 {
			return nil, nil, errBadTags
		}
		i += w + int(l) + 8
	}
	return b[:i], b[i:], nil
}

// eachTag calls fn with every tag of a tags section (checked by
// splitTags) and its recorded version, until fn returns false.
func eachTag(section []byte, fn func(tag []byte, ver uint64) bool) {
	n, i := binary.Uvarint(section)
	for range n {
		l, w := binary.Uvarint(section[i:])
		i += w
		tag := section[i : i+int(l)]
		i += int(l)
		if !fn(tag, binary.BigEndian.Uint64(section[i:])) {
			return
		}
		i += 8
	}
}

// tagNames returns the tags of a tags section.
func tagNames(section []byte) []string {
	var out []string
	eachTag(section, func(t []byte, _ uint64) bool {
		out = append(out, string(t))
		return true
	})
	return out
}

// errTagged marks an entry one of whose tags was invalidated since it was
// written: a miss, which a load replaces.
var errTagged = errors.New("rediscache: entry of an invalidated tag")

// tagsCurrent reports whether every tag the envelope e records still has
// the version it recorded. Versions in known are used as they are; the
// others are read, in one round trip (through the near cache with
// LocalCache). A tag whose version key is missing has no current version:
// the entry is not current. The error is Redis's.
func (c *Client) tagsCurrent(ctx context.Context, e envelope, known tagVersions) (bool, error) {
	if len(e.tags) == 0 {
		return true, nil
	}
	var missing []string
	eachTag(e.tags, func(t []byte, _ uint64) bool {
		if _, ok := known[string(t)]; !ok {
			missing = append(missing, string(t))
		}
		return true
	})
	if len(missing) > 0 {
		got, err := c.readTagVersions(ctx, missing)
		if err != nil {
			return false, err
		}
		if known == nil {
			known = got
		} else {
			for t, v := range got {
				known[t] = v
			}
		}
	}
	current := true
	eachTag(e.tags, func(t []byte, ver uint64) bool {
		cur, ok := known[string(t)]
		current = ok && cur == ver
		return current
	})
	return current, nil
}

// readTagVersions reads the current versions of tags; a tag without a
// version is absent from the map. With LocalCache it reads through the near
// cache (each version a single GET, kept and invalidated like any key);
// otherwise in one pipeline.
func (c *Client) readTagVersions(ctx context.Context, tags []string) (tagVersions, error) {
	out := make(tagVersions, len(tags))
	start := mono()
	var err error
	defer func() { c.observeOp(opOther, "", start, err) }()
	if c.near != nil {
		for _, t := range tags {
			v, gerr := c.rdb.Get(ctx, c.tagKey(t)).Uint64()
			switch {
			case gerr == nil:
				out[t] = v
			case !errors.Is(gerr, redis.Nil):
				err = gerr
				return nil, err
			}
		}
		return out, nil
	}
	pipe := c.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(tags))
	for i, t := range tags {
		cmds[i] = pipe.Get(ctx, c.tagKey(t))
	}
	_, _ = execPipe(ctx, pipe)
	for i, cmd := range cmds {
		v, gerr := cmd.Uint64()
		switch {
		case gerr == nil:
			out[tags[i]] = v
		case !errors.Is(gerr, redis.Nil):
			err = gerr
			return nil, err
		}
	}
	return out, nil
}

// queueTagVersions adds to pipe, for a write of entries tagged with tags,
// the read of each tag's version, creating the versions that do not exist
// (SET NX of a new version, then GET). The returned func reads the results.
func (c *Client) queueTagVersions(ctx context.Context, pipe redis.Pipeliner, tags []string) func() (tagVersions, error) {
	cmds := make([]*redis.StringCmd, len(tags))
	for i, t := range tags {
		k := c.tagKey(t)
		pipe.SetNX(ctx, k, newGeneration(), 0)
		cmds[i] = pipe.Get(ctx, k)
	}
	return func() (tagVersions, error) {
		out := make(tagVersions, len(tags))
		for i, cmd := range cmds {
			v, err := cmd.Uint64()
			if err != nil {
				return nil, err
			}
			out[tags[i]] = v
		}
		return out, nil
	}
}

// writeTagVersions returns the versions a write of entries tagged with
// tags records, creating those that do not exist: one round trip.
func (c *Client) writeTagVersions(ctx context.Context, tags []string) (tagVersions, error) {
	if len(tags) == 0 {
		return nil, nil
	}
	pipe := c.rdb.Pipeline()
	read := c.queueTagVersions(ctx, pipe, tags)
	start := mono()
	_, _ = execPipe(ctx, pipe)
	vers, err := read()
	c.observeOp(opOther, "", start, err)
	return vers, err
}

// bumpTagScript moves a tag to its next version: one more than its current
// one, and never below ARGV[1] (newGeneration), so it never repeats.
var bumpTagScript = redis.NewScript(`local v = tonumber(redis.call("GET", KEYS[1]) or "0") + 1
local floor = tonumber(ARGV[1])
if floor > v then v = floor end
v = string.format("%.0f", v)
redis.call("SET", KEYS[1], v)
return v`)

// InvalidateTags makes every entry written with any of tags (see
// [WithTags]) a miss for every Client, at once: once it returns, no read
// that starts afterwards returns such an entry written before, and a load
// that began before never stores one that reads as valid after. It costs
// one O(1) command per tag (a pipeline per node on a cluster), whatever the
// number of entries carrying them. The entries are not deleted: the next
// load replaces them, or they age out by their TTL. With LocalCache, other
// Clients' near caches see it within their invalidation bound.
//
// An empty tag, one holding NUL, or more than [MaxTags] tags return an
// error wrapping [ErrInvalidKey] before anything is sent; no tags is a
// no-op. Other errors wrap [ErrNilContext], [ErrClosed] or the Redis error
// after retries (on a cluster, the tags whose node failed are named).
func (c *Client) InvalidateTags(ctx context.Context, tags ...string) (err error) {
	const op = "invalidatetags"
	if o := c.ctr.obs.Load(); o != nil {
		call := c.newCall(op, "", len(tags))
		ctx = o.start(ctx, call)
		defer func() { call.Err = err; o.end(ctx, call) }()
	}
	if err := c.ready(ctx); err != nil {
		return opErr(op, "", err)
	}
	if len(tags) == 0 {
		return nil
	}
	tags, err = normTags(tags)
	if err != nil {
		return opErr(op, "", err)
	}
	if _, err := c.admit(ctx, ""); err != nil { // then one round trip, which reports
		return opErr(op, "", err)
	}
	ks := make([]string, len(tags))
	for i, t := range tags {
		ks[i] = c.tagKey(t)
	}
	c.nearWritten(ks)
	defer c.nearWritten(ks)
	cmds := make([]*guardedCmd, len(ks))
	for i, k := range ks {
		cmds[i] = &guardedCmd{s: bumpTagScript, keys: []string{k}, args: []any{newGeneration()}}
	}
	send := func(ctx context.Context) (struct{}, error) {
		execGuarded(ctx, c.rdb, cmds)
		var errs []error
		for i, g := range cmds {
			if err := g.cmd.Err(); err != nil {
				errs = append(errs, fmt.Errorf("tag %q: %w", tags[i], err))
			}
		}
		return struct{}{}, errors.Join(errs...)
	}
	start := mono()
	_, err = send(ctx)
	if err != nil {
		_, err = retry(ctx, c, idempotent, struct{}{}, err, send) // a bump done twice only skips a version
	}
	c.observeOp(opOther, "", start, err)
	if err != nil {
		c.ctr.fail("")
		return opErr(op, "", err)
	}
	return nil
}
