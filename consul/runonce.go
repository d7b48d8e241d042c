package consul

import (
	"context"
	"sync"
)

// runOnce is the lifecycle Watcher and Certs share: Run may be called once (a second
// call returns ErrAlreadyRunning), Stop may be called any number of times, before,
// during or without Run, and waits until Run has returned.
type runOnce struct {
	mu      sync.Mutex
	started bool
	stopped bool
	cancel  context.CancelFunc
	done    chan struct{} // closed when run returns
}

func newRunOnce() runOnce { return runOnce{done: make(chan struct{})} }

// run calls f with a context that ends with ctx or with stop, then returns nil. After
// stop it returns nil at once without calling f.
func (r *runOnce) run(ctx context.Context, f func(context.Context)) error {
	r.mu.Lock()
	if r.started {
		r.mu.Unlock()
		return ErrAlreadyRunning
	}
	r.started = true
	defer close(r.done)
	if r.stopped {
		r.mu.Unlock()
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.cancel = cancel
	r.mu.Unlock()
	f(ctx)
	return nil
}

// stop ends run, aborting what f is waiting for, and waits until run has returned.
func (r *runOnce) stop() {
	r.mu.Lock()
	r.stopped = true
	started, cancel := r.started, r.cancel
	r.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	if started {
		<-r.done
	}
}
