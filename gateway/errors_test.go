package gateway

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/infinityxone/gateway/jwtauth"
	"github.com/infinityxone/gateway/ratelimit"
)

// Every error a stage can answer with goes through statusFor, the one mapping to the
// statuses and codes of docs/architecture.md.
func TestStatusFor(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		code   string
	}{
		{ErrBadPath, 400, codeBadRequest},
		{ErrNotFound, 404, codeNotFound},
		{ErrMethodNotAllowed, 405, codeMethodNotAllowed},
		{ErrBodyTooLarge, 413, codeTooLarge},
		{&http.MaxBytesError{Limit: 1}, 413, codeTooLarge},
		{clientRequestError{fmt.Errorf("bad chunk")}, 400, codeBadRequest},
		{ErrHeadersTooLarge, 431, codeHeadersTooLarge},
		{unauthorized(jwtauth.ErrExpired), 401, codeUnauthorized},
		{unauthorized(jwtauth.ErrMissingToken), 401, codeUnauthorized},
		{unauthorized(jwtauth.ErrInsufficientRole), 403, codeForbidden},
		{fmt.Errorf("policy p: %w", ratelimit.ErrLimited), 429, codeRateLimited},
		{fmt.Errorf("policy p: %w", ratelimit.ErrStoreUnavailable), 503, codeUnavailable},
		{ErrNoInstance, 503, codeUnavailable},
		{ErrBreakersOpen, 503, codeUnavailable},
		{ErrUpstreamTimeout, 504, codeTimeout},
		{context.DeadlineExceeded, 504, codeTimeout},
		{errBadStatus, 502, codeBadGateway},
		{errInternal, 500, codeInternal},
	} {
		t.Run(tc.err.Error(), func(t *testing.T) {
			e := statusFor(tc.err)
			if e.status != tc.status || e.code != tc.code || e.message == "" {
				t.Fatalf("statusFor(%v) = %d %s %q, want %d %s", tc.err, e.status, e.code, e.message, tc.status, tc.code)
			}
		})
	}
	if got := statusFor(unauthorized(jwtauth.ErrExpired)).message; got == statusFor(unauthorized(jwtauth.ErrMissingToken)).message {
		t.Errorf("a 401 message does not say what was wrong with the token: %q", got)
	}
}
