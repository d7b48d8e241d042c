package tracing

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infinityxone/gateway/gateway/tracing/otlprecv"
)

// TestExportRetriesTransientRefusals: a 503 is retried and the batch arrives; a 400 is
// not retried, and its spans are counted as export_failed.
func TestExportRetriesTransientRefusals(t *testing.T) {
	recv := otlprecv.Start() // decodes and keeps the spans
	defer recv.Close()
	var calls atomic.Int32
	var status atomic.Int32 // the answer to the first attempt of each export
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n := calls.Add(1); n == 1 || n == 3 {
			http.Error(w, "busy", int(status.Load()))
			return
		}
		recv.ServeHTTP(w, r)
	}))
	defer front.Close()
	tr, err := New(Config{Endpoint: front.URL, SampleRatio: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown(context.Background())

	status.Store(http.StatusServiceUnavailable)
	q := tr.StartRequest(request(t, ""))
	q.End(Ended{Method: "GET", Status: 200})
	flush(t, tr)
	if n := len(recv.Trace(q.TraceID())); n != 1 || calls.Load() != 2 {
		t.Fatalf("after a 503 and a retry: %d spans of the trace received in %d posts; want 1 in 2", n, calls.Load())
	}

	status.Store(http.StatusBadRequest)
	q = tr.StartRequest(request(t, ""))
	q.End(Ended{Method: "GET", Status: 200})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := tr.ForceFlush(ctx); err == nil {
		t.Error("flush of a refused batch reported no error")
	}
	if c := calls.Load(); c != 3 {
		t.Errorf("a 400 was posted %d times in all, want once (3 posts in all)", c)
	}
	if n := counter(t, tr, "export_failed"); n != 1 {
		t.Errorf("export_failed = %v, want 1", n)
	}
}
