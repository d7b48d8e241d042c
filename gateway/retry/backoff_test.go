package retry

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// maxSource returns the largest value it may, and records the bounds it was asked for.
type maxSource struct{ asked []int64 }

func (s *maxSource) Int64N(n int64) int64 {
	s.asked = append(s.asked, n)
	return n - 1
}

func TestBackoffCeilings(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name      string
		attempt   int
		base, max time.Duration
		want      time.Duration // the ceiling: the largest possible wait
	}{
		{"first retry waits up to base", 1, 50 * ms, time.Second, 50 * ms},
		{"second doubles", 2, 50 * ms, time.Second, 100 * ms},
		{"third", 3, 50 * ms, time.Second, 200 * ms},
		{"fifth", 5, 50 * ms, time.Second, 800 * ms},
		{"sixth is capped", 6, 50 * ms, time.Second, time.Second},
		{"far beyond is capped", 1000, 50 * ms, time.Second, time.Second},
		{"attempt 0 counts as 1", 0, 50 * ms, time.Second, 50 * ms},
		{"negative attempt counts as 1", -3, 50 * ms, time.Second, 50 * ms},
		{"max below base caps base", 1, time.Second, 300 * ms, 300 * ms},
		{"no cap", 11, ms, 0, 1024 * ms},
		{"no cap, would overflow", 70, time.Hour, 0, math.MaxInt64 - 1},
		{"shift 62 would overflow", 63, 2, 0, math.MaxInt64 - 1},
		{"exactly fits", 3, 250 * ms, time.Second, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &maxSource{}
			if got := Backoff(tt.attempt, tt.base, tt.max, src); got != tt.want {
				t.Fatalf("Backoff(%d, %v, %v) with the largest draw = %v, want %v", tt.attempt, tt.base, tt.max, got, tt.want)
			}
			if len(src.asked) != 1 {
				t.Fatalf("source asked %d times, want once", len(src.asked))
			}
		})
	}
}

func TestBackoffZeroBase(t *testing.T) {
	src := &maxSource{}
	for _, base := range []time.Duration{0, -time.Second} {
		if got := Backoff(3, base, time.Second, src); got != 0 {
			t.Errorf("Backoff with base %v = %v, want 0", base, got)
		}
	}
	if len(src.asked) != 0 {
		t.Errorf("source asked %d times for a zero base", len(src.asked))
	}
}

// TestBackoffSeededSequence pins the exact waits for a seeded PCG source: the values were
// computed separately as rand.New(rand.NewPCG(1, 2)).Int64N(min(50ms<<(a-1), 1s)+1).
func TestBackoffSeededSequence(t *testing.T) {
	want := []time.Duration{38468664, 61643622, 156885601, 318638632, 187421016, 41205257, 499911755, 449383878}
	rnd := rand.New(rand.NewPCG(1, 2))
	for i, w := range want {
		attempt := i + 1
		got := Backoff(attempt, 50*time.Millisecond, time.Second, rnd)
		if got != w {
			t.Fatalf("attempt %d: %v, want %v", attempt, got, w)
		}
		if ceil := min(50*time.Millisecond<<i, time.Second); got < 0 || got > ceil {
			t.Fatalf("attempt %d: %v outside [0, %v]", attempt, got, ceil)
		}
	}
}

// TestBackoffFullJitter: draws spread over the whole [0, ceiling], mean about half of it.
func TestBackoffFullJitter(t *testing.T) {
	tests := []struct {
		name string
		rnd  Source
	}{
		{"seeded", rand.New(rand.NewPCG(7, 7))},
		{"nil: global source", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const n = 20000
			ceil := 400 * time.Millisecond
			var sum time.Duration
			low, high := 0, 0
			for range n {
				d := Backoff(4, 50*time.Millisecond, time.Second, tt.rnd)
				if d < 0 || d > ceil {
					t.Fatalf("%v outside [0, %v]", d, ceil)
				}
				sum += d
				if d < ceil/10 {
					low++
				}
				if d > ceil*9/10 {
					high++
				}
			}
			mean := sum / n
			if mean < ceil*45/100 || mean > ceil*55/100 {
				t.Errorf("mean %v, want about %v", mean, ceil/2)
			}
			if low < n/20 || high < n/20 {
				t.Errorf("draws in the lowest tenth %d, highest tenth %d, of %d: not full jitter", low, high, n)
			}
		})
	}
}

func TestBackoffZeroAllocs(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	if a := testing.AllocsPerRun(1000, func() { Backoff(3, time.Millisecond, time.Second, rnd) }); a != 0 {
		t.Fatalf("%v allocs/op, want 0", a)
	}
	if a := testing.AllocsPerRun(1000, func() { Backoff(3, time.Millisecond, time.Second, nil) }); a != 0 {
		t.Fatalf("nil source: %v allocs/op, want 0", a)
	}
}

func BenchmarkBackoff(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		Backoff(3, 50*time.Millisecond, time.Second, nil)
	}
}
