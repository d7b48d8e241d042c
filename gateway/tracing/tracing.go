// Package tracing gives the gateway OpenTelemetry spans with a narrow API: a server span
// per request (Tracer.StartRequest, Request.End), a client span per upstream attempt
// (Request.StartAttempt, Attempt.End), W3C trace-context propagation in and out, and
// batched OTLP/HTTP export that never blocks a request.
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
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
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
type Tracer struct {
	provider *sdktrace.TracerProvider
	tracer   trace.Tracer
	prop     propagation.TextMapPropagator
	batcher  *batcher
	dropped  *prometheus.CounterVec
	never    bool      // SampleRatio is 0: only a sampled parent makes a recorded trace
	attrs    sync.Pool // *[]attribute.KeyValue, see getAttrs

	serverOpts, clientOpts []trace.SpanStartOption // built once: options box into interfaces
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
	t := &Tracer{
		prop: propagation.TraceContext{}, never: cfg.SampleRatio <= 0,
		serverOpts: []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)},
		clientOpts: []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)},
	}
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
	t.batcher = newBatcher(newPoster(endpoint, cfg.Logger), cfg.QueueSize, cfg.BatchTimeout, cfg.ExportTimeout, queueFull, exportFailed)
	res := resource.NewSchemaless(
		attribute.String("service.name", cfg.ServiceName),
		attribute.String("service.version", cfg.ServiceVersion),
	)
	t.provider = sdktrace.NewTracerProvider(
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SampleRatio))),
		sdktrace.WithSpanProcessor(t.batcher),
		sdktrace.WithResource(res),
	)
	t.tracer = t.provider.Tracer("github.com/infinityxone/gateway")
	return t, nil
}

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

// Shutdown exports what is queued (within ctx) and stops the exporter.
func (t *Tracer) Shutdown(ctx context.Context) error {
	return t.provider.Shutdown(ctx)
}

// ForceFlush exports every span finished so far (within ctx).
func (t *Tracer) ForceFlush(ctx context.Context) error {
	return t.provider.ForceFlush(ctx)
}

// Request is the trace of one request: its server span and the context that parents
// the request's client spans. The zero Request does nothing.
type Request struct {
	t    *Tracer
	ctx  context.Context
	span trace.Span        // nil for a trace that the sampler would drop anyway
	sc   trace.SpanContext // the server span's context
}

// StartRequest continues the trace of r's traceparent/tracestate (or starts one) with a
// server span. The span is named by End, once the route is known.
func (t *Tracer) StartRequest(r *http.Request) Request {
	var ctx context.Context = context.Background()
	if _, ok := r.Header["Traceparent"]; ok {
		ctx = t.prop.Extract(ctx, propagation.HeaderCarrier(r.Header))
	}
	// Parent-based sampling drops a request whose parent is unsampled, and one without a
	// parent when the ratio is 0: such a request needs no span from the SDK, only ids.
	if parent := trace.SpanContextFromContext(ctx); parent.IsValid() && !parent.IsSampled() || !parent.IsValid() && t.never {
		tid := parent.TraceID()
		if !parent.IsValid() {
			tid = randomTraceID()
		}
		sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: randomSpanID(), TraceState: parent.TraceState()})
		return Request{t: t, sc: sc}
	}
	ctx, span := t.tracer.Start(ctx, r.Method, t.serverOpts...)
	return Request{t: t, ctx: ctx, span: span, sc: span.SpanContext()}
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

// Active reports whether the request is traced at all (sampled or not).
func (q Request) Active() bool { return q.t != nil }

// TraceID is the request's trace id in hex, "" without tracing.
func (q Request) TraceID() string {
	if q.t == nil {
		return ""
	}
	return q.sc.TraceID().String()
}

// AppendTraceID appends the trace id in hex to b (nothing without tracing).
func (q Request) AppendTraceID(b []byte) []byte {
	if q.t == nil {
		return b
	}
	id := q.sc.TraceID()
	return hex.AppendEncode(b, id[:])
}

// Ended describes a finished request for its server span.
type Ended struct {
	Method, Route, RoutePath, Path, Host string
	Service, Instance, RequestID         string
	Status                               int
}

// End names the server span "METHOD route" and records the HTTP attributes.
func (q Request) End(e Ended) {
	if q.span == nil {
		return
	}
	if q.span.IsRecording() {
		if e.Route != "" {
			q.span.SetName(e.Method + " " + e.Route)
		}
		attrs := q.t.getAttrs()
		*attrs = append(*attrs,
			attribute.String("http.request.method", e.Method),
			attribute.Int("http.response.status_code", e.Status),
			attribute.String("url.path", e.Path),
			attribute.String("server.address", hostOnly(e.Host)),
			attribute.String("gateway.request_id", e.RequestID),
		)
		if e.RoutePath != "" {
			*attrs = append(*attrs, attribute.String("http.route", e.RoutePath))
		}
		if e.Service != "" {
			*attrs = append(*attrs, attribute.String("gateway.service", e.Service))
		}
		if e.Instance != "" {
			*attrs = append(*attrs, attribute.String("gateway.instance", e.Instance))
		}
		q.span.SetAttributes(*attrs...)
		q.t.putAttrs(attrs)
		if e.Status >= 500 {
			q.span.SetStatus(codes.Error, "")
		}
	}
	q.span.End()
}

// getAttrs returns an empty attribute slice from the tracer's pool. The SDK copies
// what SetAttributes is given, so the slice goes back (putAttrs) right after: no
// attribute slice is allocated per span.
func (t *Tracer) getAttrs() *[]attribute.KeyValue {
	if a, ok := t.attrs.Get().(*[]attribute.KeyValue); ok {
		return a
	}
	a := make([]attribute.KeyValue, 0, 10)
	return &a
}

func (t *Tracer) putAttrs(a *[]attribute.KeyValue) {
	clear(*a) // no strings kept alive from the pool
	*a = (*a)[:0]
	t.attrs.Put(a)
}

// Attempt is the client span of one upstream attempt. The zero Attempt does nothing.
// Its attributes are set once, at End, together with the outcome: one copy into the
// SDK's span instead of two.
type Attempt struct {
	t                         *Tracer
	span                      trace.Span
	method, service, instance string
	attempt                   int
}

// StartAttempt starts the client span of one attempt at instance (host:port) and writes
// its traceparent (and the incoming tracestate) into out's headers, replacing what the
// client sent.
func (q Request) StartAttempt(out *http.Request, service, instance string, attempt int) Attempt {
	if q.t == nil {
		return Attempt{}
	}
	if psc := q.sc; !psc.IsSampled() {
		// Parent-based sampling never records the child of an unsampled span: skip the
		// SDK and send the trace context on with a fresh span id.
		injectTraceContext(out.Header, psc.TraceID(), randomSpanID(), psc)
		return Attempt{}
	}
	_, span := q.t.tracer.Start(q.ctx, out.Method, q.t.clientOpts...)
	sc := span.SpanContext()
	injectTraceContext(out.Header, sc.TraceID(), sc.SpanID(), sc)
	return Attempt{t: q.t, span: span, method: out.Method, service: service, instance: instance, attempt: attempt}
}

// End records the attempt's attributes and outcome: the status it answered, or the
// error it failed with.
func (a Attempt) End(resp *http.Response, err error) {
	if a.span == nil {
		return
	}
	if a.span.IsRecording() {
		host, port := splitHostPort(a.instance)
		attrs := a.t.getAttrs()
		*attrs = append(*attrs,
			attribute.String("http.request.method", a.method),
			attribute.String("server.address", host),
			attribute.Int("server.port", port),
			attribute.String("gateway.service", a.service),
			attribute.String("gateway.instance", a.instance),
		)
		if a.attempt > 1 {
			*attrs = append(*attrs, attribute.Int("http.request.resend_count", a.attempt-1))
		}
		switch {
		case err != nil:
			*attrs = append(*attrs, attribute.String("error.type", errorType(err)))
		case resp != nil:
			*attrs = append(*attrs, attribute.Int("http.response.status_code", resp.StatusCode))
		}
		a.span.SetAttributes(*attrs...)
		a.t.putAttrs(attrs)
		switch {
		case err != nil:
			a.span.SetStatus(codes.Error, err.Error())
		case resp != nil && resp.StatusCode >= 400:
			a.span.SetStatus(codes.Error, "")
		}
	}
	a.span.End()
}

// injectTraceContext writes the W3C traceparent of span id sid in trace tid, with the
// sampled flag of sc, and sc's tracestate (if any) into h: the propagator's output,
// formatted in place.
func injectTraceContext(h http.Header, tid trace.TraceID, sid trace.SpanID, sc trace.SpanContext) {
	var b [55]byte
	copy(b[:], "00-")
	hex.Encode(b[3:35], tid[:])
	b[35] = '-'
	hex.Encode(b[36:52], sid[:])
	copy(b[52:], "-00")
	if sc.IsSampled() {
		b[54] = '1'
	}
	h["Traceparent"] = []string{string(b[:])}
	if ts := sc.TraceState(); ts.Len() > 0 {
		h["Tracestate"] = []string{ts.String()}
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

func splitHostPort(hp string) (string, int) {
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		return hp, 0
	}
	n, _ := strconv.Atoi(p)
	return h, n
}

func hostOnly(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		return host
	}
	return h
}
