package breaker

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a test clock that only moves when told to.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// transitions records OnStateChange calls.
type transitions struct {
	mu  sync.Mutex
	got []string
}

func (tr *transitions) record(from, to State) {
	tr.mu.Lock()
	tr.got = append(tr.got, from.String()+">"+to.String())
	tr.mu.Unlock()
}

func (tr *transitions) list() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]string(nil), tr.got...)
}

func mustNew(t *testing.T, s Settings) *Breaker {
	t.Helper()
	b, err := New(s)
	if err != nil {
		t.Fatalf("New(%+v): %v", s, err)
	}
	return b
}

// call runs one request through b: Allow, then Done with the outcome.
func call(t *testing.T, b *Breaker, success bool) error {
	t.Helper()
	tk, err := b.Allow()
	if err != nil {
		return err
	}
	b.Done(tk, success)
	return nil
}

// fail runs n failing requests, each of which must be admitted.
func fail(t *testing.T, b *Breaker, n int) {
	t.Helper()
	for i := range n {
		if err := call(t, b, false); err != nil {
			t.Fatalf("failure %d of %d: Allow: %v", i+1, n, err)
		}
	}
}

func TestStateString(t *testing.T) {
	for s, want := range map[State]string{Closed: "closed", HalfOpen: "half_open", Open: "open", 7: "State(7)"} {
		if got := s.String(); got != want {
			t.Errorf("State(%d).String() = %q, want %q", uint8(s), got, want)
		}
	}
	// The numeric values are the gateway_circuit_breaker_state gauge's.
	if Closed != 0 || HalfOpen != 1 || Open != 2 {
		t.Errorf("state values = %d %d %d, want 0 1 2", Closed, HalfOpen, Open)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		s    Settings
		ok   bool
	}{
		{"zero", Settings{}, true},
		{"full", Settings{FailureThreshold: 3, OpenTimeout: time.Second, HalfOpenRequests: 2, FailureRatio: 0.5, Window: time.Minute, MinRequests: 5}, true},
		{"ratio only", Settings{FailureThreshold: -1, FailureRatio: 0.3}, true},
		{"ratio one", Settings{FailureRatio: 1}, true},
		{"threshold disabled without ratio", Settings{FailureThreshold: -1}, false},
		{"negative open timeout", Settings{OpenTimeout: -time.Second}, false},
		{"negative half-open", Settings{HalfOpenRequests: -1}, false},
		{"huge half-open", Settings{HalfOpenRequests: 1 << 31}, false},
		{"ratio above one", Settings{FailureRatio: 1.5}, false},
		{"negative ratio", Settings{FailureRatio: -0.1}, false},
		{"NaN ratio", Settings{FailureRatio: nan()}, false},
		{"negative window", Settings{FailureRatio: 0.5, Window: -1}, false},
		{"negative min requests", Settings{MinRequests: -1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.s.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
			b, nerr := New(tt.s)
			if (nerr == nil) != tt.ok || (b != nil) != tt.ok {
				t.Fatalf("New() = %v, %v; want ok=%v", b, nerr, tt.ok)
			}
		})
	}
}

func nan() float64 {
	zero := 0.0
	return zero / zero
}

func TestDefaults(t *testing.T) {
	clk := newClock()
	b := mustNew(t, Settings{Now: clk.Now})
	fail(t, b, DefaultFailureThreshold-1)
	if s := b.State(); s != Closed {
		t.Fatalf("after %d failures: %v, want closed", DefaultFailureThreshold-1, s)
	}
	fail(t, b, 1)
	if s := b.State(); s != Open {
		t.Fatalf("after %d failures: %v, want open", DefaultFailureThreshold, s)
	}
	if got, want := b.OpenUntil(), clk.Now().Add(DefaultOpenTimeout); !got.Equal(want) {
		t.Fatalf("OpenUntil = %v, want %v", got, want)
	}
	clk.Add(DefaultOpenTimeout)
	if _, err := b.Allow(); err != nil {
		t.Fatalf("first trial: %v", err)
	}
	if _, err := b.Allow(); !errors.Is(err, ErrTooManyRequests) {
		t.Fatalf("second trial: %v, want ErrTooManyRequests", err)
	}
}

func TestOpensAfterExactlyThreshold(t *testing.T) {
	tests := []struct {
		threshold int
		outcomes  string // S success, F failure, each one request
		want      []State
	}{
		{1, "F", []State{Open}},
		{3, "FFF", []State{Closed, Closed, Open}},
		{3, "FFSFFF", []State{Closed, Closed, Closed, Closed, Closed, Open}},
		{5, "FFFFSFFFFF", []State{Closed, Closed, Closed, Closed, Closed, Closed, Closed, Closed, Closed, Open}},
		{2, "SSSSFSFSFF", []State{Closed, Closed, Closed, Closed, Closed, Closed, Closed, Closed, Closed, Open}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d/%s", tt.threshold, tt.outcomes), func(t *testing.T) {
			var tr transitions
			b := mustNew(t, Settings{FailureThreshold: tt.threshold, Now: newClock().Now, OnStateChange: tr.record})
			for i, c := range tt.outcomes {
				if err := call(t, b, c == 'S'); err != nil {
					t.Fatalf("request %d: %v", i+1, err)
				}
				if got := b.State(); got != tt.want[i] {
					t.Fatalf("after request %d (%c): %v, want %v", i+1, c, got, tt.want[i])
				}
			}
			if _, err := b.Allow(); !errors.Is(err, ErrOpen) {
				t.Fatalf("Allow on open breaker: %v, want ErrOpen", err)
			}
			if got, want := tr.list(), []string{"closed>open"}; !reflect.DeepEqual(got, want) {
				t.Fatalf("transitions %v, want %v", got, want)
			}
		})
	}
}

// classify is what the gateway does with an answer: connect errors, timeouts and the
// configured 5xx are failures; anything else — every 4xx included — is a success.
func classify(status int) bool {
	switch status {
	case 0, 502, 503, 504: // 0: no answer (connect error, timeout)
		return false
	}
	return true
}

func TestClientErrorsDoNotOpen(t *testing.T) {
	tests := []struct {
		name     string
		statuses []int
		want     State
	}{
		{"4xx never open", []int{400, 401, 403, 404, 409, 429, 400, 404, 404, 404, 404}, Closed},
		{"4xx break a 5xx streak", []int{502, 502, 404, 502, 502, 499, 503, 503}, Closed},
		{"500 not configured", []int{500, 500, 500, 500, 500}, Closed},
		{"configured 5xx and connect errors open", []int{502, 0, 504, 503, 0}, Open},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := mustNew(t, Settings{FailureThreshold: 5, Now: newClock().Now})
			for _, st := range tt.statuses {
				if err := call(t, b, classify(st)); err != nil {
					t.Fatalf("status %d: %v", st, err)
				}
			}
			if got := b.State(); got != tt.want {
				t.Fatalf("state %v, want %v", got, tt.want)
			}
		})
	}
}

func TestHalfOpenAfterOpenTimeout(t *testing.T) {
	tests := []struct {
		name    string
		timeout time.Duration
	}{
		{"1s", time.Second},
		{"default", 0},
		{"tiny", time.Nanosecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			var tr transitions
			b := mustNew(t, Settings{FailureThreshold: 1, OpenTimeout: tt.timeout, Now: clk.Now, OnStateChange: tr.record})
			timeout := tt.timeout
			if timeout == 0 {
				timeout = DefaultOpenTimeout
			}
			opened := clk.Now()
			fail(t, b, 1)
			if got := b.OpenUntil(); !got.Equal(opened.Add(timeout)) {
				t.Fatalf("OpenUntil = %v, want %v", got, opened.Add(timeout))
			}
			clk.Add(timeout - 1)
			if _, err := b.Allow(); !errors.Is(err, ErrOpen) {
				t.Fatalf("1ns before the timeout: Allow = %v, want ErrOpen", err)
			}
			if s := b.State(); s != Open {
				t.Fatalf("1ns before the timeout: %v, want open", s)
			}
			clk.Add(1)
			if s := b.State(); s != HalfOpen {
				t.Fatalf("at the timeout: %v, want half_open", s)
			}
			if got := b.OpenUntil(); !got.IsZero() {
				t.Fatalf("OpenUntil when half-open = %v, want zero", got)
			}
			if got, want := tr.list(), []string{"closed>open", "open>half_open"}; !reflect.DeepEqual(got, want) {
				t.Fatalf("transitions %v, want %v", got, want)
			}
		})
	}
}

// trip opens b (threshold 1) and moves clk past the open timeout, so b is half-open.
func trip(t *testing.T, b *Breaker, clk *clock, timeout time.Duration) {
	t.Helper()
	fail(t, b, 1)
	clk.Add(timeout)
	if s := b.State(); s != HalfOpen {
		t.Fatalf("after the open timeout: %v, want half_open", s)
	}
}

func TestHalfOpenAdmitsExactly(t *testing.T) {
	for _, n := range []int{1, 2, 3, 10} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			clk := newClock()
			b := mustNew(t, Settings{FailureThreshold: 1, OpenTimeout: time.Second, HalfOpenRequests: n, Now: clk.Now})
			trip(t, b, clk, time.Second)
			for i := range n {
				if _, err := b.Allow(); err != nil {
					t.Fatalf("trial %d of %d: %v", i+1, n, err)
				}
			}
			for range 3 {
				if _, err := b.Allow(); !errors.Is(err, ErrTooManyRequests) {
					t.Fatalf("trial %d: %v, want ErrTooManyRequests", n+1, err)
				}
			}
			clk.Add(DefaultTrialTimeout - 1) // within the trial timeout: still nothing more
			if _, err := b.Allow(); !errors.Is(err, ErrTooManyRequests) {
				t.Fatalf("just within the trial timeout: %v, want ErrTooManyRequests", err)
			}
		})
	}
}

func TestHalfOpenOutcomes(t *testing.T) {
	tests := []struct {
		name     string
		trials   int
		outcomes string // outcome of each trial, in order
		want     State
		wantTr   []string
	}{
		{"one success closes", 1, "S", Closed, []string{"closed>open", "open>half_open", "half_open>closed"}},
		{"one failure reopens", 1, "F", Open, []string{"closed>open", "open>half_open", "half_open>open"}},
		{"all of three succeed", 3, "SSS", Closed, []string{"closed>open", "open>half_open", "half_open>closed"}},
		{"two of three succeed: still half-open", 3, "SS", HalfOpen, []string{"closed>open", "open>half_open"}},
		{"last of three fails", 3, "SSF", Open, []string{"closed>open", "open>half_open", "half_open>open"}},
		{"first of three fails", 3, "F", Open, []string{"closed>open", "open>half_open", "half_open>open"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			var tr transitions
			b := mustNew(t, Settings{FailureThreshold: 1, OpenTimeout: time.Second, HalfOpenRequests: tt.trials, Now: clk.Now, OnStateChange: tr.record})
			trip(t, b, clk, time.Second)
			tickets := make([]Ticket, tt.trials)
			for i := range tickets {
				var err error
				if tickets[i], err = b.Allow(); err != nil {
					t.Fatalf("trial %d: %v", i+1, err)
				}
			}
			for i, c := range tt.outcomes {
				b.Done(tickets[i], c == 'S')
			}
			if got := b.State(); got != tt.want {
				t.Fatalf("state %v, want %v", got, tt.want)
			}
			if got := tr.list(); !reflect.DeepEqual(got, tt.wantTr) {
				t.Fatalf("transitions %v, want %v", got, tt.wantTr)
			}
			switch tt.want {
			case Open:
				if got, want := b.OpenUntil(), clk.Now().Add(time.Second); !got.Equal(want) {
					t.Fatalf("reopened: OpenUntil = %v, want %v", got, want)
				}
				if _, err := b.Allow(); !errors.Is(err, ErrOpen) {
					t.Fatalf("reopened: Allow = %v, want ErrOpen", err)
				}
				// The remaining trials' results are stale now.
				for _, tk := range tickets[len(tt.outcomes):] {
					b.Done(tk, true)
				}
				if s := b.State(); s != Open {
					t.Fatalf("after stale successes: %v, want open", s)
				}
			case Closed:
				// A fresh streak is needed to open it again.
				if err := call(t, b, false); err != nil {
					t.Fatal(err)
				}
				if s := b.State(); s != Open {
					t.Fatalf("closed breaker with threshold 1 after a failure: %v, want open", s)
				}
			}
		})
	}
}

func TestStaleTicketsIgnored(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, b *Breaker, clk *clock) State
	}{
		{"zero ticket", func(t *testing.T, b *Breaker, clk *clock) State {
			for range 10 {
				b.Done(Ticket{}, false)
			}
			return Closed
		}},
		{"closed-era failures after the trip", func(t *testing.T, b *Breaker, clk *clock) State {
			old := make([]Ticket, 5)
			for i := range old {
				old[i], _ = b.Allow()
			}
			fail(t, b, 3)
			clk.Add(time.Second) // half-open
			trial, err := b.Allow()
			if err != nil {
				t.Fatal(err)
			}
			for _, tk := range old { // must not reopen the half-open breaker
				b.Done(tk, false)
			}
			if s := b.State(); s != HalfOpen {
				t.Fatalf("after stale failures: %v, want half_open", s)
			}
			b.Done(trial, true)
			return Closed
		}},
		{"closed-era success does not close a half-open breaker", func(t *testing.T, b *Breaker, clk *clock) State {
			old, _ := b.Allow()
			fail(t, b, 3)
			clk.Add(time.Second)
			if _, err := b.Allow(); err != nil {
				t.Fatal(err)
			}
			b.Done(old, true)
			return HalfOpen
		}},
		{"trial from an earlier half-open round", func(t *testing.T, b *Breaker, clk *clock) State {
			fail(t, b, 3)
			clk.Add(time.Second)
			first, _ := b.Allow()
			b.Done(first, false) // reopened
			clk.Add(time.Second)
			second, err := b.Allow()
			if err != nil {
				t.Fatal(err)
			}
			b.Done(first, false) // stale: ignored
			if s := b.State(); s != HalfOpen {
				t.Fatalf("after a stale trial failure: %v, want half_open", s)
			}
			b.Done(second, true)
			return Closed
		}},
		{"done twice counts once after closing", func(t *testing.T, b *Breaker, clk *clock) State {
			fail(t, b, 3)
			clk.Add(time.Second)
			trial, _ := b.Allow()
			b.Done(trial, true)
			b.Done(trial, false) // the breaker closed: a new generation
			return Closed
		}},
		{"earlier closed generation", func(t *testing.T, b *Breaker, clk *clock) State {
			old := make([]Ticket, 3)
			for i := range old {
				old[i], _ = b.Allow()
			}
			fail(t, b, 3)
			clk.Add(time.Second)
			trial, _ := b.Allow()
			b.Done(trial, true) // closed again, in a new generation
			for _, tk := range old {
				b.Done(tk, false) // would open it if counted
			}
			return Closed
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			b := mustNew(t, Settings{FailureThreshold: 3, OpenTimeout: time.Second, Now: clk.Now})
			want := tt.run(t, b, clk)
			if got := b.State(); got != want {
				t.Fatalf("state %v, want %v", got, want)
			}
		})
	}
}

func TestOnStateChangeSequence(t *testing.T) {
	clk := newClock()
	var tr transitions
	b := mustNew(t, Settings{FailureThreshold: 2, OpenTimeout: 10 * time.Second, HalfOpenRequests: 2, Now: clk.Now, OnStateChange: tr.record})
	fail(t, b, 2)
	clk.Add(10 * time.Second)
	tk, _ := b.Allow() // noticed here
	b.Done(tk, false)
	clk.Add(5 * time.Second)
	if _, err := b.Allow(); !errors.Is(err, ErrOpen) {
		t.Fatalf("reopened breaker: %v", err)
	}
	clk.Add(5 * time.Second)
	t1, _ := b.Allow()
	t2, _ := b.Allow()
	b.Done(t1, true)
	b.Done(t2, true)
	fail(t, b, 1)
	if s := b.State(); s != Closed {
		t.Fatalf("one failure after closing: %v", s)
	}
	want := []string{"closed>open", "open>half_open", "half_open>open", "open>half_open", "half_open>closed"}
	if got := tr.list(); !reflect.DeepEqual(got, want) {
		t.Fatalf("transitions\n got %v\nwant %v", got, want)
	}
}

func TestFailureRatio(t *testing.T) {
	tests := []struct {
		name      string
		s         Settings
		outcomes  string        // S/F, one request each, at the current time
		advance   time.Duration // then move the clock
		outcomes2 string
		want      State
	}{
		{"below min requests", Settings{FailureThreshold: -1, FailureRatio: 0.5, MinRequests: 10}, "FSFSFSFSF", 0, "", Closed},
		{"reaches min requests at the ratio", Settings{FailureThreshold: -1, FailureRatio: 0.5, MinRequests: 10}, "FSFSFSFSFS", 0, "", Closed},
		{"trips on the failure that reaches it", Settings{FailureThreshold: -1, FailureRatio: 0.5, MinRequests: 10}, "SFSFSFSFSF", 0, "", Open},
		{"below the ratio", Settings{FailureThreshold: -1, FailureRatio: 0.5, MinRequests: 4}, "SSFSSFSSFSSF", 0, "", Closed},
		{"default min requests 20", Settings{FailureThreshold: -1, FailureRatio: 0.25}, "SSSFSSSFSSSFSSSFSSSF", 0, "", Open},
		{"default min requests 20, one short", Settings{FailureThreshold: -1, FailureRatio: 0.25}, "SSSFSSSFSSSFSSSFSSF", 0, "", Closed},
		{"old results leave the window", Settings{FailureThreshold: -1, FailureRatio: 0.5, MinRequests: 4, Window: 10 * time.Second}, "FFF", 10 * time.Second, "SF", Closed},
		{"recent results stay in the window", Settings{FailureThreshold: -1, FailureRatio: 0.5, MinRequests: 4, Window: 10 * time.Second}, "FFF", 8 * time.Second, "SF", Open},
		{"consecutive rule still applies", Settings{FailureThreshold: 3, FailureRatio: 0.9, MinRequests: 100}, "SSSSSSFFF", 0, "", Open},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			tt.s.Now = clk.Now
			b := mustNew(t, tt.s)
			for i, c := range tt.outcomes + "|" + tt.outcomes2 {
				if c == '|' {
					clk.Add(tt.advance)
					continue
				}
				if err := call(t, b, c == 'S'); err != nil {
					t.Fatalf("request %d: %v", i+1, err)
				}
			}
			if got := b.State(); got != tt.want {
				t.Fatalf("state %v, want %v", got, tt.want)
			}
		})
	}
}

func TestClosingResetsCounts(t *testing.T) {
	clk := newClock()
	b := mustNew(t, Settings{FailureThreshold: 3, FailureRatio: 0.5, MinRequests: 4, OpenTimeout: time.Second, Now: clk.Now})
	fail(t, b, 2)
	if err := call(t, b, true); err != nil {
		t.Fatal(err)
	}
	fail(t, b, 1) // 3 of 4 failed: ratio trips
	if s := b.State(); s != Open {
		t.Fatalf("%v, want open", s)
	}
	clk.Add(time.Second)
	if err := call(t, b, true); err != nil {
		t.Fatal(err)
	}
	fail(t, b, 2) // window and streak start afresh: 2 of 3, 2 in a row
	if s := b.State(); s != Closed {
		t.Fatalf("after closing and 2 failures: %v, want closed", s)
	}
}

func TestTrialTimeout(t *testing.T) {
	tests := []struct {
		name    string
		timeout time.Duration
		wait    time.Duration
		admit   bool
	}{
		{"lost trial replaced after the default", 0, DefaultTrialTimeout, true},
		{"not before", 0, DefaultTrialTimeout - 1, false},
		{"custom", 5 * time.Second, 5 * time.Second, true},
		{"never", -1, 100 * time.Hour, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			var tr transitions
			b := mustNew(t, Settings{FailureThreshold: 1, OpenTimeout: time.Second, TrialTimeout: tt.timeout, Now: clk.Now, OnStateChange: tr.record})
			trip(t, b, clk, time.Second)
			lost, err := b.Allow()
			if err != nil {
				t.Fatal(err)
			}
			clk.Add(tt.wait)
			next, err := b.Allow()
			if (err == nil) != tt.admit {
				t.Fatalf("Allow after %v: %v, want admitted=%v", tt.wait, err, tt.admit)
			}
			if !tt.admit {
				return
			}
			b.Done(lost, false) // stale now
			if s := b.State(); s != HalfOpen {
				t.Fatalf("after the lost ticket came back: %v, want half_open", s)
			}
			b.Done(next, true)
			if s := b.State(); s != Closed {
				t.Fatalf("%v, want closed", s)
			}
			if got, want := tr.list(), []string{"closed>open", "open>half_open", "half_open>closed"}; !reflect.DeepEqual(got, want) {
				t.Fatalf("transitions %v, want %v", got, want)
			}
		})
	}
}

func TestCancel(t *testing.T) {
	clk := newClock()
	b := mustNew(t, Settings{FailureThreshold: 1, OpenTimeout: time.Second, HalfOpenRequests: 2, Now: clk.Now})
	b.Cancel(Ticket{})
	closedTk, _ := b.Allow()
	b.Cancel(closedTk) // nothing to give back in closed
	trip(t, b, clk, time.Second)
	t1, _ := b.Allow()
	t2, _ := b.Allow()
	if _, err := b.Allow(); !errors.Is(err, ErrTooManyRequests) {
		t.Fatalf("third trial: %v", err)
	}
	b.Cancel(t1)
	t3, err := b.Allow()
	if err != nil {
		t.Fatalf("after a cancel: %v, want a free slot", err)
	}
	b.Done(t2, true)
	b.Done(t3, true)
	if s := b.State(); s != Closed {
		t.Fatalf("%v, want closed: a cancelled trial neither counts nor blocks", s)
	}
	b.Cancel(t1) // stale
	if s := b.State(); s != Closed {
		t.Fatalf("%v after a stale cancel", s)
	}
}

func TestClockBeforeBase(t *testing.T) {
	clk := newClock()
	b := mustNew(t, Settings{FailureThreshold: 1, OpenTimeout: time.Second, Now: clk.Now})
	clk.Add(-time.Hour)
	fail(t, b, 1) // at -1h, read as New's time: open until New + 1s
	clk.Add(time.Hour + time.Second - 1)
	if s := b.State(); s != Open {
		t.Fatalf("%v, want open until New's time + 1s", s)
	}
	clk.Add(1)
	if s := b.State(); s != HalfOpen {
		t.Fatalf("%v, want half_open: a clock read before New counts as New's time", s)
	}
}

func TestZeroAllocs(t *testing.T) {
	clk := newClock()
	tests := []struct {
		name string
		s    Settings
	}{
		{"consecutive", Settings{Now: clk.Now}},
		{"ratio", Settings{FailureRatio: 0.5, Now: clk.Now}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := mustNew(t, tt.s)
			i := 0
			allocs := testing.AllocsPerRun(1000, func() {
				i++
				tk, err := b.Allow()
				b.Done(tk, err == nil && i%7 != 0)
				_ = b.State()
			})
			if allocs != 0 {
				t.Fatalf("Allow+Done+State: %v allocs/op, want 0", allocs)
			}
		})
	}
}

// TestConcurrent hammers one breaker from many goroutines while they move the clock, and
// checks what must hold whatever the interleaving: transitions chain (each from is the
// previous to), and no half-open generation admits more than HalfOpenRequests trials.
func TestConcurrent(t *testing.T) {
	tests := []struct {
		name string
		s    Settings
	}{
		// Lock-free fast paths for CLOSED successes.
		{"consecutive", Settings{FailureThreshold: 4}},
		// Every Done takes the lock.
		{"ratio", Settings{FailureThreshold: 6, FailureRatio: 0.4, MinRequests: 10, Window: time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { testConcurrent(t, tt.s) })
	}
}

func testConcurrent(t *testing.T, s Settings) {
	const (
		goroutines = 32
		perG       = 3000
		trials     = 3
	)
	clk := newClock()
	var (
		mu       sync.Mutex
		changes  []string
		halfGens = map[uint64]bool{}
		b        *Breaker
	)
	s.OpenTimeout, s.HalfOpenRequests, s.TrialTimeout, s.Now = 3*time.Millisecond, trials, -1, clk.Now
	s.OnStateChange = func(from, to State) {
		// Called with b's lock held; reading word is fine, calling methods is not.
		gen, st := unpack(b.word.Load())
		mu.Lock()
		changes = append(changes, from.String()+">"+to.String())
		if st == HalfOpen {
			halfGens[gen] = true
		}
		mu.Unlock()
	}
	b = mustNew(t, s)
	var admitted sync.Map // gen -> *atomic.Int64
	var workers sync.WaitGroup
	for g := range goroutines {
		workers.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(g), 1))
			for i := range perG {
				if i%50 == 0 {
					clk.Add(time.Millisecond) // time moves with the work: ~2s in all
				}
				tk, err := b.Allow()
				switch {
				case err == nil:
					c, _ := admitted.LoadOrStore(tk.gen, new(atomic.Int64))
					c.(*atomic.Int64).Add(1)
				case errors.Is(err, ErrOpen), errors.Is(err, ErrTooManyRequests):
				default:
					t.Errorf("Allow: unexpected error %v", err)
					return
				}
				_ = b.State()
				_ = b.OpenUntil()
				b.Done(tk, rnd.IntN(10) >= 3) // 30% failures: it keeps cycling
			}
		})
	}
	workers.Wait()

	mu.Lock()
	defer mu.Unlock()
	if len(changes) < 20 {
		t.Fatalf("only %d transitions: the test did not exercise the state machine", len(changes))
	}
	prev := "closed"
	for i, c := range changes {
		from, to := splitArrow(c)
		if from != prev {
			t.Fatalf("transition %d %s does not start from %s; all: %v", i, c, prev, changes)
		}
		switch c {
		case "closed>open", "open>half_open", "half_open>open", "half_open>closed":
		default:
			t.Fatalf("transition %d %s is not allowed", i, c)
		}
		prev = to
	}
	sawTrials := 0
	for gen := range halfGens {
		c, ok := admitted.Load(gen)
		if !ok {
			continue
		}
		sawTrials++
		if n := c.(*atomic.Int64).Load(); n > trials {
			t.Errorf("half-open generation %d admitted %d trials, want at most %d", gen, n, trials)
		}
	}
	if sawTrials == 0 {
		t.Fatalf("no trial was ever admitted in %d half-open generations", len(halfGens))
	}
	t.Logf("%d transitions, %d half-open rounds with trials", len(changes), sawTrials)
}

// TestConcurrentHalfOpenExact: many goroutines race for the trial slots of one
// half-open generation; exactly HalfOpenRequests win.
func TestConcurrentHalfOpenExact(t *testing.T) {
	for _, trials := range []int{1, 3, 16} {
		t.Run(fmt.Sprint(trials), func(t *testing.T) {
			clk := newClock()
			b := mustNew(t, Settings{FailureThreshold: 1, OpenTimeout: time.Second, HalfOpenRequests: trials, Now: clk.Now})
			fail(t, b, 1)
			clk.Add(time.Second)
			var (
				won   atomic.Int64
				start = make(chan struct{})
				wg    sync.WaitGroup
			)
			for range 64 {
				wg.Go(func() {
					<-start
					for range 10 {
						if _, err := b.Allow(); err == nil {
							won.Add(1)
						}
					}
				})
			}
			close(start)
			wg.Wait()
			if got := won.Load(); got != int64(trials) {
				t.Fatalf("%d trials admitted, want exactly %d", got, trials)
			}
		})
	}
}

func splitArrow(s string) (string, string) {
	for i := range len(s) {
		if s[i] == '>' {
			return s[:i], s[i+1:]
		}
	}
	return s, ""
}
