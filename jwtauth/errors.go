package jwtauth

import (
	"errors"
	"strings"
)

// Sentinel errors returned (wrapped, match with errors.Is) by Verify, FromRequest, New and
// Mint. Every Verify failure wraps exactly one of the token errors below; Challenge and
// Reason turn it into the RFC 6750 challenge and a metrics label.
var (
	// ErrMissingToken: the request carried no token at all.
	ErrMissingToken = errors.New("jwtauth: no bearer token")
	// ErrInvalidRequest: the credentials were present but unusable as a bearer token
	// (an empty "Bearer" header, a token with spaces in it).
	ErrInvalidRequest = errors.New("jwtauth: malformed bearer credentials")
	// ErrTooLarge: the token is longer than MaxTokenSize; it was not parsed.
	ErrTooLarge = errors.New("jwtauth: token too large")
	// ErrMalformed: not a compact JWS (segment count, base64url, JSON, claim types,
	// unsupported "crit" header).
	ErrMalformed = errors.New("jwtauth: malformed token")
	// ErrAlgorithm: the token's "alg" is not in the provider's allowlist ("none" never is).
	ErrAlgorithm = errors.New("jwtauth: token algorithm not allowed")
	// ErrBadSignature: the signature does not verify with the provider's keys.
	ErrBadSignature = errors.New("jwtauth: invalid token signature")
	// ErrUnknownKey: no key of the provider's type matches the token (its "kid" is unknown,
	// even after a JWKS refetch).
	ErrUnknownKey = errors.New("jwtauth: unknown signing key")
	// ErrNoKeys: the provider has no keys at all (JWKS endpoint down and nothing cached).
	ErrNoKeys = errors.New("jwtauth: no signing keys available")
	// ErrExpired: "exp" (plus leeway) is in the past.
	ErrExpired = errors.New("jwtauth: token expired")
	// ErrNotYetValid: "nbf" (minus leeway) is in the future.
	ErrNotYetValid = errors.New("jwtauth: token not valid yet")
	// ErrMissingClaim: a claim the verifier always requires ("exp") is absent.
	ErrMissingClaim = errors.New("jwtauth: token lacks a required claim")
	// ErrIssuer: "iss" is missing or differs from the provider's Issuer.
	ErrIssuer = errors.New("jwtauth: wrong token issuer")
	// ErrAudience: "aud" is missing or names none of the provider's Audience.
	ErrAudience = errors.New("jwtauth: wrong token audience")
	// ErrInsufficientRole: a valid token without any of a route's roles (403). Verify never
	// returns it; the gateway uses it so Challenge can answer "insufficient_scope".
	ErrInsufficientRole = errors.New("jwtauth: token lacks a required role")

	// ErrConfig: New refused the provider configuration.
	ErrConfig = errors.New("jwtauth: invalid provider configuration")
	// ErrWeakSecret: an HMAC secret shorter than MinSecretLen (New and Mint).
	ErrWeakSecret = errors.New("jwtauth: secret shorter than 32 bytes")
)

// RFC 6750 §3.1 error codes.
const (
	CodeInvalidRequest    = "invalid_request"
	CodeInvalidToken      = "invalid_token"
	CodeInsufficientScope = "insufficient_scope"
)

// challenge is what an error means to a client: RFC 6750 code, fixed description (safe inside a
// quoted-string: never derived from the token) and metrics label.
type challenge struct {
	code   string
	desc   string
	reason string
}

func lookup(err error) (challenge, bool) {
	switch {
	case errors.Is(err, ErrMissingToken):
		return challenge{"", "", "missing"}, true
	case errors.Is(err, ErrInvalidRequest):
		return challenge{CodeInvalidRequest, "malformed bearer credentials", "invalid_request"}, true
	case errors.Is(err, ErrTooLarge):
		return challenge{CodeInvalidToken, "the token is too large", "too_large"}, true
	case errors.Is(err, ErrMalformed):
		return challenge{CodeInvalidToken, "the token is malformed", "malformed"}, true
	case errors.Is(err, ErrAlgorithm):
		return challenge{CodeInvalidToken, "the token algorithm is not accepted", "algorithm"}, true
	case errors.Is(err, ErrBadSignature):
		return challenge{CodeInvalidToken, "the token signature is invalid", "bad_signature"}, true
	case errors.Is(err, ErrUnknownKey):
		return challenge{CodeInvalidToken, "the token signing key is unknown", "unknown_key"}, true
	case errors.Is(err, ErrNoKeys):
		return challenge{CodeInvalidToken, "no signing keys are available to verify the token", "no_keys"}, true
	case errors.Is(err, ErrExpired):
		return challenge{CodeInvalidToken, "the token expired", "expired"}, true
	case errors.Is(err, ErrNotYetValid):
		return challenge{CodeInvalidToken, "the token is not valid yet", "not_yet_valid"}, true
	case errors.Is(err, ErrMissingClaim):
		return challenge{CodeInvalidToken, "the token lacks a required claim", "missing_claim"}, true
	case errors.Is(err, ErrIssuer):
		return challenge{CodeInvalidToken, "the token issuer is not accepted", "issuer"}, true
	case errors.Is(err, ErrAudience):
		return challenge{CodeInvalidToken, "the token audience is not accepted", "audience"}, true
	case errors.Is(err, ErrInsufficientRole):
		return challenge{CodeInsufficientScope, "the token lacks a required role", "forbidden"}, true
	}
	return challenge{}, false
}

// Challenge maps an error from this package to the RFC 6750 `error` code and a fixed,
// header-safe `error_description`. ErrMissingToken yields ("", ""): RFC 6750 §3.1 says a
// request without credentials gets a challenge without an error code. An error from outside
// this package yields invalid_token with a generic description.
func Challenge(err error) (code, description string) {
	if c, ok := lookup(err); ok {
		return c.code, c.desc
	}
	return CodeInvalidToken, "the token is invalid"
}

// ChallengeHeader is the WWW-Authenticate value for err:
//
//	Bearer realm="api", error="invalid_token", error_description="the token expired"
//
// Quotes and backslashes in realm are escaped; control characters are dropped. An empty
// realm is left out.
func ChallengeHeader(realm string, err error) string {
	code, desc := Challenge(err)
	var b strings.Builder
	b.WriteString("Bearer")
	sep := " "
	if realm != "" {
		b.WriteString(` realm="`)
		for i := 0; i < len(realm); i++ {
			c := realm[i]
			switch {
			case c == '"' || c == '\\':
				b.WriteByte('\\')
				b.WriteByte(c)
			case c < 0x20 || c == 0x7f:
			default:
				b.WriteByte(c)
			}
		}
		b.WriteByte('"')
		sep = ", "
	}
	if code != "" {
		b.WriteString(sep + `error="` + code + `", error_description="` + desc + `"`)
	}
	return b.String()
}

// Reason is a short, stable label for err, for metrics and logs: "ok" for nil, then
// missing, invalid_request, too_large, malformed, algorithm, bad_signature, unknown_key,
// no_keys, expired, not_yet_valid, missing_claim, issuer, audience, forbidden, or "error"
// for anything else.
func Reason(err error) string {
	if err == nil {
		return "ok"
	}
	if c, ok := lookup(err); ok {
		return c.reason
	}
	return "error"
}
