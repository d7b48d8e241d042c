package balancer

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
)

// clientKeys returns n distinct client IPs.
func clientKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
	}
	return keys
}

// assign maps every key to the ID that s picks for it.
func assign(s *Set, keys []string, skip Filter) map[string]string {
	m := make(map[string]string, len(keys))
	for _, k := range keys {
		e := s.Pick(k, skip)
		if e == nil {
			m[k] = ""
			continue
		}
		m[k] = e.ID
	}
	return m
}

func without(ins []Instance, id string) []Instance {
	return slices.DeleteFunc(slices.Clone(ins), func(in Instance) bool { return in.ID == id })
}

func TestIPHashDistribution(t *testing.T) {
	keys := clientKeys(10_000)
	s := newSet(t, IPHash, Options{}, numbered(10))
	c := map[string]int{}
	for _, id := range assign(s, keys, nil) {
		c[id]++
	}
	for id, n := range c {
		if n < 800 || n > 1200 {
			t.Errorf("%s holds %d of 10000 keys, want 1000 ± 20%%: %v", id, n, c)
		}
	}
	if len(c) != 10 {
		t.Fatalf("%d instances hold keys", len(c))
	}
}

// Removing one of N instances remaps only the clients that were on it (about 1/N);
// everyone else keeps their instance. Adding it back restores the original mapping.
func TestIPHashConsistentOnRemoval(t *testing.T) {
	keys := clientKeys(10_000)
	ins := numbered(10)
	s := newSet(t, IPHash, Options{}, ins)
	before := assign(s, keys, nil)

	for _, gone := range []string{"i00", "i04", "i09"} {
		t.Run("remove "+gone, func(t *testing.T) {
			s.Update(without(ins, gone))
			after := assign(s, keys, nil)
			moved := 0
			for _, k := range keys {
				switch {
				case before[k] == gone:
					moved++
					if after[k] == gone {
						t.Fatalf("%s still maps to the removed %s", k, gone)
					}
				case after[k] != before[k]:
					t.Fatalf("%s moved from %s to %s though %s was removed", k, before[k], after[k], gone)
				}
			}
			if frac := float64(moved) / float64(len(keys)); frac < 0.07 || frac > 0.13 {
				t.Fatalf("%.3f of keys moved, want about 1/10", frac)
			}
			s.Update(ins)
			if back := assign(s, keys, nil); !maps.Equal(back, before) {
				t.Fatal("re-adding the instance did not restore the mapping")
			}
		})
	}

	t.Run("add one", func(t *testing.T) {
		more := append(slices.Clone(ins), Instance{ID: "i10", Address: "10.0.0.11:80"})
		s.Update(more)
		after := assign(s, keys, nil)
		moved := 0
		for _, k := range keys {
			if after[k] != before[k] {
				moved++
				if after[k] != "i10" {
					t.Fatalf("%s moved from %s to %s, not to the new instance", k, before[k], after[k])
				}
			}
		}
		if frac := float64(moved) / float64(len(keys)); frac < 0.06 || frac > 0.12 {
			t.Fatalf("%.3f of keys moved, want about 1/11", frac)
		}
		s.Update(ins)
	})
}

func TestIPHashIndependentOfInputOrder(t *testing.T) {
	keys := clientKeys(2_000)
	ins := numbered(10)
	shuffled := slices.Clone(ins)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	a := assign(newSet(t, IPHash, Options{}, ins), keys, nil)
	b := assign(newSet(t, IPHash, Options{}, shuffled), keys, nil)
	if !maps.Equal(a, b) {
		t.Fatal("the mapping depends on the order of the instance list")
	}
}

// Skipping an instance (its breaker is open) sends each of its clients exactly where
// removing the instance would, spread over the others; the rest stay put.
func TestIPHashSkipWalksTheRing(t *testing.T) {
	keys := clientKeys(10_000)
	ins := numbered(10)
	s := newSet(t, IPHash, Options{}, ins)
	before := assign(s, keys, nil)
	skipped := assign(s, keys, skipIDs("i04"))
	again := assign(s, keys, skipIDs("i04"))
	removed := assign(newSet(t, IPHash, Options{}, without(ins, "i04")), keys, nil)
	if !maps.Equal(skipped, again) {
		t.Fatal("skipping is not deterministic")
	}
	if !maps.Equal(skipped, removed) {
		t.Fatal("skipping an instance differs from removing it")
	}
	spread := map[string]int{}
	for _, k := range keys {
		if before[k] == "i04" {
			spread[skipped[k]]++
		} else if skipped[k] != before[k] {
			t.Fatalf("%s moved from %s though only i04 was skipped", k, before[k])
		}
	}
	if len(spread) < 8 {
		t.Fatalf("i04's clients went to only %d instances: %v", len(spread), spread)
	}
}

func TestIPHashSkipFallsBackDeterministically(t *testing.T) {
	ins := numbered(60)
	s := newSet(t, IPHash, Options{}, ins)
	// Only i37 usable: most keys exhaust the ring walk and reach the scan.
	skip := func(e *Endpoint) bool { return e.ID != "i37" }
	for _, k := range clientKeys(500) {
		if e := s.Pick(k, skip); e == nil || e.ID != "i37" {
			t.Fatalf("%s: picked %v, want i37", k, e)
		}
	}
	// Two usable: each key keeps its choice.
	skip2 := func(e *Endpoint) bool { return e.ID != "i12" && e.ID != "i50" }
	first := assign(s, clientKeys(500), skip2)
	if !maps.Equal(first, assign(s, clientKeys(500), skip2)) {
		t.Fatal("fallback is not deterministic")
	}
}

func TestIPHashWeighted(t *testing.T) {
	keys := clientKeys(20_000)
	s := newSet(t, IPHash, Options{}, []Instance{{ID: "a", Address: "a:1", Weight: 3}, {ID: "b", Address: "b:1", Weight: 1}})
	n := 0
	for _, id := range assign(s, keys, nil) {
		if id == "a" {
			n++
		}
	}
	if frac := float64(n) / float64(len(keys)); frac < 0.70 || frac > 0.80 {
		t.Fatalf("a holds %.3f of keys, want 0.75", frac)
	}
}

// The hash is part of the fleet's contract: gateway replicas, possibly of different
// versions, must send a client to the same instance. Changing it remaps clients.
func TestIPHashIsStable(t *testing.T) {
	for _, tc := range []struct {
		key  string
		want uint64
	}{
		{"", 0xf52a15e9a9b5e89b},
		{"192.0.2.1", 0x4d0e1bc6845259f5},
		{"2001:db8::1", 0x63782f16c6a86a00},
	} {
		if got := hashString(tc.key); got != tc.want {
			t.Errorf("hashString(%q) = %#x, want %#x", tc.key, got, tc.want)
		}
	}
	s := newSet(t, IPHash, Options{}, numbered(10))
	if got := s.Pick("192.0.2.1", nil).ID; got != "i05" {
		t.Errorf("192.0.2.1 -> %s", got)
	}
}
