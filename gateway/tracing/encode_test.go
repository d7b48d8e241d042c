package tracing

import (
	"bytes"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// TestEncodeIsOTLP: the hand-written encoding of records decodes, with the generated
// OTLP protobuf types, into exactly the message a collector expects (ids, parent,
// trace state, name, kind, times, typed attributes, status, flags, resource, scope),
// and its bytes are those proto.Marshal gives for that message.
func TestEncodeIsOTLP(t *testing.T) {
	tid := trace.TraceID{0x5b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	start := time.Unix(1700000000, 123456789)
	ns := func(d time.Duration) uint64 { return uint64(start.Add(d).UnixNano()) }
	rec := func(d spanData) *record {
		r := new(record)
		r.d = d
		return r
	}
	server := rec(spanData{
		tid: tid, sid: trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8}, parent: trace.SpanID{9, 9, 9, 9, 9, 9, 9, 9},
		flags: trace.FlagsSampled, remote: true, kind: trace.SpanKindServer, state: "vendor=a,other=b",
		start: start, end: int64(ns(1500 * time.Microsecond)), name1: "GET", name2: "items",
		statusError: true, method: "GET", status: 503, path: "/api/items/7", host: "gw.example:8080",
		requestID: "req-1", route: "/api/items/:id", service: "items", instance: "10.0.0.1:9000",
	})
	retry := rec(spanData{
		tid: tid, sid: trace.SpanID{8, 7, 6, 5, 4, 3, 2, 1}, parent: server.d.sid, flags: trace.FlagsSampled | trace.FlagsRandom,
		kind: trace.SpanKindClient, state: "vendor=a,other=b",
		start: start.Add(100 * time.Microsecond), end: int64(ns(1400 * time.Microsecond)), name1: "GET",
		statusError: true, statusMsg: "dial tcp 10.0.0.2:9000: connection refused",
		method: "GET", service: "items", instance: "10.0.0.2:9000", resend: 1, errType: "dial",
	})
	client := rec(spanData{
		tid: tid, sid: trace.SpanID{7, 7, 7, 7, 7, 7, 7, 7}, parent: server.d.sid, flags: trace.FlagsSampled,
		kind: trace.SpanKindClient, start: start.Add(200 * time.Microsecond), end: int64(ns(300 * time.Microsecond)),
		name1: "POST", method: "POST", service: "s", instance: "up", status: 404, hasStatus: true, statusError: true,
	})
	root := rec(spanData{ // no parent, no route, no tracestate, a Host without port
		tid: trace.TraceID{1: 1}, sid: trace.SpanID{5: 5}, flags: trace.FlagsSampled, kind: trace.SpanKindServer,
		start: start, end: int64(ns(time.Millisecond)), name1: "DELETE", method: "DELETE", status: 200, host: "gw",
	})

	str := func(k, v string) *commonpb.KeyValue {
		return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
	}
	num := func(k string, v int64) *commonpb.KeyValue {
		return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: v}}}
	}
	errStatus := func(msg string) *tracepb.Status {
		return &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: msg}
	}
	want := &collectortrace.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{str("service.name", "gw"), str("service.version", "")}},
		ScopeSpans: []*tracepb.ScopeSpans{{
			Scope: &commonpb.InstrumentationScope{Name: "github.com/infinityxone/gateway"},
			Spans: []*tracepb.Span{{
				TraceId: tid[:], SpanId: []byte{1, 2, 3, 4, 5, 6, 7, 8}, TraceState: "vendor=a,other=b",
				ParentSpanId: []byte{9, 9, 9, 9, 9, 9, 9, 9}, Flags: 0x301,
				Name: "GET items", Kind: tracepb.Span_SPAN_KIND_SERVER,
				StartTimeUnixNano: ns(0), EndTimeUnixNano: ns(1500 * time.Microsecond),
				Attributes: []*commonpb.KeyValue{
					str("http.request.method", "GET"), num("http.response.status_code", 503),
					str("url.path", "/api/items/7"), str("server.address", "gw.example"),
					str("gateway.request_id", "req-1"), str("http.route", "/api/items/:id"),
					str("gateway.service", "items"), str("gateway.instance", "10.0.0.1:9000"),
				},
				Status: errStatus(""),
			}, {
				TraceId: tid[:], SpanId: []byte{8, 7, 6, 5, 4, 3, 2, 1}, TraceState: "vendor=a,other=b",
				ParentSpanId: []byte{1, 2, 3, 4, 5, 6, 7, 8}, Flags: 0x103,
				Name: "GET", Kind: tracepb.Span_SPAN_KIND_CLIENT,
				StartTimeUnixNano: ns(100 * time.Microsecond), EndTimeUnixNano: ns(1400 * time.Microsecond),
				Attributes: []*commonpb.KeyValue{
					str("http.request.method", "GET"), str("server.address", "10.0.0.2"), num("server.port", 9000),
					str("gateway.service", "items"), str("gateway.instance", "10.0.0.2:9000"),
					num("http.request.resend_count", 1), str("error.type", "dial"),
				},
				Status: errStatus("dial tcp 10.0.0.2:9000: connection refused"),
			}, {
				TraceId: tid[:], SpanId: []byte{7, 7, 7, 7, 7, 7, 7, 7}, ParentSpanId: []byte{1, 2, 3, 4, 5, 6, 7, 8}, Flags: 0x101,
				Name: "POST", Kind: tracepb.Span_SPAN_KIND_CLIENT,
				StartTimeUnixNano: ns(200 * time.Microsecond), EndTimeUnixNano: ns(300 * time.Microsecond),
				Attributes: []*commonpb.KeyValue{
					str("http.request.method", "POST"), str("server.address", "up"), num("server.port", 0),
					str("gateway.service", "s"), str("gateway.instance", "up"), num("http.response.status_code", 404),
				},
				Status: errStatus(""),
			}, {
				TraceId: root.d.tid[:], SpanId: root.d.sid[:], Flags: 0x101,
				Name: "DELETE", Kind: tracepb.Span_SPAN_KIND_SERVER,
				StartTimeUnixNano: ns(0), EndTimeUnixNano: ns(time.Millisecond),
				Attributes: []*commonpb.KeyValue{
					str("http.request.method", "DELETE"), num("http.response.status_code", 200),
					str("url.path", ""), str("server.address", "gw"), str("gateway.request_id", ""),
				},
			}},
		}},
	}}}
	wantBytes, err := proto.MarshalOptions{Deterministic: true}.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	e := encoder{res: resourceInfo{service: "gw", scope: scopeName}}
	for range 2 { // the second round reuses the encoder's buffers
		body := e.encode([]*record{server, retry, client, root})
		var got collectortrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &got); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(&got, want) {
			t.Fatalf("decoded:\n%v\nwant:\n%v", &got, want)
		}
		if !bytes.Equal(body, wantBytes) {
			t.Errorf("bytes differ from proto.Marshal's:\n%x\n%x", body, wantBytes)
		}
	}
	if n := testing.AllocsPerRun(100, func() { e.encode([]*record{server, retry, client, root}) }); n != 0 {
		t.Errorf("encoding allocates %v times per batch", n)
	}
}
