package balancer

import "math/bits"

// Limits on the precomputed weighted cycle. Its length is the sum of the weights
// after dividing by their GCD; building it costs len(eps) × that sum. Above the limit
// the weights are scaled down proportionally (each at least 1), so the sequence is
// then only approximately in proportion.
const (
	maxCycle     = 1 << 16 // entries (4 bytes each)
	maxCycleWork = 1 << 25 // len(eps) × cycle length, bounding Update's cost
)

// minTries is how many positions (round_robin, weighted) or draws (random) a pick may
// use up on skipped endpoints, at least, before a deterministic scan settles it.
// Weighted cycles put the same instance in runs, so len(eps) tries may not reach
// past a heavy skipped instance; more tries keep the others' shares in proportion.
const minTries = 16

// pickRotate serves round_robin and weighted: the position comes from the value the
// atomic Add returns, so concurrent picks each get their own position in the sequence.
//
// When an endpoint is skipped, each further try takes a fresh position rather than
// the next index, so a skipped instance's turns are shared among the others in their
// proportions instead of all falling to its successor: with serial picks and a cycle
// no longer than minTries, the usable instances get exactly their shares. Tries stop
// after one cycle or max(len(eps), minTries) positions (concurrent picks may take some
// positions in between); then a deterministic scan makes nil mean nothing is usable.
func (s *Set) pickRotate(sn *snapshot, skip Filter) *Endpoint {
	i := sn.at(s.next.Add(1) - 1)
	e := sn.eps[i]
	if skip == nil || !skip(e) {
		return e
	}
	tries := len(sn.eps)
	if sn.cycle != nil {
		tries = min(len(sn.cycle), max(tries, minTries))
	}
	for range tries - 1 {
		i = sn.at(s.next.Add(1) - 1)
		if e = sn.eps[i]; !skip(e) {
			return e
		}
	}
	return sn.scan(i, skip)
}

// pickRandom draws a position in the weighted cycle (uniform over eps when weights
// are equal). Skipped endpoints are redrawn, up to max(len(eps), minTries) draws in
// all; then a scan settles it.
func (s *Set) pickRandom(sn *snapshot, skip Filter) *Endpoint {
	l := uint64(len(sn.eps))
	if sn.cycle != nil {
		l = uint64(len(sn.cycle))
	}
	var i int
	for range max(len(sn.eps), minTries) {
		// Lemire's multiply-shift maps 64 random bits onto [0, l) without a division.
		p, _ := bits.Mul64(s.opts.Rand(), l)
		i = sn.at(p)
		if e := sn.eps[i]; skip == nil || !skip(e) {
			return e
		}
	}
	return sn.scan(i, skip)
}

// smoothCycle returns one period of nginx's smooth weighted round robin over weights
// (all ≥ 1), as indexes, or nil when the weights are all equal (plain rotation).
//
// Each step adds every weight to its current weight, picks the largest current weight
// (the first one on ties) and subtracts the total from it. After sum(weights) steps
// every current weight is back at zero, so one period repeats exactly.
func smoothCycle(weights []int) []uint32 {
	n := len(weights)
	if n == 0 || allEqual(weights) {
		return nil
	}
	w := make([]int, n)
	g := 0
	for i, x := range weights {
		w[i] = x
		g = gcd(g, x)
	}
	sum := 0
	for i := range w {
		w[i] /= g
		sum += w[i]
	}
	if limit := max(n, min(maxCycle, maxCycleWork/n)); sum > limit {
		total := 0
		for i := range w {
			w[i] = max(1, int(int64(w[i])*int64(limit)/int64(sum)))
			total += w[i]
		}
		sum = total
		if allEqual(w) {
			return nil
		}
	}
	cycle := make([]uint32, sum)
	cur := make([]int, n)
	for k := range cycle {
		best := 0
		for i := range cur {
			cur[i] += w[i]
			if cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= sum
		cycle[k] = uint32(best)
	}
	return cycle
}

func allEqual(w []int) bool {
	for _, x := range w[1:] {
		if x != w[0] {
			return false
		}
	}
	return true
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
