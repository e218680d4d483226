package rediscache

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Guarded writes. A load never stores blindly: it stores only while the
// key still holds what the load started from, so anything written or
// removed meanwhile (Set, Delete, Expire, InvalidatePrefix, another load's
// store, ...) turns the store into a no-op. What the load started from is
// named by a header: the lease placeholder it wrote into the key on a miss
// (SET key <lease> NX PX), or the header of the value a refresh read. Every
// header is unique (a random stamp per write), and each script touches one
// key, so they run on any server and in any cluster slot.
var (
	// casSetScript stores ARGV[2] with PX ARGV[3] if the key starts with
	// the header ARGV[1]; it returns 1 if it stored, 0 if not.
	casSetScript = redis.NewScript(`if redis.call("GETRANGE", KEYS[1], 0, #ARGV[1] - 1) ~= ARGV[1] then return 0 end
redis.call("SET", KEYS[1], ARGV[2], "PX", ARGV[3])
return 1`)

	// casSetManyScript is casSetScript for many keys of one server:
	// ARGV holds (header, value, PX) for each key. It returns 1 or 0 per key.
	casSetManyScript = redis.NewScript(`local out = {}
for i = 1, #KEYS do
  local g = ARGV[3 * i - 2]
  if redis.call("GETRANGE", KEYS[i], 0, #g - 1) == g then
    redis.call("SET", KEYS[i], ARGV[3 * i - 1], "PX", ARGV[3 * i])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out`)

	// casDelScript deletes the key if it starts with ARGV[1] (a lease the
	// load gives up, or a refresh lock).
	casDelScript = redis.NewScript(`if redis.call("GETRANGE", KEYS[1], 0, #ARGV[1] - 1) ~= ARGV[1] then return 0 end
return redis.call("DEL", KEYS[1])`)

	// casPExpireScript extends the key's TTL to ARGV[2] ms if it starts
	// with ARGV[1] (a lease whose load is still running).
	casPExpireScript = redis.NewScript(`if redis.call("GETRANGE", KEYS[1], 0, #ARGV[1] - 1) ~= ARGV[1] then return 0 end
return redis.call("PEXPIRE", KEYS[1], ARGV[2])`)

	// expireScript is Expire: PEXPIRE ARGV[1] ms, after giving an envelope
	// a new stamp (ARGV[2], 8 bytes) so a refresh that read it before is
	// refused, and its new expiry (ARGV[3], 8 bytes). A lease placeholder
	// is no value: it is left alone and the answer is 0, as for a missing
	// key.
	expireScript = redis.NewScript(`local h = redis.call("GETRANGE", KEYS[1], 0, 45)
local f = string.byte(h, 1)
if f == 194 and #h == 46 then
  if string.byte(h, 2) % 4 >= 2 then return 0 end
  redis.call("SETRANGE", KEYS[1], 22, ARGV[2])
  redis.call("SETRANGE", KEYS[1], 38, ARGV[3])
elseif f == 193 and #h >= 22 then
  local b = string.byte(h, 22)
  if b % 2 == 0 then b = b + 1 else b = b - 1 end
  redis.call("SETRANGE", KEYS[1], 21, string.char(b))
end
return redis.call("PEXPIRE", KEYS[1], ARGV[1])`)

	// incrOverLeaseScript is INCRBY ARGV[1] on a key that holds a lease
	// placeholder: the placeholder goes (cancelling the load), the counter
	// starts at 0. Any other value fails as INCRBY does.
	incrOverLeaseScript = redis.NewScript(`if redis.call("STRLEN", KEYS[1]) == 46 and redis.call("GETRANGE", KEYS[1], 0, 1) == "\194\2" then
  redis.call("DEL", KEYS[1])
end
return redis.call("INCRBY", KEYS[1], ARGV[1])`)
)

// newLease returns the placeholder a load writes into a missing key: an
// envelope with the lease flag and a fresh stamp, which is also its token.
func newLease() string {
	return envelope{flags: flagLease, created: time.Now().UnixMilli(), stamp: newStamp()}.header()
}

// runScript runs a guard script with EVALSHA, and EVAL when the server does
// not have it cached (NOSCRIPT: a restart or SCRIPT FLUSH).
func runScript(ctx context.Context, rdb redis.Scripter, s *redis.Script, keys []string, args ...any) (int64, error) {
	return s.Run(ctx, rdb, keys, args...).Int64()
}

// guardedCmd is one guarded script call of a pipeline.
type guardedCmd struct {
	s    *redis.Script
	keys []string
	args []any
	cmd  *redis.Cmd
}

// queue adds the call to pipe as EVALSHA.
func (g *guardedCmd) queue(ctx context.Context, pipe redis.Pipeliner) {
	g.cmd = g.s.EvalSha(ctx, pipe, g.keys, g.args...)
}

// result is the script's integer answer.
func (g *guardedCmd) result() (int64, error) { return g.cmd.Int64() }

// execGuarded sends cmds in one pipeline on rdb and sends those the server
// answered NOSCRIPT once more with EVAL (which caches the script).
func execGuarded(ctx context.Context, rdb redis.UniversalClient, cmds []*guardedCmd) {
	pipe := rdb.Pipeline()
	for _, g := range cmds {
		g.queue(ctx, pipe)
	}
	_, _ = execPipe(ctx, pipe) // each command's own result is read
	var again []*guardedCmd
	for _, g := range cmds {
		if err := g.cmd.Err(); err != nil && isNoScript(err) {
			again = append(again, g)
		}
	}
	if len(again) == 0 {
		return
	}
	pipe = rdb.Pipeline()
	for _, g := range again {
		g.cmd = g.s.Eval(ctx, pipe, g.keys, g.args...)
	}
	_, _ = execPipe(ctx, pipe)
}

func isNoScript(err error) bool {
	return errors.Is(err, redis.ErrNoScript) || redis.HasErrorPrefix(err, "NOSCRIPT")
}

// pxArg is a TTL as the PX argument of a script.
func pxArg(d time.Duration) string {
	return strconv.FormatInt(max(d.Milliseconds(), 1), 10)
}

// every runs fn every d, on a timer (no goroutine while it waits), until
// fn returns false, the Client closes or the returned stop is called. fn
// gets a context bounded by d.
func (c *Client) every(d time.Duration, fn func(ctx context.Context) bool) (stop func()) {
	var (
		mu      sync.Mutex
		stopped bool
		t       *time.Timer
	)
	tick := func() {
		ctx, cancel := context.WithTimeout(c.bg.ctx, d)
		again := fn(ctx)
		cancel()
		mu.Lock()
		defer mu.Unlock()
		if again && !stopped && c.bg.ctx.Err() == nil {
			t.Reset(d)
		}
	}
	mu.Lock()
	t = time.AfterFunc(d, tick)
	mu.Unlock()
	return func() {
		mu.Lock()
		stopped = true
		t.Stop()
		mu.Unlock()
	}
}

// execPipe runs pipe and returns what Exec returns, with one fix: when the
// pipeline failed as a whole on a Redis error that no command carries (a
// connection that failed to initialise, such as WRONGPASS), go-redis
// leaves every command without an error; execPipe sets that error on each,
// so a command's own result never reads as a success it was not.
func execPipe(ctx context.Context, pipe redis.Pipeliner) ([]redis.Cmder, error) {
	cmds, err := pipe.Exec(ctx)
	if err == nil || slices.ContainsFunc(cmds, func(cmd redis.Cmder) bool { return cmd.Err() != nil }) {
		return cmds, err
	}
	for _, cmd := range cmds {
		cmd.SetErr(err)
	}
	return cmds, err
}
