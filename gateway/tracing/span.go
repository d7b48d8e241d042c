package tracing

import (
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// record is one span the gateway recorded: a server span (Request) or a client span
// (Attempt). Its fields are the span's data as the encoder needs them, the attributes
// as typed fields rather than attribute.KeyValues: nothing is built per span but the
// record, and records come from a pool.
//
// Life cycle: Start takes a record from the pool (spanPool.get) and fills what it
// knows; End, once, fills the rest and hands the record to the batcher; the batcher's
// goroutine encodes it and puts it back (spanPool.put). A record is written by one
// goroutine at a time, each hand-off going through a mutex (the batcher's or the
// pool's).
// gen guards against a second End of the same span (a copied Request or Attempt):
// Start remembers gen, End advances it with a compare-and-swap and only the End that
// wins touches the record, so a stale copy can never write into a record that is
// waiting for export or has been reused.
type record struct {
	gen atomic.Uint64
	d   spanData
}

// spanData is a record's content; put resets it so the pool keeps no request's strings.
type spanData struct {
	tid    trace.TraceID
	sid    trace.SpanID
	parent trace.SpanID // zero for a root span
	flags  trace.TraceFlags
	remote bool // the parent came from the client's traceparent
	kind   trace.SpanKind
	state  string // the W3C tracestate, as sent upstream ("" for none)
	start  time.Time
	end    int64 // unix nanoseconds

	// The span's name is name1, or name1 + " " + name2 when name2 is set (a server
	// span's method and route); the encoder writes it without concatenating.
	name1, name2 string

	statusError bool   // status code Error (otherwise unset)
	statusMsg   string // its description

	// The attributes. Server span: http.request.method (method),
	// http.response.status_code (status), url.path (path), server.address (host
	// without port), gateway.request_id (requestID), then when set http.route (route),
	// gateway.service (service), gateway.instance (instance). Client span:
	// http.request.method, server.address and server.port (of instance),
	// gateway.service, gateway.instance, http.request.resend_count when resend > 0,
	// then error.type (errType) when set, else http.response.status_code when
	// hasStatus.
	method, path, host, requestID string
	route, service, instance      string
	errType                       string
	status, resend                int
	hasStatus                     bool
}

// spanPool is the tracer's free list of records. The batcher's goroutine returns a
// whole batch at once after encoding it, and requests take records one by one; a
// mutex-guarded slice fits that better than a sync.Pool, whose per-P caches a bulk
// Put from one goroutine overflows and which every GC empties: in the benchmarks a
// sync.Pool still allocated most records anew.
type spanPool struct {
	mu   sync.Mutex
	free []*record
}

// maxFree bounds the records kept for reuse (two full batches, ~0.6 MB); more are
// left to the garbage collector.
const maxFree = 2 * maxBatch

// get returns an empty record and its generation, to be passed to end.
func (sp *spanPool) get() (*record, uint64) {
	var r *record
	sp.mu.Lock()
	if n := len(sp.free); n > 0 {
		r = sp.free[n-1]
		sp.free[n-1] = nil
		sp.free = sp.free[:n-1]
	}
	sp.mu.Unlock()
	if r == nil {
		r = new(record)
	}
	return r, r.gen.Load()
}

// end claims the record for the one End of the span that started at generation gen:
// false when that span has ended already.
func (r *record) end(gen uint64) bool {
	return r.gen.CompareAndSwap(gen, gen+1)
}

// put empties the records and keeps them for reuse. Nothing may read or write them
// after.
func (sp *spanPool) put(rs ...*record) {
	for _, r := range rs {
		r.d = spanData{} // no request's strings kept alive
	}
	sp.mu.Lock()
	n := min(len(rs), maxFree-len(sp.free))
	sp.free = append(sp.free, rs[:max(n, 0)]...)
	sp.mu.Unlock()
}

// endTime is the span's end: its start plus the monotonic time since, as the SDK
// measures it (a wall-clock step never makes a span end before it started).
func endTime(start time.Time) int64 {
	return start.Add(time.Since(start)).UnixNano()
}

// ratioSampler is the SDK's TraceIDRatioBased root sampler: a trace is sampled when
// the last 8 bytes of its id, as a big-endian number shifted right by one, are below
// fraction × 2⁶³. A fraction ≥ 1 samples every trace, one ≤ 0 none.
type ratioSampler struct {
	always, never bool
	bound         uint64
}

func newRatioSampler(fraction float64) ratioSampler {
	switch {
	case fraction >= 1:
		return ratioSampler{always: true}
	case fraction <= 0:
		return ratioSampler{never: true}
	}
	return ratioSampler{bound: uint64(fraction * (1 << 63))}
}

// sampled reports whether a new trace with id tid is sampled.
func (s ratioSampler) sampled(tid trace.TraceID) bool {
	switch {
	case s.always:
		return true
	case s.never:
		return false
	}
	return binary.BigEndian.Uint64(tid[8:16])>>1 < s.bound
}

func randomSpanID() trace.SpanID {
	var id trace.SpanID
	for id == (trace.SpanID{}) {
		binary.BigEndian.PutUint64(id[:], rand.Uint64())
	}
	return id
}

func randomTraceID() trace.TraceID {
	var id trace.TraceID
	for id == (trace.TraceID{}) {
		binary.BigEndian.PutUint64(id[:8], rand.Uint64())
		binary.BigEndian.PutUint64(id[8:], rand.Uint64())
	}
	return id
}
