package tracing

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/infinityxone/gateway/gateway/tracing/otlprecv"
)

func request(t *testing.T, traceparent string) *http.Request {
	t.Helper()
	r, err := http.NewRequest("GET", "http://gw/x", nil)
	if err != nil {
		t.Fatal(err)
	}
	if traceparent != "" {
		r.Header.Set("Traceparent", traceparent)
	}
	return r
}

func flush(t *testing.T, tr *Tracer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := tr.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestRatioZeroIsParentBased(t *testing.T) {
	recv := otlprecv.Start()
	defer recv.Close()
	tr, err := New(Config{Endpoint: recv.URL, SampleRatio: 0})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown(context.Background())

	// No parent: not sampled, but the trace context still goes upstream.
	q := tr.StartRequest(request(t, ""))
	out := request(t, "")
	tr.traceAttempt(q, out)
	q.End(Ended{Method: "GET", Status: 200})
	tp := out.Header.Get("Traceparent")
	if !strings.HasSuffix(tp, "-00") || !strings.Contains(tp, q.TraceID()) {
		t.Errorf("upstream traceparent %q for unsampled trace %s", tp, q.TraceID())
	}
	// A sampled parent is kept whatever the ratio.
	const tid = "5bf92f3577b34da6a3ce929d0e0e4736"
	q = tr.StartRequest(request(t, "00-"+tid+"-00f067aa0ba902b7-01"))
	tr.traceAttempt(q, request(t, ""))
	q.End(Ended{Method: "GET", Status: 200})
	flush(t, tr)
	if n := len(recv.Spans()); n != 2 {
		t.Errorf("exported %d spans, want the 2 of the sampled parent's trace", n)
	}
	if n := len(recv.Trace(tid)); n != 2 {
		t.Errorf("trace %s has %d spans", tid, n)
	}
}

func (t *Tracer) traceAttempt(q Request, out *http.Request) {
	a := q.StartAttempt(out, "svc", "127.0.0.1:9000", 1)
	a.End(&http.Response{StatusCode: 200}, nil)
}

// TestUnreachableReceiverDropsAreCounted: with the receiver gone, spans beyond the
// queue are dropped at once and counted; nothing blocks the caller.
func TestUnreachableReceiverDropsAreCounted(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // connection refused from now on
	reg := prometheus.NewRegistry()
	tr, err := New(Config{
		Endpoint: "http://" + addr, SampleRatio: 1, Registerer: reg,
		QueueSize: 4, BatchTimeout: 10 * time.Millisecond, ExportTimeout: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		q := tr.StartRequest(request(t, ""))
		q.End(Ended{Method: "GET", Status: 200})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = tr.Shutdown(ctx)
	full, failed := counter(t, tr, "queue_full"), counter(t, tr, "export_failed")
	if full == 0 || failed == 0 || full+failed != 1000 {
		t.Errorf("dropped: queue_full %v + export_failed %v, want both > 0 and 1000 in all", full, failed)
	}
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 || mfs[0].GetName() != "gateway_tracing_spans_dropped_total" || len(mfs[0].Metric) != 2 {
		t.Errorf("registered: %v, %v", mfs, err)
	}
}

func counter(t *testing.T, tr *Tracer, reason string) float64 {
	t.Helper()
	var m dto.Metric
	if err := tr.dropped.WithLabelValues(reason).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func TestTracesURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:4318":           "http://127.0.0.1:4318/v1/traces",
		"http://127.0.0.1:4318/":          "http://127.0.0.1:4318/v1/traces",
		"https://otel.example/otlp":       "https://otel.example/otlp/v1/traces",
		"http://collector:4318/v1/traces": "http://collector:4318/v1/traces",
	} {
		if got, err := tracesURL(in); err != nil || got != want {
			t.Errorf("tracesURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := tracesURL("127.0.0.1:4318"); err == nil {
		t.Error("a URL without scheme was accepted")
	}
}

func TestZeroValuesDoNothing(t *testing.T) {
	var q Request
	out := request(t, "")
	a := q.StartAttempt(out, "s", "i:1", 1)
	a.End(nil, nil)
	q.End(Ended{})
	if q.Active() || q.TraceID() != "" || len(q.AppendTraceID(nil)) != 0 || out.Header.Get("Traceparent") != "" {
		t.Error("the zero Request traced something")
	}
	if n := testing.AllocsPerRun(100, func() {
		a := q.StartAttempt(out, "s", "i:1", 1)
		a.End(nil, nil)
		q.End(Ended{})
	}); n != 0 {
		t.Errorf("zero Request allocates %v per request", n)
	}
}
