package rediscache

import (
	"context"
	"encoding/binary"
	"errors"
	"reflect"
	"time"

	"github.com/redis/go-redis/v9"
)

// Get reads the value at key into dst, which must be a non-nil pointer. A
// missing key returns [ErrCacheMiss] itself. Other failures return an
// [*OpError] wrapping [ErrInvalidKey], [ErrInvalidValue] (bad dst),
// [ErrCorruptValue] (bytes that cannot be decoded into dst),
// [ErrGenerationUnknown] (the key's namespace generation cannot be read),
// [ErrNilContext], [ErrClosed], [ErrCircuitOpen], or the Redis error after
// retries.
//
// An entry written with tags is a miss once one of them was invalidated;
// [WithTags] on the read names the tags expected, so their versions are
// read in the same round trip as the entry (else an entry with tags costs
// one more).
func (c *Client) Get(ctx context.Context, key string, dst any, opts ...CallOption) (err error) {
	if o := c.ctr.obs.Load(); o != nil {
		call := c.newCall("get", key, 1)
		ctx = o.start(ctx, call)
		defer func() { call.hitOf(err); o.end(ctx, call) }()
	}
	if rv := reflect.ValueOf(dst); rv.Kind() != reflect.Pointer || rv.IsNil() {
		return opErr("get", key, errBadDst)
	}
	o, err := parseCallOptions(opts)
	if err != nil {
		return opErr("get", key, err)
	}
	k, gen, _, err := c.prepareRead(ctx, key)
	if err != nil {
		return opErr("get", key, err)
	}
	_, err = c.getInto(ctx, key, k, dst, gen, o.tags) // a round trip on k: it reports
	return err
}

// prepareRead is prepare for a read: it also returns the namespace
// generation the entry must carry. Not knowing it is an error, counted
// (and the call's turn released: it sends nothing).
func (c *Client) prepareRead(ctx context.Context, key string) (string, uint64, turn, error) {
	k, t, err := c.prepare(ctx, key)
	if err != nil {
		return "", 0, turn{}, err
	}
	gen, err := c.expect(ctx, key)
	if err != nil {
		t.release()
		c.ctr.fail(key)
		return "", 0, turn{}, err
	}
	return k, gen, t, nil
}

// getInto reads stored key k (of logical key) into dst and counts the
// outcome; the call was already prepared, and the entry must be of
// generation gen and current for its tags (tags: those the call expects,
// whose versions are read with the entry). It returns the envelope the
// value came in (zero for a counter).
func (c *Client) getInto(ctx context.Context, key, k string, dst any, gen uint64, tags []string) (envelope, error) {
	b, known, err := c.getTagged(ctx, k, tags)
	switch {
	case errors.Is(err, redis.Nil):
		c.ctr.miss(key)
		return envelope{}, ErrCacheMiss
	case err != nil:
		c.ctr.fail(key)
		return envelope{}, opErr("get", key, err)
	}
	e, _, err := c.decodeStored(b, dst, gen)
	if err == nil && len(e.tags) > 0 {
		current, terr := c.tagsCurrent(ctx, e, known)
		switch {
		case terr != nil:
			c.ctr.fail(key)
			return e, opErr("get", key, terr)
		case !current:
			err = errTagged
		}
	}
	if err != nil {
		if errors.Is(err, errNegative) || errors.Is(err, errLeaseOnly) || errors.Is(err, errOldGeneration) || errors.Is(err, errTagged) {
			c.ctr.miss(key)
			return e, ErrCacheMiss
		}
		c.ctr.fail(key)
		return e, opErr("get", key, err)
	}
	c.ctr.hit(key)
	return e, nil
}

// getTagged is get, with the versions of tags read in the same round trip
// (with LocalCache they are read through the near cache instead, when the
// entry turns out to need them).
func (c *Client) getTagged(ctx context.Context, k string, tags []string) ([]byte, tagVersions, error) {
	if len(tags) == 0 || c.near != nil {
		b, err := c.get(ctx, k)
		return b, nil, err
	}
	type result struct {
		b    []byte
		vers tagVersions
	}
	read := func(ctx context.Context) (result, error) {
		pipe := c.read.Pipeline()
		get := pipe.Get(ctx, k)
		cmds := make([]*redis.StringCmd, len(tags))
		for i, t := range tags {
			cmds[i] = pipe.Get(ctx, c.tagKey(t))
		}
		_, _ = execPipe(ctx, pipe)
		var r result
		r.vers = make(tagVersions, len(tags))
		for i, cmd := range cmds {
			v, err := cmd.Uint64()
			switch {
			case err == nil:
				r.vers[tags[i]] = v
			case !errors.Is(err, redis.Nil):
				return r, err
			}
		}
		b, err := get.Bytes()
		r.b = b
		return r, err
	}
	start := mono()
	r, err := read(ctx)
	if err != nil && !errors.Is(err, redis.Nil) {
		r, err = retry(ctx, c, idempotent, r, err, read)
	}
	c.observeOp(opGet, k, start, err)
	return r.b, r.vers, err
}

// get runs GET on stored key k, with retries, and records the round trip.
// A miss is redis.Nil.
func (c *Client) get(ctx context.Context, k string) ([]byte, error) {
	start := mono()
	b, err := c.read.Get(ctx, k).Bytes()
	if err != nil && !errors.Is(err, redis.Nil) {
		b, err = retry(ctx, c, idempotent, b, err, func(ctx context.Context) ([]byte, error) {
			return c.read.Get(ctx, k).Bytes()
		})
	}
	if err == nil && c.near != nil && c.nearStale(b) {
		b, err = c.getFresh(ctx, k)
	}
	c.observeOp(opGet, k, start, err)
	return b, err
}

// Set stores value at key for ttl. A ttl of 0 means the key's namespace TTL
// ([Client.TTLFor]) or DefaultTTL; a ttl under a millisecond is rounded up
// to one; a negative ttl returns [ErrInvalidTTL]. On a validation error
// nothing is written; a Redis error after the write was sent (a timeout)
// may leave it written. Errors wrap [ErrInvalidKey], [ErrInvalidTTL],
// [ErrInvalidValue] (nil or unencodable value), [ErrValueTooLarge],
// [ErrNilContext], [ErrClosed], [ErrCircuitOpen], or the Redis error after
// retries.
//
// [WithTags] tags the entry: [Client.InvalidateTags] of any of its tags
// makes it a miss. A tagged Set costs one more round trip (the tags'
// versions).
func (c *Client) Set(ctx context.Context, key string, value any, ttl time.Duration, opts ...CallOption) (err error) {
	if o := c.ctr.obs.Load(); o != nil {
		call := c.newCall("set", key, 1)
		ctx = o.start(ctx, call)
		defer func() { call.Err = err; o.end(ctx, call) }()
	}
	o, err := parseCallOptions(opts)
	if err != nil {
		return opErr("set", key, err)
	}
	k, err := c.check(ctx, key)
	if err != nil {
		return opErr("set", key, err)
	}
	if ttl, err = c.ttl(key, ttl); err != nil {
		return opErr("set", key, err)
	}
	p, flags, err := c.marshal(value, o.tags)
	if err != nil {
		return opErr("set", key, err)
	}
	t, err := c.admit(ctx, k)
	if err != nil {
		return opErr("set", key, err)
	}
	vers, err := c.writeTagVersions(ctx, o.tags)
	if err != nil {
		t.release() // on a cluster the tags' round trip reported to no breaker of k's
		c.ctr.fail(key)
		return opErr("set", key, err)
	}
	return c.setBytes(ctx, "set", key, k, seal(p, flags, c.stampFor(ctx, key), ttl, o.tags, vers), ttl)
}

// setBytes runs SET PX with retries and counts the outcome.
func (c *Client) setBytes(ctx context.Context, op, key, k string, b []byte, ttl time.Duration) error {
	if c.near != nil {
		c.near.written(k)
		defer c.near.written(k)
	}
	set := func(ctx context.Context) (string, error) { return c.one.Set(ctx, k, b, ttl).Result() }
	if c.countsDeletes() {
		set = func(ctx context.Context) (string, error) {
			cmd, err := counted(ctx, c, k, func(p redis.Pipeliner) *redis.StatusCmd { return p.Set(ctx, k, b, ttl) })
			return cmd.Val(), err
		}
	}
	start := mono()
	_, err := set(ctx)
	if err != nil {
		_, err = retry(ctx, c, idempotent, "", err, set)
	}
	c.observeOp(opSet, k, start, err)
	if err != nil {
		c.ctr.fail(key)
		return opErr(op, key, err)
	}
	c.ctr.set(key)
	return nil
}

// Delete removes keys (UNLINK, so large values are freed in the background)
// and returns how many existed. Several keys go through [Client.DeleteMany]:
// one round trip per node per 500 keys, and keys in different cluster
// slots are fine. If any key is invalid, nothing is deleted and the error
// wraps [ErrInvalidKey]. No keys is not an error: it returns 0. Other
// errors wrap [ErrNilContext], [ErrClosed], [ErrCircuitOpen] or the Redis
// error after retries.
func (c *Client) Delete(ctx context.Context, keys ...string) (_ int64, err error) {
	if len(keys) != 1 {
		return c.DeleteMany(ctx, keys)
	}
	key := keys[0]
	if o := c.ctr.obs.Load(); o != nil {
		call := c.newCall("delete", key, 1)
		ctx = o.start(ctx, call)
		defer func() { call.Err = err; o.end(ctx, call) }()
	}
	k, _, err := c.prepare(ctx, key) // then one round trip on k, which reports
	if err != nil {
		return 0, opErr("delete", key, err)
	}
	if c.near != nil {
		c.near.written(k)
		defer c.near.written(k)
	}
	unlink := func(ctx context.Context) (int64, error) { return c.one.Unlink(ctx, k).Result() }
	if c.countsDeletes() {
		unlink = func(ctx context.Context) (int64, error) {
			cmd, err := counted(ctx, c, k, func(p redis.Pipeliner) *redis.IntCmd { return p.Unlink(ctx, k) })
			return cmd.Val(), err
		}
	}
	start := mono()
	n, err := unlink(ctx)
	if err != nil {
		n, err = retry(ctx, c, idempotent, n, err, unlink)
	}
	c.observeOp(opDelete, k, start, err)
	if err != nil {
		c.ctr.fail(key)
		return 0, opErr("delete", key, err)
	}
	c.ctr.deleted(key, uint64(n))
	return n, nil
}

// Exists reports whether key exists: also for a load's lease, a cached
// not-found or an entry invalidated by namespace or tag, which Get reports
// as misses. Errors wrap [ErrInvalidKey], [ErrNilContext], [ErrClosed],
// [ErrCircuitOpen] or the Redis error after retries.
func (c *Client) Exists(ctx context.Context, key string) (_ bool, err error) {
	if o := c.ctr.obs.Load(); o != nil {
		call := c.newCall("exists", key, 1)
		ctx = o.start(ctx, call)
		defer func() { call.Err = err; o.end(ctx, call) }()
	}
	k, _, err := c.prepare(ctx, key) // then one round trip on k, which reports
	if err != nil {
		return false, opErr("exists", key, err)
	}
	start := mono()
	n, err := c.one.Exists(ctx, k).Result()
	if err != nil {
		n, err = retry(ctx, c, idempotent, n, err, func(ctx context.Context) (int64, error) {
			return c.one.Exists(ctx, k).Result()
		})
	}
	c.observe(k, start, err)
	if err != nil {
		c.ctr.fail(key)
		return false, opErr("exists", key, err)
	}
	return n == 1, nil
}

// Increment adds delta to the integer counter at key (INCRBY) and returns
// the new value. A key that does not exist starts at 0 and is created
// without a TTL (use [Client.Expire]); an existing key keeps its TTL. The
// counter is a plain Redis integer that [Get] reads into any integer type.
// A key that holds only a load's lease (a GetOrLoad in progress) starts at
// 0 too, and that load's store is refused. Incrementing a value stored by
// Set fails with Redis's "not an integer" error. Because INCRBY is not
// idempotent, it is retried only after failures that prove it did not run
// (refused connection, LOADING, ...), never after a timeout. Errors wrap
// [ErrInvalidKey], [ErrNilContext], [ErrClosed], [ErrCircuitOpen] or the
// Redis error.
func (c *Client) Increment(ctx context.Context, key string, delta int64) (_ int64, err error) {
	if o := c.ctr.obs.Load(); o != nil {
		call := c.newCall("increment", key, 1)
		ctx = o.start(ctx, call)
		defer func() { call.Err = err; o.end(ctx, call) }()
	}
	k, _, err := c.prepare(ctx, key) // then one round trip on k, which reports
	if err != nil {
		return 0, opErr("increment", key, err)
	}
	c.nearWritten([]string{k})
	defer c.nearWritten([]string{k})
	incr := func(ctx context.Context) (int64, error) {
		var (
			n   int64
			err error
		)
		if c.countsDeletes() {
			cmd, cerr := counted(ctx, c, k, func(p redis.Pipeliner) *redis.IntCmd { return p.IncrBy(ctx, k, delta) })
			n, err = cmd.Val(), cerr
		} else {
			n, err = c.one.IncrBy(ctx, k, delta).Result()
		}
		if err != nil && redis.HasErrorPrefix(err, "ERR value is not an integer") {
			// Maybe a lease: the script replaces it, or fails the same way.
			return runScript(ctx, c.one, incrOverLeaseScript, []string{k}, delta)
		}
		return n, err
	}
	start := mono()
	n, err := incr(ctx)
	if err != nil {
		n, err = retry(ctx, c, notIdempotent, n, err, incr)
	}
	c.observe(k, start, err)
	if err != nil {
		c.ctr.fail(key)
		return 0, opErr("increment", key, err)
	}
	return n, nil
}

// Expire sets the TTL of an existing key and reports whether the key
// existed. ttl 0 means the key's namespace TTL or DefaultTTL; a negative ttl
// returns [ErrInvalidTTL]. A value of this library gets a new stamp with
// its TTL, so a load or refresh that read it before never overwrites it;
// a key holding only a load's lease is reported missing. Other errors wrap
// [ErrInvalidKey], [ErrClosed] or the Redis error after retries.
func (c *Client) Expire(ctx context.Context, key string, ttl time.Duration) (_ bool, err error) {
	if o := c.ctr.obs.Load(); o != nil {
		call := c.newCall("expire", key, 1)
		ctx = o.start(ctx, call)
		defer func() { call.Err = err; o.end(ctx, call) }()
	}
	k, err := c.check(ctx, key)
	if err != nil {
		return false, opErr("expire", key, err)
	}
	if ttl, err = c.ttl(key, ttl); err != nil {
		return false, opErr("expire", key, err)
	}
	if _, err = c.admit(ctx, k); err != nil { // then one round trip on k, which reports
		return false, opErr("expire", key, err)
	}
	var stamp, expires [8]byte
	binary.BigEndian.PutUint64(stamp[:], newStamp())
	binary.BigEndian.PutUint64(expires[:], uint64(time.Now().Add(ttl).UnixMilli()))
	expire := func(ctx context.Context) (int64, error) {
		return runScript(ctx, c.one, expireScript, []string{k}, pxArg(ttl), stamp[:], expires[:])
	}
	c.nearWritten([]string{k})
	defer c.nearWritten([]string{k})
	start := mono()
	n, err := expire(ctx)
	if err != nil {
		n, err = retry(ctx, c, idempotent, n, err, expire)
	}
	c.observe(k, start, err)
	if err != nil {
		c.ctr.fail(key)
		return false, opErr("expire", key, err)
	}
	return n == 1, nil
}

// Get returns the value at key decoded as a T. It is [Client.Get] with a
// typed result: a miss returns [ErrCacheMiss] and the zero T.
func Get[T any](ctx context.Context, c *Client, key string, opts ...CallOption) (v T, err error) {
	if o := c.ctr.obs.Load(); o != nil {
		call := c.newCall("get", key, 1)
		ctx = o.start(ctx, call)
		defer func() { call.hitOf(err); o.end(ctx, call) }()
	}
	o, err := parseCallOptions(opts)
	if err != nil {
		return v, opErr("get", key, err)
	}
	if c.near != nil {
		return nearGet[T](ctx, c, key, o.tags)
	}
	k, gen, _, err := c.prepareRead(ctx, key)
	if err != nil {
		return v, opErr("get", key, err)
	}
	_, err = c.getInto(ctx, key, k, &v, gen, o.tags) // a round trip on k: it reports
	return v, err
}

// Set stores v at key for ttl. It is [Client.Set] with a typed value.
func Set[T any](ctx context.Context, c *Client, key string, v T, ttl time.Duration, opts ...CallOption) error {
	return c.Set(ctx, key, v, ttl, opts...)
}
