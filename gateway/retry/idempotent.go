package retry

import "net/http"

// Idempotent reports whether a request may be sent twice: GET, HEAD, OPTIONS, TRACE, PUT
// and DELETE always (RFC 9110 §9.2.2); POST and PATCH only when allowIdempotencyKey is
// set and the request carries a non-empty Idempotency-Key header (IETF
// draft-ietf-httpapi-idempotency-key-header), or X-Idempotency-Key, which Go's own
// Transport also honours. Every other method (CONNECT, custom ones) never. Methods are
// case-sensitive, as HTTP says. header's keys must be canonical, as net/http's server
// makes them; it may be nil. Idempotent does not allocate.
//
// This is about sending a request again after it may have reached the upstream. A
// request that provably reached nothing (connection refused) may be retried whatever
// its method; that is the caller's decision.
func Idempotent(method string, header http.Header, allowIdempotencyKey bool) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	case http.MethodPost, http.MethodPatch:
		return allowIdempotencyKey && (hasValue(header, "Idempotency-Key") || hasValue(header, "X-Idempotency-Key"))
	}
	return false
}

func hasValue(h http.Header, key string) bool {
	v := h[key]
	return len(v) > 0 && v[0] != ""
}
