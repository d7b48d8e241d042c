package tracing

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// queue is the span processor in front of the SDK's batch processor. A finished
// sampled span goes into a bounded channel without waiting: when the channel is full
// (the receiver is down and the batch processor's own queue is full too) the span is
// dropped and counted. One goroutine, owned by the queue and ended by Shutdown, hands
// spans to the batch processor, which is set to wait rather than drop.
type queue struct {
	next    sdktrace.SpanProcessor
	ch      chan sdktrace.ReadOnlySpan
	dropped prometheus.Counter
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
	pending atomic.Int64 // spans queued and not yet handed on
}

func newQueue(next sdktrace.SpanProcessor, size int, dropped prometheus.Counter) *queue {
	q := &queue{
		next:    next,
		ch:      make(chan sdktrace.ReadOnlySpan, size),
		dropped: dropped,
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go q.run()
	return q
}

func (q *queue) run() {
	defer close(q.done)
	for {
		select {
		case s := <-q.ch:
			q.next.OnEnd(s)
			q.pending.Add(-1)
		case <-q.stop:
			for {
				select {
				case s := <-q.ch:
					q.next.OnEnd(s)
					q.pending.Add(-1)
				default:
					return
				}
			}
		}
	}
}

// OnStart does nothing: spans are handed on only when they end.
func (q *queue) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

// OnEnd queues a sampled span, or drops and counts it when the queue is full or stopped.
func (q *queue) OnEnd(s sdktrace.ReadOnlySpan) {
	if !s.SpanContext().IsSampled() {
		return
	}
	select {
	case <-q.stop:
		q.dropped.Inc()
		return
	default:
	}
	q.pending.Add(1)
	select {
	case q.ch <- s:
	default:
		q.pending.Add(-1)
		q.dropped.Inc()
	}
}

// Shutdown hands what is queued to the batch processor, which exports it within ctx.
func (q *queue) Shutdown(ctx context.Context) error {
	q.once.Do(func() { close(q.stop) })
	select {
	case <-q.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return q.next.Shutdown(ctx)
}

// ForceFlush waits until the spans queued so far reached the batch processor, then
// has it export them.
func (q *queue) ForceFlush(ctx context.Context) error {
	for q.pending.Load() > 0 {
		t := time.NewTimer(time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
	return q.next.ForceFlush(ctx)
}
