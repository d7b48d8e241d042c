package tracing

import (
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/encoding/protowire"
)

// The OTLP protobuf encoding of the recorded spans, written straight from the records
// into reused buffers: the bytes proto.Marshal gives for the generated OTLP messages
// of the same spans (the OTel SDK's otlptrace exporter builds those messages and
// marshals them), without building a message tree per span. Field numbers are those
// of opentelemetry/proto/collector/trace/v1 and opentelemetry/proto/{trace,common,
// resource}/v1.

// resourceInfo is what every span of a tracer shares: the resource's service.name and
// service.version, and the instrumentation scope's name.
type resourceInfo struct {
	service, version, scope string
}

// encoder builds ExportTraceServiceRequest bodies. Not safe for concurrent use.
type encoder struct {
	res   resourceInfo
	body  []byte // the request being built
	spans []byte // the encoded spans of the request's one ScopeSpans
	span  []byte // one span
}

// encode returns the ExportTraceServiceRequest of the records, valid until the next
// call. It only reads the records.
func (e *encoder) encode(spans []*record) []byte {
	e.spans = e.spans[:0]
	for _, r := range spans {
		e.span = appendSpan(e.span[:0], &r.d)
		e.spans = protowire.AppendTag(e.spans, 2, protowire.BytesType) // ScopeSpans.spans
		e.spans = protowire.AppendBytes(e.spans, e.span)
	}
	// Resource: 1 attributes (service.name, service.version: the SDK's resource sorts
	// its attributes by key and keeps an empty value).
	resLen := protowire.SizeTag(1) + protowire.SizeBytes(sizeStrAttr("service.name", e.res.service)) +
		protowire.SizeTag(1) + protowire.SizeBytes(sizeStrAttr("service.version", e.res.version))
	// ScopeSpans: 1 scope (InstrumentationScope: 1 name, 2 version, both empty but the
	// name), 2 spans, 3 schema_url (empty).
	scopeLen := sizeString(1, e.res.scope)
	ss := protowire.SizeTag(1) + protowire.SizeBytes(scopeLen) + len(e.spans)
	rsLen := protowire.SizeTag(1) + protowire.SizeBytes(resLen) + protowire.SizeTag(2) + protowire.SizeBytes(ss)
	b := e.body[:0]
	b = protowire.AppendTag(b, 1, protowire.BytesType) // ExportTraceServiceRequest.resource_spans
	b = protowire.AppendVarint(b, uint64(rsLen))
	b = protowire.AppendTag(b, 1, protowire.BytesType) // ResourceSpans.resource
	b = protowire.AppendVarint(b, uint64(resLen))
	b = appendStrAttr(b, 1, "service.name", e.res.service)
	b = appendStrAttr(b, 1, "service.version", e.res.version)
	b = protowire.AppendTag(b, 2, protowire.BytesType) // ResourceSpans.scope_spans
	b = protowire.AppendVarint(b, uint64(ss))
	b = protowire.AppendTag(b, 1, protowire.BytesType) // ScopeSpans.scope
	b = protowire.AppendVarint(b, uint64(scopeLen))
	b = appendString(b, 1, e.res.scope)
	b = append(b, e.spans...)
	e.body = b
	return b
}

// appendSpan appends the fields of one Span message (without its tag and length).
func appendSpan(b []byte, d *spanData) []byte {
	b = protowire.AppendTag(b, 1, protowire.BytesType) // trace_id
	b = protowire.AppendBytes(b, d.tid[:])
	b = protowire.AppendTag(b, 2, protowire.BytesType) // span_id
	b = protowire.AppendBytes(b, d.sid[:])
	b = appendString(b, 3, d.state) // trace_state
	if d.parent.IsValid() {
		b = protowire.AppendTag(b, 4, protowire.BytesType) // parent_span_id
		b = protowire.AppendBytes(b, d.parent[:])
	}
	// name: name1, or name1 + " " + name2.
	if n := len(d.name1); d.name2 != "" {
		b = protowire.AppendTag(b, 5, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(n+1+len(d.name2)))
		b = append(b, d.name1...)
		b = append(b, ' ')
		b = append(b, d.name2...)
	} else {
		b = appendString(b, 5, d.name1)
	}
	if d.kind != trace.SpanKindUnspecified {
		b = protowire.AppendTag(b, 6, protowire.VarintType) // kind: the API's numbers are OTLP's
		b = protowire.AppendVarint(b, uint64(d.kind))
	}
	b = protowire.AppendTag(b, 7, protowire.Fixed64Type) // start_time_unix_nano
	b = protowire.AppendFixed64(b, unixNano(d.start.UnixNano()))
	b = protowire.AppendTag(b, 8, protowire.Fixed64Type) // end_time_unix_nano
	b = protowire.AppendFixed64(b, unixNano(d.end))
	b = appendAttributes(b, d) // 9 attributes
	if d.statusError {
		// Status: 2 message, 3 code (OTLP: 2 error).
		n := sizeString(2, d.statusMsg) + protowire.SizeTag(3) + protowire.SizeVarint(2)
		b = protowire.AppendTag(b, 15, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(n))
		b = appendString(b, 2, d.statusMsg)
		b = protowire.AppendTag(b, 3, protowire.VarintType)
		b = protowire.AppendVarint(b, 2)
	}
	// flags: the W3C trace flags, and whether the parent is remote (bits 8 and 9).
	flags := uint32(d.flags) | 0x100
	if d.remote {
		flags |= 0x200
	}
	b = protowire.AppendTag(b, 16, protowire.Fixed32Type)
	return protowire.AppendFixed32(b, flags)
}

// appendAttributes appends a span's attributes (Span field 9), in the order the
// gateway has always set them; see spanData.
func appendAttributes(b []byte, d *spanData) []byte {
	b = appendStrAttr(b, 9, "http.request.method", d.method)
	if d.kind == trace.SpanKindServer {
		b = appendIntAttr(b, 9, "http.response.status_code", int64(d.status))
		b = appendStrAttr(b, 9, "url.path", d.path)
		b = appendStrAttr(b, 9, "server.address", hostOnly(d.host))
		b = appendStrAttr(b, 9, "gateway.request_id", d.requestID)
		if d.route != "" {
			b = appendStrAttr(b, 9, "http.route", d.route)
		}
		if d.service != "" {
			b = appendStrAttr(b, 9, "gateway.service", d.service)
		}
		if d.instance != "" {
			b = appendStrAttr(b, 9, "gateway.instance", d.instance)
		}
		return b
	}
	host, port := splitHostPort(d.instance)
	b = appendStrAttr(b, 9, "server.address", host)
	b = appendIntAttr(b, 9, "server.port", int64(port))
	b = appendStrAttr(b, 9, "gateway.service", d.service)
	b = appendStrAttr(b, 9, "gateway.instance", d.instance)
	if d.resend > 0 {
		b = appendIntAttr(b, 9, "http.request.resend_count", int64(d.resend))
	}
	switch {
	case d.errType != "":
		b = appendStrAttr(b, 9, "error.type", d.errType)
	case d.hasStatus:
		b = appendIntAttr(b, 9, "http.response.status_code", int64(d.status))
	}
	return b
}

// A KeyValue is 1 key, 2 value (AnyValue: 1 string_value, 3 int_value); a value is
// written even when it is proto3's default, as the SDK's attributes are. The keys are
// the package's constants, all shorter than 128 bytes: their length is one byte. Field
// tags below 16 are one byte: field<<3 | wire type (0 varint, 2 length-delimited).

// sizeStrAttr is the length of a KeyValue with a string value.
func sizeStrAttr(key, val string) int {
	return sizeKeyValue(key, 1+protowire.SizeBytes(len(val)))
}

func sizeKeyValue(key string, valueLen int) int {
	return 2 + len(key) + 1 + protowire.SizeBytes(valueLen)
}

// appendStrAttr appends a KeyValue with a string value as field num.
func appendStrAttr(b []byte, num protowire.Number, key, val string) []byte {
	vlen := 1 + protowire.SizeBytes(len(val))
	b = append(b, byte(num)<<3|2)
	b = appendVarint(b, uint64(sizeKeyValue(key, vlen)))
	b = append(b, 1<<3|2, byte(len(key)))
	b = append(b, key...)
	b = append(b, 2<<3|2)
	b = appendVarint(b, uint64(vlen))
	b = append(b, 1<<3|2)
	b = appendVarint(b, uint64(len(val)))
	return append(b, val...)
}

// appendIntAttr appends a KeyValue with an int value as field num.
func appendIntAttr(b []byte, num protowire.Number, key string, val int64) []byte {
	vlen := 1 + protowire.SizeVarint(uint64(val))
	b = append(b, byte(num)<<3|2)
	b = appendVarint(b, uint64(sizeKeyValue(key, vlen)))
	b = append(b, 1<<3|2, byte(len(key)))
	b = append(b, key...)
	b = append(b, 2<<3|2, byte(vlen), 3<<3|0)
	return appendVarint(b, uint64(val))
}

// appendVarint is protowire.AppendVarint with the one-byte case inlined.
func appendVarint(b []byte, v uint64) []byte {
	if v < 0x80 {
		return append(b, byte(v))
	}
	return protowire.AppendVarint(b, v)
}

// sizeString is the length of string field num as appendString writes it.
func sizeString(num protowire.Number, s string) int {
	if s == "" {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeBytes(len(s))
}

// appendString appends a string field, nothing for "" (proto3's default).
func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func unixNano(n int64) uint64 {
	if n < 0 {
		return 0
	}
	return uint64(n)
}
