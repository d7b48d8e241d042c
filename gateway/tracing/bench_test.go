package tracing

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/infinityxone/gateway/internal/testenv"
)

// BenchmarkRequestSpans: what tracing adds to one proxied request, export included: a
// server span, one client span (traceparent written upstream) and their share of the
// batched OTLP/HTTP export to a loopback receiver that reads and discards the body.
// cpu-ns/op is the process's CPU time per request (the receiver's read included),
// counted up to the last span's export.
func BenchmarkRequestSpans(b *testing.B) {
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer recv.Close()
	for _, c := range []struct {
		name  string
		ratio float64
	}{{"ratio-0", 0}, {"ratio-1", 1}} {
		b.Run(c.name, func(b *testing.B) {
			tr, err := New(Config{Endpoint: recv.URL, SampleRatio: c.ratio, ServiceVersion: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			defer tr.Shutdown(context.Background())
			in, _ := http.NewRequest("GET", "http://gw.example:8080/api/items", nil)
			in.Header.Set("User-Agent", "bench")
			out, _ := http.NewRequest("GET", "http://127.0.0.1:9000/api/items", nil)
			resp := &http.Response{StatusCode: 200}
			e := Ended{Method: "GET", Route: "items", RoutePath: "/api/*", Path: "/api/items", Host: "gw.example:8080",
				Service: "items", Instance: "127.0.0.1:9000", RequestID: "01HZYX3J8Q5W2V7K9M4N6P0R1S", Status: 200}
			cpu0 := testenv.ProcessCPU(b)
			b.ReportAllocs()
			for b.Loop() {
				q := tr.StartRequest(in)
				a := q.StartAttempt(out, "items", "127.0.0.1:9000", 1)
				a.End(resp, nil)
				q.End(e)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := tr.ForceFlush(ctx); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(testenv.ProcessCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkEncode: the OTLP encoding of a full batch of a request's two spans
// (maxBatch spans), per span.
func BenchmarkEncode(b *testing.B) {
	tr, err := New(Config{Endpoint: "http://127.0.0.1:1", SampleRatio: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Shutdown(context.Background())
	start := time.Now()
	var recs []*record
	for i := range maxBatch / 2 {
		server, client := new(record), new(record)
		server.d = spanData{tid: randomTraceID(), sid: randomSpanID(), flags: 1, kind: 2, start: start, end: start.UnixNano() + 1000,
			name1: "GET", name2: "items", method: "GET", status: 200, path: "/api/items/" + strconv.Itoa(i), host: "gw.example:8080",
			requestID: "01HZYX3J8Q5W2V7K9M4N6P0R1S", route: "/api/*", service: "items", instance: "127.0.0.1:9000", hasStatus: true}
		client.d = spanData{tid: server.d.tid, sid: randomSpanID(), parent: server.d.sid, flags: 1, kind: 3, start: start, end: start.UnixNano() + 900,
			name1: "GET", method: "GET", service: "items", instance: "127.0.0.1:9000", status: 200, hasStatus: true}
		recs = append(recs, server, client)
	}
	e := encoder{res: resourceInfo{service: "gateway", version: "bench", scope: scopeName}}
	b.ReportAllocs()
	for b.Loop() {
		e.encode(recs)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(recs)), "ns/span")
	b.ReportMetric(float64(len(e.body))/float64(len(recs)), "bytes/span")
}
