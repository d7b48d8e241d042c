package gateway

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"syscall"

	"github.com/infinityxone/gateway/jwtauth"
	"github.com/infinityxone/gateway/ratelimit"
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
	// ErrHeadersTooLarge means the request headers exceeded max_header_bytes.
	ErrHeadersTooLarge = errors.New("request headers too large")
	// ErrBreakersOpen means every instance of the service has its circuit breaker open.
	ErrBreakersOpen = errors.New("every instance's circuit breaker is open")
)

// errInternal: a stage panicked; the client gets a 500.
var errInternal = errors.New("internal error")

// unauthorizedError wraps why a token was refused (a jwtauth sentinel): 401, or 403 for
// jwtauth.ErrInsufficientRole.
type unauthorizedError struct{ err error }

func (e unauthorizedError) Error() string { return e.err.Error() }
func (e unauthorizedError) Unwrap() error { return e.err }

// unauthorized wraps a token verification failure for statusFor.
func unauthorized(err error) error { return unauthorizedError{err} }

// errBadStatus: the upstream answered with a status outside 100–599.
var errBadStatus = errors.New("upstream sent an invalid status code")

// errBadUpgrade: the upstream switched to a protocol the client did not ask for (502).
var errBadUpgrade = errors.New("upstream switched to another protocol")

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

// Codes as docs/architecture.md (Statuses) names them.
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
	// Access-log codes of exchanges cut short after the status was sent.
	codeUpstreamIdle       = "upstream_idle"         // upstream silent past idle_timeout
	codeClientGone         = "client_closed_request" // 499, like nginx
	codeClientWriteTimeout = "client_write_timeout"  // a write to the client took too long
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
	case errors.Is(err, ErrHeadersTooLarge):
		return apiError{http.StatusRequestHeaderFieldsTooLarge, codeHeadersTooLarge, "request headers too large"}
	case errors.Is(err, jwtauth.ErrInsufficientRole):
		return apiError{http.StatusForbidden, codeForbidden, "the token lacks a required role"}
	case errors.As(err, &unauthorizedError{}):
		_, desc := jwtauth.Challenge(err)
		if desc == "" {
			desc = "a bearer token is required"
		}
		return apiError{http.StatusUnauthorized, codeUnauthorized, desc}
	case errors.Is(err, ratelimit.ErrLimited):
		return apiError{http.StatusTooManyRequests, codeRateLimited, "rate limit exceeded"}
	case errors.Is(err, ratelimit.ErrStoreUnavailable):
		return apiError{http.StatusServiceUnavailable, codeUnavailable, "rate-limit store unavailable"}
	case errors.Is(err, ErrBreakersOpen):
		return apiError{http.StatusServiceUnavailable, codeUnavailable, "every instance's circuit breaker is open"}
	case errors.Is(err, errInternal):
		return apiError{http.StatusInternalServerError, codeInternal, "internal error"}
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

// isTimeout reports whether err is a network timeout (a deadline that passed).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
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

// writeError writes the JSON error body of docs/architecture.md (Statuses):
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
