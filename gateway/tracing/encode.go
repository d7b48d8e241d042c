package tracing

import (
	"math"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/encoding/protowire"
)

// The OTLP protobuf encoding of finished spans, written straight from the SDK's
// ReadOnlySpan into reused buffers: the same bytes the otlptrace exporter's
// transform-then-proto.Marshal produces, without building a message tree per span
// (that tree and its marshalling were most of the export's cost on the gateway's CPU).
// Field numbers are those of opentelemetry/proto/collector/trace/v1 and
// opentelemetry/proto/{trace,common,resource}/v1.

// encoder builds ExportTraceServiceRequest bodies. Not safe for concurrent use.
type encoder struct {
	body  []byte // the request being built
	spans []byte // the encoded spans of the request's one ScopeSpans
	span  []byte // one span
	tmp   []byte // one nested message inside a span (value, event)
}

// encode returns the ExportTraceServiceRequest of spans, valid until the next call.
// The spans of one tracer share one resource and one instrumentation scope: those of
// the first span are used.
func (e *encoder) encode(spans []sdktrace.ReadOnlySpan) []byte {
	e.spans = e.spans[:0]
	for _, s := range spans {
		e.span = e.appendSpan(e.span[:0], s)
		e.spans = protowire.AppendTag(e.spans, 2, protowire.BytesType) // ScopeSpans.spans
		e.spans = protowire.AppendBytes(e.spans, e.span)
	}
	// ScopeSpans: 1 scope (InstrumentationScope: 1 name, 2 version), 2 spans, 3 schema_url.
	var scope, res []byte
	var schema string
	if len(spans) > 0 {
		sc := spans[0].InstrumentationScope()
		scope = appendString(scope, 1, sc.Name)
		scope = appendString(scope, 2, sc.Version)
		schema = sc.SchemaURL
		if r := spans[0].Resource(); r != nil {
			for _, kv := range r.Attributes() {
				res = e.appendKeyValue(res, 1, kv) // Resource.attributes
			}
		}
	}
	ss := protowire.SizeTag(1) + protowire.SizeBytes(len(scope)) + len(e.spans)
	if schema != "" {
		ss += protowire.SizeTag(3) + protowire.SizeBytes(len(schema))
	}
	rsLen := protowire.SizeTag(1) + protowire.SizeBytes(len(res)) + protowire.SizeTag(2) + protowire.SizeBytes(ss)
	b := e.body[:0]
	b = protowire.AppendTag(b, 1, protowire.BytesType) // ExportTraceServiceRequest.resource_spans
	b = protowire.AppendVarint(b, uint64(rsLen))
	b = protowire.AppendTag(b, 1, protowire.BytesType) // ResourceSpans.resource
	b = protowire.AppendBytes(b, res)
	b = protowire.AppendTag(b, 2, protowire.BytesType) // ResourceSpans.scope_spans
	b = protowire.AppendVarint(b, uint64(ss))
	b = protowire.AppendTag(b, 1, protowire.BytesType) // ScopeSpans.scope
	b = protowire.AppendBytes(b, scope)
	b = append(b, e.spans...)
	b = appendString(b, 3, schema)
	e.body = b
	return b
}

// appendSpan appends the fields of one Span message (without its tag and length).
func (e *encoder) appendSpan(b []byte, s sdktrace.ReadOnlySpan) []byte {
	sc := s.SpanContext()
	tid, sid := sc.TraceID(), sc.SpanID()
	b = protowire.AppendTag(b, 1, protowire.BytesType) // trace_id
	b = protowire.AppendBytes(b, tid[:])
	b = protowire.AppendTag(b, 2, protowire.BytesType) // span_id
	b = protowire.AppendBytes(b, sid[:])
	if ts := sc.TraceState(); ts.Len() > 0 {
		b = appendString(b, 3, ts.String()) // trace_state
	}
	parent := s.Parent()
	if parent.SpanID().IsValid() {
		pid := parent.SpanID()
		b = protowire.AppendTag(b, 4, protowire.BytesType) // parent_span_id
		b = protowire.AppendBytes(b, pid[:])
	}
	b = appendString(b, 5, s.Name())
	if k := s.SpanKind(); k != trace.SpanKindUnspecified {
		b = protowire.AppendTag(b, 6, protowire.VarintType) // kind: the API's numbers are OTLP's
		b = protowire.AppendVarint(b, uint64(k))
	}
	b = protowire.AppendTag(b, 7, protowire.Fixed64Type) // start_time_unix_nano
	b = protowire.AppendFixed64(b, unixNano(s.StartTime().UnixNano()))
	b = protowire.AppendTag(b, 8, protowire.Fixed64Type) // end_time_unix_nano
	b = protowire.AppendFixed64(b, unixNano(s.EndTime().UnixNano()))
	for _, kv := range s.Attributes() {
		b = e.appendKeyValue(b, 9, kv)
	}
	b = appendUint(b, 10, s.DroppedAttributes())
	for _, ev := range s.Events() {
		// Event: 1 time_unix_nano, 2 name, 3 attributes, 4 dropped_attributes_count.
		ev1 := protowire.AppendTag(nil, 1, protowire.Fixed64Type)
		ev1 = protowire.AppendFixed64(ev1, unixNano(ev.Time.UnixNano()))
		ev1 = appendString(ev1, 2, ev.Name)
		for _, kv := range ev.Attributes {
			ev1 = e.appendKeyValue(ev1, 3, kv)
		}
		ev1 = appendUint(ev1, 4, ev.DroppedAttributeCount)
		b = protowire.AppendTag(b, 11, protowire.BytesType)
		b = protowire.AppendBytes(b, ev1)
	}
	b = appendUint(b, 12, s.DroppedEvents())
	// The gateway never links spans: links are counted as dropped, not encoded.
	b = appendUint(b, 14, len(s.Links())+s.DroppedLinks())
	if st := s.Status(); st.Code != codes.Unset {
		// Status: 2 message, 3 code (OTLP: 1 ok, 2 error).
		code := uint64(1)
		if st.Code == codes.Error {
			code = 2
		}
		m := appendString(nil, 2, st.Description)
		m = protowire.AppendTag(m, 3, protowire.VarintType)
		m = protowire.AppendVarint(m, code)
		b = protowire.AppendTag(b, 15, protowire.BytesType)
		b = protowire.AppendBytes(b, m)
	}
	// flags: the W3C trace flags, and whether the parent is remote (bits 8 and 9).
	flags := uint32(sc.TraceFlags()) | 0x100
	if parent.IsRemote() {
		flags |= 0x200
	}
	b = protowire.AppendTag(b, 16, protowire.Fixed32Type)
	return protowire.AppendFixed32(b, flags)
}

// appendKeyValue appends a KeyValue (1 key, 2 value) as field num of the enclosing message.
func (e *encoder) appendKeyValue(b []byte, num protowire.Number, kv attribute.KeyValue) []byte {
	e.tmp = appendAnyValue(e.tmp[:0], kv.Value)
	key := string(kv.Key)
	n := protowire.SizeTag(1) + protowire.SizeBytes(len(key)) + protowire.SizeTag(2) + protowire.SizeBytes(len(e.tmp))
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(n))
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, key)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	return protowire.AppendBytes(b, e.tmp)
}

// appendAnyValue appends the fields of an AnyValue: 1 string, 2 bool, 3 int, 4 double,
// 5 array (ArrayValue: 1 repeated AnyValue).
func appendAnyValue(b []byte, v attribute.Value) []byte {
	switch v.Type() {
	case attribute.STRING:
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		return protowire.AppendString(b, v.AsString())
	case attribute.BOOL:
		b = protowire.AppendTag(b, 2, protowire.VarintType)
		return protowire.AppendVarint(b, protowire.EncodeBool(v.AsBool()))
	case attribute.INT64:
		b = protowire.AppendTag(b, 3, protowire.VarintType)
		return protowire.AppendVarint(b, uint64(v.AsInt64()))
	case attribute.FLOAT64:
		b = protowire.AppendTag(b, 4, protowire.Fixed64Type)
		return protowire.AppendFixed64(b, math.Float64bits(v.AsFloat64()))
	case attribute.BOOLSLICE, attribute.INT64SLICE, attribute.FLOAT64SLICE, attribute.STRINGSLICE:
		var arr []byte
		each := func(x attribute.Value) {
			el := appendAnyValue(nil, x)
			arr = protowire.AppendTag(arr, 1, protowire.BytesType)
			arr = protowire.AppendBytes(arr, el)
		}
		switch v.Type() {
		case attribute.BOOLSLICE:
			for _, x := range v.AsBoolSlice() {
				each(attribute.BoolValue(x))
			}
		case attribute.INT64SLICE:
			for _, x := range v.AsInt64Slice() {
				each(attribute.Int64Value(x))
			}
		case attribute.FLOAT64SLICE:
			for _, x := range v.AsFloat64Slice() {
				each(attribute.Float64Value(x))
			}
		default:
			for _, x := range v.AsStringSlice() {
				each(attribute.StringValue(x))
			}
		}
		b = protowire.AppendTag(b, 5, protowire.BytesType)
		return protowire.AppendBytes(b, arr)
	}
	// Any other kind is sent as its string form.
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	return protowire.AppendString(b, v.Emit())
}

// appendString appends a string field, nothing for "" (proto3's default).
func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

// appendUint appends a uint32 field, nothing for 0.
func appendUint(b []byte, num protowire.Number, n int) []byte {
	if n <= 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(n))
}

func unixNano(n int64) uint64 {
	if n < 0 {
		return 0
	}
	return uint64(n)
}
