package consul

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
)

// Defaults of WatchOptions.
const (
	DefaultWaitTime   = 5 * time.Minute
	DefaultMinGap     = 50 * time.Millisecond
	DefaultMinBackoff = 250 * time.Millisecond
	DefaultMaxBackoff = 10 * time.Second
)

// querySlack is how long past WaitTime plus Consul's jitter a query may stay
// unanswered before it is abandoned as hung.
const querySlack = 10 * time.Second

// HealthAPI is the one Consul call a Watcher makes. *api.Health (client.Health())
// implements it; unit tests use a fake.
type HealthAPI interface {
	ServiceMultipleTags(service string, tags []string, passingOnly bool, q *api.QueryOptions) ([]*api.ServiceEntry, *api.QueryMeta, error)
}

// ConnectHealthAPI is the call a Watcher with WatchOptions.Connect makes instead:
// /v1/health/connect/:name. *api.Health implements it.
type ConnectHealthAPI interface {
	ConnectMultipleTags(service string, tags []string, passingOnly bool, q *api.QueryOptions) ([]*api.ServiceEntry, *api.QueryMeta, error)
}

// Sink receives a watcher's instance lists.
type Sink interface {
	// Update is called from the watcher's goroutine with the first answer and
	// with every answer whose instance list differs from the previous one. The
	// slice is fresh, sorted by ID then node, and never modified afterwards; the
	// Sink may keep it but must not modify it. service is WatchOptions.Label.
	// Update is never called while Consul is unreachable: an outage keeps the
	// last list. It must not call the watcher's Stop.
	Update(service string, instances []Instance)
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(service string, instances []Instance)

// Update calls f.
func (f SinkFunc) Update(service string, instances []Instance) { f(service, instances) }

// Observer is told what a watcher does, for metrics. Its methods are called from
// the watcher's goroutine and must be quick; they must not call Stop.
// service is WatchOptions.Label.
type Observer interface {
	// WatchUpdated follows each call of Sink.Update, with the list's length.
	WatchUpdated(service string, instances int)
	// WatchFailed follows each failed query, with the error (errors.Is(err,
	// ErrACL) for a refused token) and the wait before the next try.
	WatchFailed(service string, err error, retryIn time.Duration)
	// WatchSucceeded follows each good answer, changed or not (a blocking query
	// that timed out is a good answer), with the time it arrived.
	WatchSucceeded(service string, at time.Time)
	// WatchReady is called once, after the first answer has reached the Sink.
	WatchReady(service string)
}

// NopObserver is an Observer that does nothing; embed it to implement only some
// of the methods.
type NopObserver struct{}

// WatchUpdated does nothing.
func (NopObserver) WatchUpdated(string, int) {}

// WatchFailed does nothing.
func (NopObserver) WatchFailed(string, error, time.Duration) {}

// WatchSucceeded does nothing.
func (NopObserver) WatchSucceeded(string, time.Time) {}

// WatchReady does nothing.
func (NopObserver) WatchReady(string) {}

// WatchOptions configure a Watcher. Zero values mean the documented defaults.
type WatchOptions struct {
	// Service is the Consul service name. Required.
	Service string
	// Tags: an instance must carry all of them. Empty: no tag filter.
	Tags []string
	// Datacenter to query. "" means the client's (the agent's by default).
	Datacenter string
	// Stale lets any Consul server answer, not only the leader (?stale).
	Stale bool
	// Cached answers from the agent's cache (?cached).
	Cached bool
	// Connect follows /v1/health/connect/:name instead: the service's sidecar
	// proxies (Kind connect-proxy) and its Connect-native instances, passing only.
	// The HealthAPI must then implement ConnectHealthAPI.
	Connect bool
	// WaitTime is how long one blocking query may wait for a change. Default
	// DefaultWaitTime (5m); Consul caps it at 10m and adds up to 1/16 of jitter.
	WaitTime time.Duration
	// MinGap is the least time between the starts of two queries; a query that
	// returned sooner waits the rest of the gap plus up to a fifth of it as jitter,
	// so that an index that keeps changing (or resetting) cannot make a hot
	// loop. Default DefaultMinGap (50ms).
	MinGap time.Duration
	// MinBackoff and MaxBackoff bound the wait after a failed query: MinBackoff
	// doubled per consecutive failure, capped at MaxBackoff, of which a random
	// half to all is waited ("equal jitter"). A good answer resets it. Defaults
	// DefaultMinBackoff (250ms) and DefaultMaxBackoff (10s).
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// Label names the watcher in Sink and Observer calls and in logs. Default
	// Service.
	Label string
	// Sink receives the instance lists. nil: none (read Instances instead).
	Sink Sink
	// Observer is told about updates, failures and successes. nil: NopObserver.
	Observer Observer
	// Logger receives failures (warn; error for ACL refusals), skipped entries and a
	// first answer without a healthy instance (warn), and each instance added or removed
	// (debug: the consumer of the Sink logs changes at info, so they are said once).
	// The watcher names it "consul". nil: no logging.
	Logger hclog.Logger
	// Now and After are the clock, as in the other packages: Now reads it, After sends
	// the time once d has passed. nil: time.Now and time.After. Tests move them.
	Now   func() time.Time
	After func(d time.Duration) <-chan time.Time
}

// withDefaults returns o with zero values replaced by defaults.
func (o WatchOptions) withDefaults() WatchOptions {
	if o.WaitTime == 0 {
		o.WaitTime = DefaultWaitTime
	}
	if o.MinGap == 0 {
		o.MinGap = DefaultMinGap
	}
	if o.MinBackoff == 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = max(DefaultMaxBackoff, o.MinBackoff)
	}
	if o.Label == "" {
		o.Label = o.Service
	}
	if o.Observer == nil {
		o.Observer = NopObserver{}
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.After == nil {
		o.After = time.After
	}
	o.Tags = slices.Clone(o.Tags)
	return o
}

// Validate reports options that cannot work; every error wraps ErrInvalidOptions.
func (o WatchOptions) Validate() error {
	var errs []error
	if o.Service == "" {
		errs = append(errs, errors.New("service name is empty"))
	}
	for _, t := range o.Tags {
		if t == "" {
			errs = append(errs, errors.New("empty tag"))
			break
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"wait time", o.WaitTime}, {"min gap", o.MinGap}, {"min backoff", o.MinBackoff}, {"max backoff", o.MaxBackoff}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s %v is negative", d.name, d.v))
		}
	}
	if o.MaxBackoff > 0 && o.MinBackoff > o.MaxBackoff {
		errs = append(errs, fmt.Errorf("min backoff %v is above max backoff %v", o.MinBackoff, o.MaxBackoff))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: watch %q: %w", ErrInvalidOptions, o.Service, errors.Join(errs...))
	}
	return nil
}

// Watcher follows the healthy instances of one service with blocking queries.
// Build it with NewWatcher, run it with Run, end it with Stop or by cancelling
// Run's context.
type Watcher struct {
	health HealthAPI
	opts   WatchOptions
	log    hclog.Logger
	jitter func() float64 // in [0, 1); tests fix it
	slack  time.Duration  // allowed past WaitTime+WaitTime/16 before a query counts as hung

	ready chan struct{} // closed after the first answer reached the Sink
	life  runOnce

	mu        sync.Mutex
	answered  bool
	instances []Instance
	lastOK    time.Time
	lastErr   error

	// skipped is what the previous answer left out, so that each skipped entry
	// is logged once rather than on every answer. Owned by the Run goroutine.
	skipped map[string]bool
}

// NewWatcher returns a watcher of opts.Service that queries through health
// (client.Health() for a real agent). It does nothing until Run.
func NewWatcher(health HealthAPI, opts WatchOptions) (*Watcher, error) {
	if health == nil {
		return nil, fmt.Errorf("%w: watch %q: nil HealthAPI", ErrInvalidOptions, opts.Service)
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if _, ok := health.(ConnectHealthAPI); opts.Connect && !ok {
		return nil, fmt.Errorf("%w: watch %q: connect needs a HealthAPI with ConnectMultipleTags", ErrInvalidOptions, opts.Service)
	}
	opts = opts.withDefaults()
	return &Watcher{
		health: health,
		opts:   opts,
		log:    opts.Logger.Named("consul").With("service", opts.Label),
		jitter: rand.Float64,
		slack:  querySlack,
		ready:  make(chan struct{}),
		life:   newRunOnce(),
	}, nil
}

// Service returns the watcher's label (WatchOptions.Label, by default the service name).
func (w *Watcher) Service() string { return w.opts.Label }

// Ready is closed once the first answer has reached the Sink.
func (w *Watcher) Ready() <-chan struct{} { return w.ready }

// Instances returns the last list handed to the Sink (nil before the first
// answer). The slice must not be modified.
func (w *Watcher) Instances() []Instance {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.instances
}

// LastSuccess returns when the last good answer arrived (zero before the first).
func (w *Watcher) LastSuccess() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastOK
}

// Err returns the error of the last query if it failed, nil if it succeeded or
// none has finished yet. errors.Is(err, ErrACL) tells a refused token.
func (w *Watcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastErr
}

// Run queries Consul until ctx is done or Stop is called, then returns nil. A
// query in flight is aborted at once. Run may be called once; a second call
// returns ErrAlreadyRunning. Run after Stop returns nil at once.
func (w *Watcher) Run(ctx context.Context) error { return w.life.run(ctx, w.loop) }

// Stop ends Run, aborting the query in flight, and waits until Run has returned.
// It is idempotent and may be called before Run, or without Run at all. It must
// not be called from a Sink or Observer method (it would wait for itself).
func (w *Watcher) Stop() { w.life.stop() }

// loop is the blocking-query loop, after Consul's documented rules
// (https://developer.hashicorp.com/consul/api-docs/features/blocking) and
// api/watch/plan.go.
func (w *Watcher) loop(ctx context.Context) {
	var (
		index    uint64 // sent as ?index; 0 = answer at once
		failures int    // consecutive failed queries
	)
	for {
		start := w.opts.Now()
		q := &api.QueryOptions{
			Datacenter: w.opts.Datacenter,
			AllowStale: w.opts.Stale,
			UseCache:   w.opts.Cached,
			WaitIndex:  index,
			WaitTime:   w.opts.WaitTime,
		}
		// Each query has its own deadline: Consul answers a blocking query within
		// WaitTime plus up to WaitTime/16 of jitter, so a query still open well
		// after that hangs on a dead connection (a silent network partition) and
		// is abandoned like any other failure.
		if failures > 0 {
			// The agent may have restarted. A Consul server that has just restarted
			// answers default and stale reads from a state still catching up with its
			// log — measured: an empty list, with a known leader, for a service that
			// had instances. It refuses consistent reads until it has caught up, so
			// the first query after a failure asks for one (not from the agent's
			// cache), and the last known instances stay until it is answered.
			q.AllowStale, q.UseCache, q.RequireConsistent = false, false, true
		}
		timeout := w.opts.WaitTime + w.opts.WaitTime/16 + w.slack
		qctx, cancel := context.WithTimeout(ctx, timeout)
		entries, meta, err := w.query(q.WithContext(qctx))
		hung := qctx.Err() == context.DeadlineExceeded
		cancel()
		if ctx.Err() != nil {
			return // stopped: the error, if any, is the cancellation
		}
		if err != nil && hung {
			err = fmt.Errorf("no answer within %v: %w", timeout, err)
		}
		if err == nil && meta == nil {
			err = errors.New("answer without query metadata")
		}
		if err != nil {
			failures++
			wait := w.backoff(failures)
			w.failed(classify(fmt.Sprintf("health query for service %q", w.opts.Service), err), failures, wait)
			// After a failure we may be talking to another agent (restarted, with a
			// fresh and lower index): ask without blocking so that recovery is seen
			// at once instead of after a whole WaitTime.
			index = 0
			if !w.sleep(ctx, wait) {
				return
			}
			continue
		}
		if failures > 0 {
			w.log.Info("consul answers again", "failed_queries", failures)
			failures = 0
		}
		index = nextIndex(index, meta.LastIndex, w.log)
		w.succeeded(entries, w.opts.Now())
		if gap := w.gap(w.opts.Now().Sub(start)); gap > 0 && !w.sleep(ctx, gap) {
			return
		}
	}
}

// query makes one health query: the service's own instances, or with Connect its
// sidecar proxies and Connect-native instances.
func (w *Watcher) query(q *api.QueryOptions) ([]*api.ServiceEntry, *api.QueryMeta, error) {
	if w.opts.Connect {
		return w.health.(ConnectHealthAPI).ConnectMultipleTags(w.opts.Service, w.opts.Tags, true, q)
	}
	return w.health.ServiceMultipleTags(w.opts.Service, w.opts.Tags, true, q)
}

// nextIndex returns the index to send with the next query, given the one sent
// with the last and the one Consul answered. An index that went backwards (a
// restored snapshot, a restarted agent, another server) resets to 0, restarting
// the loop with a query that answers at once; an answered 0 — a Consul bug that
// would make every query return at once — becomes 1, wherever it comes.
func nextIndex(sent, got uint64, log hclog.Logger) uint64 {
	switch {
	case got == 0:
		return 1
	case got < sent:
		log.Debug("consul index went backwards; resetting", "sent", sent, "answered", got)
		return 0
	default:
		return got
	}
}

// backoff returns the wait after the n-th consecutive failure: MinBackoff·2^(n-1)
// capped at MaxBackoff, of which a random half to all.
func (w *Watcher) backoff(n int) time.Duration {
	d := w.opts.MinBackoff
	for i := 1; i < n && d < w.opts.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, w.opts.MaxBackoff)
	return d/2 + time.Duration(w.jitter()*float64(d-d/2))
}

// gap returns how long to wait after a good answer that took elapsed: the rest
// of MinGap plus up to a fifth of it, or nothing once MinGap has passed.
func (w *Watcher) gap(elapsed time.Duration) time.Duration {
	if elapsed >= w.opts.MinGap {
		return 0
	}
	return w.opts.MinGap - elapsed + time.Duration(w.jitter()*float64(w.opts.MinGap/5))
}

// sleep waits d, or less if ctx ends first (then it returns false).
func (w *Watcher) sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-w.opts.After(d):
		return true
	}
}

// failed records and reports a failed query.
func (w *Watcher) failed(err error, failures int, wait time.Duration) {
	w.mu.Lock()
	w.lastErr = err
	lastOK := w.lastOK
	w.mu.Unlock()
	args := []any{"error", err, "retry_in", wait, "failed_queries", failures}
	if !lastOK.IsZero() {
		args = append(args, "last_success", lastOK)
	}
	if errors.Is(err, ErrACL) {
		w.log.Error("consul refused the ACL token; keeping the last known instances", args...)
	} else {
		w.log.Warn("consul query failed; keeping the last known instances", args...)
	}
	w.notify(func() { w.opts.Observer.WatchFailed(w.opts.Label, err, wait) })
}

// succeeded turns a good answer into an instance list and hands it on if it
// changed (or is the first).
func (w *Watcher) succeeded(entries []*api.ServiceEntry, at time.Time) {
	instances, skips := buildInstances(entries, w.opts.Connect)
	w.logSkipped(skips)

	w.mu.Lock()
	prev, first := w.instances, !w.answered
	changed := first || !equalInstances(prev, instances)
	if changed {
		w.instances = instances
		w.answered = true
	}
	w.lastOK, w.lastErr = at, nil
	w.mu.Unlock()

	if changed {
		added, removed := diffInstances(prev, instances)
		for _, in := range added {
			w.log.Debug("instance added", "id", in.ID, "node", in.Node, "address", in.HostPort(), "weight", in.Weight)
		}
		for _, in := range removed {
			w.log.Debug("instance removed", "id", in.ID, "node", in.Node, "address", in.HostPort())
		}
		if first && len(instances) == 0 {
			w.log.Warn("no healthy instance")
		}
		if w.opts.Sink != nil {
			w.notify(func() { w.opts.Sink.Update(w.opts.Label, instances) })
		}
		w.notify(func() { w.opts.Observer.WatchUpdated(w.opts.Label, len(instances)) })
	}
	w.notify(func() { w.opts.Observer.WatchSucceeded(w.opts.Label, at) })
	if first {
		close(w.ready)
		w.notify(func() { w.opts.Observer.WatchReady(w.opts.Label) })
	}
}

// logSkipped warns once about each entry that was left out, until it is fixed.
func (w *Watcher) logSkipped(skips []skipped) {
	if len(skips) == 0 && len(w.skipped) == 0 {
		return
	}
	now := make(map[string]bool, len(skips))
	for _, s := range skips {
		now[s.key] = true
		if !w.skipped[s.key] {
			w.log.Warn("skipping health entry", "entry", s.key, "reason", s.reason)
		}
	}
	w.skipped = now
}

// notify calls an owner's callback; a panic in it is logged, not fatal to the loop.
func (w *Watcher) notify(f func()) {
	defer func() {
		if r := recover(); r != nil {
			w.log.Error("panic in sink or observer", "panic", r, "stack", string(debug.Stack()))
		}
	}()
	f()
}
