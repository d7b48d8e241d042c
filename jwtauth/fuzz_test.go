package jwtauth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"golang.org/x/net/http/httpguts"
)

// tokenErrors are the errors every Verify failure wraps one of.
var tokenErrors = []error{
	ErrMissingToken, ErrTooLarge, ErrMalformed, ErrAlgorithm, ErrBadSignature, ErrUnknownKey,
	ErrNoKeys, ErrExpired, ErrNotYetValid, ErrMissingClaim, ErrIssuer, ErrAudience,
}

var fuzzSecret = []byte("fuzz-secret-fuzz-secret-fuzz-secret!")

func fuzzVerifier(t testing.TB) *Verifier {
	t.Helper()
	v, err := New(Provider{
		Name: "fuzz", Algorithms: []string{"HS256"}, Secret: fuzzSecret,
		Issuer: "idp", Audience: []string{"api"}, Leeway: time.Second,
		Now: func() time.Time { return t0 }, CacheSize: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// checkVerifyResult holds what any Verify answer must satisfy: a failure wraps exactly
// the documented errors and gives a header-safe challenge; a success has an "exp" in the
// future and answers claim lookups without panicking.
func checkVerifyResult(t *testing.T, token string, c *Claims, err error) {
	t.Helper()
	if err != nil {
		n := 0
		for _, e := range tokenErrors {
			if errors.Is(err, e) {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("Verify(%q) = %v: wraps %d of the token errors, want exactly 1", token, err, n)
		}
		if Reason(err) == "error" {
			t.Fatalf("Verify(%q) = %v: no reason label", token, err)
		}
		if h := ChallengeHeader("api", err); !httpguts.ValidHeaderFieldValue(h) {
			t.Fatalf("Verify(%q): challenge %q is not a valid header value", token, h)
		}
		return
	}
	if c == nil {
		t.Fatalf("Verify(%q): nil claims without an error", token)
	}
	if c.ExpiresAt.IsZero() || !c.ExpiresAt.Add(time.Second).After(t0) {
		t.Fatalf("Verify(%q) accepted exp %v at %v", token, c.ExpiresAt, t0)
	}
	if c.Issuer != "idp" {
		t.Fatalf("Verify(%q) accepted issuer %q", token, c.Issuer)
	}
	for _, name := range []string{"sub", "roles", "a.b", "realm_access.roles", "exp", ""} {
		c.Claim(name)
	}
	c.HasAnyRole([]string{"admin"})
}

// FuzzVerifySigned fuzzes the JOSE header and the claims of correctly signed HS256
// tokens, so parsing and claim checks are reached (a random signature would stop at the
// signature check).
func FuzzVerifySigned(f *testing.F) {
	exp := float64(t0.Add(time.Hour).Unix())
	for _, s := range []struct{ header, claims any }{
		{map[string]any{"alg": "HS256", "typ": "JWT"}, map[string]any{"exp": exp, "iss": "idp", "aud": "api", "sub": "u1", "roles": []any{"admin"}}},
		{map[string]any{"alg": "HS256"}, map[string]any{"exp": exp, "iss": "idp", "aud": []any{"x", "api"}, "roles": "read write"}},
		{map[string]any{"alg": "none"}, map[string]any{"exp": exp, "iss": "idp", "aud": "api"}},
		{map[string]any{"alg": "HS256", "crit": []any{"b64"}}, map[string]any{"exp": exp, "iss": "idp", "aud": "api"}},
		{map[string]any{"alg": "HS256", "kid": "k", "jku": "http://evil"}, map[string]any{"exp": exp, "iss": "idp", "aud": "api"}},
		{map[string]any{"alg": "HS256"}, map[string]any{"exp": "tomorrow", "iss": "idp", "aud": "api"}},
		{map[string]any{"alg": "HS256"}, map[string]any{"exp": 1e300, "nbf": -1e300, "iss": "idp", "aud": "api"}},
		{map[string]any{"alg": "HS256"}, map[string]any{"iss": "idp", "aud": "api"}},
		{map[string]any{"alg": "HS256"}, map[string]any{"exp": exp, "iss": []any{"idp"}, "aud": "api", "realm_access": map[string]any{"roles": []any{"a", 1, nil}}}},
		{map[string]any{"alg": "HS256"}, []any{"not", "an", "object"}},
	} {
		h, _ := json.Marshal(s.header)
		c, _ := json.Marshal(s.claims)
		f.Add(h, c)
	}
	f.Add([]byte(`{"alg":"HS256"`), []byte(`{"exp":1e999}`))
	f.Add([]byte(`{"alg":"HS256","alg":"none"}`), []byte(`{"exp":9999999999,"exp":1,"iss":"idp","aud":"api"}`))
	v := fuzzVerifier(f)
	f.Fuzz(func(t *testing.T, header, claims []byte) {
		input := b64u.EncodeToString(header) + "." + b64u.EncodeToString(claims)
		m := hmac.New(sha256.New, fuzzSecret)
		m.Write([]byte(input))
		token := input + "." + b64u.EncodeToString(m.Sum(nil))
		c, err := v.Verify(context.Background(), token)
		checkVerifyResult(t, token, c, err)
		if err == nil {
			var hdr map[string]any
			if json.Unmarshal(header, &hdr) != nil || hdr["alg"] != "HS256" {
				t.Fatalf("Verify accepted header %q", header)
			}
			if _, crit := hdr["crit"]; crit {
				t.Fatalf("Verify accepted a crit header %q", header)
			}
		}
	})
}

// FuzzVerifyToken fuzzes whole token strings: nothing panics and every answer is one
// of the documented errors.
func FuzzVerifyToken(f *testing.F) {
	for _, s := range []string{
		"", ".", "..", "a.b.c", "a.b.c.d", "eyJhbGciOiJub25lIn0.e30.",
		"eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjF9.AAAA", "eyJhbGciOiJIUzI1NiJ9.!!!.AAAA",
		"Bearer x", "eyJ.eyJ.eyJ", "e30.e30.e30",
	} {
		f.Add(s)
	}
	v := fuzzVerifier(f)
	f.Fuzz(func(t *testing.T, token string) {
		c, err := v.Verify(context.Background(), token)
		if err == nil {
			t.Fatalf("Verify(%q) accepted an unsigned token: %+v", token, c)
		}
		checkVerifyResult(t, token, c, err)
	})
}
