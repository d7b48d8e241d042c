package gateway

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/infinityxone/gateway/gateway/tracing/otlprecv"
)

// parseTraceparent splits a W3C traceparent into trace id, parent id and flags.
func parseTraceparent(t *testing.T, tp string) (traceID, parentID, flags string) {
	t.Helper()
	parts := strings.Split(tp, "-")
	if len(parts) != 4 || parts[0] != "00" || len(parts[1]) != 32 || len(parts[2]) != 16 {
		t.Fatalf("malformed traceparent %q", tp)
	}
	return parts[1], parts[2], parts[3]
}

func flushTraces(t *testing.T, g *Gateway) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := g.tracer.ForceFlush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
}

// TestTracingOTLP runs the gateway against a real OTLP/HTTP receiver that decodes the
// protobuf export requests.
func TestTracingOTLP(t *testing.T) {
	recv := otlprecv.Start()
	defer recv.Close()

	// The first request the upstreams see fails with 503, so the first traced request
	// is retried on the other instance.
	var (
		mu   sync.Mutex
		seen []string // traceparent headers received upstream, in order
		hits atomic.Int64
	)
	h := func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Traceparent"))
		mu.Unlock()
		if hits.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "ok")
	}
	a, b := backend(t, h), backend(t, h)
	gw := startGateway(t, fmt.Sprintf(`
tracing {
  endpoint     = %q
  sample_ratio = 1
  service_name = "edge-test"
}
service "items" {
  instance {
    address = %q
  }
  instance {
    address = %q
  }
  retry {
    attempts = 2
    backoff  = "1ms"
  }
}
route "get-item" {
  path    = "/items/:id"
  service = "items"
}
`, recv.URL, hostOf(a), hostOf(b)), nil)
	upstream := func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), seen...) }

	t.Run("continues the client's trace, one client span per attempt", func(t *testing.T) {
		const tid, pid = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
		resp, body := get(t, gw.URL+"/items/7", "Traceparent", "00-"+tid+"-"+pid+"-01", "Tracestate", "vendor=x")
		if resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("status %d body %q", resp.StatusCode, body)
		}
		flushTraces(t, gw.Gateway)
		spans := recv.Trace(tid)
		var server *otlprecv.Span
		var clients []otlprecv.Span
		for i, s := range spans {
			switch s.Kind {
			case tracepb.Span_SPAN_KIND_SERVER:
				server = &spans[i]
			case tracepb.Span_SPAN_KIND_CLIENT:
				clients = append(clients, s)
			}
		}
		if server == nil || len(clients) != 2 || len(spans) != 3 {
			t.Fatalf("want 1 server and 2 client spans in trace %s, got %+v", tid, spans)
		}
		if server.ParentID != pid {
			t.Errorf("server span parent %s, want the client's span %s", server.ParentID, pid)
		}
		if server.Name != "GET get-item" {
			t.Errorf("server span name %q", server.Name)
		}
		if server.TraceState != "vendor=x" || clients[0].TraceState != "vendor=x" || clients[1].TraceState != "vendor=x" {
			t.Errorf("tracestate of the spans: server %q, clients %q %q; want the client's vendor=x",
				server.TraceState, clients[0].TraceState, clients[1].TraceState)
		}
		for k, v := range map[string]string{
			"http.request.method": "GET", "http.route": "/items/:id", "http.response.status_code": "200",
			"url.path": "/items/7", "server.address": "127.0.0.1", "gateway.service": "items",
			"gateway.request_id": resp.Header.Get("X-Request-Id"),
		} {
			if server.Attrs[k] != v {
				t.Errorf("server span %s = %q, want %q", k, server.Attrs[k], v)
			}
		}
		if server.Attrs["gateway.instance"] != hostOf(a) && server.Attrs["gateway.instance"] != hostOf(b) {
			t.Errorf("server span gateway.instance %q", server.Attrs["gateway.instance"])
		}
		if server.Resource["service.name"] != "edge-test" {
			t.Errorf("resource service.name %q", server.Resource["service.name"])
		}
		// The upstream got a traceparent per attempt whose parent is that attempt's
		// client span, and the client spans are siblings under the server span.
		got := upstream()
		if len(got) != 2 {
			t.Fatalf("upstream saw %d requests, want 2", len(got))
		}
		ids := map[string]otlprecv.Span{}
		for _, c := range clients {
			if c.ParentID != server.SpanID {
				t.Errorf("client span %s parent %s, want server span %s", c.SpanID, c.ParentID, server.SpanID)
			}
			ids[c.SpanID] = c
		}
		statuses := map[string]bool{}
		for _, tp := range got {
			gtid, gpid, flags := parseTraceparent(t, tp)
			c, ok := ids[gpid]
			if gtid != tid || !ok || flags != "01" {
				t.Errorf("upstream traceparent %q: want trace %s, a client span as parent, sampled", tp, tid)
			}
			statuses[c.Attrs["http.response.status_code"]] = true
		}
		if !statuses["503"] || !statuses["200"] {
			t.Errorf("client span statuses %v, want one 503 and one 200", statuses)
		}
		// The retry is the second attempt: resend_count 1 on the attempt that answered
		// 200, none on the first, which answered 503 and is an error.
		for _, c := range clients {
			first := c.Attrs["http.response.status_code"] == "503"
			if resend, ok := c.Attrs["http.request.resend_count"]; first == ok || !first && resend != "1" || c.StatusError != first {
				t.Errorf("client span %s: status %s, resend_count %q (set: %v), error %v", c.SpanID, c.Attrs["http.response.status_code"], resend, ok, c.StatusError)
			}
		}
		if c := clients[0].Attrs["gateway.instance"]; c == clients[1].Attrs["gateway.instance"] {
			t.Errorf("both attempts at %s, want the retry on the other instance", c)
		}
		if !strings.Contains(gw.AccessLogLine(t, resp.Header.Get("X-Request-Id")), `"trace_id":"`+tid+`"`) {
			t.Errorf("access log line lacks trace_id %s", tid)
		}
	})

	t.Run("an unsampled parent exports nothing and stays unsampled upstream", func(t *testing.T) {
		const tid = "0af7651916cd43dd8448eb211c80319c"
		before := len(upstream())
		resp, _ := get(t, gw.URL+"/items/8", "Traceparent", "00-"+tid+"-b7ad6b7169203331-00")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		flushTraces(t, gw.Gateway)
		if spans := recv.Trace(tid); len(spans) != 0 {
			t.Errorf("unsampled trace exported %d spans: %+v", len(spans), spans)
		}
		got := upstream()[before:]
		if len(got) != 1 {
			t.Fatalf("upstream saw %d requests", len(got))
		}
		if gtid, gpid, flags := parseTraceparent(t, got[0]); gtid != tid || flags != "00" || gpid == "b7ad6b7169203331" {
			t.Errorf("upstream traceparent %q: want trace %s, a new parent id, flags 00", got[0], tid)
		}
	})

	t.Run("a request without traceparent starts a trace", func(t *testing.T) {
		before := len(upstream())
		resp, _ := get(t, gw.URL+"/items/9")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		flushTraces(t, gw.Gateway)
		tid, _, flags := parseTraceparent(t, upstream()[before])
		if flags != "01" || len(recv.Trace(tid)) != 2 {
			t.Errorf("new trace %s: flags %s, %d spans exported, want sampled with 2", tid, flags, len(recv.Trace(tid)))
		}
	})

	t.Run("a 404 is traced under the method's name", func(t *testing.T) {
		const tid = "11111111111111111111111111111111"
		resp, _ := get(t, gw.URL+"/nowhere", "Traceparent", "00-"+tid+"-2222222222222222-01")
		if resp.StatusCode != 404 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		flushTraces(t, gw.Gateway)
		spans := recv.Trace(tid)
		if len(spans) != 1 || spans[0].Name != "GET" || spans[0].Attrs["http.response.status_code"] != "404" {
			t.Errorf("spans %+v", spans)
		}
	})
}

// TestTracingReceiverDown: an exporter that stalls and then refuses never delays or
// fails a request; the refused spans are counted.
func TestTracingReceiverDown(t *testing.T) {
	release := make(chan struct{})
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		http.Error(w, "refused", http.StatusBadRequest)
	}))
	defer recv.Close()
	up := backend(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })
	gw := startGateway(t, fmt.Sprintf(`
tracing {
  endpoint = %q
}
service "s" {
  instance {
    address = %q
  }
}
route "r" {
  path    = "/"
  service = "s"
}
`, recv.URL, hostOf(up)), nil)
	for i := 0; i < 200; i++ {
		resp, body := get(t, gw.URL+"/")
		if resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("request %d: status %d body %q", i, resp.StatusCode, body)
		}
	}
	close(release) // the receiver now refuses at once
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := gw.tracer.ForceFlush(ctx); err == nil {
		t.Error("flush to a refusing receiver reported no error")
	}
	if n := metricValue(t, gw.Gateway, "gateway_tracing_spans_dropped_total", `reason="export_failed"`); n != 400 {
		t.Errorf("export_failed drops %v, want 400 (a server and a client span per request)", n)
	}
}

// metricValue reads one sample from the admin /metrics page: the metric name and a
// label fragment it must carry.
func metricValue(t *testing.T, g *Gateway, name, labels string) float64 {
	t.Helper()
	rec := &recorder{header: http.Header{}}
	g.AdminHandler().ServeHTTP(rec, mustRequest(t, "GET", "/metrics"))
	for _, line := range strings.Split(rec.body.String(), "\n") {
		if strings.HasPrefix(line, name+"{") && strings.Contains(line, labels) {
			var v float64
			if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err != nil {
				t.Fatalf("metric line %q: %v", line, err)
			}
			return v
		}
	}
	t.Fatalf("metric %s{%s} not found", name, labels)
	return 0
}

// AccessLogLine returns the access log line of one request id (flushing the log first).
func (g *testGateway) AccessLogLine(t *testing.T, requestID string) string {
	t.Helper()
	g.accessLog.Flush()
	for _, line := range strings.Split(g.AccessLog.String(), "\n") {
		if strings.Contains(line, `"request_id":"`+requestID+`"`) {
			return line
		}
	}
	t.Fatalf("no access log line for request %s", requestID)
	return ""
}
