package balancer

import (
	"cmp"
	"maps"
	"slices"
)

// Update replaces the Set's instances with instances, a complete list (the order does
// not matter; it is sorted by ID). It builds a new snapshot, with everything the
// algorithm needs precomputed, and swaps it in atomically; picks in progress finish on
// the old one. It returns the instances that joined and those that left, each sorted
// by ID; an ID whose address changed appears in both. A change of weight, tags or
// meta alone is neither: the instance keeps its state. When nothing changed at all,
// Update returns nil, nil and keeps the current snapshot.
//
// Instances are normalised (ID defaults to Address, Weight is clamped to
// [1, MaxWeight]) and their Tags and Meta copied, so the caller may reuse its slice
// and maps. Of several instances with one ID the first in the input is kept.
func (s *Set) Update(instances []Instance) (added, removed []Instance) {
	list := normalise(instances)

	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.snap.Load()
	if sameInstances(old.eps, list) {
		return nil, nil
	}

	prev := make(map[string]*Endpoint, len(old.eps))
	for _, e := range old.eps {
		prev[e.ID] = e
	}
	var gone []*Endpoint
	eps := make([]*Endpoint, len(list))
	for i, in := range list {
		p := prev[in.ID]
		switch {
		case p != nil && p.Address == in.Address:
			delete(prev, in.ID)
			if equalInstance(p.Instance, in) {
				eps[i] = p
			} else {
				eps[i] = &Endpoint{Instance: in, st: p.st}
			}
			continue
		case p != nil: // same ID, new address: a different instance
			delete(prev, in.ID)
			gone = append(gone, p)
		}
		e := &Endpoint{Instance: in, st: &state{}}
		if s.opts.OnNew != nil {
			e.st.ext = s.opts.OnNew(e)
		}
		eps[i] = e
		added = append(added, in)
	}
	for _, p := range prev {
		gone = append(gone, p)
	}
	slices.SortFunc(gone, func(a, b *Endpoint) int { return cmp.Compare(a.ID, b.ID) })
	for _, p := range gone {
		removed = append(removed, p.Instance)
	}

	sn := &snapshot{eps: eps}
	switch s.algo {
	case algoWeighted, algoRandom:
		weights := make([]int, len(eps))
		for i, e := range eps {
			weights[i] = e.Weight
		}
		sn.cycle = smoothCycle(weights)
	case algoIPHash:
		sn.ring = buildRing(eps, s.opts.VirtualNodes)
	}
	s.snap.Store(sn)

	if s.opts.OnRemove != nil {
		for _, p := range gone {
			s.opts.OnRemove(p)
		}
	}
	return added, removed
}

// normalise copies instances, fills defaults, sorts by ID and drops repeated IDs.
func normalise(instances []Instance) []Instance {
	list := make([]Instance, 0, len(instances))
	for _, in := range instances {
		if in.ID == "" {
			in.ID = in.Address
		}
		in.Weight = min(max(in.Weight, 1), MaxWeight)
		in.Tags = slices.Clone(in.Tags)
		in.Meta = maps.Clone(in.Meta)
		list = append(list, in)
	}
	slices.SortStableFunc(list, func(a, b Instance) int { return cmp.Compare(a.ID, b.ID) })
	return slices.CompactFunc(list, func(a, b Instance) bool { return a.ID == b.ID })
}

func sameInstances(eps []*Endpoint, list []Instance) bool {
	if len(eps) != len(list) {
		return false
	}
	for i, e := range eps {
		if !equalInstance(e.Instance, list[i]) {
			return false
		}
	}
	return true
}

func equalInstance(a, b Instance) bool {
	return a.ID == b.ID && a.Address == b.Address && a.Weight == b.Weight &&
		slices.Equal(a.Tags, b.Tags) && maps.Equal(a.Meta, b.Meta)
}
