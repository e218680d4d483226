package rediscache

import (
	"context"
	"sync"
	"time"
)

// background runs the Client's own goroutines (generation refreshes, early
// refreshes, shared loads) so that Close can stop them and wait for them:
// no goroutine of a Client outlives its Close, except one running a loader
// that ignores its context, which Close does not wait for longer than
// closeWait.
type background struct {
	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	mu     sync.Mutex // orders go() against close()
	closed bool
	wg     sync.WaitGroup
	sem    chan struct{} // bounds the optional goroutines started by tryGo
}

func newBackground(limit int) *background {
	ctx, cancel := context.WithCancel(context.Background())
	return &background{ctx: ctx, cancel: cancel, sem: make(chan struct{}, limit)}
}

// detach returns a context for background work started by a call (a
// shared load, a refresh): it keeps ctx's values (a trace, say) but not
// its cancellation, ends at deadline, and is cancelled by Close.
func (b *background) detach(ctx context.Context, deadline time.Time) (context.Context, context.CancelFunc) {
	dctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	stop := context.AfterFunc(b.ctx, cancel)
	return dctx, func() { stop(); cancel() }
}

// goRun runs fn in a new goroutine unless the Client is closed, and reports
// whether it did.
func (b *background) goRun(fn func()) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		fn()
	}()
	return true
}

// tryGo is goRun for work that may be skipped: it runs fn only while fewer
// than the limit of such goroutines are running.
func (b *background) tryGo(fn func()) bool {
	select {
	case b.sem <- struct{}{}:
	default:
		return false
	}
	if !b.goRun(func() {
		defer func() { <-b.sem }()
		fn()
	}) {
		<-b.sem
		return false
	}
	return true
}

// closeWait bounds how long Close waits for the Client's goroutines once
// it has cancelled them: only a loader that ignores its context takes
// that long.
const closeWait = time.Second

// close cancels the background context and waits for every goroutine, or
// closeWait.
func (b *background) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.cancel()
	done := make(chan struct{})
	go func() {
		b.wg.Wait()
		close(done)
	}()
	t := time.NewTimer(closeWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}
