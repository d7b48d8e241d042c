package balancer

import "slices"

// Limits on the ip_hash ring.
const (
	// maxRingPoints bounds the ring (12 bytes a point). Above it every instance's
	// share of points is scaled down proportionally (each keeps at least one), and a
	// membership change then also moves some keys between the remaining instances.
	// Weights are deliberately not divided by their GCD: an instance leaving could
	// change the GCD and so every other instance's points.
	maxRingPoints = 1 << 17
	// ringWalk is how many ring points Pick walks past skipped endpoints before it
	// falls back to a deterministic scan of the endpoints.
	ringWalk = 64
)

// ring is a consistent-hash ring: point k sits at hashes[k] (ascending) and belongs to
// eps[owners[k]]. Instance i owns VirtualNodes × weight points, placed by hashing its
// ID with the point's number, so an instance's points do not depend on the other
// instances: removing one removes only its points, and only the keys that landed on
// them move.
type ring struct {
	hashes []uint64
	owners []uint32
}

// buildRing places the points of eps. Point positions depend only on the instance ID
// and point number (see pointHash), so every gateway replica, and every version of
// this code that keeps pointHash, agrees on them.
func buildRing(eps []*Endpoint, vnodes int) ring {
	counts := make([]int, len(eps))
	total := 0
	for i, e := range eps {
		counts[i] = vnodes * e.Weight
		total += counts[i]
	}
	if total > maxRingPoints {
		scaled := 0
		for i := range counts {
			counts[i] = max(1, int(int64(counts[i])*maxRingPoints/int64(total)))
			scaled += counts[i]
		}
		total = scaled
	}
	type point struct {
		h     uint64
		owner uint32
	}
	pts := make([]point, 0, total)
	for i, e := range eps {
		base := hashString(e.ID)
		for k := range counts[i] {
			pts = append(pts, point{pointHash(base, k), uint32(i)})
		}
	}
	// Ties (two points on one 64-bit hash) are broken by owner, i.e. by ID order, so
	// the ring does not depend on input order.
	slices.SortFunc(pts, func(a, b point) int {
		switch {
		case a.h < b.h:
			return -1
		case a.h > b.h:
			return 1
		}
		return int(a.owner) - int(b.owner)
	})
	r := ring{hashes: make([]uint64, len(pts)), owners: make([]uint32, len(pts))}
	for k, p := range pts {
		r.hashes[k], r.owners[k] = p.h, p.owner
	}
	return r
}

// pickHash returns the owner of the first ring point at or after hash(key). When skip
// rejects it, the walk goes on clockwise to the next points' owners, so each key has
// its own stable order of fallbacks and a rejected instance's keys spread over the
// others. After ringWalk points, a scan of the endpoints (from the first owner, in ID
// order) settles it, still deterministically.
func (sn *snapshot) pickHash(key string, skip Filter) *Endpoint {
	hs := sn.ring.hashes
	k, _ := slices.BinarySearch(hs, hashString(key))
	if k == len(hs) {
		k = 0
	}
	first := int(sn.ring.owners[k])
	e := sn.eps[first]
	if skip == nil || !skip(e) {
		return e
	}
	last := first
	for range min(len(hs), ringWalk) - 1 {
		if k++; k == len(hs) {
			k = 0
		}
		i := int(sn.ring.owners[k])
		if i == last {
			continue
		}
		last = i
		if e = sn.eps[i]; !skip(e) {
			return e
		}
	}
	return sn.scan(first, skip)
}

// hashString is 64-bit FNV-1a followed by a splitmix64 finaliser (FNV alone mixes
// short keys such as IP addresses poorly). It is fixed, not seeded per process: every
// gateway replica must send a client to the same instance.
func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return mix64(h)
}

// pointHash places point k of the instance whose ID hashes to base.
func pointHash(base uint64, k int) uint64 {
	return mix64(base + uint64(k+1)*0x9e3779b97f4a7c15)
}

// mix64 is splitmix64's finaliser.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
