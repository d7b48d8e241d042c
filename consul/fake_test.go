package consul

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// fakeClock is a watcher clock (Now and After) that time only moves on: After advances it at once by the
// wait asked for (and records the wait), and fakeHealth advances it by the time a
// scripted answer "took".
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	waits []time.Duration
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.waits = append(c.waits, d)
	ch := make(chan time.Time, 1)
	ch <- c.now
	return ch
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (c *fakeClock) Waits() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.waits)
}

// step is one scripted answer of fakeHealth.
type step struct {
	entries []*api.ServiceEntry
	index   uint64
	err     error
	took    time.Duration // how far the call moves the fake clock
}

// call is what the watcher sent in one query.
type call struct {
	service    string
	tags       []string
	passing    bool
	index      uint64
	wait       time.Duration
	stale      bool
	cached     bool
	datacenter string
	consistent bool
}

// fakeHealth answers queries from a script; once the script is spent it blocks
// until the query's context ends (as a blocking query would) and closes idle.
type fakeHealth struct {
	clock *fakeClock

	mu    sync.Mutex
	steps []step
	calls []call
	idle  chan struct{}
	once  sync.Once
}

func newFakeHealth(clock *fakeClock, steps ...step) *fakeHealth {
	return &fakeHealth{clock: clock, steps: steps, idle: make(chan struct{})}
}

func (f *fakeHealth) ServiceMultipleTags(service string, tags []string, passing bool, q *api.QueryOptions) ([]*api.ServiceEntry, *api.QueryMeta, error) {
	f.mu.Lock()
	f.calls = append(f.calls, call{service, slices.Clone(tags), passing, q.WaitIndex, q.WaitTime, q.AllowStale, q.UseCache, q.Datacenter, q.RequireConsistent})
	if len(f.steps) == 0 {
		f.mu.Unlock()
		f.once.Do(func() { close(f.idle) })
		<-q.Context().Done()
		return nil, nil, q.Context().Err()
	}
	s := f.steps[0]
	f.steps = f.steps[1:]
	f.mu.Unlock()
	if f.clock != nil {
		f.clock.advance(s.took)
	}
	if s.err != nil {
		return nil, nil, s.err
	}
	return s.entries, &api.QueryMeta{LastIndex: s.index}, nil
}

func (f *fakeHealth) Calls() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// entry builds a passing health entry.
func entry(id, node, nodeAddr, addr string, port int) *api.ServiceEntry {
	return &api.ServiceEntry{
		Node:    &api.Node{Node: node, Address: nodeAddr},
		Service: &api.AgentService{ID: id, Service: "web", Address: addr, Port: port, Weights: api.AgentWeights{Passing: 1, Warning: 1}},
	}
}

// recorder is a Sink and an Observer that remembers everything.
type recorder struct {
	mu        sync.Mutex
	updates   [][]Instance
	updated   []int
	errs      []error
	retries   []time.Duration
	successes []time.Time
	ready     int
	labels    map[string]bool
}

func (r *recorder) Update(service string, in []Instance) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.label(service)
	r.updates = append(r.updates, in)
}

func (r *recorder) WatchUpdated(service string, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.label(service)
	r.updated = append(r.updated, n)
}

func (r *recorder) WatchFailed(service string, err error, retryIn time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.label(service)
	r.errs = append(r.errs, err)
	r.retries = append(r.retries, retryIn)
}

func (r *recorder) WatchSucceeded(service string, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.label(service)
	r.successes = append(r.successes, at)
}

func (r *recorder) WatchReady(service string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.label(service)
	r.ready++
}

func (r *recorder) label(s string) {
	if r.labels == nil {
		r.labels = map[string]bool{}
	}
	r.labels[s] = true
}

// snapshot returns copies of what was recorded.
func (r *recorder) snapshot() (updates [][]Instance, errs []error, retries []time.Duration, successes, ready int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.updates), slices.Clone(r.errs), slices.Clone(r.retries), len(r.successes), r.ready
}

// last returns the last list handed to the sink and whether there was one.
func (r *recorder) last() ([]Instance, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.updates) == 0 {
		return nil, false
	}
	return r.updates[len(r.updates)-1], true
}

// eventually polls cond every few milliseconds until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// runWatcher starts w.Run in a goroutine and returns a function that stops it
// and reports Run's error.
func runWatcher(t testing.TB, w *Watcher) (stop func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- w.Run(context.Background()) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			w.Stop()
			select {
			case err = <-errc:
			case <-time.After(5 * time.Second):
				t.Errorf("Run did not return after Stop")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// ids returns the IDs of a list, in order.
func ids(in []Instance) []string {
	out := make([]string, len(in))
	for i, x := range in {
		out[i] = x.ID
	}
	return out
}
