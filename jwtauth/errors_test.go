package jwtauth

import (
	"errors"
	"fmt"
	"testing"
)

func TestChallenge(t *testing.T) {
	cases := []struct {
		err    error
		code   string
		reason string
		header string
	}{
		{ErrMissingToken, "", "missing", `Bearer realm="api"`},
		{ErrInvalidRequest, "invalid_request", "invalid_request", `Bearer realm="api", error="invalid_request", error_description="malformed bearer credentials"`},
		{fmt.Errorf("%w: detail", ErrExpired), "invalid_token", "expired", `Bearer realm="api", error="invalid_token", error_description="the token expired"`},
		{ErrTooLarge, "invalid_token", "too_large", ""},
		{ErrMalformed, "invalid_token", "malformed", ""},
		{ErrAlgorithm, "invalid_token", "algorithm", ""},
		{ErrBadSignature, "invalid_token", "bad_signature", ""},
		{ErrUnknownKey, "invalid_token", "unknown_key", ""},
		{ErrNoKeys, "invalid_token", "no_keys", ""},
		{ErrNotYetValid, "invalid_token", "not_yet_valid", ""},
		{ErrMissingClaim, "invalid_token", "missing_claim", ""},
		{ErrIssuer, "invalid_token", "issuer", ""},
		{ErrAudience, "invalid_token", "audience", ""},
		{ErrInsufficientRole, "insufficient_scope", "forbidden", `Bearer realm="api", error="insufficient_scope", error_description="the token lacks a required role"`},
		{errors.New("something else"), "invalid_token", "error", `Bearer realm="api", error="invalid_token", error_description="the token is invalid"`},
	}
	for _, tc := range cases {
		t.Run(Reason(tc.err), func(t *testing.T) {
			code, desc := Challenge(tc.err)
			if code != tc.code {
				t.Errorf("code %q, want %q", code, tc.code)
			}
			if (code == "") != (desc == "") {
				t.Errorf("description %q with code %q", desc, code)
			}
			for _, c := range []byte(desc) {
				if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
					t.Errorf("description %q has %q, not allowed by RFC 6750", desc, c)
				}
			}
			if r := Reason(tc.err); r != tc.reason {
				t.Errorf("reason %q, want %q", r, tc.reason)
			}
			if tc.header != "" {
				if h := ChallengeHeader("api", tc.err); h != tc.header {
					t.Errorf("header %s\nwant   %s", h, tc.header)
				}
			}
		})
	}
	if Reason(nil) != "ok" {
		t.Error("Reason(nil)")
	}
	if h := ChallengeHeader(`a"b\c`+"\r\n", ErrMissingToken); h != `Bearer realm="a\"b\\c"` {
		t.Errorf("escaped realm: %s", h)
	}
	if h := ChallengeHeader("", ErrExpired); h != `Bearer error="invalid_token", error_description="the token expired"` {
		t.Errorf("no realm: %s", h)
	}
	if h := ChallengeHeader("", ErrMissingToken); h != "Bearer" {
		t.Errorf("bare: %s", h)
	}
}
