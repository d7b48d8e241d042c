package balancer

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

func join(s []string) string { return strings.Join(s, ",") }

// inst returns instances named by ids (ID = address = name, weight 1).
func inst(ids ...string) []Instance {
	out := make([]Instance, len(ids))
	for i, id := range ids {
		out[i] = Instance{ID: id, Address: id}
	}
	return out
}

// numbered returns n instances i00, i01, ….
func numbered(n int) []Instance {
	out := make([]Instance, n)
	for i := range out {
		id := fmt.Sprintf("i%02d", i)
		out[i] = Instance{ID: id, Address: "10.0.0." + fmt.Sprint(i+1) + ":80"}
	}
	return out
}

func newSet(t testing.TB, algo string, opts Options, ins []Instance) *Set {
	t.Helper()
	s, err := NewSet(algo, opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Update(ins)
	return s
}

// seeded returns a deterministic, concurrency-safe random source.
func seeded(seed uint64) func() uint64 {
	var mu sync.Mutex
	r := rand.New(rand.NewPCG(seed, seed^0x5eed))
	return func() uint64 {
		mu.Lock()
		defer mu.Unlock()
		return r.Uint64()
	}
}

// skipIDs is a Filter rejecting the named IDs.
func skipIDs(ids ...string) Filter {
	return func(e *Endpoint) bool { return slices.Contains(ids, e.ID) }
}

// tried mirrors the gateway's retry filter: a fixed array on the caller's stack.
type tried struct {
	n   int
	eps [4]*Endpoint
}

func (t *tried) add(e *Endpoint) {
	if t.n < len(t.eps) {
		t.eps[t.n] = e
		t.n++
	}
}

func (t *tried) Skip(e *Endpoint) bool {
	for i := 0; i < t.n; i++ {
		if t.eps[i] == e {
			return true
		}
	}
	return false
}

func picks(s *Set, key string, skip Filter, n int) []string {
	out := make([]string, n)
	for i := range out {
		e := s.Pick(key, skip)
		if e == nil {
			out[i] = "<nil>"
			continue
		}
		out[i] = e.ID
	}
	return out
}

func TestNewSet(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		err        error
	}{
		{"", RoundRobin, nil},
		{RoundRobin, RoundRobin, nil},
		{LeastConn, LeastConn, nil},
		{Random, Random, nil},
		{IPHash, IPHash, nil},
		{Weighted, Weighted, nil},
		{"roundrobin", "", ErrUnknownAlgorithm},
		{"Round_Robin", "", ErrUnknownAlgorithm},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewSet(tc.name, Options{})
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			if s.Algorithm() != tc.want || s.Len() != 0 || len(s.Endpoints()) != 0 {
				t.Fatalf("algorithm %q len %d", s.Algorithm(), s.Len())
			}
		})
	}
	if got := Algorithms(); len(got) != 5 {
		t.Fatalf("Algorithms() = %v", got)
	}
}

func TestEmptySetPicksNil(t *testing.T) {
	for _, algo := range Algorithms() {
		t.Run(algo, func(t *testing.T) {
			s := newSet(t, algo, Options{}, nil)
			if e := s.Pick("1.2.3.4", nil); e != nil {
				t.Fatalf("empty set picked %v", e.ID)
			}
			s.Update(inst("a", "b"))
			if s.Pick("1.2.3.4", nil) == nil {
				t.Fatal("nil from a set of two")
			}
			if _, removed := s.Update(nil); len(removed) != 2 {
				t.Fatalf("removed %v", removed)
			}
			if e := s.Pick("1.2.3.4", nil); e != nil || s.Len() != 0 {
				t.Fatalf("emptied set picked %v, len %d", e, s.Len())
			}
		})
	}
}

func TestFilter(t *testing.T) {
	ins := numbered(10)
	all := make([]string, len(ins))
	for i, in := range ins {
		all[i] = in.ID
	}
	allBut := func(keep string) []string {
		return slices.DeleteFunc(slices.Clone(all), func(id string) bool { return id == keep })
	}
	for _, algo := range Algorithms() {
		t.Run(algo, func(t *testing.T) {
			s := newSet(t, algo, Options{Rand: seeded(1)}, ins)
			for k := range 50 {
				key := fmt.Sprintf("192.0.2.%d", k)
				if e := s.Pick(key, skipIDs(all...)); e != nil {
					t.Fatalf("everything skipped, picked %s", e.ID)
				}
				for _, keep := range []string{"i00", "i05", "i09"} {
					if e := s.Pick(key, skipIDs(allBut(keep)...)); e == nil || e.ID != keep {
						t.Fatalf("only %s usable, picked %v", keep, e)
					}
				}
				// A nil filter and a filter that skips nothing agree on usability.
				if s.Pick(key, func(*Endpoint) bool { return false }) == nil || s.Pick(key, nil) == nil {
					t.Fatal("nil with nothing skipped")
				}
			}
		})
	}
}

// A retry filter built on the caller's stack, as the gateway does, must not escape.
func TestPickDoesNotAllocate(t *testing.T) {
	for _, algo := range Algorithms() {
		t.Run(algo, func(t *testing.T) {
			s := newSet(t, algo, Options{}, numbered(10))
			for _, e := range s.Endpoints() {
				e.Acquire() // least_conn: no idle endpoint, so it scans them all
			}
			allocs := testing.AllocsPerRun(1000, func() {
				var tr tried
				for range 3 {
					e := s.Pick("198.51.100.7", tr.Skip)
					if e == nil {
						t.Fatal("nil pick")
					}
					tr.add(e)
				}
				if s.Pick("198.51.100.7", nil) == nil {
					t.Fatal("nil pick")
				}
			})
			if allocs != 0 {
				t.Fatalf("%v allocs per pick sequence, want 0", allocs)
			}
		})
	}
}

func TestRetryFilterTriesDistinctInstances(t *testing.T) {
	for _, algo := range Algorithms() {
		t.Run(algo, func(t *testing.T) {
			s := newSet(t, algo, Options{Rand: seeded(2)}, inst("a", "b", "c"))
			for k := range 100 {
				var tr tried
				seen := map[string]bool{}
				for range 3 {
					e := s.Pick(fmt.Sprint(k), tr.Skip)
					if e == nil || seen[e.ID] {
						t.Fatalf("retry %d: picked %v after %v", tr.n, e, seen)
					}
					seen[e.ID] = true
					tr.add(e)
				}
				if e := s.Pick(fmt.Sprint(k), tr.Skip); e != nil {
					t.Fatalf("all tried, picked %s", e.ID)
				}
			}
		})
	}
}

func TestUpdateKeepsState(t *testing.T) {
	var newCalls, removeCalls []string
	type ext struct{ id string }
	s := newSet(t, LeastConn, Options{
		OnNew:    func(e *Endpoint) any { newCalls = append(newCalls, e.ID); return &ext{e.ID} },
		OnRemove: func(e *Endpoint) { removeCalls = append(removeCalls, e.ID) },
	}, nil)

	added, removed := s.Update([]Instance{
		{ID: "c", Address: "10.0.0.3:80"}, {ID: "a", Address: "10.0.0.1:80"}, {ID: "b", Address: "10.0.0.2:80"},
	})
	if ids(added) != "a,b,c" || len(removed) != 0 || join(newCalls) != "a,b,c" {
		t.Fatalf("added %v removed %v OnNew %v", added, removed, newCalls)
	}
	byID := func() map[string]*Endpoint {
		m := map[string]*Endpoint{}
		for _, e := range s.Endpoints() {
			m[e.ID] = e
		}
		return m
	}
	before := byID()
	before["b"].Acquire()
	before["b"].Acquire()
	before["c"].Acquire()

	// Same list in another order: nothing changes, not even the snapshot.
	snap := s.snap.Load()
	added, removed = s.Update([]Instance{
		{ID: "b", Address: "10.0.0.2:80"}, {ID: "c", Address: "10.0.0.3:80"}, {ID: "a", Address: "10.0.0.1:80"},
	})
	if added != nil || removed != nil || s.snap.Load() != snap {
		t.Fatalf("unchanged list: added %v removed %v, snapshot replaced", added, removed)
	}

	// b changes weight and tags, c moves address, a leaves, d joins.
	newCalls, removeCalls = nil, nil
	added, removed = s.Update([]Instance{
		{ID: "d", Address: "10.0.0.4:80"},
		{ID: "b", Address: "10.0.0.2:80", Weight: 3, Tags: []string{"v2"}},
		{ID: "c", Address: "10.0.0.33:80"},
	})
	if ids(added) != "c,d" || ids(removed) != "a,c" {
		t.Fatalf("added %v removed %v", added, removed)
	}
	if removed[1].Address != "10.0.0.3:80" || added[0].Address != "10.0.0.33:80" {
		t.Fatalf("moved instance: removed %+v added %+v", removed[1], added[0])
	}
	if join(newCalls) != "c,d" || join(removeCalls) != "a,c" {
		t.Fatalf("OnNew %v OnRemove %v", newCalls, removeCalls)
	}
	after := byID()
	b := after["b"]
	if b.InFlight() != 2 || b.Ext() != before["b"].Ext() || b.Weight != 3 || join(b.Tags) != "v2" {
		t.Fatalf("b after update: inflight %d ext %v weight %d tags %v", b.InFlight(), b.Ext(), b.Weight, b.Tags)
	}
	if c := after["c"]; c.InFlight() != 0 || c.Ext() == before["c"].Ext() || c.Ext().(*ext).id != "c" {
		t.Fatalf("c moved address but kept state: inflight %d", c.InFlight())
	}
	// The old b (held by a request in flight across the update) releases into the
	// shared count; least_conn sees it.
	before["b"].Release()
	if b.InFlight() != 1 {
		t.Fatalf("release through the old endpoint: inflight %d", b.InFlight())
	}
	if got := join(sortedIDs(s.Endpoints())); got != "b,c,d" {
		t.Fatalf("endpoints %s", got)
	}
}

func TestUpdateNormalises(t *testing.T) {
	s := newSet(t, Weighted, Options{}, nil)
	tags := []string{"x"}
	meta := map[string]string{"k": "v"}
	added, _ := s.Update([]Instance{
		{Address: "b:1", Weight: -4, Tags: tags, Meta: meta},
		{Address: "a:1", Weight: 1 << 40},
		{ID: "b:1", Address: "dup:1", Weight: 7},
	})
	tags[0], meta["k"] = "changed", "changed"
	if len(added) != 2 || s.Len() != 2 {
		t.Fatalf("added %+v", added)
	}
	eps := s.Endpoints()
	if eps[0].ID != "a:1" || eps[0].Weight != MaxWeight {
		t.Fatalf("a: %+v", eps[0].Instance)
	}
	if eps[1].ID != "b:1" || eps[1].Address != "b:1" || eps[1].Weight != 1 || eps[1].Tags[0] != "x" || eps[1].Meta["k"] != "v" {
		t.Fatalf("b: %+v", eps[1].Instance)
	}
	// Endpoints returns a copy: the snapshot cannot be modified through it.
	eps[0] = nil
	if s.Endpoints()[0] == nil {
		t.Fatal("Endpoints exposed the snapshot")
	}
}

// Picks race with updates that add, remove, move and reweight instances; run with -race.
func TestConcurrentPickAndUpdate(t *testing.T) {
	lists := [][]Instance{
		numbered(10),
		numbered(3),
		nil,
		{{ID: "i01", Address: "elsewhere:1", Weight: 5}, {ID: "i07", Address: "x:1", Weight: 2}},
		numbered(7),
	}
	for _, algo := range Algorithms() {
		t.Run(algo, func(t *testing.T) {
			var made atomic.Int64
			s := newSet(t, algo, Options{OnNew: func(*Endpoint) any { made.Add(1); return nil }}, lists[0])
			var (
				wg    sync.WaitGroup
				stop  atomic.Bool
				held  sync.Map // every endpoint ever picked
				picks atomic.Int64
			)
			for g := range 4 {
				wg.Go(func() {
					for k := 0; !stop.Load() || k < 2000; k++ {
						var tr tried
						for range 2 {
							e := s.Pick(fmt.Sprint(g, ".", k%97), tr.Skip)
							if e == nil {
								break
							}
							if e.Address == "" || e.Weight < 1 {
								t.Errorf("bad endpoint %+v", e.Instance)
								return
							}
							e.Acquire()
							held.Store(e, true)
							tr.add(e)
							picks.Add(1)
						}
						for i := 0; i < tr.n; i++ {
							tr.eps[i].Release()
						}
					}
				})
			}
			for k := range 300 {
				s.Update(lists[k%len(lists)])
			}
			stop.Store(true)
			wg.Wait()
			if picks.Load() == 0 {
				t.Fatal("no picks")
			}
			if made.Load() == 0 {
				t.Fatal("OnNew never called")
			}
			held.Range(func(k, _ any) bool {
				if n := k.(*Endpoint).InFlight(); n != 0 {
					t.Errorf("%s: in-flight %d after every request released", k.(*Endpoint).ID, n)
				}
				return true
			})
		})
	}
}

func ids(ins []Instance) string {
	s := make([]string, len(ins))
	for i, in := range ins {
		s[i] = in.ID
	}
	return strings.Join(s, ",")
}

func sortedIDs(eps []*Endpoint) []string {
	out := make([]string, len(eps))
	for i, e := range eps {
		out[i] = e.ID
	}
	slices.Sort(out)
	return out
}
