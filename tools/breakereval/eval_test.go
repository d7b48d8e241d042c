package breakereval

import (
	"errors"
	"testing"

	"github.com/sony/gobreaker/v2"

	"github.com/infinityxone/gateway/breaker"
)

var errFail = errors.New("fail")

func BenchmarkGobreakerTwoStepAllowDone(b *testing.B) {
	cb := gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{})
	b.ReportAllocs()
	for b.Loop() {
		done, err := cb.Allow()
		if err != nil {
			b.Fatal(err)
		}
		done(nil)
	}
}

func BenchmarkGobreakerTwoStepAllowDoneParallel(b *testing.B) {
	cb := gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		ReadyToTrip: func(gobreaker.Counts) bool { return false },
	})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			done, err := cb.Allow()
			if err != nil {
				b.Fatal(err)
			}
			i++
			if i%100 == 0 {
				done(errFail)
			} else {
				done(nil)
			}
		}
	})
}

// The gateway's breaker on the same two workloads.

func BenchmarkGatewayAllowDone(b *testing.B) {
	br, err := breaker.New(breaker.Settings{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		tk, err := br.Allow()
		if err != nil {
			b.Fatal(err)
		}
		br.Done(tk, true)
	}
}

func BenchmarkGatewayAllowDoneParallel(b *testing.B) {
	br, err := breaker.New(breaker.Settings{FailureThreshold: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
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
