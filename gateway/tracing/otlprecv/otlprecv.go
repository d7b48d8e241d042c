// Package otlprecv is a small OTLP/HTTP trace receiver for tests and benchmarks: a real
// HTTP server that decodes ExportTraceServiceRequest protobufs (as a collector would) and
// keeps the spans it received, or (NewCounter, for load tests) parses them at the wire
// level and only counts them.
package otlprecv

import (
	"bytes"
	"compress/gzip"
	"encoding/hex"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Span is one received span, flattened: ids in lower-case hex, attributes as strings.
type Span struct {
	TraceID, SpanID, ParentID string
	TraceState                string
	Name                      string
	Kind                      tracepb.Span_SpanKind
	Attrs                     map[string]string
	Resource                  map[string]string
	Scope                     string // the instrumentation scope's name
	StatusError               bool
	StatusMessage             string
	Flags                     uint32
}

// Receiver is an OTLP/HTTP receiver. Start serves one on a loopback port (Server set);
// NewCounter makes one for a server of the caller's own.
type Receiver struct {
	*httptest.Server

	countOnly bool // decode every export, keep only the counts

	mu       sync.Mutex
	spans    []Span
	requests int
	status   int
	counts   map[string]int // spans received by resource service.name
}

// SetStatus makes the receiver refuse every later export with status (0: accept again).
func (rc *Receiver) SetStatus(status int) {
	rc.mu.Lock()
	rc.status = status
	rc.mu.Unlock()
}

// Start serves POST /v1/traces until Close.
func Start() *Receiver {
	r := &Receiver{counts: map[string]int{}}
	r.Server = httptest.NewServer(r)
	return r
}

// NewCounter returns a receiver, not serving yet, for load tests: it keeps no span, only
// the counts (Counts), and parses each export at the protobuf wire level (countSpans:
// every field of every message down to each span's own fields is checked, nothing is
// built per span), which costs a fraction of building the generated messages as Start's
// receiver does. Serve it with an http.Server of the caller's own; its Server field
// stays nil.
func NewCounter() *Receiver {
	return &Receiver{countOnly: true, counts: map[string]int{}}
}

// ServeHTTP answers POST /v1/traces.
func (rc *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
		http.Error(w, "not an OTLP traces endpoint", http.StatusNotFound)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	counts := map[string]int{}
	var spans []Span
	if rc.countOnly {
		if err := countSpans(buf.Bytes(), counts); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	} else {
		var req collectortrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(buf.Bytes(), &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, rs := range req.ResourceSpans {
			res := attrs(rs.GetResource().GetAttributes())
			for _, ss := range rs.ScopeSpans {
				counts[res["service.name"]] += len(ss.Spans)
				for _, s := range ss.Spans {
					spans = append(spans, Span{
						TraceID: hex.EncodeToString(s.TraceId), SpanID: hex.EncodeToString(s.SpanId),
						ParentID: hex.EncodeToString(s.ParentSpanId), TraceState: s.TraceState, Name: s.Name, Kind: s.Kind,
						Attrs: attrs(s.Attributes), Resource: res, Scope: ss.GetScope().GetName(),
						StatusError:   s.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR,
						StatusMessage: s.GetStatus().GetMessage(), Flags: s.Flags,
					})
				}
			}
		}
	}
	rc.mu.Lock()
	status := rc.status
	rc.requests++
	if status == 0 {
		for k, n := range counts {
			rc.counts[k] += n
		}
		rc.spans = append(rc.spans, spans...)
	}
	rc.mu.Unlock()
	if status != 0 {
		http.Error(w, "refused", status)
		return
	}
	out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func attrs(kvs []*commonpb.KeyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		v := kv.GetValue()
		switch x := v.GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			m[kv.Key] = x.StringValue
		case *commonpb.AnyValue_IntValue:
			m[kv.Key] = strconv.FormatInt(x.IntValue, 10)
		case *commonpb.AnyValue_BoolValue:
			m[kv.Key] = strconv.FormatBool(x.BoolValue)
		default:
			m[kv.Key] = v.String()
		}
	}
	return m
}

// Spans returns a copy of every span received so far.
func (rc *Receiver) Spans() []Span {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]Span(nil), rc.spans...)
}

// Trace returns the spans of one trace id.
func (rc *Receiver) Trace(traceID string) []Span {
	var out []Span
	for _, s := range rc.Spans() {
		if s.TraceID == traceID {
			out = append(out, s)
		}
	}
	return out
}

// Counts returns the number of spans received so far by the service.name of their
// resource.
func (rc *Receiver) Counts() map[string]int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return maps.Clone(rc.counts)
}

// Requests is the number of export requests received.
func (rc *Receiver) Requests() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.requests
}

// countSpans parses an ExportTraceServiceRequest at the protobuf wire level and adds
// the spans of each ResourceSpans to counts under its resource's service.name. Every
// tag and length down to the fields of each span is checked; a malformed message is an
// error. Field numbers: ExportTraceServiceRequest 1 resource_spans; ResourceSpans
// 1 resource, 2 scope_spans; Resource 1 attributes; KeyValue 1 key, 2 value; AnyValue
// 1 string_value; ScopeSpans 2 spans.
func countSpans(b []byte, counts map[string]int) error {
	return fields(b, func(num protowire.Number, v []byte) error {
		if num != 1 {
			return nil
		}
		var service string
		n := 0
		err := fields(v, func(num protowire.Number, v []byte) error {
			switch num {
			case 1: // resource
				return fields(v, func(num protowire.Number, v []byte) error {
					if num != 1 { // attributes
						return nil
					}
					var key, val []byte
					err := fields(v, func(num protowire.Number, v []byte) error {
						switch num {
						case 1:
							key = v
						case 2:
							return fields(v, func(num protowire.Number, v []byte) error {
								if num == 1 {
									val = v
								}
								return nil
							})
						}
						return nil
					})
					if err == nil && string(key) == "service.name" {
						service = string(val)
					}
					return err
				})
			case 2: // scope_spans
				return fields(v, func(num protowire.Number, v []byte) error {
					if num != 2 { // spans
						return nil
					}
					n++
					return fields(v, func(protowire.Number, []byte) error { return nil })
				})
			}
			return nil
		})
		counts[service] += n
		return err
	})
}

// fields calls fn with each field of the message b: its number and, for a
// length-delimited field, its bytes (nil for other wire types).
func fields(b []byte, fn func(num protowire.Number, v []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var v []byte
		if typ == protowire.BytesType {
			v, n = protowire.ConsumeBytes(b)
		} else {
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		if err := fn(num, v); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}
