package tracing

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/infinityxone/gateway/gateway/tracing/otlprecv"
)

// TestSamplerMatchesSDK: the root sampler decides as the SDK's TraceIDRatioBased, on
// random trace ids and on the ids either side of each fraction's bound.
func TestSamplerMatchesSDK(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, f := range []float64{-1, 0, 1e-12, 1e-4, 0.01, 0.1, 0.25, 1.0 / 3, 0.5, 0.75, 0.9999, 1, 2} {
		ours, sdk := newRatioSampler(f), sdktrace.TraceIDRatioBased(f)
		check := func(tid trace.TraceID) {
			t.Helper()
			want := sdk.ShouldSample(sdktrace.SamplingParameters{ParentContext: context.Background(), TraceID: tid}).Decision == sdktrace.RecordAndSample
			if got := ours.sampled(tid); got != want {
				t.Fatalf("fraction %v, trace %s: sampled %v, the SDK says %v", f, tid, got, want)
			}
		}
		sampled := 0
		const n = 20000
		for range n {
			var tid trace.TraceID
			binary.BigEndian.PutUint64(tid[:8], rng.Uint64())
			binary.BigEndian.PutUint64(tid[8:], rng.Uint64())
			check(tid)
			if ours.sampled(tid) {
				sampled++
			}
		}
		if f > 0.01 && f < 1 {
			if share := float64(sampled) / n; share < f*0.8 || share > f*1.2 {
				t.Errorf("fraction %v sampled %v of random traces", f, share)
			}
		}
		if f > 0 && f < 1 {
			bound := uint64(f * (1 << 63))
			for _, x := range []uint64{bound - 1, bound, bound + 1} {
				for _, low := range []uint64{0, 1} { // the bit the shift drops
					var tid trace.TraceID
					binary.BigEndian.PutUint64(tid[8:], x<<1|low)
					check(tid)
				}
			}
		}
	}
}

// TestParentBasedMatchesSDK: whether a request's server span is recorded is the SDK's
// ParentBased(TraceIDRatioBased) decision, with a sampled parent, an unsampled one and
// none.
func TestParentBasedMatchesSDK(t *testing.T) {
	recv := otlprecv.Start()
	defer recv.Close()
	for _, f := range []float64{0, 0.5, 1} {
		tr, err := New(Config{Endpoint: recv.URL, SampleRatio: f})
		if err != nil {
			t.Fatal(err)
		}
		sdk := sdktrace.ParentBased(sdktrace.TraceIDRatioBased(f))
		for i := range 300 {
			var r *http.Request
			var parent trace.SpanContext
			switch i % 3 {
			case 0:
				r = request(t, "")
			default:
				flags := fmt.Sprintf("%02d", i%3-1) // 00 or 01
				tid := randomTraceID()
				r = request(t, "00-"+tid.String()+"-00f067aa0ba902b7-"+flags)
				parent = trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: trace.SpanID{0, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
					TraceFlags: trace.TraceFlags(i%3 - 1), Remote: true})
			}
			q := tr.StartRequest(r)
			want := sdk.ShouldSample(sdktrace.SamplingParameters{
				ParentContext: trace.ContextWithRemoteSpanContext(context.Background(), parent), TraceID: q.tid,
			}).Decision == sdktrace.RecordAndSample
			if got := q.rec != nil; got != want || q.flags.IsSampled() != want {
				t.Fatalf("ratio %v, traceparent %q: recorded %v (flags %v), the SDK samples: %v", f, r.Header.Get("Traceparent"), got, q.flags, want)
			}
			q.End(Ended{Method: "GET", Status: 200})
		}
		if err := tr.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// traced starts a tracer with ratio 1 exporting to a fresh receiver.
func traced(t *testing.T, cfg Config) (*Tracer, *otlprecv.Receiver) {
	t.Helper()
	recv := otlprecv.Start()
	t.Cleanup(recv.Close)
	cfg.Endpoint, cfg.SampleRatio = recv.URL, 1
	tr, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
	return tr, recv
}

// spansOf splits a trace's spans into its server span and its client spans by id.
func spansOf(t *testing.T, recv *otlprecv.Receiver, tid string) (server otlprecv.Span, clients map[string]otlprecv.Span) {
	t.Helper()
	return splitSpans(t, tid, recv.Trace(tid))
}

func splitSpans(t *testing.T, tid string, spans []otlprecv.Span) (server otlprecv.Span, clients map[string]otlprecv.Span) {
	t.Helper()
	clients = map[string]otlprecv.Span{}
	n := 0
	for _, s := range spans {
		switch s.Kind.String() {
		case "SPAN_KIND_SERVER":
			server = s
			n++
		case "SPAN_KIND_CLIENT":
			clients[s.SpanID] = s
		default:
			t.Errorf("span of kind %v", s.Kind)
		}
	}
	if n != 1 {
		t.Fatalf("trace %s has %d server spans", tid, n)
	}
	return server, clients
}

// TestSpanContent: names ("METHOD route", the method alone without a route), status
// (error on a 5xx server answer, on a 4xx or an error upstream, with the error's
// message), attributes (resend_count on a retry), resource and scope.
func TestSpanContent(t *testing.T) {
	tr, recv := traced(t, Config{ServiceName: "edge", ServiceVersion: "1.2.3"})
	type attempt struct {
		status int
		err    error
		n      int
	}
	cases := []struct {
		name     string
		end      Ended
		attempts []attempt
		wantName string
		wantErr  bool
	}{
		{"routed", Ended{Method: "GET", Route: "items", RoutePath: "/items/:id", Path: "/items/7", Host: "gw:8080",
			Service: "items", Instance: "127.0.0.1:9001", RequestID: "r1", Status: 200},
			[]attempt{{status: 503, n: 1}, {err: errors.New("boom"), n: 2}, {status: 200, n: 3}}, "GET items", false},
		{"no route", Ended{Method: "GET", Path: "/nowhere", Host: "gw", RequestID: "r2", Status: 404}, nil, "GET", false},
		{"server error", Ended{Method: "POST", Route: "orders", Path: "/o", Status: 500}, []attempt{{status: 499, n: 1}}, "POST orders", true},
		{"client error not an error", Ended{Method: "PUT", Route: "orders", Path: "/o", Status: 499}, []attempt{{status: 399, n: 1}}, "PUT orders", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := request(t, "")
			in.Method = c.end.Method
			q := tr.StartRequest(in)
			ids := map[string]attempt{}
			for _, a := range c.attempts {
				out := request(t, "")
				out.Method = c.end.Method
				sp := q.StartAttempt(out, "items", "127.0.0.1:900"+strconv.Itoa(a.n), a.n)
				_, sid, _ := strings.Cut(out.Header.Get("Traceparent")[3:], "-")
				ids[sid[:16]] = a
				var resp *http.Response
				if a.err == nil {
					resp = &http.Response{StatusCode: a.status}
				}
				sp.End(resp, a.err)
			}
			q.End(c.end)
			flush(t, tr)
			server, clients := spansOf(t, recv, q.TraceID())
			if server.Name != c.wantName || server.StatusError != c.wantErr || server.StatusMessage != "" || server.ParentID != "" {
				t.Errorf("server span %q error %v %q parent %q; want %q error %v", server.Name, server.StatusError, server.StatusMessage, server.ParentID, c.wantName, c.wantErr)
			}
			want := map[string]string{
				"http.request.method": c.end.Method, "http.response.status_code": strconv.Itoa(c.end.Status),
				"url.path": c.end.Path, "server.address": hostOnly(c.end.Host), "gateway.request_id": c.end.RequestID,
			}
			if c.end.RoutePath != "" {
				want["http.route"] = c.end.RoutePath
			}
			if c.end.Service != "" {
				want["gateway.service"] = c.end.Service
			}
			if c.end.Instance != "" {
				want["gateway.instance"] = c.end.Instance
			}
			if fmt.Sprint(server.Attrs) != fmt.Sprint(want) {
				t.Errorf("server attributes %v, want %v", server.Attrs, want)
			}
			if server.Resource["service.name"] != "edge" || server.Resource["service.version"] != "1.2.3" || server.Scope != "github.com/infinityxone/gateway" || server.Flags != 0x101 {
				t.Errorf("resource %v scope %q flags %#x", server.Resource, server.Scope, server.Flags)
			}
			if len(clients) != len(c.attempts) {
				t.Fatalf("%d client spans for %d attempts", len(clients), len(c.attempts))
			}
			for sid, a := range ids {
				s := clients[sid]
				port := "900" + strconv.Itoa(a.n)
				want := map[string]string{
					"http.request.method": c.end.Method, "server.address": "127.0.0.1", "server.port": port,
					"gateway.service": "items", "gateway.instance": "127.0.0.1:" + port,
				}
				if a.n > 1 {
					want["http.request.resend_count"] = strconv.Itoa(a.n - 1)
				}
				wantErr, wantMsg := a.status >= 400, ""
				if a.err != nil {
					want["error.type"] = "error"
					wantErr, wantMsg = true, a.err.Error()
				} else {
					want["http.response.status_code"] = strconv.Itoa(a.status)
				}
				if fmt.Sprint(s.Attrs) != fmt.Sprint(want) {
					t.Errorf("attempt %d attributes %v, want %v", a.n, s.Attrs, want)
				}
				if s.Name != c.end.Method || s.ParentID != server.SpanID || s.StatusError != wantErr || s.StatusMessage != wantMsg || s.Flags != 0x101 {
					t.Errorf("attempt %d: name %q parent %s (server %s) error %v %q flags %#x; want error %v %q",
						a.n, s.Name, s.ParentID, server.SpanID, s.StatusError, s.StatusMessage, s.Flags, wantErr, wantMsg)
				}
			}
		})
	}
}

// TestTraceStatePassedThrough: the client's tracestate is on the server and client
// spans and goes upstream; the client's trace and parent are continued.
func TestTraceStatePassedThrough(t *testing.T) {
	tr, recv := traced(t, Config{})
	const tid, pid = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	in := request(t, "00-"+tid+"-"+pid+"-01")
	in.Header.Set("Tracestate", "vendor=x,other=y")
	q := tr.StartRequest(in)
	out := request(t, "")
	out.Header.Set("Tracestate", "stale=1")
	q.StartAttempt(out, "s", "127.0.0.1:9000", 1).End(&http.Response{StatusCode: 200}, nil)
	q.End(Ended{Method: "GET", Status: 200})
	flush(t, tr)
	server, clients := spansOf(t, recv, tid)
	if server.TraceState != "vendor=x,other=y" || server.ParentID != pid || server.Flags != 0x301 {
		t.Errorf("server span tracestate %q parent %s flags %#x", server.TraceState, server.ParentID, server.Flags)
	}
	for _, c := range clients {
		if c.TraceState != "vendor=x,other=y" || c.Flags != 0x101 {
			t.Errorf("client span tracestate %q flags %#x", c.TraceState, c.Flags)
		}
		if tp := out.Header.Get("Traceparent"); tp != "00-"+tid+"-"+c.SpanID+"-01" {
			t.Errorf("upstream traceparent %q, client span %s", tp, c.SpanID)
		}
	}
	if len(clients) != 1 || out.Header.Get("Tracestate") != "vendor=x,other=y" {
		t.Errorf("%d client spans; upstream tracestate %q", len(clients), out.Header.Get("Tracestate"))
	}
}

// TestUnsampledParentExportsNothing: with ratio 1, a client's unsampled traceparent
// still wins: nothing is exported, the trace goes upstream unsampled with a new
// parent id and the client's tracestate.
func TestUnsampledParentExportsNothing(t *testing.T) {
	tr, recv := traced(t, Config{})
	const tid, pid = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	in := request(t, "00-"+tid+"-"+pid+"-00")
	in.Header.Set("Tracestate", "vendor=x")
	q := tr.StartRequest(in)
	out := request(t, "")
	a := q.StartAttempt(out, "s", "127.0.0.1:9000", 1)
	a.End(&http.Response{StatusCode: 200}, nil)
	q.End(Ended{Method: "GET", Status: 200})
	flush(t, tr)
	if n := len(recv.Spans()); n != 0 || recv.Requests() != 0 {
		t.Errorf("%d spans exported in %d requests for an unsampled parent", n, recv.Requests())
	}
	gtid, gpid, flags := parseTraceparent(t, out.Header.Get("Traceparent"))
	if gtid != tid || gpid == pid || flags != "00" || out.Header.Get("Tracestate") != "vendor=x" || q.TraceID() != tid {
		t.Errorf("upstream traceparent %q tracestate %q, request trace %s", out.Header.Get("Traceparent"), out.Header.Get("Tracestate"), q.TraceID())
	}
}

func parseTraceparent(t *testing.T, tp string) (traceID, parentID, flags string) {
	t.Helper()
	parts := strings.Split(tp, "-")
	if len(parts) != 4 || parts[0] != "00" || len(parts[1]) != 32 || len(parts[2]) != 16 || len(parts[3]) != 2 {
		t.Fatalf("malformed traceparent %q", tp)
	}
	return parts[1], parts[2], parts[3]
}

// TestRecordReuse: many concurrent requests, exported in many small batches while
// others are being recorded, each span's records going back to the pool and being
// reused: every exported span carries its own request's data, none is lost or
// exported twice, and a second End (of a copy, after the record may be in use by
// another request) changes nothing.
func TestRecordReuse(t *testing.T) {
	tr, recv := traced(t, Config{BatchTimeout: time.Millisecond, QueueSize: 1 << 20})
	const workers, perWorker = 4, 300
	type sent struct{ server, client string } // span ids by trace id
	var mu sync.Mutex
	want := map[string]sent{}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			var stale []Request
			for i := range perWorker {
				id := fmt.Sprintf("w%d-%d", w, i)
				in, _ := http.NewRequest("GET", "http://gw/p/"+id, nil)
				out, _ := http.NewRequest("GET", "http://up/p/"+id, nil)
				q := tr.StartRequest(in)
				a := q.StartAttempt(out, "svc-"+id, "10.0.0.1:"+strconv.Itoa(1000+i), 1+i%3)
				a.End(&http.Response{StatusCode: 200 + i%400}, nil)
				a.End(&http.Response{StatusCode: 999}, errors.New("second end"))
				q.End(Ended{Method: "GET", Route: "r-" + id, Path: "/p/" + id, RequestID: id, Status: 200 + i%400})
				stale = append(stale, q)
				sid := out.Header.Get("Traceparent")[36:52] // 00-<trace id>-<span id>-01
				mu.Lock()
				want[q.TraceID()] = sent{server: q.sid.String(), client: sid}
				mu.Unlock()
				if i%50 == 49 { // by now many of these records are reused
					for _, s := range stale {
						s.End(Ended{Method: "STALE", Path: "/stale", RequestID: "stale", Status: 599})
					}
					stale = stale[:0]
				}
			}
		})
	}
	wg.Wait()
	flush(t, tr)
	spans := recv.Spans()
	if len(spans) != 2*workers*perWorker {
		t.Fatalf("%d spans exported, want %d", len(spans), 2*workers*perWorker)
	}
	byTrace := map[string][]otlprecv.Span{}
	for _, s := range spans {
		byTrace[s.TraceID] = append(byTrace[s.TraceID], s)
	}
	for tid, w := range want {
		server, clients := splitSpans(t, tid, byTrace[tid])
		id := server.Attrs["gateway.request_id"]
		var wk, i int
		if _, err := fmt.Sscanf(id, "w%d-%d", &wk, &i); err != nil {
			t.Fatalf("trace %s: server span request id %q", tid, id)
		}
		status := 200 + i%400
		if server.SpanID != w.server || server.Name != "GET r-"+id || server.Attrs["url.path"] != "/p/"+id ||
			server.Attrs["http.response.status_code"] != strconv.Itoa(status) || server.StatusError != (status >= 500) {
			t.Errorf("trace %s: server span %+v, want id %s of request %s", tid, server, w.server, id)
		}
		c, ok := clients[w.client]
		if !ok || len(clients) != 1 {
			t.Fatalf("trace %s: client spans %+v, want one with id %s", tid, clients, w.client)
		}
		resend := ""
		if i%3 > 0 {
			resend = strconv.Itoa(i % 3)
		}
		if c.ParentID != w.server || c.Attrs["gateway.service"] != "svc-"+id || c.Attrs["server.port"] != strconv.Itoa(1000+i) ||
			c.Attrs["http.response.status_code"] != strconv.Itoa(status) || c.Attrs["http.request.resend_count"] != resend ||
			c.Attrs["error.type"] != "" || c.StatusError != (status >= 400) || c.StatusMessage != "" {
			t.Errorf("trace %s: client span %+v of request %s", tid, c, id)
		}
	}
}

// TestSampledRequestAllocations: with records on the free list, a sampled request's
// server and client spans allocate nothing; what is left is the traceparent header
// written upstream (its string and its slice), as for an unsampled request.
func TestSampledRequestAllocations(t *testing.T) {
	tr, _ := traced(t, Config{QueueSize: 1 << 16})
	const runs = 500
	free := make([]*record, 2*(runs+1))
	for i := range free {
		free[i] = new(record)
	}
	tr.pool.put(free...)
	in, out := request(t, ""), request(t, "")
	resp := &http.Response{StatusCode: 200}
	e := Ended{Method: "GET", Route: "items", RoutePath: "/api/*", Path: "/api/items", Host: "gw:8080",
		Service: "items", Instance: "127.0.0.1:9000", RequestID: "r", Status: 200}
	n := testing.AllocsPerRun(runs, func() {
		q := tr.StartRequest(in)
		q.StartAttempt(out, "items", "127.0.0.1:9000", 1).End(resp, nil)
		q.End(e)
	})
	if n > 2 {
		t.Errorf("a sampled request allocates %v times, want at most the traceparent header's 2", n)
	}
}
