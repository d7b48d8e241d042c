package otlprecv

import (
	"maps"
	"testing"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// TestCountSpans: the counter's wire-level parse counts what the generated types decode,
// by service.name, and refuses a truncated message.
func TestCountSpans(t *testing.T) {
	kv := func(k, v string) *commonpb.KeyValue {
		return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
	}
	span := func(name string) *tracepb.Span {
		return &tracepb.Span{TraceId: make([]byte, 16), SpanId: []byte{1, 2, 3, 4, 5, 6, 7, 8}, Name: name,
			Kind: tracepb.Span_SPAN_KIND_SERVER, StartTimeUnixNano: 1, EndTimeUnixNano: 2, Flags: 0x101,
			Attributes: []*commonpb.KeyValue{kv("service.name", "not the resource's"), {Key: "n", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: 7}}}},
			Status:     &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR}}
	}
	req := &collectortrace.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{
		{
			Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{kv("service.version", "1"), kv("service.name", "a")}},
			ScopeSpans: []*tracepb.ScopeSpans{
				{Scope: &commonpb.InstrumentationScope{Name: "s"}, Spans: []*tracepb.Span{span("1"), span("2")}},
				{Spans: []*tracepb.Span{span("3")}},
			},
		},
		{Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{kv("service.name", "b")}}, ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{span("4")}}}},
		{ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{span("5")}}}}, // no resource
	}}
	body, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	if err := countSpans(body, got); err != nil {
		t.Fatal(err)
	}
	if want := map[string]int{"a": 3, "b": 1, "": 1}; !maps.Equal(got, want) {
		t.Errorf("counts %v, want %v", got, want)
	}
	if err := countSpans(body[:len(body)-3], map[string]int{}); err == nil {
		t.Error("a truncated export was counted without error")
	}
}
