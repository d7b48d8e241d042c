package consul

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
)

// newTestWatcher builds a watcher over a fake with a fake clock and a fixed jitter.
func newTestWatcher(t *testing.T, h HealthAPI, clock *fakeClock, jitter float64, opts WatchOptions) (*Watcher, *recorder) {
	t.Helper()
	rec := &recorder{}
	if opts.Service == "" {
		opts.Service = "web"
	}
	opts.Sink, opts.Observer, opts.Now, opts.After = rec, rec, clock.Now, clock.After
	w, err := NewWatcher(h, opts)
	if err != nil {
		t.Fatal(err)
	}
	w.jitter = func() float64 { return jitter }
	return w, rec
}

func TestWatcherIndexRules(t *testing.T) {
	a := []*api.ServiceEntry{entry("a", "n1", "10.0.0.1", "", 80)}
	clock := newFakeClock()
	h := newFakeHealth(clock,
		step{entries: a, index: 10},                 // first answer
		step{entries: a, index: 12},                 // moved on
		step{entries: a, index: 5},                  // went backwards: reset to 0
		step{entries: a, index: 0},                  // answered 0: never send 0 again, send 1
		step{entries: a, index: 7},                  // normal again
		step{err: errors.New("connection refused")}, // failure: ask without blocking next
		step{entries: a, index: 9},
	)
	w, _ := newTestWatcher(t, h, clock, 0, WatchOptions{})
	stop := runWatcher(t, w)
	<-h.idle
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	var got []uint64
	for _, c := range h.Calls() {
		got = append(got, c.index)
	}
	want := []uint64{0, 10, 12, 0, 1, 7, 0, 9}
	if !slices.Equal(got, want) {
		t.Fatalf("indexes sent = %v, want %v", got, want)
	}
}

func TestNextIndex(t *testing.T) {
	for _, tc := range []struct {
		name      string
		sent, got uint64
		want      uint64
	}{
		{"first answer", 0, 42, 42},
		{"unchanged (timeout)", 42, 42, 42},
		{"forward", 42, 50, 50},
		{"backwards resets", 42, 41, 0},
		{"zero after an answer becomes 1", 42, 0, 1},
		{"zero on the first answer becomes 1", 0, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := nextIndex(tc.sent, tc.got, hclog.NewNullLogger()); got != tc.want {
				t.Fatalf("nextIndex(%d, %d) = %d, want %d", tc.sent, tc.got, got, tc.want)
			}
		})
	}
}

func TestWatcherBackoffGrowsCapsAndResets(t *testing.T) {
	boom := errors.New("dial tcp: connection refused")
	a := []*api.ServiceEntry{entry("a", "n1", "10.0.0.1", "", 80)}
	steps := []step{{entries: a, index: 3}}
	for range 6 {
		steps = append(steps, step{err: boom})
	}
	steps = append(steps, step{entries: a, index: 4, took: time.Second}, step{err: boom})
	for _, tc := range []struct {
		name   string
		jitter float64
		want   []time.Duration // retry waits; jitter 1 gives the cap, 0 half of it
	}{
		{"full", 0.999999999, []time.Duration{100, 200, 400, 800, 1000, 1000, 100}},
		{"half", 0, []time.Duration{50, 100, 200, 400, 500, 500, 50}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			h := newFakeHealth(clock, steps...)
			w, rec := newTestWatcher(t, h, clock, tc.jitter, WatchOptions{
				MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second, MinGap: 10 * time.Millisecond,
			})
			stop := runWatcher(t, w)
			<-h.idle
			_ = stop()
			updates, errs, retries, _, _ := rec.snapshot()
			if len(errs) != 7 {
				t.Fatalf("%d errors observed, want 7", len(errs))
			}
			for i, d := range retries {
				want := tc.want[i] * time.Millisecond
				if d < want-time.Millisecond || d > want {
					t.Errorf("retry %d waits %v, want %v", i, d, want)
				}
				if !errors.Is(errs[i], boom) || errors.Is(errs[i], ErrACL) {
					t.Errorf("error %d = %v: want it to wrap the cause and not be ErrACL", i, errs[i])
				}
			}
			// The fake clock saw the same waits (gap waits are 10ms-ish and excluded).
			var slept []time.Duration
			for _, d := range clock.Waits() {
				if d >= 50*time.Millisecond {
					slept = append(slept, d)
				}
			}
			if !slices.Equal(slept, retries) {
				t.Errorf("clock waits %v, observer retries %v", slept, retries)
			}
			if len(updates) != 1 {
				t.Errorf("sink updated %d times, want once (errors never update; same list twice is no update)", len(updates))
			}
		})
	}
}

func TestWatcherMinGap(t *testing.T) {
	a := []*api.ServiceEntry{entry("a", "n1", "10.0.0.1", "", 80)}
	clock := newFakeClock()
	h := newFakeHealth(clock,
		step{entries: a, index: 1, took: 0},                     // instant: wait the gap + jitter
		step{entries: a, index: 2, took: 30 * time.Millisecond}, // part of it: wait the rest
		step{entries: a, index: 3, took: time.Minute},           // a blocking query that waited: go on at once
		step{entries: a, index: 4, took: 0},
	)
	w, _ := newTestWatcher(t, h, clock, 0.5, WatchOptions{MinGap: 100 * time.Millisecond})
	stop := runWatcher(t, w)
	<-h.idle
	_ = stop()
	want := []time.Duration{110 * time.Millisecond, 80 * time.Millisecond, 110 * time.Millisecond}
	if got := clock.Waits(); !slices.Equal(got, want) {
		t.Fatalf("waits = %v, want %v", got, want)
	}
}

// A flapping index (always backwards, so always reset to 0 and answered at once)
// must not turn into a hot loop: the real clock bounds the query rate by MinGap.
func TestWatcherFlappingIndexIsRateLimited(t *testing.T) {
	var calls atomic.Int64
	h := healthFunc(func(_ string, _ []string, _ bool, q *api.QueryOptions) ([]*api.ServiceEntry, *api.QueryMeta, error) {
		n := calls.Add(1)
		return nil, &api.QueryMeta{LastIndex: uint64(1000 - n)}, nil // always lower than last time
	})
	w, err := NewWatcher(h, WatchOptions{Service: "web", MinGap: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	stop := runWatcher(t, w)
	<-w.Ready()
	start, n0 := time.Now(), calls.Load()
	time.Sleep(300 * time.Millisecond) // the stretch being measured
	n := calls.Load() - n0
	elapsed := time.Since(start)
	_ = stop()
	if maxCalls := int64(elapsed/(20*time.Millisecond)) + 1; n > maxCalls || n < 3 {
		t.Fatalf("%d queries in %v with a 20ms gap; want between 3 and %d", n, elapsed, maxCalls)
	}
}

type healthFunc func(string, []string, bool, *api.QueryOptions) ([]*api.ServiceEntry, *api.QueryMeta, error)

func (f healthFunc) ServiceMultipleTags(s string, tags []string, p bool, q *api.QueryOptions) ([]*api.ServiceEntry, *api.QueryMeta, error) {
	return f(s, tags, p, q)
}

func TestWatcherPassesQueryOptions(t *testing.T) {
	clock := newFakeClock()
	h := newFakeHealth(clock, step{index: 1})
	w, _ := newTestWatcher(t, h, clock, 0, WatchOptions{
		Service: "users", Tags: []string{"v1", "blue"}, Datacenter: "dc2",
		Stale: true, Cached: true, WaitTime: 2 * time.Second,
	})
	stop := runWatcher(t, w)
	<-h.idle
	_ = stop()
	want := call{service: "users", tags: []string{"v1", "blue"}, passing: true, index: 1, wait: 2 * time.Second, stale: true, cached: true, datacenter: "dc2"}
	calls := h.Calls()
	if len(calls) != 2 || !reflect.DeepEqual(calls[1], want) {
		t.Fatalf("calls = %+v, want the second to be %+v", calls, want)
	}
	if calls[0].index != 0 {
		t.Fatalf("first query sent index %d, want 0", calls[0].index)
	}
}

// After a failed query the next one asks for a consistent read (a restarted server
// answers other reads from a state still catching up); once answered, the configured
// mode comes back.
func TestWatcherRecoversWithConsistentRead(t *testing.T) {
	clock := newFakeClock()
	a := []*api.ServiceEntry{entry("a", "n1", "10.0.0.1", "", 80)}
	boom := errors.New("dial tcp: connection refused")
	h := newFakeHealth(clock, step{entries: a, index: 3}, step{err: boom}, step{err: boom}, step{entries: a, index: 9})
	w, _ := newTestWatcher(t, h, clock, 0, WatchOptions{Service: "users", Stale: true, Cached: true, MinGap: time.Millisecond})
	stop := runWatcher(t, w)
	<-h.idle
	_ = stop()
	calls := h.Calls()
	if len(calls) != 5 {
		t.Fatalf("%d calls, want 5", len(calls))
	}
	for i, want := range []bool{false, false, true, true, false} {
		c := calls[i]
		if c.consistent != want || (want && (c.stale || c.cached)) || (!want && (!c.stale || !c.cached)) {
			t.Errorf("call %d: consistent=%v stale=%v cached=%v, want consistent=%v (and stale, cached only without it)", i, c.consistent, c.stale, c.cached, want)
		}
	}
	if calls[4].index != 9 {
		t.Errorf("after recovery the query sent index %d, want 9", calls[4].index)
	}
}

func TestWatcherDefaults(t *testing.T) {
	clock := newFakeClock()
	h := newFakeHealth(clock, step{index: 1})
	w, _ := newTestWatcher(t, h, clock, 0, WatchOptions{})
	stop := runWatcher(t, w)
	<-h.idle
	_ = stop()
	if c := h.Calls()[0]; c.wait != DefaultWaitTime || c.stale || c.cached || c.datacenter != "" || len(c.tags) != 0 {
		t.Fatalf("default query = %+v", c)
	}
	if w.Service() != "web" {
		t.Fatalf("label defaults to %q, want the service name", w.Service())
	}
}

func TestWatcherSnapshots(t *testing.T) {
	proxy := entry("web-sidecar", "n1", "10.0.0.1", "10.0.0.1", 21000)
	proxy.Service.Kind = api.ServiceKindConnectProxy
	weighted := entry("c", "n2", "10.0.0.2", "", 8080)
	weighted.Service.Weights.Passing = 5
	weighted.Service.Tags = []string{"v1", "blue"}
	weighted.Service.Meta = map[string]string{"zone": "a"}
	noWeight := entry("d", "n1", "10.0.0.1", "svc.internal", 9000)
	noWeight.Service.Weights = api.AgentWeights{}
	first := []*api.ServiceEntry{
		weighted,
		entry("b", "n1", "10.0.0.1", "192.168.1.5", 80), // service address wins
		entry("a", "n2", "10.0.0.2", "", 80),            // node address fallback
		entry("a", "n1", "10.0.0.1", "", 81),            // same ID on another node
		noWeight,
		proxy,                                     // not the service itself
		entry("noaddr", "n3", "", "", 80),         // no address at all
		entry("anyaddr", "n3", "", "0.0.0.0", 80), // unspecified address
		entry("noport", "n1", "10.0.0.1", "", 0),  // no port
	}
	clock := newFakeClock()
	h := newFakeHealth(clock,
		step{entries: first, index: 10},
		step{entries: first, index: 10},     // blocking query timed out: same list
		step{entries: first[:4], index: 11}, // d left
	)
	w, rec := newTestWatcher(t, h, clock, 0, WatchOptions{Label: "users-v1"})
	stop := runWatcher(t, w)
	<-h.idle
	_ = stop()

	updates, errs, _, successes, ready := rec.snapshot()
	if len(errs) != 0 || successes != 3 || ready != 1 {
		t.Fatalf("errors %v, successes %d, ready %d; want none, 3, 1", errs, successes, ready)
	}
	if len(updates) != 2 {
		t.Fatalf("%d updates, want 2 (the repeated answer changes nothing)", len(updates))
	}
	want := []Instance{
		{ID: "a", Node: "n1", Address: "10.0.0.1", Port: 81, Weight: 1},
		{ID: "a", Node: "n2", Address: "10.0.0.2", Port: 80, Weight: 1},
		{ID: "b", Node: "n1", Address: "192.168.1.5", Port: 80, Weight: 1},
		{ID: "c", Node: "n2", Address: "10.0.0.2", Port: 8080, Weight: 5, Tags: []string{"v1", "blue"}, Meta: map[string]string{"zone": "a"}},
		{ID: "d", Node: "n1", Address: "svc.internal", Port: 9000, Weight: 1},
	}
	if !reflect.DeepEqual(updates[0], want) {
		t.Fatalf("first list =\n%+v\nwant\n%+v", updates[0], want)
	}
	if !reflect.DeepEqual(updates[1], want[:4]) {
		t.Fatalf("second list = %v, want %v", ids(updates[1]), ids(want[:4]))
	}
	// Snapshots are independent of the entries they came from.
	weighted.Service.Tags[0] = "mutated"
	weighted.Service.Meta["zone"] = "mutated"
	if updates[0][3].Tags[0] != "v1" || updates[0][3].Meta["zone"] != "a" {
		t.Fatal("the snapshot aliases the answer's tags or meta")
	}
	if got := w.Instances(); !reflect.DeepEqual(got, want[:4]) {
		t.Fatalf("Instances() = %v", ids(got))
	}
	if !rec.labels["users-v1"] || len(rec.labels) != 1 {
		t.Fatalf("callbacks named %v, want only the label", rec.labels)
	}
	if got := want[1].HostPort(); got != "10.0.0.2:80" {
		t.Fatalf("HostPort = %q", got)
	}
	if got := (Instance{Address: "::1", Port: 80}).HostPort(); got != "[::1]:80" {
		t.Fatalf("HostPort IPv6 = %q", got)
	}
}

func TestWatcherStateAndReady(t *testing.T) {
	boom := errors.New("boom")
	clock := newFakeClock()
	h := newFakeHealth(clock, step{err: boom})
	w, rec := newTestWatcher(t, h, clock, 0, WatchOptions{})
	if w.Err() != nil || !w.LastSuccess().IsZero() || w.Instances() != nil {
		t.Fatal("a new watcher has state")
	}
	stop := runWatcher(t, w)
	<-h.idle
	select {
	case <-w.Ready():
		t.Fatal("ready before any answer")
	default:
	}
	if !errors.Is(w.Err(), boom) {
		t.Fatalf("Err() = %v, want boom", w.Err())
	}
	_ = stop()
	if _, ok := rec.last(); ok {
		t.Fatal("the sink was updated although Consul never answered")
	}

	// An empty answer is an answer: ready, with an empty list.
	clock = newFakeClock()
	h = newFakeHealth(clock, step{err: boom}, step{index: 4})
	w, rec = newTestWatcher(t, h, clock, 0, WatchOptions{})
	stop = runWatcher(t, w)
	<-h.idle
	<-w.Ready()
	if w.Err() != nil {
		t.Fatalf("Err() after a good answer = %v", w.Err())
	}
	if got, ok := rec.last(); !ok || len(got) != 0 || got == nil {
		t.Fatalf("last update = %v, %v; want an empty non-nil list", got, ok)
	}
	if w.LastSuccess().IsZero() {
		t.Fatal("LastSuccess not set after a good answer")
	}
	_ = stop()
}

func TestWatcherStop(t *testing.T) {
	t.Run("aborts the query in flight", func(t *testing.T) {
		inFlight := make(chan struct{})
		h := healthFunc(func(_ string, _ []string, _ bool, q *api.QueryOptions) ([]*api.ServiceEntry, *api.QueryMeta, error) {
			close(inFlight)
			<-q.Context().Done()
			return nil, nil, q.Context().Err()
		})
		w, _ := NewWatcher(h, WatchOptions{Service: "web"})
		errc := make(chan error, 1)
		go func() { errc <- w.Run(context.Background()) }()
		<-inFlight
		start := time.Now()
		w.Stop()
		if d := time.Since(start); d > time.Second {
			t.Fatalf("Stop took %v", d)
		}
		if err := <-errc; err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
		w.Stop() // idempotent
		if err := w.Run(context.Background()); !errors.Is(err, ErrAlreadyRunning) {
			t.Fatalf("second Run = %v, want ErrAlreadyRunning", err)
		}
	})
	t.Run("context cancellation ends Run", func(t *testing.T) {
		h := newFakeHealth(nil)
		w, _ := NewWatcher(h, WatchOptions{Service: "web"})
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { errc <- w.Run(ctx) }()
		<-h.idle
		cancel()
		if err := <-errc; err != nil {
			t.Fatalf("Run = %v", err)
		}
		w.Stop()
	})
	t.Run("during backoff", func(t *testing.T) {
		h := healthFunc(func(string, []string, bool, *api.QueryOptions) ([]*api.ServiceEntry, *api.QueryMeta, error) {
			return nil, nil, errors.New("down")
		})
		w, _ := NewWatcher(h, WatchOptions{Service: "web", MinBackoff: time.Hour, MaxBackoff: time.Hour})
		go func() { _ = w.Run(context.Background()) }()
		eventually(t, 5*time.Second, "a failure", func() bool { return w.Err() != nil })
		start := time.Now()
		w.Stop()
		if d := time.Since(start); d > time.Second {
			t.Fatalf("Stop during an hour's backoff took %v", d)
		}
	})
	t.Run("before Run", func(t *testing.T) {
		w, _ := NewWatcher(newFakeHealth(nil), WatchOptions{Service: "web"})
		w.Stop()
		w.Stop()
		if err := w.Run(context.Background()); err != nil {
			t.Fatalf("Run after Stop = %v", err)
		}
	})
}

// A query that outlives WaitTime (a dead connection that never answers) is
// abandoned as a failure and retried, not waited on forever.
func TestWatcherAbandonsHungQuery(t *testing.T) {
	var calls atomic.Int32
	var deadlines []time.Duration
	var mu sync.Mutex
	h := healthFunc(func(_ string, _ []string, _ bool, q *api.QueryOptions) ([]*api.ServiceEntry, *api.QueryMeta, error) {
		if calls.Add(1) > 1 {
			return nil, &api.QueryMeta{LastIndex: 5}, nil
		}
		d, _ := q.Context().Deadline()
		mu.Lock()
		deadlines = append(deadlines, time.Until(d))
		mu.Unlock()
		<-q.Context().Done() // never answers
		return nil, nil, q.Context().Err()
	})
	rec := &recorder{}
	w, err := NewWatcher(h, WatchOptions{Service: "web", WaitTime: 160 * time.Millisecond, MinBackoff: time.Millisecond, Observer: rec})
	if err != nil {
		t.Fatal(err)
	}
	w.slack = 40 * time.Millisecond
	start := time.Now()
	stop := runWatcher(t, w)
	select {
	case <-w.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("the watcher waited on a hung query")
	}
	_ = stop()
	if d := time.Since(start); d < 210*time.Millisecond {
		t.Fatalf("abandoned after %v, before WaitTime+WaitTime/16+slack (210ms)", d)
	}
	_, errs, _, _, _ := rec.snapshot()
	if len(errs) != 1 || !errors.Is(errs[0], context.DeadlineExceeded) || !strings.Contains(errs[0].Error(), "no answer within 210ms") {
		t.Fatalf("errors = %v", errs)
	}
	if len(deadlines) != 1 || deadlines[0] > 210*time.Millisecond || deadlines[0] < 150*time.Millisecond {
		t.Fatalf("query deadline %v, want about 210ms", deadlines)
	}
}

func TestWatcherSinkPanicIsContained(t *testing.T) {
	a := []*api.ServiceEntry{entry("a", "n1", "10.0.0.1", "", 80)}
	clock := newFakeClock()
	h := newFakeHealth(clock, step{entries: a, index: 1}, step{entries: a[:0], index: 2})
	var calls atomic.Int32
	w, err := NewWatcher(h, WatchOptions{Service: "web", Now: clock.Now, After: clock.After, Sink: SinkFunc(func(string, []Instance) {
		calls.Add(1)
		panic("owner bug")
	})})
	if err != nil {
		t.Fatal(err)
	}
	stop := runWatcher(t, w)
	<-h.idle
	_ = stop()
	if calls.Load() != 2 {
		t.Fatalf("sink called %d times, want 2: a panic must not end the loop", calls.Load())
	}
}

func TestWatchOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts WatchOptions
		want string // "" = valid
	}{
		{"minimal", WatchOptions{Service: "web"}, ""},
		{"full", WatchOptions{Service: "web", Tags: []string{"a"}, WaitTime: time.Second, MinGap: time.Millisecond, MinBackoff: time.Second, MaxBackoff: time.Minute}, ""},
		{"no service", WatchOptions{}, "service name is empty"},
		{"empty tag", WatchOptions{Service: "web", Tags: []string{"a", ""}}, "empty tag"},
		{"negative wait", WatchOptions{Service: "web", WaitTime: -1}, "wait time -1ns is negative"},
		{"negative gap", WatchOptions{Service: "web", MinGap: -1}, "min gap"},
		{"backoff order", WatchOptions{Service: "web", MinBackoff: time.Minute, MaxBackoff: time.Second}, "above max backoff"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.opts.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want ErrInvalidOptions containing %q", err, tc.want)
			}
			if _, err := NewWatcher(newFakeHealth(nil), tc.opts); !errors.Is(err, ErrInvalidOptions) {
				t.Fatalf("NewWatcher = %v", err)
			}
		})
	}
	if _, err := NewWatcher(nil, WatchOptions{Service: "web"}); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("NewWatcher(nil) = %v", err)
	}
	// A MinBackoff above the default cap raises the cap instead of failing.
	w, err := NewWatcher(newFakeHealth(nil), WatchOptions{Service: "web", MinBackoff: time.Minute})
	if err != nil || w.opts.MaxBackoff != time.Minute {
		t.Fatalf("MinBackoff 1m alone: %v, max %v", err, w.opts.MaxBackoff)
	}
}

// ACL refusals come through the real API client as StatusError 403; they must
// surface as ErrACL with Consul's message, in the observer and in Err().
func TestWatcherACLError(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
	}{
		{"acl not found", http.StatusForbidden, "ACL not found"},
		{"permission denied", http.StatusForbidden, `Permission denied: token with AccessorID 'x' lacks permission 'service:read' on "web"`},
		{"rpc error with other code", http.StatusInternalServerError, "rpc error making call: ACL not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var token atomic.Value
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				token.Store(r.Header.Get("X-Consul-Token"))
				http.Error(w, tc.body, tc.status)
			}))
			defer srv.Close()
			c, err := NewClient(Config{Address: srv.URL, Token: "bad-token"})
			if err != nil {
				t.Fatal(err)
			}
			rec := &recorder{}
			w, err := NewWatcher(c.Health(), WatchOptions{Service: "web", Observer: rec, Sink: rec, MinBackoff: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			stop := runWatcher(t, w)
			eventually(t, 5*time.Second, "a failure", func() bool { return w.Err() != nil })
			_ = stop()
			err = w.Err()
			if !errors.Is(err, ErrACL) || !strings.Contains(err.Error(), tc.body) {
				t.Fatalf("Err() = %v, want ErrACL with %q", err, tc.body)
			}
			if _, errs, _, _, _ := rec.snapshot(); len(errs) != 1 || !errors.Is(errs[0], ErrACL) {
				t.Fatalf("observer errors = %v", errs)
			}
			if got := token.Load(); got != "bad-token" {
				t.Fatalf("token sent = %v", got)
			}
		})
	}
}

func TestDiffInstances(t *testing.T) {
	mk := func(keys ...string) []Instance {
		var out []Instance
		for _, k := range keys {
			node, id, _ := strings.Cut(k, "/")
			out = append(out, Instance{ID: id, Node: node})
		}
		slices.SortFunc(out, compareInstances)
		return out
	}
	for _, tc := range []struct {
		name                string
		prev, next          []Instance
		wantAdded, wantGone []string
	}{
		{"from nothing", nil, mk("n/a", "n/b"), []string{"a", "b"}, nil},
		{"to nothing", mk("n/a"), nil, nil, []string{"a"}},
		{"same", mk("n/a", "n/b"), mk("n/a", "n/b"), nil, nil},
		{"swap", mk("n/a", "n/c"), mk("n/b", "n/c", "n/d"), []string{"b", "d"}, []string{"a"}},
		{"same id other node", mk("n1/a"), mk("n2/a"), []string{"a"}, []string{"a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			added, removed := diffInstances(tc.prev, tc.next)
			if !slices.Equal(ids(added), nonNil(tc.wantAdded)) || !slices.Equal(ids(removed), nonNil(tc.wantGone)) {
				t.Fatalf("added %v removed %v, want %v %v", ids(added), ids(removed), tc.wantAdded, tc.wantGone)
			}
		})
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
