package tracing

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
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

// TestFullBatchesFirst: a full batch is exported as soon as it is full; spans that
// end while it is posted wait for the next full batch (or the tick, or a flush) rather
// than being posted a few at a time.
func TestFullBatchesFirst(t *testing.T) {
	recv := otlprecv.Start()
	defer recv.Close()
	arrived, release := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var sizes []int // spans per export
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if len(sizes) == 0 {
			close(arrived)
			<-release
		}
		before := len(recv.Spans())
		recv.ServeHTTP(w, r)
		sizes = append(sizes, len(recv.Spans())-before)
	}))
	defer front.Close()
	tr, err := New(Config{Endpoint: front.URL, SampleRatio: 1, BatchTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown(context.Background())
	end := func(n int) {
		for range n {
			tr.StartRequest(request(t, "")).End(Ended{Method: "GET", Status: 200})
		}
	}
	end(maxBatch)
	<-arrived // the first batch is being posted
	end(10)
	close(release)
	// Once the first export is over, the 10 spans wait: no kick, no tick, no flush.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
		tr.batcher.mu.Lock()
		idle := tr.batcher.inFlight == 0
		tr.batcher.mu.Unlock()
		if idle || time.Now().After(deadline) {
			break
		}
	}
	end(maxBatch - 10 + 5) // a second full batch, and 5 spans
	flush(t, tr)
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(sizes) != fmt.Sprint([]int{maxBatch, maxBatch, 5}) {
		t.Errorf("spans per export %v, want %d, %d, then 5 at the flush", sizes, maxBatch, maxBatch)
	}
}
