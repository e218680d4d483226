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
	ver     *versions               // the versions whose writes have finished
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
		ver:   newVersions(cnt.Users, cnt.Tasks),
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
func loadThrough[T any](ctx context.Context, w *Workload, req Request, load func(context.Context) (T, error)) (any, rediscache.Source, error) {
	return rediscache.GetOrLoadWithSource(ctx, w.cache, w.key(req), 0, func(ctx context.Context) (T, error) {
		w.loads[req.Kind].Add(1)
		return load(ctx)
	})
}

// isHit reports whether a GetOrLoad answer came from the cache (Redis or
// the near cache) rather than from a load.
func isHit(src rediscache.Source) bool {
	return src == rediscache.SourceHit || src == rediscache.SourceStale
}

// cachedRead runs a read through the cache and reports where the answer
// came from.
func (w *Workload) cachedRead(ctx context.Context, req Request) (v any, src rediscache.Source, err error) {
	switch req.Kind {
	case KindUserTasks:
		return loadThrough(ctx, w, req, func(ctx context.Context) (Page[TaskRow], error) {
			return w.st.UserTasks(ctx, req.ID, req.Filter, taskPageLimit, req.Offset)
		})
	case KindUserConversations:
		return loadThrough(ctx, w, req, func(ctx context.Context) (Page[ConversationRow], error) {
			return w.st.UserConversations(ctx, req.ID, req.Active, conversationLimit, 0)
		})
	case KindTaskScripts:
		return loadThrough(ctx, w, req, func(ctx context.Context) (Page[ScriptRow], error) {
			return w.st.TaskScripts(ctx, req.ID, req.Filter, scriptLimit, 0)
		})
	case KindTaskStoryboards:
		return loadThrough(ctx, w, req, func(ctx context.Context) (Page[StoryboardRow], error) {
			return w.st.TaskStoryboards(ctx, req.ID, req.Filter, boardLimit, 0)
		})
	case KindTaskResources:
		return loadThrough(ctx, w, req, func(ctx context.Context) (Page[ResourceRow], error) {
			return w.st.TaskResources(ctx, req.ID, req.Filter, resourceLimit, 0)
		})
	}
	return nil, 0, fmt.Errorf("not a read: %v", req.Kind)
}

// pageVersion returns the page's version, for the stale-read check.
func (p Page[T]) pageVersion() int64 { return p.Version }

// A staleRead is a read answered with a page older than a write that had
// finished (committed, and invalidated what it made stale) before the read
// began. A read that overlaps a write may see either version: it is never
// one.
type staleRead struct {
	Req    Request
	Key    string            // the cache key, "" for the database alone
	Got    int64             // the version of the page served
	Want   int64             // the newest version finished when the read began
	Source rediscache.Source // where GetOrLoad took it from, 0 for the database alone
}

// String describes the read, e.g. "task scripts of task 12: version 3
// from GetOrLoad (hit) at scripts:v1:...; version 4 had finished before the
// read began".
func (s *staleRead) String() string {
	of := "task"
	if s.Req.Kind == KindUserTasks || s.Req.Kind == KindUserConversations {
		of = "user"
	}
	where := "the database"
	if s.Source != 0 {
		where = fmt.Sprintf("GetOrLoad (%v) at %s", s.Source, s.Key)
	}
	return fmt.Sprintf("%v of %s %d: version %d from %s; version %d had finished before the read began",
		s.Req.Kind, of, s.Req.ID, s.Got, where, s.Want)
}

// checkedRead runs a read, through the cache when cached, and checks its
// answer against the source of truth: the version finished when the read
// began is taken before the read starts, and an answer older than it is a
// staleRead. The database alone is checked the same way, as a control: it
// can never be stale, since its statement starts after that write
// committed.
func (w *Workload) checkedRead(ctx context.Context, req Request, cached bool) (src rediscache.Source, stale *staleRead, err error) {
	c, id, checked := counterOf(req)
	var want int64
	if checked {
		want = w.ver.finished(c, id)
	}
	var v any
	if cached {
		v, src, err = w.cachedRead(ctx, req)
	} else {
		v, err = w.read(ctx, req)
	}
	if err != nil || !checked {
		return src, nil, err
	}
	got := v.(interface{ pageVersion() int64 }).pageVersion()
	if got >= want {
		return src, nil, nil
	}
	s := &staleRead{Req: req, Got: got, Want: want, Source: src}
	if cached {
		s.Key = w.key(req)
	}
	return src, s, nil
}

// write applies a write to the database and, when invalidate is set,
// removes the cache entries it made stale (see invalidate); then it marks
// the versions it raised as finished, so that a read that begins after
// that must see them. A write whose invalidation failed is never marked.
func (w *Workload) write(ctx context.Context, req Request, invalidate bool) error {
	ch, err := w.apply(ctx, req)
	if err != nil {
		return err
	}
	if invalidate {
		if err := w.invalidate(ctx, ch); err != nil {
			return err
		}
	}
	w.finish(ch)
	return nil
}

// apply runs a write's transaction and returns what it changed.
func (w *Workload) apply(ctx context.Context, req Request) (change, error) {
	now := time.Now().UnixMilli()
	switch req.Write {
	case writeTaskStatus:
		ch, err := w.st.SetTaskStatus(ctx, req.ID, req.Value, now)
		if err != nil {
			return ch, fmt.Errorf("update task %d: %w", req.ID, err)
		}
		return ch, nil
	case writeScriptStatus:
		ch, err := w.st.SetLatestScriptStatus(ctx, req.ID, req.Value)
		if err != nil {
			return ch, fmt.Errorf("update scripts of task %d: %w", req.ID, err)
		}
		return ch, nil
	case writeMessage:
		ch, err := w.st.AddMessage(ctx, w.nextMsg.Add(1), req.ID, req.Value, now)
		if err != nil {
			return ch, fmt.Errorf("add message to conversation %d: %w", req.ID, err)
		}
		return ch, nil
	}
	return change{}, fmt.Errorf("not a write: %d", req.Write)
}

// invalidate removes the cache entries of every counter ch raised:
//   - tasks_version (a task's status; the newest script's status, shown as
//     the newest final version; a message about a task, shown as its latest
//     message time): the owner's task pages;
//   - scripts_version: the task's script lists;
//   - conversations_version (a message): the owner's conversation lists.
//
// A user's task pages are every status and offset variant, deleted by
// exact key, or with -invalidate prefix by InvalidatePrefix.
//
// The invalidation runs even when ctx is cancelled after the database
// write, so that the end of a phase never leaves a stale entry behind.
func (w *Workload) invalidate(ctx context.Context, ch change) error {
	var stale []string
	if ch.ScriptsVersion != 0 {
		for _, f := range scriptFilters {
			stale = append(stale, w.keys.TaskScriptsKey(taskKey(ch.Task), f, scriptLimit, 0))
		}
	}
	if ch.ConversationsVersion != 0 {
		for _, a := range conversationsOnly {
			stale = append(stale, w.keys.UserConversationsKey(userKey(ch.User), a, conversationLimit, 0))
		}
	}
	ictx, cancel := invalidationContext(ctx)
	defer cancel()
	if ch.TasksVersion != 0 {
		if w.prefix {
			if _, err := w.cache.InvalidatePrefix(ictx, w.keys.Key(rediscache.NamespaceTasks, "user_tasks", userKey(ch.User))+":"); err != nil {
				return err
			}
		} else {
			for _, st := range taskPageStatuses {
				for _, off := range taskPageOffsets {
					stale = append(stale, w.keys.UserTasksKey(userKey(ch.User), st, taskPageLimit, off))
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

// finish marks the versions ch raised as finished.
func (w *Workload) finish(ch change) {
	w.ver.finish(counterTasks, ch.User, ch.TasksVersion)
	w.ver.finish(counterConversations, ch.User, ch.ConversationsVersion)
	w.ver.finish(counterScripts, ch.Task, ch.ScriptsVersion)
}

// A counter is one of the version counters of Page.
type counter int

const (
	counterTasks         counter = iota // users.tasks_version: a user's task pages
	counterConversations                // users.conversations_version: a user's conversation lists
	counterScripts                      // tasks.scripts_version: a task's script lists
	numCounters
)

// counterOf returns the counter that versions req's page, and its row's
// id; ok is false for the reads no write changes (storyboards, resources).
func counterOf(req Request) (c counter, id int64, ok bool) {
	switch req.Kind {
	case KindUserTasks:
		return counterTasks, req.ID, true
	case KindUserConversations:
		return counterConversations, req.ID, true
	case KindTaskScripts:
		return counterScripts, req.ID, true
	}
	return 0, 0, false
}

// versions holds, per counter and row, the newest version whose write has
// finished: committed and, through a cache, invalidated. It lives beside
// the database, as the benchmark's source of truth about what a read
// beginning now must see.
type versions struct {
	done [numCounters][]atomic.Int64 // indexed by user or task id
}

func newVersions(users, tasks int64) *versions {
	v := &versions{}
	v.done[counterTasks] = make([]atomic.Int64, users+1)
	v.done[counterConversations] = make([]atomic.Int64, users+1)
	v.done[counterScripts] = make([]atomic.Int64, tasks+1)
	return v
}

// finished returns the newest finished version of counter c of row id (0,
// the seed's, when none; also for an id beyond the seed).
func (v *versions) finished(c counter, id int64) int64 {
	if d := v.done[c]; id > 0 && id < int64(len(d)) {
		return d[id].Load()
	}
	return 0
}

// finish records that version of counter c of row id has finished; 0 (not
// raised) does nothing. Writes of one row may finish out of order: the
// newest finished version is kept.
func (v *versions) finish(c counter, id, version int64) {
	d := v.done[c]
	if version == 0 || id <= 0 || id >= int64(len(d)) {
		return
	}
	for {
		cur := d[id].Load()
		if version <= cur || d[id].CompareAndSwap(cur, version) {
			return
		}
	}
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
	HitLat   [numKinds]hist // cached reads the cache answered
	MissLat  [numKinds]hist // cached reads that went to the database
	Hits     [numKinds]uint64
	Errors   [numKinds]uint64
	FirstErr error
	// Stale counts the stale reads (see checkedRead) per kind, StaleBy
	// per GetOrLoad source (0: the database alone); FirstStale is one.
	Stale      [numKinds]uint64
	StaleBy    [rediscache.SourceFallback + 1]uint64
	FirstStale *staleRead
}

// record adds one finished request of kind k that took d.
func (p *phaseStats) record(k Kind, d time.Duration, src rediscache.Source, stale *staleRead) {
	p.Lat[k].record(d)
	switch {
	case isHit(src):
		p.Hits[k]++
		p.HitLat[k].record(d)
	case p.Cached && k != KindWrite:
		p.MissLat[k].record(d)
	}
	if stale != nil {
		p.Stale[k]++
		p.StaleBy[stale.Source]++
		if p.FirstStale == nil {
			p.FirstStale = stale
		}
	}
}

// fail adds one failed request of kind k.
func (p *phaseStats) fail(k Kind, err error) {
	p.Errors[k]++
	if p.FirstErr == nil {
		p.FirstErr = fmt.Errorf("%v: %w", k, err)
	}
}

// merge adds o's counts to p.
func (p *phaseStats) merge(o *phaseStats) {
	for k := range p.Lat {
		p.Lat[k].merge(&o.Lat[k])
		p.HitLat[k].merge(&o.HitLat[k])
		p.MissLat[k].merge(&o.MissLat[k])
		p.Hits[k] += o.Hits[k]
		p.Errors[k] += o.Errors[k]
		p.Stale[k] += o.Stale[k]
	}
	for i := range p.StaleBy {
		p.StaleBy[i] += o.StaleBy[i]
	}
	if p.FirstErr == nil {
		p.FirstErr = o.FirstErr
	}
	if p.FirstStale == nil {
		p.FirstStale = o.FirstStale
	}
}

// staleReads is the number of stale reads over every kind.
func (p *phaseStats) staleReads() uint64 {
	var n uint64
	for _, s := range p.Stale {
		n += s
	}
	return n
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

// do runs one request, through the cache when cached, and records it in
// ps. It returns true when ctx ended during the call, which is then not a
// sample.
func (w *Workload) do(ctx context.Context, req Request, cached bool, ps *phaseStats) (ended bool) {
	t0 := time.Now()
	var src rediscache.Source
	var stale *staleRead
	var err error
	if req.Kind == KindWrite {
		err = w.write(ctx, req, cached)
	} else {
		src, stale, err = w.checkedRead(ctx, req, cached)
	}
	d := time.Since(t0)
	if err != nil {
		if ctx.Err() != nil {
			return true
		}
		ps.fail(req.Kind, err)
		return false
	}
	ps.record(req.Kind, d, src, stale)
	return false
}

// run runs the workload with cfg.Workers workers, through the cache when
// cached. Worker i draws its requests from seed (cfg.Seed, i), so every
// tier sees the same request sequences.
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
			ps := &phaseStats{Cached: cached}
			r := rand.New(rand.NewPCG(cfg.Seed, uint64(i)))
			for runCtx.Err() == nil {
				if cfg.Ops > 0 && done.Add(1) > cfg.Ops {
					break
				}
				ended := w.do(runCtx, w.next(r), cached, ps)
				if cfg.Ops == 0 {
					done.Add(1)
				}
				if ended {
					break
				}
			}
			mu.Lock()
			defer mu.Unlock()
			total.merge(ps)
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
