package tracing

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
)

// maxBatch is the most spans one export request carries.
const maxBatch = 1024

// batcher collects the records of ended spans and one goroutine of its own exports
// them over OTLP/HTTP, a batch when maxBatch spans are waiting or every batchTimeout.
// A request's add takes a mutex and appends to a slice: no channel hand-off and no
// goroutine wake-up per span. Each batch is encoded once, then its records go back to
// the pool before the body is posted. At most queueSize spans wait (export in progress
// included); beyond that a span is dropped and counted (queue_full). A batch the receiver refuses, or does not take within exportTimeout
// (retries included), is dropped and counted (export_failed).
type batcher struct {
	post                        *poster
	pool                        *spanPool
	queueSize                   int
	batchTimeout, exportTimeout time.Duration
	queueFull, exportFailed     prometheus.Counter

	mu       sync.Mutex
	batch    []*record // waiting
	inFlight int       // spans being exported
	stopped  bool
	flushes  []*flushReq // ForceFlush calls waiting for everything before them

	kick         chan struct{} // a full batch or a flush request (buffered: 1)
	stop         chan struct{} // closed by Shutdown
	kill         chan struct{} // closed when Shutdown's context ends: abandon the export
	done         chan struct{} // closed when the goroutine has exported all and returned
	once, killed sync.Once
}

// flushReq is one ForceFlush call waiting: done is closed once every span that ended
// before it was exported; err is then the first export failure met on the way.
type flushReq struct {
	done chan struct{}
	err  error
}

func newBatcher(post *poster, pool *spanPool, queueSize int, batchTimeout, exportTimeout time.Duration, queueFull, exportFailed prometheus.Counter) *batcher {
	b := &batcher{
		post: post, pool: pool, queueSize: queueSize, batchTimeout: batchTimeout, exportTimeout: exportTimeout,
		queueFull: queueFull, exportFailed: exportFailed,
		batch: make([]*record, 0, min(queueSize, maxBatch)),
		kick:  make(chan struct{}, 1), stop: make(chan struct{}), kill: make(chan struct{}), done: make(chan struct{}),
	}
	go b.run()
	return b
}

// add queues an ended span's record, or drops it when the queue is full (counted:
// queue_full) or the tracer is shut down (not counted). It never waits for the export.
// The record is the batcher's from then on.
func (b *batcher) add(r *record) {
	b.mu.Lock()
	if b.stopped || len(b.batch)+b.inFlight >= b.queueSize {
		stopped := b.stopped
		b.mu.Unlock()
		b.pool.put(r)
		if !stopped {
			b.queueFull.Inc()
		}
		return
	}
	b.batch = append(b.batch, r)
	full := len(b.batch) == min(b.queueSize, maxBatch)
	b.mu.Unlock()
	if full {
		b.wake()
	}
}

func (b *batcher) wake() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// run exports until Shutdown, then exports what is left and returns.
func (b *batcher) run() {
	defer close(b.done)
	t := time.NewTicker(b.batchTimeout)
	defer t.Stop()
	var spare []*record
	full := min(b.queueSize, maxBatch)
	for {
		stopping, tick := false, false
		var failed error
		select {
		case <-b.kick:
		case <-t.C:
			tick = true
		case <-b.stop:
			stopping = true
		}
		// Export the full batches waiting; on a tick also the partial batch, once; for
		// a flush or the stop everything, a batch at a time, then answer the flushes
		// that were waiting for it. A kick exports full batches only: under load,
		// spans keep arriving while a batch is posted, and draining those too would
		// post a few spans at a time, each post costing as much CPU as a full one.
		for {
			b.mu.Lock()
			drain := stopping || tick || len(b.flushes) > 0
			tick = false
			if len(b.batch) == 0 || !drain && len(b.batch) < full {
				flushes := b.flushes // empty unless the batch is
				b.flushes = nil
				b.mu.Unlock()
				for _, f := range flushes {
					f.err = failed
					close(f.done)
				}
				break
			}
			n := min(len(b.batch), maxBatch)
			out := append(spare[:0], b.batch[:n]...)
			rest := copy(b.batch, b.batch[n:])
			clear(b.batch[rest:])
			b.batch = b.batch[:rest]
			b.inFlight = len(out)
			b.mu.Unlock()

			if err := b.export(out); err != nil && failed == nil {
				failed = err
			}
			clear(out) // the records are back in the pool
			spare = out
			b.mu.Lock()
			b.inFlight = 0
			b.mu.Unlock()
		}
		if stopping {
			return
		}
	}
}

// export encodes one batch, returns its records to the pool and posts it; a failure
// counts its spans as dropped.
func (b *batcher) export(spans []*record) error {
	body := b.post.enc.encode(spans)
	b.pool.put(spans...)
	ctx, cancel := context.WithTimeout(context.Background(), b.exportTimeout)
	defer cancel()
	go func() {
		select {
		case <-b.kill:
			cancel()
		case <-ctx.Done():
		}
	}()
	err := b.post.send(ctx, body)
	if err != nil {
		b.exportFailed.Add(float64(len(spans)))
		b.post.logFailure(len(spans), err)
	}
	return err
}

// ForceFlush exports every span that ended before the call (within ctx) and reports
// the first export that failed on the way.
func (b *batcher) ForceFlush(ctx context.Context) error {
	f := &flushReq{done: make(chan struct{})}
	b.mu.Lock()
	if b.stopped {
		b.mu.Unlock()
		return nil
	}
	b.flushes = append(b.flushes, f)
	b.mu.Unlock()
	b.wake()
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Shutdown stops taking spans and exports what is waiting, within ctx; when ctx ends
// first, the export in progress is abandoned (and counted as failed).
func (b *batcher) Shutdown(ctx context.Context) error {
	b.once.Do(func() {
		b.mu.Lock()
		b.stopped = true
		b.mu.Unlock()
		close(b.stop)
	})
	select {
	case <-b.done:
		return nil
	case <-ctx.Done():
		b.killed.Do(func() { close(b.kill) })
		return ctx.Err()
	}
}

// poster holds the encoder (used by the batcher's goroutine only) and sends encoded
// batches to the receiver: POST application/x-protobuf, retried with backoff (0.5 s
// doubling up to 2 s, or the answer's Retry-After in seconds) on a transport error or a
// 429, 502, 503 or 504 answer while the export's context allows.
type poster struct {
	url    string
	client *http.Client
	enc    encoder
	log    hclog.Logger

	mu      sync.Mutex
	lastLog time.Time
}

func newPoster(url string, log hclog.Logger, res resourceInfo) *poster {
	return &poster{
		url: url, log: log, enc: encoder{res: res},
		client: &http.Client{Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			MaxIdleConnsPerHost: 2,
			IdleConnTimeout:     90 * time.Second,
			ForceAttemptHTTP2:   true,
		}},
	}
}

// send posts body, retrying as described on poster.
func (p *poster) send(ctx context.Context, body []byte) error {
	backoff := 500 * time.Millisecond
	for {
		retry, after, err := p.post(ctx, body)
		if err == nil || !retry {
			return err
		}
		wait := backoff
		if after > 0 {
			wait = after
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (last attempt: %v)", ctx.Err(), err)
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// post makes one attempt; retry says whether another may succeed, after (when > 0)
// how long the receiver asked to wait first.
func (p *poster) post(ctx context.Context, body []byte) (retry bool, after time.Duration, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		return false, 0, err
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("User-Agent", "infinityxone-gateway OTLP/HTTP trace exporter")
	resp, err := p.client.Do(req)
	if err != nil {
		return ctx.Err() == nil, 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		return false, 0, nil
	case c == http.StatusTooManyRequests, c == http.StatusBadGateway, c == http.StatusServiceUnavailable, c == http.StatusGatewayTimeout:
		if n, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && n > 0 {
			after = time.Duration(n) * time.Second
		}
		return true, after, errors.New("receiver answered " + strconv.Itoa(c))
	default:
		return false, 0, errors.New("receiver answered " + strconv.Itoa(c))
	}
}

// logFailure logs a failed export, at most once per 30 s.
func (p *poster) logFailure(spans int, err error) {
	p.mu.Lock()
	now := time.Now()
	if now.Sub(p.lastLog) < 30*time.Second {
		p.mu.Unlock()
		return
	}
	p.lastLog = now
	p.mu.Unlock()
	p.log.Warn("trace export failed; spans dropped", "spans", spans, "error", err)
}
