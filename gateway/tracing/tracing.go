// Package tracing gives the gateway OpenTelemetry traces with a narrow API: a server
// span per request (Tracer.StartRequest, Request.End), a client span per upstream
// attempt (Request.StartAttempt, Attempt.End), W3C trace-context propagation in and
// out, and batched OTLP/HTTP export that never blocks a request.
//
// The package records the spans itself, in pooled records, with the OpenTelemetry API's
// types (trace ids, span ids, span context, trace state) and its W3C TraceContext
// propagator, and encodes them straight into OTLP protobuf: the OpenTelemetry SDK's
// span objects, attributes and processors cost more CPU per request than the rest of
// the tracing together.
//
// The zero Request and the zero Attempt are valid and do nothing, so the proxy calls
// them unconditionally and a gateway without a tracing block pays one nil check.
//
// Sampling is parent-based: a request carrying a sampled traceparent is always traced,
// one carrying an unsampled traceparent never is, and a request without one is traced
// with probability SampleRatio. The trace context is propagated upstream in every case,
// so the services behind the gateway stay in the client's trace.
package tracing

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Config configures a Tracer. Zero values mean the documented defaults.
type Config struct {
	// Endpoint is the OTLP/HTTP receiver's base URL, such as "http://127.0.0.1:4318";
	// spans are posted to its path + "/v1/traces" (a URL already ending in /v1/traces
	// is used as it is).
	Endpoint string
	// SampleRatio is the share of new traces (no incoming traceparent) that are sampled.
	SampleRatio float64
	// ServiceName and ServiceVersion become the resource's service.name and
	// service.version. Default service name: "gateway".
	ServiceName, ServiceVersion string
	// Logger receives export failures (rate-limited to one line per 30 s); nil: discard.
	Logger hclog.Logger
	// Registerer gets gateway_tracing_spans_dropped_total{reason}; nil: not registered.
	Registerer prometheus.Registerer
	// BatchTimeout is the longest a finished span waits before export; default 5s.
	BatchTimeout time.Duration
	// QueueSize bounds the spans waiting for export; more are dropped (and counted).
	// Default 4096.
	QueueSize int
	// ExportTimeout bounds one export call, retries included; default 10s.
	ExportTimeout time.Duration
}

// Tracer starts spans and exports them. Build it with New, stop it with Shutdown.
//
// The spans are the tracer's own records (see record), not the OpenTelemetry SDK's:
// the ids, span context and propagation are the OpenTelemetry API's types and its W3C
// TraceContext propagator, the sampling decision is the SDK's
// ParentBased(TraceIDRatioBased) one, and the export encodes the records straight
// into OTLP protobuf.
type Tracer struct {
	prop    propagation.TraceContext
	sampler ratioSampler
	pool    *spanPool
	batcher *batcher
	dropped *prometheus.CounterVec
	shut    atomic.Bool
}

// New starts a tracer exporting to cfg.Endpoint. Nothing is dialled until the first
// batch is exported.
func New(cfg Config) (*Tracer, error) {
	if cfg.ServiceName == "" {
		cfg.ServiceName = "gateway"
	}
	if cfg.BatchTimeout <= 0 {
		cfg.BatchTimeout = 5 * time.Second
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 4096
	}
	if cfg.ExportTimeout <= 0 {
		cfg.ExportTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	endpoint, err := tracesURL(cfg.Endpoint)
	if err != nil {
		return nil, err
	}
	t := &Tracer{sampler: newRatioSampler(cfg.SampleRatio), pool: new(spanPool)}
	t.dropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_tracing_spans_dropped_total",
		Help: "Finished spans that were never exported: queue_full (the export queue was full) or export_failed (the receiver refused or was unreachable).",
	}, []string{"reason"})
	queueFull, exportFailed := t.dropped.WithLabelValues("queue_full"), t.dropped.WithLabelValues("export_failed")
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(t.dropped); err != nil {
			return nil, fmt.Errorf("tracing: %w", err)
		}
	}
	post := newPoster(endpoint, cfg.Logger, resourceInfo{service: cfg.ServiceName, version: cfg.ServiceVersion, scope: scopeName})
	t.batcher = newBatcher(post, t.pool, cfg.QueueSize, cfg.BatchTimeout, cfg.ExportTimeout, queueFull, exportFailed)
	return t, nil
}

// scopeName is the instrumentation scope of the gateway's spans.
const scopeName = "github.com/infinityxone/gateway"

// tracesURL turns an OTLP base URL into the traces URL.
func tracesURL(base string) (string, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("tracing: endpoint %q is not an http:// or https:// URL", base)
	}
	if !strings.HasSuffix(u.Path, "/v1/traces") {
		u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/traces"
	}
	return u.String(), nil
}

// Shutdown exports what is queued (within ctx) and stops the exporter. Spans that end
// afterwards are discarded; a second Shutdown returns nil at once.
func (t *Tracer) Shutdown(ctx context.Context) error {
	if !t.shut.CompareAndSwap(false, true) {
		return nil
	}
	return t.batcher.Shutdown(ctx)
}

// ForceFlush exports every span finished so far (within ctx).
func (t *Tracer) ForceFlush(ctx context.Context) error {
	if t.shut.Load() {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return t.batcher.ForceFlush(ctx)
}

// Request is the trace of one request: its server span and the context that parents
// the request's client spans. The zero Request does nothing.
type Request struct {
	t     *Tracer
	rec   *record // the server span's record; nil when the trace is not sampled
	gen   uint64  // rec's generation at the start
	tid   trace.TraceID
	sid   trace.SpanID // the server span's id
	flags trace.TraceFlags
	state string // the tracestate
}

// StartRequest continues the trace of r's traceparent/tracestate (or starts one) with a
// server span. The span is named by End, once the route is known.
func (t *Tracer) StartRequest(r *http.Request) Request {
	var parent trace.SpanContext
	if _, ok := r.Header["Traceparent"]; ok {
		parent = trace.SpanContextFromContext(t.prop.Extract(context.Background(), propagation.HeaderCarrier(r.Header)))
	}
	q := Request{t: t, sid: randomSpanID()}
	var sampled bool
	if parent.IsValid() {
		// Parent-based: the client's decision stands.
		q.tid, q.flags, sampled = parent.TraceID(), parent.TraceFlags(), parent.IsSampled()
		if ts := parent.TraceState(); ts.Len() > 0 {
			q.state = ts.String()
		}
	} else {
		q.tid = randomTraceID()
		sampled = t.sampler.sampled(q.tid)
	}
	if !sampled {
		// Not recorded: only the ids, to propagate upstream and to log.
		q.flags &^= trace.FlagsSampled
		return q
	}
	q.flags |= trace.FlagsSampled
	q.rec, q.gen = t.pool.get()
	d := &q.rec.d
	d.tid, d.sid, d.flags, d.state = q.tid, q.sid, q.flags, q.state
	if parent.IsValid() {
		d.parent, d.remote = parent.SpanID(), parent.IsRemote()
	}
	d.kind, d.name1, d.start = trace.SpanKindServer, r.Method, time.Now()
	return q
}

// Active reports whether the request is traced at all (sampled or not).
func (q Request) Active() bool { return q.t != nil }

// TraceID is the request's trace id in hex, "" without tracing.
func (q Request) TraceID() string {
	if q.t == nil {
		return ""
	}
	return q.tid.String()
}

// AppendTraceID appends the trace id in hex to b (nothing without tracing).
func (q Request) AppendTraceID(b []byte) []byte {
	if q.t == nil {
		return b
	}
	return hex.AppendEncode(b, q.tid[:])
}

// Ended describes a finished request for its server span.
type Ended struct {
	Method, Route, RoutePath, Path, Host string
	Service, Instance, RequestID         string
	Status                               int
}

// End names the server span "METHOD route" (the method alone without a route),
// records the HTTP attributes and hands the span to the exporter. Only the first End
// of a Request counts.
func (q Request) End(e Ended) {
	if q.rec == nil || !q.rec.end(q.gen) {
		return
	}
	d := &q.rec.d
	if e.Route != "" {
		d.name1, d.name2 = e.Method, e.Route
	}
	d.method, d.status, d.path, d.host, d.requestID = e.Method, e.Status, e.Path, e.Host, e.RequestID
	d.route, d.service, d.instance = e.RoutePath, e.Service, e.Instance
	d.hasStatus = true
	d.statusError = e.Status >= 500
	d.end = endTime(d.start)
	q.t.batcher.add(q.rec)
}

// Attempt is the client span of one upstream attempt. The zero Attempt does nothing.
type Attempt struct {
	t   *Tracer
	rec *record
	gen uint64
}

// StartAttempt starts the client span of one attempt at instance (host:port) and writes
// its traceparent (and the incoming tracestate) into out's headers, replacing what the
// client sent.
func (q Request) StartAttempt(out *http.Request, service, instance string, attempt int) Attempt {
	if q.t == nil {
		return Attempt{}
	}
	sid := randomSpanID()
	injectTraceContext(out.Header, q.tid, sid, q.flags.IsSampled(), q.state)
	if q.rec == nil {
		// Parent-based sampling never records the child of an unsampled span: the
		// trace context goes on with a fresh span id, nothing more.
		return Attempt{}
	}
	rec, gen := q.t.pool.get()
	d := &rec.d
	d.tid, d.sid, d.parent, d.flags, d.state = q.tid, sid, q.sid, q.flags, q.state
	d.kind, d.name1, d.start = trace.SpanKindClient, out.Method, time.Now()
	d.method, d.service, d.instance = out.Method, service, instance
	if attempt > 1 {
		d.resend = attempt - 1
	}
	return Attempt{t: q.t, rec: rec, gen: gen}
}

// End records the attempt's outcome, the status it answered or the error it failed
// with, and hands the span to the exporter. Only the first End of an Attempt counts.
func (a Attempt) End(resp *http.Response, err error) {
	if a.rec == nil || !a.rec.end(a.gen) {
		return
	}
	d := &a.rec.d
	switch {
	case err != nil:
		d.errType = errorType(err)
		d.statusError, d.statusMsg = true, err.Error()
	case resp != nil:
		d.status, d.hasStatus = resp.StatusCode, true
		d.statusError = resp.StatusCode >= 400
	}
	d.end = endTime(d.start)
	a.t.batcher.add(a.rec)
}

// injectTraceContext writes the W3C traceparent of span id sid in trace tid, with the
// sampled flag, and the tracestate (if any) into h: the propagator's output, formatted
// in place.
func injectTraceContext(h http.Header, tid trace.TraceID, sid trace.SpanID, sampled bool, state string) {
	var b [55]byte
	copy(b[:], "00-")
	hex.Encode(b[3:35], tid[:])
	b[35] = '-'
	hex.Encode(b[36:52], sid[:])
	copy(b[52:], "-00")
	if sampled {
		b[54] = '1'
	}
	h["Traceparent"] = []string{string(b[:])}
	if state != "" {
		h["Tracestate"] = []string{state}
	} else {
		delete(h, "Tracestate")
	}
}

func errorType(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	var op *net.OpError
	if errors.As(err, &op) {
		return op.Op
	}
	return "error"
}

// splitHostPort splits an instance's host:port, (hp, 0) when it has no port.
func splitHostPort(hp string) (string, int) {
	if strings.IndexByte(hp, ':') < 0 {
		return hp, 0 // what net.SplitHostPort's error would give, without the error
	}
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		return hp, 0
	}
	n, _ := strconv.Atoi(p)
	return h, n
}

// hostOnly is the host of a Host header, without the port.
func hostOnly(h string) string {
	if strings.IndexByte(h, ':') < 0 {
		return h // no port, and no net.SplitHostPort error to build
	}
	if host, _, err := net.SplitHostPort(h); err == nil {
		return host
	}
	return h
}
