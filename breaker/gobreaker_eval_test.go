package breaker

// These benchmarks measured sony/gobreaker/v2's TwoStepCircuitBreaker against this
// package, which is how the package doc's decision not to build on it was made. They
// stay so the measurement can be repeated when gobreaker changes:
//
//	go test -run '^$' -bench 'AllowDone' -benchmem ./breaker/

import (
	"errors"
	"testing"

	"github.com/sony/gobreaker/v2"
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
