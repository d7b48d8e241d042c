package ratelimit

import "time"

// The two algorithms as pure integer functions of the current time and the
// stored state. MemoryStore calls them directly; the Lua scripts in
// scripts.go are line-for-line translations, so both stores decide alike.
// Everything is an integer well below 2^53, so the Lua doubles are exact.

// decision is an algorithm's answer; durations are in microseconds.
type decision struct {
	allowed    bool
	remaining  int64
	retryAfter int64
	resetAfter int64
}

// result converts d into a Result for a bucket of capacity limit.
func (d decision) result(limit int) Result {
	return Result{
		Allowed:    d.allowed,
		Limit:      limit,
		Remaining:  int(d.remaining),
		RetryAfter: time.Duration(d.retryAfter) * time.Microsecond,
		ResetAfter: time.Duration(d.resetAfter) * time.Microsecond,
	}
}

// gcra decides one request of a token bucket of capacity burst refilled one
// token per interval µs. tat is the stored theoretical arrival time (µs since
// the epoch, 0 when there is none): the moment the bucket is full again.
// It returns the new tat to store when the request is allowed; a rejected
// request leaves the state alone.
func gcra(now, tat, interval, burst int64) (decision, int64) {
	tat = max(tat, now)
	newTAT := tat + interval
	allowAt := newTAT - burst*interval
	if allowAt > now {
		return decision{retryAfter: allowAt - now, resetAfter: tat - now}, tat
	}
	return decision{
		allowed:    true,
		remaining:  (now - allowAt) / interval,
		resetAfter: newTAT - now,
	}, newTAT
}

// window is the sliding-window state: the index of the current fixed window
// (time/W), the requests counted in it and in the one before.
type window struct {
	index, cur, prev int64
}

// slide decides one request of a sliding window of limit requests per size
// ms. now is in milliseconds. The estimate over the last W is
// prev·(W−e)/W + cur, e being the time elapsed in the current window; the
// request passes when the estimate including it is at most limit. It returns
// the state to store when allowed (the caller sets the key to expire after
// resetAfter); durations in the decision are in microseconds.
func slide(now int64, st window, size, limit int64) (decision, window) {
	idx := now / size
	e := now - idx*size
	switch st.index {
	case idx:
	case idx - 1:
		st.prev, st.cur = st.cur, 0
	default:
		st.prev, st.cur = 0, 0
	}
	st.index = idx
	num := st.prev*(size-e) + (st.cur+1)*size // (estimate incl. this one)·W
	if num <= limit*size {
		st.cur++
		return decision{
			allowed:    true,
			remaining:  (limit*size - num) / size,
			resetAfter: (2*size - e) * 1000,
		}, st
	}
	d := decision{resetAfter: windowReset(st, size, e) * 1000}
	if st.cur+1 <= limit {
		// prev decays within this window: first e' with
		// prev·(W−e') <= (limit−cur−1)·W.
		at := size - (limit-st.cur-1)*size/st.prev
		d.retryAfter = (at - e) * 1000
	} else {
		// Only after the boundary, when cur has become prev.
		at := size - (limit-1)*size/st.cur
		d.retryAfter = (size - e + at) * 1000
	}
	return d, st
}

// windowReset is how long (ms) until the estimate is zero: the current
// window's requests weigh until the end of the next window, the previous
// window's until the end of this one.
func windowReset(st window, size, e int64) int64 {
	switch {
	case st.cur > 0:
		return 2*size - e
	case st.prev > 0:
		return size - e
	}
	return 0
}
