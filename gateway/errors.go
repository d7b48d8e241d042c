package gateway

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"syscall"
)

// Sentinel errors of the proxy core. Later stages add their own; every error that reaches
// a client goes through statusFor, the one place that maps errors to statuses.
var (
	// ErrNoInstance means the service has no instance that may be tried now.
	ErrNoInstance = errors.New("no healthy instance")
	// ErrBadPath means the request path is malformed or climbs above "/".
	ErrBadPath = errors.New("malformed request path")
	// ErrNotFound means no route matches.
	ErrNotFound = errors.New("no route")
	// ErrMethodNotAllowed means a route matches the path but not the method.
	ErrMethodNotAllowed = errors.New("method not allowed")
	// ErrBodyTooLarge means the body exceeded max_body_bytes.
	ErrBodyTooLarge = errors.New("request body too large")
	// ErrUpstreamTimeout means the upstream exceeded the route's timeout.
	ErrUpstreamTimeout = errors.New("upstream timeout")
)

// errBadStatus: the upstream answered with a status outside 100–599.
var errBadStatus = errors.New("upstream sent an invalid status code")

// clientRequestError wraps a failure to read the client's request body (malformed
// chunking, too large, cut off): the client's fault, answered 400 or 413, never charged to
// the instance and never retried.
type clientRequestError struct{ err error }

func (e clientRequestError) Error() string { return "reading the request body: " + e.err.Error() }
func (e clientRequestError) Unwrap() error { return e.err }

// apiError is a status, a machine-readable code and a message for the JSON error body.
type apiError struct {
	status  int
	code    string
	message string
}

// Codes as DESIGN.md names them.
const (
	codeBadRequest       = "bad_request"
	codeUnauthorized     = "unauthorized"
	codeForbidden        = "forbidden"
	codeNotFound         = "not_found"
	codeMethodNotAllowed = "method_not_allowed"
	codeTooLarge         = "payload_too_large"
	codeRateLimited      = "rate_limited"
	codeHeadersTooLarge  = "headers_too_large"
	codeBadGateway       = "bad_gateway"
	codeUnavailable      = "service_unavailable"
	codeTimeout          = "gateway_timeout"
	codeInternal         = "internal_error"
	codeUpstreamAborted  = "upstream_aborted"
)

// statusFor maps an error from any stage to what the client is told.
func statusFor(err error) apiError {
	var maxBytes *http.MaxBytesError
	switch {
	case errors.Is(err, ErrBadPath):
		return apiError{http.StatusBadRequest, codeBadRequest, "malformed request path"}
	case errors.Is(err, ErrNotFound):
		return apiError{http.StatusNotFound, codeNotFound, "no route for this request"}
	case errors.Is(err, ErrMethodNotAllowed):
		return apiError{http.StatusMethodNotAllowed, codeMethodNotAllowed, "method not allowed on this route"}
	case errors.Is(err, ErrBodyTooLarge), errors.As(err, &maxBytes):
		return apiError{http.StatusRequestEntityTooLarge, codeTooLarge, "request body too large"}
	case errors.As(err, &clientRequestError{}):
		return apiError{http.StatusBadRequest, codeBadRequest, "the request body could not be read"}
	case meshDenied(err):
		return apiError{http.StatusBadGateway, codeMeshDenied, "the upstream's service mesh refused the gateway (a Consul intention denies it)"}
	case errors.Is(err, ErrNoInstance):
		return apiError{http.StatusServiceUnavailable, codeUnavailable, "no healthy upstream instance"}
	case errors.Is(err, ErrUpstreamTimeout), errors.Is(err, context.DeadlineExceeded):
		return apiError{http.StatusGatewayTimeout, codeTimeout, "upstream timed out"}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return apiError{http.StatusGatewayTimeout, codeTimeout, "upstream timed out"}
	}
	return apiError{http.StatusBadGateway, codeBadGateway, "upstream failed"}
}

// dialFailed reports whether err happened before anything was sent upstream:
// the connection could not be made, so any request may be tried again.
func dialFailed(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// writeError writes the JSON error body DESIGN.md specifies:
// {"error":{"code":"…","message":"…","request_id":"…"}}.
func writeError(w http.ResponseWriter, e apiError, requestID string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Del("Content-Length")
	b := make([]byte, 0, 128)
	b = append(b, `{"error":{"code":`...)
	b = strconv.AppendQuote(b, e.code)
	b = append(b, `,"message":`...)
	b = strconv.AppendQuote(b, e.message)
	b = append(b, `,"request_id":`...)
	b = strconv.AppendQuote(b, requestID)
	b = append(b, "}}\n"...)
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(e.status)
	_, _ = w.Write(b)
}
