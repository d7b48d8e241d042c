package retry

import (
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

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

func mustBudget(t testing.TB, s BudgetSettings) *Budget {
	t.Helper()
	b, err := NewBudget(s)
	if err != nil {
		t.Fatalf("NewBudget(%+v): %v", s, err)
	}
	return b
}

func TestBudgetValidate(t *testing.T) {
	tests := []struct {
		s  BudgetSettings
		ok bool
	}{
		{BudgetSettings{}, true},
		{BudgetSettings{Ratio: 0.5, Window: time.Minute, Min: 3}, true},
		{BudgetSettings{Ratio: -1, Min: -1}, true}, // a budget of nothing
		{BudgetSettings{Ratio: math.NaN()}, false},
		{BudgetSettings{Ratio: math.Inf(1)}, false},
		{BudgetSettings{Window: -time.Second}, false},
	}
	for _, tt := range tests {
		if err := tt.s.Validate(); (err == nil) != tt.ok {
			t.Errorf("Validate(%+v) = %v, want ok=%v", tt.s, err, tt.ok)
		}
		if b, err := NewBudget(tt.s); (err == nil) != tt.ok || (b != nil) != tt.ok {
			t.Errorf("NewBudget(%+v) = %v, %v; want ok=%v", tt.s, b, err, tt.ok)
		}
	}
}

// TestBudgetAlwaysFailing plays a service that fails every attempt: each client request
// is counted, then retried until the attempts run out or the budget says no. Retries must
// stay within ratio × requests + min, and reach exactly that when demand exceeds it.
func TestBudgetAlwaysFailing(t *testing.T) {
	tests := []struct {
		name        string
		s           BudgetSettings
		requests    int
		attempts    int // per request, first included
		spread      time.Duration
		wantRetries int
	}{
		{"defaults", BudgetSettings{}, 1000, 3, 9 * time.Second, 210},              // 0.2×1000 + 10
		{"defaults, few requests: the floor", BudgetSettings{}, 5, 3, 0, 10},       // 0.2×5 + 10 = 11, but demand is 2×5
		{"defaults, quiet", BudgetSettings{}, 20, 3, 0, 14},                        // 0.2×20 + 10
		{"ratio 0.5 min 0", BudgetSettings{Ratio: 0.5, Min: -1}, 101, 5, 0, 50},    // floor(50.5)
		{"ratio only via min -1", BudgetSettings{Ratio: 0.1, Min: -1}, 9, 3, 0, 0}, // 0.9 < 1
		{"min only", BudgetSettings{Ratio: -1, Min: 7}, 1000, 3, 0, 7},
		{"nothing", BudgetSettings{Ratio: -1, Min: -1}, 100, 3, 0, 0},
		{"ratio 1 lets every request retry once", BudgetSettings{Ratio: 1, Min: -1}, 50, 2, 0, 50},
		{"one attempt: no demand", BudgetSettings{}, 100, 1, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			tt.s.Now = clk.Now
			b := mustBudget(t, tt.s)
			var step time.Duration
			if tt.requests > 1 {
				step = tt.spread / time.Duration(tt.requests-1)
			}
			upstream, retries := 0, 0
			for i := range tt.requests {
				if i > 0 {
					clk.Add(step)
				}
				b.Request()
				upstream++
				for a := 2; a <= tt.attempts; a++ {
					if !b.TryRetry() {
						break
					}
					upstream++
					retries++
				}
			}
			if retries != tt.wantRetries {
				t.Fatalf("%d retries, want %d", retries, tt.wantRetries)
			}
			ratio, minimum := budgetParams(tt.s)
			if bound := (1+ratio)*float64(tt.requests) + minimum; float64(upstream) > bound {
				t.Fatalf("%d upstream attempts for %d requests, above (1+%v)×requests+%v = %v", upstream, tt.requests, ratio, minimum, bound)
			}
			left := int(math.Floor(ratio*float64(tt.requests)+minimum)) - retries
			if a := b.Available(); a != left {
				t.Fatalf("Available = %d, want %d", a, left)
			}
			for range left {
				if !b.TryRetry() {
					t.Fatal("TryRetry refused a retry that Available promised")
				}
			}
			if b.TryRetry() {
				t.Fatal("TryRetry allowed a retry past the exhausted budget")
			}
		})
	}
}

func budgetParams(s BudgetSettings) (ratio, minimum float64) {
	ratio, minimum = s.Ratio, float64(s.Min)
	if s.Ratio == 0 {
		ratio = DefaultBudgetRatio
	}
	if s.Min == 0 {
		minimum = DefaultBudgetMin
	}
	return max(ratio, 0), max(minimum, 0)
}

func TestBudgetWindowRollover(t *testing.T) {
	clk := newClock()
	b := mustBudget(t, BudgetSettings{Ratio: 0.2, Window: 10 * time.Second, Min: 10, Now: clk.Now})
	exhaust := func() int {
		n := 0
		for b.TryRetry() {
			n++
		}
		return n
	}
	for range 100 {
		b.Request()
	}
	if n := exhaust(); n != 30 {
		t.Fatalf("t=0: %d retries, want 0.2×100+10 = 30", n)
	}
	steps := []struct {
		advance time.Duration
		want    int // Available after the move
	}{
		{5 * time.Second, 0},                      // t=5s: all counts still in the window
		{4*time.Second + 999*time.Millisecond, 0}, // t=9.999s: still in the last bucket of the window
		{time.Millisecond, 10},                    // t=10s: bucket 0 left the window; only the floor
		{time.Hour, 10},
	}
	for i, st := range steps {
		clk.Add(st.advance)
		if got := b.Available(); got != st.want {
			t.Fatalf("step %d (+%v): Available = %d, want %d", i, st.advance, got, st.want)
		}
	}
	if n := exhaust(); n != 10 {
		t.Fatalf("new window: %d retries, want the floor, 10", n)
	}
}

// TestBudgetSliding: requests spread over the window leave it bucket by bucket.
func TestBudgetSliding(t *testing.T) {
	clk := newClock()
	b := mustBudget(t, BudgetSettings{Ratio: 0.1, Window: 10 * time.Second, Min: -1, Now: clk.Now})
	for range 10 { // 10 requests in each of 10 one-second buckets
		for range 10 {
			b.Request()
		}
		clk.Add(time.Second)
	}
	// now t=10s, bucket 10: buckets 1..9 (90 requests) are in the window, bucket 0 is not.
	if got := b.Available(); got != 9 {
		t.Fatalf("Available = %d, want 9 (0.1 × 90)", got)
	}
	for i := range 9 {
		if !b.TryRetry() {
			t.Fatalf("retry %d refused", i+1)
		}
	}
	if b.TryRetry() {
		t.Fatal("10th retry allowed")
	}
	clk.Add(5 * time.Second) // t=15s: buckets 6..9 remain: 40 requests, 9 retries in bucket 10
	if got := b.Available(); got != 0 {
		t.Fatalf("t=15s: Available = %d, want 0 (0.1×40 − 9 < 0)", got)
	}
	clk.Add(5 * time.Second) // t=20s: bucket 10's retries left too; no requests
	if got := b.Available(); got != 0 {
		t.Fatalf("t=20s: Available = %d, want 0", got)
	}
	for range 30 {
		b.Request()
	}
	if got := b.Available(); got != 3 {
		t.Fatalf("t=20s after 30 requests: Available = %d, want 3", got)
	}
}

func TestBudgetClockBeforeBase(t *testing.T) {
	clk := newClock()
	b := mustBudget(t, BudgetSettings{Ratio: 1, Min: -1, Now: clk.Now})
	clk.Add(-time.Hour)
	b.Request()
	if !b.TryRetry() || b.TryRetry() {
		t.Fatal("a clock before NewBudget should count as NewBudget's time")
	}
}

// TestBudgetConcurrent: requests and retries from many goroutines; the bound holds
// exactly because TryRetry is serialised, and nothing is lost.
func TestBudgetConcurrent(t *testing.T) {
	tests := []struct {
		name   string
		window time.Duration
		moving bool
	}{
		// One window: the bound is exact, because TryRetry is serialised.
		{"fixed clock", 10 * time.Second, false},
		// The clock moves 20ms over a 10ms window while goroutines race bucket turnover:
		// the floor comes back as buckets leave, at most once per window, so over three
		// windows retries <= ratio × requests + 3 × min.
		{"moving clock", 10 * time.Millisecond, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			b := mustBudget(t, BudgetSettings{Ratio: 0.2, Min: 10, Window: tt.window, Now: clk.Now})
			const goroutines, perG = 16, 2000
			var (
				requests, retries atomic.Int64
				wg                sync.WaitGroup
			)
			for g := range goroutines {
				wg.Go(func() {
					for i := range perG {
						if tt.moving && g == 0 && i%100 == 0 {
							clk.Add(time.Millisecond)
						}
						b.Request()
						requests.Add(1)
						for range 2 {
							if !b.TryRetry() {
								break
							}
							retries.Add(1)
						}
					}
				})
			}
			wg.Wait()
			req, got := requests.Load(), retries.Load()
			if !tt.moving {
				if want := int64(0.2*float64(req)) + 10; got != want {
					t.Fatalf("%d retries for %d requests, want exactly %d", got, req, want)
				}
				return
			}
			if bound := int64(0.2*float64(req)) + 3*10; got > bound || got < 10 {
				t.Fatalf("%d retries for %d requests, want within [10, %d]", got, req, bound)
			}
		})
	}
}

func TestBudgetZeroAllocs(t *testing.T) {
	b := mustBudget(t, BudgetSettings{})
	if a := testing.AllocsPerRun(1000, func() {
		b.Request()
		b.TryRetry()
	}); a != 0 {
		t.Fatalf("%v allocs/op, want 0", a)
	}
}

func BenchmarkBudgetRequest(b *testing.B) {
	bg := mustBudget(b, BudgetSettings{})
	b.ReportAllocs()
	for b.Loop() {
		bg.Request()
	}
}

func BenchmarkBudgetRequestParallel(b *testing.B) {
	bg := mustBudget(b, BudgetSettings{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			bg.Request()
		}
	})
}

func BenchmarkBudgetRequestTryRetryParallel(b *testing.B) {
	bg := mustBudget(b, BudgetSettings{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			bg.Request()
			bg.TryRetry()
		}
	})
}
