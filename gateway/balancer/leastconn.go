package balancer

// pickLeastConn returns the endpoint with the fewest in-flight requests relative to
// its weight, comparing inflight_a × weight_b < inflight_b × weight_a as nginx does
// (with equal weights: the fewest in flight). The scan starts at a rotating offset and
// keeps the first of equals, so ties rotate instead of piling onto the first instance.
// An idle endpoint cannot be beaten, so the scan stops at the first one it meets.
//
// This is an exact scan, O(len(eps)) atomic loads; for the tens of instances a service
// usually has it costs less than one cache miss elsewhere. Power-of-two-choices would
// be O(1) but only approximately least.
func (s *Set) pickLeastConn(sn *snapshot, skip Filter) *Endpoint {
	eps := sn.eps
	n := len(eps)
	i := int((s.next.Add(1) - 1) % uint64(n))
	var (
		best         *Endpoint
		bestC, bestW int64
	)
	for range n {
		e := eps[i]
		if i++; i == n {
			i = 0
		}
		if skip != nil && skip(e) {
			continue
		}
		c, w := e.st.inflight.Load(), int64(e.Weight)
		if c <= 0 {
			return e
		}
		if best == nil || c*bestW < bestC*w {
			best, bestC, bestW = e, c, w
		}
	}
	return best
}
