package tracing

import (
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// TestEncodeIsOTLP: the hand-written encoding decodes, with the generated OTLP protobuf
// types, into exactly the message a collector expects: ids, parent, trace state, kind,
// times, every attribute type, events, status, dropped counts, flags, resource, scope.
func TestEncodeIsOTLP(t *testing.T) {
	tid := trace.TraceID{0x5b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	ts, err := trace.ParseTraceState("vendor=a,other=b")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Unix(1700000000, 123456789)
	res := resource.NewSchemaless(attribute.String("service.name", "gw"), attribute.String("service.version", "1.2"))
	scope := instrumentation.Scope{Name: "github.com/infinityxone/gateway", Version: "v1", SchemaURL: "https://opentelemetry.io/schemas/1.26.0"}
	server := tracetest.SpanStub{
		Name: "GET items",
		SpanContext: trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8},
			TraceFlags: trace.FlagsSampled, TraceState: ts}),
		Parent:    trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: trace.SpanID{9, 9, 9, 9, 9, 9, 9, 9}, TraceFlags: trace.FlagsSampled, Remote: true}),
		SpanKind:  trace.SpanKindServer,
		StartTime: start, EndTime: start.Add(1500 * time.Microsecond),
		Attributes: []attribute.KeyValue{
			attribute.String("http.request.method", "GET"), attribute.Int("http.response.status_code", 503),
			attribute.Bool("b", true), attribute.Float64("f", 0.25), attribute.Int64("neg", -7),
			attribute.StringSlice("ss", []string{"x", ""}), attribute.Int64Slice("is", []int64{1, 2}),
			attribute.BoolSlice("bs", []bool{false}), attribute.Float64Slice("fs", []float64{1.5}),
		},
		DroppedAttributes: 2,
		Events:            []sdktrace.Event{{Name: "ev", Time: start.Add(time.Millisecond), Attributes: []attribute.KeyValue{attribute.String("k", "v")}}},
		Status:            sdktrace.Status{Code: codes.Error, Description: "upstream failed"},
		Resource:          res, InstrumentationScope: scope,
	}
	client := tracetest.SpanStub{
		Name: "GET",
		SpanContext: trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: trace.SpanID{8, 7, 6, 5, 4, 3, 2, 1},
			TraceFlags: trace.FlagsSampled}),
		Parent:    server.SpanContext,
		SpanKind:  trace.SpanKindClient,
		StartTime: start.Add(100 * time.Microsecond), EndTime: start.Add(1400 * time.Microsecond),
		Status:   sdktrace.Status{Code: codes.Ok},
		Resource: res, InstrumentationScope: scope,
	}
	var e encoder
	for range 2 { // the second round reuses the encoder's buffers
		body := e.encode([]sdktrace.ReadOnlySpan{server.Snapshot(), client.Snapshot()})
		var got collectortrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &got); err != nil {
			t.Fatal(err)
		}
		str := func(k, v string) *commonpb.KeyValue {
			return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
		}
		intv := func(v int64) *commonpb.AnyValue {
			return &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: v}}
		}
		arr := func(vs ...*commonpb.AnyValue) *commonpb.AnyValue {
			return &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: vs}}}
		}
		sv := func(v string) *commonpb.AnyValue {
			return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}
		}
		bv := func(v bool) *commonpb.AnyValue {
			return &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: v}}
		}
		fv := func(v float64) *commonpb.AnyValue {
			return &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: v}}
		}
		ns := func(d time.Duration) uint64 { return uint64(start.Add(d).UnixNano()) }
		want := &collectortrace.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
			Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{str("service.name", "gw"), str("service.version", "1.2")}},
			ScopeSpans: []*tracepb.ScopeSpans{{
				Scope:     &commonpb.InstrumentationScope{Name: "github.com/infinityxone/gateway", Version: "v1"},
				SchemaUrl: "https://opentelemetry.io/schemas/1.26.0",
				Spans: []*tracepb.Span{{
					TraceId: tid[:], SpanId: []byte{1, 2, 3, 4, 5, 6, 7, 8}, TraceState: "vendor=a,other=b",
					ParentSpanId: []byte{9, 9, 9, 9, 9, 9, 9, 9}, Flags: 0x301,
					Name: "GET items", Kind: tracepb.Span_SPAN_KIND_SERVER,
					StartTimeUnixNano: ns(0), EndTimeUnixNano: ns(1500 * time.Microsecond),
					Attributes: []*commonpb.KeyValue{
						str("http.request.method", "GET"), {Key: "http.response.status_code", Value: intv(503)},
						{Key: "b", Value: bv(true)}, {Key: "f", Value: fv(0.25)}, {Key: "neg", Value: intv(-7)},
						{Key: "ss", Value: arr(sv("x"), sv(""))}, {Key: "is", Value: arr(intv(1), intv(2))},
						{Key: "bs", Value: arr(bv(false))}, {Key: "fs", Value: arr(fv(1.5))},
					},
					DroppedAttributesCount: 2,
					Events:                 []*tracepb.Span_Event{{TimeUnixNano: ns(time.Millisecond), Name: "ev", Attributes: []*commonpb.KeyValue{str("k", "v")}}},
					Status:                 &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: "upstream failed"},
				}, {
					TraceId: tid[:], SpanId: []byte{8, 7, 6, 5, 4, 3, 2, 1}, ParentSpanId: []byte{1, 2, 3, 4, 5, 6, 7, 8}, Flags: 0x101,
					Name: "GET", Kind: tracepb.Span_SPAN_KIND_CLIENT,
					StartTimeUnixNano: ns(100 * time.Microsecond), EndTimeUnixNano: ns(1400 * time.Microsecond),
					Status: &tracepb.Status{Code: tracepb.Status_STATUS_CODE_OK},
				}},
			}},
		}}}
		if !proto.Equal(&got, want) {
			t.Fatalf("decoded:\n%v\nwant:\n%v", &got, want)
		}
	}
}
