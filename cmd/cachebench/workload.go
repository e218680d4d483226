package main

import (
	"context"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rediscache/rediscache"
)

// Kind is an operation of the workload: one of the five reads, or a write.
type Kind int

// The operations. The reads come first, in report order.
const (
	KindUserTasks Kind = iota
	KindUserConversations
	KindTaskScripts
	KindTaskStoryboards
	KindTaskResources
	KindWrite
	numKinds
)

const numReads = int(KindWrite)

// kindNames are the names used in the table, the JSON and the chart.
var kindNames = [numKinds]string{"user tasks page", "user conversations", "task scripts", "task storyboards", "task resources", "writes"}

// kindIDs are the JSON identifiers.
var kindIDs = [numKinds]string{"user_tasks", "user_conversations", "task_scripts", "task_storyboards", "task_resources", "writes"}

// String returns the name used in the table, e.g. "user tasks page".
func (k Kind) String() string { return kindNames[k] }

// The request variants of each read. Invalidation by exact keys deletes
// every variant, so these lists are the single source of both.
var (
	taskPageStatuses  = []string{"", "pending", "running", "done", "failed"}
	taskPageOffsets   = []int{0, 20}
	scriptFilters     = []string{"", "final"}
	boardFilters      = []string{"", "approved"}
	resourceFilters   = []string{"", "image", "video"}
	conversationsOnly = []bool{true, false}
)

const (
	taskPageLimit     = 20
	conversationLimit = 20
	scriptLimit       = 10
	boardLimit        = 20
	resourceLimit     = 50
)

// Write operations.
const (
	writeTaskStatus = iota
	writeScriptStatus
	writeMessage
	numWriteKinds
)

// Request is one operation: which read (or write) and its arguments.
type Request struct {
	Kind   Kind
	ID     int64  // user id for the user reads and message writes' conversation, task id otherwise
	Filter string // status / type filter; "" is none
	Active bool   // UserConversations: active only
	Offset int
	Write  int // for KindWrite: writeTaskStatus, ...
	Value  string
}

// zipf draws ranks 0..n-1 with P(k) proportional to 1/(k+1)^s, by binary
// search in the cumulative distribution. Unlike math/rand's Zipf it takes
// any s > 0 and works with math/rand/v2. Ranks are mapped to ids through a
// fixed permutation, so the popular ids are spread over the table instead
// of being its first rows.
type zipf struct {
	cdf  []float64
	perm []int32
}

func newZipf(n int, s float64, seed uint64) *zipf {
	z := &zipf{cdf: make([]float64, n), perm: make([]int32, n)}
	var sum float64
	for k := range n {
		sum += 1 / math.Pow(float64(k+1), s)
		z.cdf[k] = sum
	}
	for k := range z.cdf {
		z.cdf[k] /= sum
	}
	r := rand.New(rand.NewPCG(seed, 0x21bf))
	for i, p := range r.Perm(n) {
		z.perm[i] = int32(p)
	}
	return z
}

// id returns an id in 1..n.
func (z *zipf) id(r *rand.Rand) int64 {
	k := sort.SearchFloat64s(z.cdf, r.Float64())
	if k >= len(z.cdf) {
		k = len(z.cdf) - 1
	}
	return int64(z.perm[k]) + 1
}

// Workload generates requests and runs them against the database alone or
// through the cache.
type Workload struct {
	st     *store
	cache  *rediscache.Client
	keys   *rediscache.KeyGenerator
	users  *zipf
	tasks  *zipf
	convs  *zipf
	writes float64
	prefix bool // invalidate task pages with InvalidatePrefix instead of exact keys

	nextMsg atomic.Int64            // ids for inserted messages
	loads   [numKinds]atomic.Uint64 // loader calls (database reads) on the cached path
}

// newWorkload builds the distributions over the seeded rows.
func newWorkload(ctx context.Context, st *store, cnt seedCounts, zipfS, writes float64, seed uint64) (*Workload, error) {
	if zipfS <= 0 {
		return nil, fmt.Errorf("-zipf %v: must be > 0", zipfS)
	}
	if writes < 0 || writes > 1 {
		return nil, fmt.Errorf("-writes %v: must be in [0, 1]", writes)
	}
	w := &Workload{st: st, keys: rediscache.NewKeyGenerator(rediscache.V1), writes: writes,
		users: newZipf(int(cnt.Users), zipfS, seed+1),
		tasks: newZipf(int(cnt.Tasks), zipfS, seed+2),
		convs: newZipf(int(cnt.Conversations), zipfS, seed+3)}
	last, err := st.maxID(ctx, "messages")
	if err != nil {
		return nil, err
	}
	w.nextMsg.Store(last)
	return w, nil
}

// next draws one request.
func (w *Workload) next(r *rand.Rand) Request {
	if w.writes > 0 && r.Float64() < w.writes {
		req := Request{Kind: KindWrite, Write: r.IntN(numWriteKinds)}
		switch req.Write {
		case writeTaskStatus:
			req.ID, req.Value = w.tasks.id(r), taskStatuses[r.IntN(len(taskStatuses))]
		case writeScriptStatus:
			req.ID, req.Value = w.tasks.id(r), scriptStatuses[r.IntN(len(scriptStatuses))]
		case writeMessage:
			req.ID, req.Value = w.convs.id(r), sentence(r, 8, 40)
		}
		return req
	}
	req := Request{Kind: Kind(r.IntN(numReads))}
	switch req.Kind {
	case KindUserTasks:
		req.ID = w.users.id(r)
		if r.IntN(100) < 50 { // half the page views are unfiltered
			req.Filter = taskPageStatuses[1+r.IntN(len(taskPageStatuses)-1)]
		}
		if r.IntN(100) < 20 {
			req.Offset = taskPageOffsets[1]
		}
	case KindUserConversations:
		req.ID = w.users.id(r)
		req.Active = r.IntN(100) < 70
	case KindTaskScripts:
		req.ID = w.tasks.id(r)
		req.Filter = scriptFilters[r.IntN(len(scriptFilters))]
	case KindTaskStoryboards:
		req.ID = w.tasks.id(r)
		req.Filter = boardFilters[r.IntN(len(boardFilters))]
	case KindTaskResources:
		req.ID = w.tasks.id(r)
		req.Filter = resourceFilters[r.IntN(len(resourceFilters))]
	}
	return req
}

func userKey(id int64) string { return fmt.Sprintf("user_%d", id) }
func taskKey(id int64) string { return fmt.Sprintf("task_%d", id) }

// key returns the cache key of a read.
func (w *Workload) key(req Request) string {
	switch req.Kind {
	case KindUserTasks:
		return w.keys.UserTasksKey(userKey(req.ID), req.Filter, taskPageLimit, req.Offset)
	case KindUserConversations:
		return w.keys.UserConversationsKey(userKey(req.ID), req.Active, conversationLimit, 0)
	case KindTaskScripts:
		return w.keys.TaskScriptsKey(taskKey(req.ID), req.Filter, scriptLimit, 0)
	case KindTaskStoryboards:
		return w.keys.TaskStoryboardsKey(taskKey(req.ID), req.Filter, boardLimit, 0)
	case KindTaskResources:
		return w.keys.TaskResourcesKey(taskKey(req.ID), req.Filter, resourceLimit, 0)
	}
	panic("no key for " + req.Kind.String())
}

// read runs a read against the database.
func (w *Workload) read(ctx context.Context, req Request) (any, error) {
	switch req.Kind {
	case KindUserTasks:
		return w.st.UserTasks(ctx, req.ID, req.Filter, taskPageLimit, req.Offset)
	case KindUserConversations:
		return w.st.UserConversations(ctx, req.ID, req.Active, conversationLimit, 0)
	case KindTaskScripts:
		return w.st.TaskScripts(ctx, req.ID, req.Filter, scriptLimit, 0)
	case KindTaskStoryboards:
		return w.st.TaskStoryboards(ctx, req.ID, req.Filter, boardLimit, 0)
	case KindTaskResources:
		return w.st.TaskResources(ctx, req.ID, req.Filter, resourceLimit, 0)
	}
	return nil, fmt.Errorf("not a read: %v", req.Kind)
}

// loadThrough is GetOrLoad over one database read, counting loader calls.
func loadThrough[T any](ctx context.Context, w *Workload, req Request, load func(context.Context) (T, error)) (any, bool, error) {
	v, src, err := rediscache.GetOrLoadWithSource(ctx, w.cache, w.key(req), 0, func(ctx context.Context) (T, error) {
		w.loads[req.Kind].Add(1)
		return load(ctx)
	})
	return v, src == rediscache.SourceHit || src == rediscache.SourceStale, err
}

// cachedRead runs a read through the cache and reports whether it was
// served from Redis.
func (w *Workload) cachedRead(ctx context.Context, req Request) (v any, hit bool, err error) {
	switch req.Kind {
	case KindUserTasks:
		return loadThrough(ctx, w, req, func(ctx context.Context) ([]TaskRow, error) {
			return w.st.UserTasks(ctx, req.ID, req.Filter, taskPageLimit, req.Offset)
		})
	case KindUserConversations:
		return loadThrough(ctx, w, req, func(ctx context.Context) ([]ConversationRow, error) {
			return w.st.UserConversations(ctx, req.ID, req.Active, conversationLimit, 0)
		})
	case KindTaskScripts:
		return loadThrough(ctx, w, req, func(ctx context.Context) ([]ScriptRow, error) {
			return w.st.TaskScripts(ctx, req.ID, req.Filter, scriptLimit, 0)
		})
	case KindTaskStoryboards:
		return loadThrough(ctx, w, req, func(ctx context.Context) ([]StoryboardRow, error) {
			return w.st.TaskStoryboards(ctx, req.ID, req.Filter, boardLimit, 0)
		})
	case KindTaskResources:
		return loadThrough(ctx, w, req, func(ctx context.Context) ([]ResourceRow, error) {
			return w.st.TaskResources(ctx, req.ID, req.Filter, resourceLimit, 0)
		})
	}
	return nil, false, fmt.Errorf("not a read: %v", req.Kind)
}

// write applies a write to the database and, when invalidate is set,
// removes the cache entries it made stale:
//   - a task's status: its owner's task pages;
//   - the status of a task's newest script: the task's script lists, and
//     its owner's task pages (they show the newest final version);
//   - a message: its owner's conversation lists, and when the
//     conversation is about a task, the owner's task pages (they show the
//     task's latest message time).
//
// A user's task pages are every status and offset variant, deleted by
// exact key, or with -invalidate prefix by InvalidatePrefix.
//
// The invalidation runs even when ctx is cancelled after the database
// write, so that the end of a phase never leaves a stale entry behind.
func (w *Workload) write(ctx context.Context, req Request, invalidate bool) error {
	now := time.Now().UnixMilli()
	var stale []string
	pagesOf := int64(0) // the user whose task pages are stale, 0 for none
	switch req.Write {
	case writeTaskStatus:
		uid, err := w.st.SetTaskStatus(ctx, req.ID, req.Value, now)
		if err != nil {
			return fmt.Errorf("update task %d: %w", req.ID, err)
		}
		pagesOf = uid
	case writeScriptStatus:
		uid, ok, err := w.st.SetLatestScriptStatus(ctx, req.ID, req.Value)
		if err != nil {
			return fmt.Errorf("update scripts of task %d: %w", req.ID, err)
		}
		if ok {
			for _, f := range scriptFilters {
				stale = append(stale, w.keys.TaskScriptsKey(taskKey(req.ID), f, scriptLimit, 0))
			}
			pagesOf = uid
		}
	case writeMessage:
		uid, task, err := w.st.AddMessage(ctx, w.nextMsg.Add(1), req.ID, req.Value, now)
		if err != nil {
			return fmt.Errorf("add message to conversation %d: %w", req.ID, err)
		}
		for _, a := range conversationsOnly {
			stale = append(stale, w.keys.UserConversationsKey(userKey(uid), a, conversationLimit, 0))
		}
		if task != 0 {
			pagesOf = uid
		}
	}
	if !invalidate {
		return nil
	}
	ictx, cancel := invalidationContext(ctx)
	defer cancel()
	if pagesOf != 0 {
		if w.prefix {
			if _, err := w.cache.InvalidatePrefix(ictx, w.keys.Key(rediscache.NamespaceTasks, "user_tasks", userKey(pagesOf))+":"); err != nil {
				return err
			}
		} else {
			for _, st := range taskPageStatuses {
				for _, off := range taskPageOffsets {
					stale = append(stale, w.keys.UserTasksKey(userKey(pagesOf), st, taskPageLimit, off))
				}
			}
		}
	}
	if len(stale) == 0 {
		return nil
	}
	_, err := w.cache.Delete(ictx, stale...)
	return err
}

// invalidationContext keeps ctx's values but not its cancellation, bounded
// by 10s.
func invalidationContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
}

// hist is a log-linear latency histogram (HDR-style): values below 32ns
// have their own bucket, above that each power of two is split into 32
// sub-buckets, so a percentile read from it is within 1/64 (1.6%) of the
// recorded value. 1,920 counters, 15 KB; it never grows.
type hist struct {
	counts   [histBuckets]uint64
	n        uint64
	sum, max time.Duration
}

const (
	subBits     = 5
	subBuckets  = 1 << subBits
	histBuckets = (64 - subBits + 1) * subBuckets
)

func bucketOf(d time.Duration) int {
	v := uint64(max(d, 0))
	if v < subBuckets {
		return int(v)
	}
	e := bits.Len64(v) - 1 // >= subBits
	return (e-subBits+1)*subBuckets + int((v>>(e-subBits))&(subBuckets-1))
}

// bucketMid is the middle of bucket i's range.
func bucketMid(i int) time.Duration {
	if i < subBuckets {
		return time.Duration(i)
	}
	e := i/subBuckets + subBits - 1
	lo := uint64(subBuckets+i%subBuckets) << (e - subBits)
	return time.Duration(lo + (uint64(1)<<(e-subBits))/2)
}

func (h *hist) record(d time.Duration) {
	h.counts[bucketOf(d)]++
	h.n++
	h.sum += d
	h.max = max(h.max, d)
}

func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// quantile returns the q-quantile (0 < q <= 1), 0 for an empty histogram.
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(bucketMid(i), h.max)
		}
	}
	return h.max
}

func (h *hist) mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return h.sum / time.Duration(h.n)
}

// phaseStats is what one phase measured.
type phaseStats struct {
	Cached   bool
	Elapsed  time.Duration
	Lat      [numKinds]hist
	HitLat   [numKinds]hist // cached reads Redis answered
	MissLat  [numKinds]hist // cached reads that went to the database
	Hits     [numKinds]uint64
	Errors   [numKinds]uint64
	FirstErr error
}

// ops returns the number of operations of every kind.
func (p *phaseStats) ops() uint64 {
	var n uint64
	for i := range p.Lat {
		n += p.Lat[i].n
	}
	return n
}

// phaseConfig says how long a phase runs.
type phaseConfig struct {
	Workers  int
	Duration time.Duration // used when Ops is 0
	Ops      int64         // total operations over all workers
	Seed     uint64
	// Progress, when not nil, is called about every 100ms with the
	// operations done so far, and once at the end.
	Progress func(done int64)
}

// run runs the workload with cfg.Workers workers, through the cache when
// cached. Worker i draws its requests from seed (cfg.Seed, i), so both
// phases see the same request sequences.
func (w *Workload) run(ctx context.Context, cfg phaseConfig, cached bool) *phaseStats {
	var (
		done    atomic.Int64
		mu      sync.Mutex
		total   = &phaseStats{Cached: cached}
		wg      sync.WaitGroup
		stopped = make(chan struct{})
	)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if cfg.Ops == 0 {
		time.AfterFunc(cfg.Duration, cancel)
	}
	start := time.Now()
	for i := range cfg.Workers {
		wg.Go(func() {
			ps := &phaseStats{}
			r := rand.New(rand.NewPCG(cfg.Seed, uint64(i)))
			for runCtx.Err() == nil {
				if cfg.Ops > 0 && done.Add(1) > cfg.Ops {
					break
				}
				req := w.next(r)
				t0 := time.Now()
				var hit bool
				var err error
				switch {
				case req.Kind == KindWrite:
					err = w.write(runCtx, req, cached)
				case cached:
					_, hit, err = w.cachedRead(runCtx, req)
				default:
					_, err = w.read(runCtx, req)
				}
				d := time.Since(t0)
				if cfg.Ops == 0 {
					done.Add(1)
				}
				if err != nil {
					if runCtx.Err() != nil {
						break // the phase ended during this call: not a sample
					}
					ps.Errors[req.Kind]++
					if ps.FirstErr == nil {
						ps.FirstErr = fmt.Errorf("%v: %w", req.Kind, err)
					}
					continue
				}
				ps.Lat[req.Kind].record(d)
				switch {
				case hit:
					ps.Hits[req.Kind]++
					ps.HitLat[req.Kind].record(d)
				case cached && req.Kind != KindWrite:
					ps.MissLat[req.Kind].record(d)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			for k := range total.Lat {
				total.Lat[k].merge(&ps.Lat[k])
				total.HitLat[k].merge(&ps.HitLat[k])
				total.MissLat[k].merge(&ps.MissLat[k])
				total.Hits[k] += ps.Hits[k]
				total.Errors[k] += ps.Errors[k]
			}
			if total.FirstErr == nil {
				total.FirstErr = ps.FirstErr
			}
		})
	}
	if cfg.Progress != nil {
		go func() {
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stopped:
					return
				case <-t.C:
					cfg.Progress(done.Load())
				}
			}
		}()
	}
	wg.Wait()
	total.Elapsed = time.Since(start)
	close(stopped)
	if cfg.Progress != nil {
		cfg.Progress(int64(total.ops()))
	}
	return total
}
