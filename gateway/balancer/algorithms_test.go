package balancer

import (
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
)

func count(ids []string) map[string]int {
	m := map[string]int{}
	for _, id := range ids {
		m[id]++
	}
	return m
}

func TestRoundRobin(t *testing.T) {
	for _, tc := range []struct {
		name string
		ins  []Instance
		skip Filter
		want string
	}{
		{"sorted by ID", inst("c", "a", "b"), nil, "a,b,c,a,b,c,a"},
		{"weights ignored", []Instance{{ID: "a", Weight: 5}, {ID: "b"}}, nil, "a,b,a,b"},
		{"one", inst("a"), nil, "a,a,a"},
		// A skipped instance's turns are shared out, not all given to its successor.
		{"skip middle", inst("a", "b", "c"), skipIDs("b"), "a,c,a,c,a,c"},
		{"skip two of four", inst("a", "b", "c", "d"), skipIDs("a", "b"), "c,d,c,d"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSet(t, RoundRobin, Options{}, tc.ins)
			want := strings.Split(tc.want, ",")
			if got := picks(s, "", tc.skip, len(want)); !slices.Equal(got, want) {
				t.Fatalf("got %v, want %v", got, want)
			}
		})
	}
}

func TestWeightedSequence(t *testing.T) {
	for _, tc := range []struct {
		name string
		ins  []Instance
		want string // one or more cycles
	}{
		// nginx's documented example (ngx_http_upstream_round_robin.c).
		{"nginx 5,1,1", []Instance{{ID: "c", Weight: 1}, {ID: "a", Weight: 5}, {ID: "b", Weight: 1}},
			"a,a,b,a,c,a,a,a,a,b,a,c,a,a"},
		{"4,2,1", []Instance{{ID: "a", Weight: 4}, {ID: "b", Weight: 2}, {ID: "c", Weight: 1}},
			"a,b,a,c,a,b,a"},
		{"GCD divided out", []Instance{{ID: "a", Weight: 10}, {ID: "b", Weight: 20}},
			"b,a,b,b,a,b"},
		{"equal weights rotate", []Instance{{ID: "a", Weight: 3}, {ID: "b", Weight: 3}},
			"a,b,a,b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSet(t, Weighted, Options{}, tc.ins)
			want := strings.Split(tc.want, ",")
			if got := picks(s, "", nil, len(want)); !slices.Equal(got, want) {
				t.Fatalf("got %v, want %v", got, want)
			}
		})
	}
}

// Concurrent picks each take their own position in the precomputed cycle, so after a
// whole number of cycles the counts are exact, not merely close.
func TestWeightedConcurrentExact(t *testing.T) {
	s := newSet(t, Weighted, Options{}, []Instance{{ID: "a", Weight: 5}, {ID: "b", Weight: 1}, {ID: "c", Weight: 1}})
	const goroutines, each = 7, 1000
	var (
		mu  sync.Mutex
		got = map[string]int{}
		wg  sync.WaitGroup
	)
	for range goroutines {
		wg.Go(func() {
			local := map[string]int{}
			for range each {
				local[s.Pick("", nil).ID]++
			}
			mu.Lock()
			for k, v := range local {
				got[k] += v
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	if got["a"] != 5000 || got["b"] != 1000 || got["c"] != 1000 {
		t.Fatalf("counts %v, want a=5000 b=1000 c=1000", got)
	}
}

func TestWeightedSkip(t *testing.T) {
	s := newSet(t, Weighted, Options{}, []Instance{{ID: "a", Weight: 5}, {ID: "b", Weight: 1}, {ID: "c", Weight: 1}})
	c := count(picks(s, "", skipIDs("a"), 700))
	if c["a"] != 0 || c["b"] != 350 || c["c"] != 350 {
		t.Fatalf("a skipped: %v, want b:c = 1:1 exactly", c)
	}
	s = newSet(t, Weighted, Options{}, []Instance{{ID: "a", Weight: 1}, {ID: "b", Weight: 3}, {ID: "c", Weight: 1}})
	c = count(picks(s, "", skipIDs("c"), 800))
	if c["c"] != 0 || c["b"] != 600 || c["a"] != 200 {
		t.Fatalf("c skipped: %v, want b:a = 3:1 exactly", c)
	}
}

func TestSmoothCycleLimits(t *testing.T) {
	shares := func(weights []int, cycle []uint32) (want, got []float64) {
		n := make([]int, len(weights))
		for _, i := range cycle {
			n[i]++
		}
		sum := 0
		for _, w := range weights {
			sum += w
		}
		for i, w := range weights {
			want = append(want, float64(w)/float64(sum))
			got = append(got, float64(n[i])/float64(len(cycle)))
		}
		return want, got
	}

	t.Run("large coprime weights are scaled", func(t *testing.T) {
		weights := []int{MaxWeight, MaxWeight - 1, 3}
		cycle := smoothCycle(weights)
		if len(cycle) == 0 || len(cycle) > maxCycle+len(weights) {
			t.Fatalf("cycle length %d, want 1..%d", len(cycle), maxCycle+len(weights))
		}
		want, got := shares(weights, cycle)
		for i := range want {
			if got[i] == 0 || math.Abs(got[i]-want[i]) > 0.001 {
				t.Fatalf("instance %d share %.5f, want %.5f", i, got[i], want[i])
			}
		}
	})
	t.Run("many instances bound the work", func(t *testing.T) {
		weights := append(slices.Repeat([]int{10}, 3000), 11)
		cycle := smoothCycle(weights)
		n := len(weights)
		if limit := max(n, maxCycleWork/n) + n; len(cycle) == 0 || len(cycle) > limit {
			t.Fatalf("cycle length %d, want 1..%d", len(cycle), limit)
		}
		_, got := shares(weights, cycle)
		for i := range got {
			if got[i] == 0 || got[i] > got[n-1] {
				t.Fatalf("instance %d share %.5f, heaviest %.5f", i, got[i], got[n-1])
			}
		}
	})
	if smoothCycle([]int{4, 4, 4}) != nil {
		t.Fatal("equal weights should need no cycle")
	}
}

func TestLeastConn(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ins      []Instance
		inflight map[string]int
		skip     Filter
		want     string // picks made without acquiring
	}{
		{"idle ties rotate", inst("a", "b", "c"), nil, nil, "a,b,c,a,b,c"},
		{"fewest wins", inst("a", "b", "c"), map[string]int{"a": 2, "b": 1, "c": 3}, nil, "b,b,b"},
		{"busy ties rotate", inst("a", "b", "c"), map[string]int{"a": 2, "b": 2, "c": 2}, nil, "a,b,c,a"},
		{"idle beats all", inst("a", "b", "c"), map[string]int{"a": 9, "b": 9}, nil, "c,c"},
		// inflight/weight: a 4/2 = 2, b 1/1 = 1, c 3/1 = 3.
		{"weighted", []Instance{{ID: "a", Weight: 2}, {ID: "b"}, {ID: "c"}}, map[string]int{"a": 4, "b": 1, "c": 3}, nil, "b,b"},
		// a 2/2 = b 1/1: a tie, rotated.
		{"weighted tie", []Instance{{ID: "a", Weight: 2}, {ID: "b"}}, map[string]int{"a": 2, "b": 1}, nil, "a,b,a,b"},
		{"skip the least", inst("a", "b", "c"), map[string]int{"a": 2, "b": 1, "c": 3}, skipIDs("b"), "a,a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSet(t, LeastConn, Options{}, tc.ins)
			for _, e := range s.Endpoints() {
				for range tc.inflight[e.ID] {
					e.Acquire()
				}
			}
			want := strings.Split(tc.want, ",")
			if got := picks(s, "", tc.skip, len(want)); !slices.Equal(got, want) {
				t.Fatalf("got %v, want %v", got, want)
			}
		})
	}
}

// With requests held open, least_conn keeps the in-flight counts level.
func TestLeastConnBalancesHeldRequests(t *testing.T) {
	s := newSet(t, LeastConn, Options{}, numbered(10))
	var held []*Endpoint
	for range 95 {
		e := s.Pick("", nil)
		e.Acquire()
		held = append(held, e)
	}
	for _, e := range s.Endpoints() {
		if n := e.InFlight(); n < 9 || n > 10 {
			t.Fatalf("%s: %d in flight, want 9 or 10", e.ID, n)
		}
	}
	// Release everything held by i03: it becomes the only idle one.
	for _, e := range held {
		if e.ID == "i03" {
			e.Release()
		}
	}
	if e := s.Pick("", nil); e.ID != "i03" {
		t.Fatalf("picked %s, want the idle i03", e.ID)
	}
}

func TestRandom(t *testing.T) {
	t.Run("uniform", func(t *testing.T) {
		s := newSet(t, Random, Options{Rand: seeded(42)}, numbered(10))
		c := count(picks(s, "", nil, 100_000))
		for id, n := range c {
			if n < 9_500 || n > 10_500 {
				t.Fatalf("%s picked %d of 100000, want 10000 ± 5%%: %v", id, n, c)
			}
		}
		if len(c) != 10 {
			t.Fatalf("only %d instances picked", len(c))
		}
	})
	t.Run("weighted", func(t *testing.T) {
		s := newSet(t, Random, Options{Rand: seeded(7)}, []Instance{{ID: "a", Weight: 3}, {ID: "b", Weight: 1}})
		c := count(picks(s, "", nil, 40_000))
		if c["a"] < 29_400 || c["a"] > 30_600 {
			t.Fatalf("a picked %d of 40000, want 30000 ± 2%%", c["a"])
		}
	})
	t.Run("deterministic with a seed", func(t *testing.T) {
		a := picks(newSet(t, Random, Options{Rand: seeded(9)}, numbered(10)), "", nil, 200)
		b := picks(newSet(t, Random, Options{Rand: seeded(9)}, numbered(10)), "", nil, 200)
		c := picks(newSet(t, Random, Options{Rand: seeded(10)}, numbered(10)), "", nil, 200)
		if !slices.Equal(a, b) || slices.Equal(a, c) {
			t.Fatal("same seed gave different picks, or different seeds the same")
		}
	})
	t.Run("skip spreads evenly", func(t *testing.T) {
		s := newSet(t, Random, Options{Rand: seeded(3)}, inst("a", "b", "c", "d"))
		c := count(picks(s, "", skipIDs("b"), 30_000))
		for _, id := range []string{"a", "c", "d"} {
			if c[id] < 9_500 || c[id] > 10_500 {
				t.Fatalf("b skipped: %v, want a, c, d 10000 ± 5%% each", c)
			}
		}
	})
}
