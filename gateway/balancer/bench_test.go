package balancer

import (
	"testing"
)

// BenchmarkPick measures one Pick on a set of 10 instances, serially and from
// GOMAXPROCS goroutines. "skip1" passes a retry filter (a stack value's method, as
// the gateway does) that rejects the first instance picked.
func BenchmarkPick(b *testing.B) {
	keys := clientKeys(1024)
	for _, algo := range Algorithms() {
		ins := numbered(10)
		if algo == Weighted || algo == Random || algo == IPHash {
			for i := range ins {
				ins[i].Weight = 1 + i%3
			}
		}
		s := newSet(b, algo, Options{}, ins)
		for _, e := range s.Endpoints() {
			e.Acquire() // least_conn: nobody idle, so every pick scans all ten
		}
		b.Run(algo+"/serial", func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if s.Pick(keys[i&1023], nil) == nil {
					b.Fatal("nil")
				}
				i++
			}
		})
		b.Run(algo+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if s.Pick(keys[i&1023], nil) == nil {
						b.Fatal("nil")
					}
					i++
				}
			})
		})
		b.Run(algo+"/skip1", func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				var tr tried
				tr.add(s.Pick(keys[i&1023], tr.Skip))
				if s.Pick(keys[i&1023], tr.Skip) == nil {
					b.Fatal("nil")
				}
				i++
			}
		})
		b.Run(algo+"/skipall", func(b *testing.B) {
			b.ReportAllocs()
			skipAll := func(*Endpoint) bool { return true }
			for b.Loop() {
				if s.Pick(keys[0], skipAll) != nil {
					b.Fatal("picked with everything skipped")
				}
			}
		})
	}
}

// BenchmarkUpdate measures building a snapshot for 10 instances (alternating between
// two lists, so each Update really rebuilds).
func BenchmarkUpdate(b *testing.B) {
	for _, algo := range Algorithms() {
		b.Run(algo, func(b *testing.B) {
			a, c := numbered(10), numbered(10)
			for i := range a {
				a[i].Weight, c[i].Weight = 1+i%3, 2+i%3
			}
			s := newSet(b, algo, Options{}, a)
			b.ReportAllocs()
			for k := 0; b.Loop(); k++ {
				if k%2 == 0 {
					s.Update(c)
				} else {
					s.Update(a)
				}
			}
		})
	}
}

// BenchmarkPickManyServices picks from 1, 100 and 1,000 services (one Set each, as the
// gateway keeps one per watched service), cycling through them: the pick cost must not
// grow with the number of watched services, since each Set is independent.
func BenchmarkPickManyServices(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		sets := make([]*Set, n)
		for i := range sets {
			sets[i] = newSet(b, RoundRobin, Options{}, numbered(10))
		}
		b.Run(fmtInt(n), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if sets[i%n].Pick("", nil) == nil {
					b.Fatal("nil")
				}
				i++
			}
		})
	}
}

func fmtInt(n int) string {
	s := ""
	for n > 0 || s == "" {
		s = string(rune('0'+n%10)) + s
		n /= 10
	}
	return s + "-services"
}
