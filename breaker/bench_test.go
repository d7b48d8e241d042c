package breaker

import (
	"testing"
	"time"
)

func BenchmarkAllowDone(b *testing.B) {
	br, _ := New(Settings{})
	b.ReportAllocs()
	for b.Loop() {
		tk, err := br.Allow()
		if err != nil {
			b.Fatal(err)
		}
		br.Done(tk, true)
	}
}

// BenchmarkAllowDoneParallel: one instance's breaker shared by every core, 1% failures
// (never enough in a row to open it).
func BenchmarkAllowDoneParallel(b *testing.B) {
	br, _ := New(Settings{FailureThreshold: 1 << 30})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			tk, err := br.Allow()
			if err != nil {
				b.Fatal(err)
			}
			i++
			br.Done(tk, i%100 != 0)
		}
	})
}

// BenchmarkAllowDoneRatio: with FailureRatio every Done takes the lock and reads the
// clock.
func BenchmarkAllowDoneRatio(b *testing.B) {
	br, _ := New(Settings{FailureRatio: 0.9})
	b.ReportAllocs()
	for b.Loop() {
		tk, _ := br.Allow()
		br.Done(tk, true)
	}
}

func BenchmarkAllowDoneRatioParallel(b *testing.B) {
	br, _ := New(Settings{FailureRatio: 0.9})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tk, _ := br.Allow()
			br.Done(tk, true)
		}
	})
}

// BenchmarkAllowOpen: the refusal path of an open breaker (a clock read, no lock).
func BenchmarkAllowOpen(b *testing.B) {
	br, _ := New(Settings{FailureThreshold: 1, OpenTimeout: time.Hour})
	tk, _ := br.Allow()
	br.Done(tk, false)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := br.Allow(); err != ErrOpen {
			b.Fatal(err)
		}
	}
}

func BenchmarkAllowOpenParallel(b *testing.B) {
	br, _ := New(Settings{FailureThreshold: 1, OpenTimeout: time.Hour})
	tk, _ := br.Allow()
	br.Done(tk, false)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := br.Allow(); err != ErrOpen {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkState(b *testing.B) {
	br, _ := New(Settings{})
	b.ReportAllocs()
	for b.Loop() {
		if br.State() != Closed {
			b.Fatal("not closed")
		}
	}
}
