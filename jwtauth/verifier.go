// Package jwtauth verifies JSON Web Tokens for the gateway: HMAC (HS256/384/512) with a
// shared secret, RSA (RS*, PS*), ECDSA (ES*) and Ed25519 (EdDSA) with keys from a PEM file
// or a JWKS endpoint. It checks the signature, "exp" (required), "nbf", "iss" and "aud",
// reads roles and other claims, extracts tokens from requests, maps failures to RFC 6750
// challenges, and mints HS256 tokens for development.
//
// The key type always comes from the provider, never from the token: the provider's
// algorithm allowlist is enforced before any key is looked up, a provider is either
// symmetric or asymmetric, the key function hands out only keys of the family of the
// (allowlisted) algorithm, and header parameters that name keys by location ("jku",
// "x5u", "jwk", "x5c") are ignored. "alg": "none" is never accepted.
//
// The package never imports the gateway; the gateway adapts a *Verifier to its own
// authenticator interface.
package jwtauth

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/golang-jwt/jwt/v5"
)

// Verifier verifies tokens of one provider. It is safe for concurrent use. A Verifier with
// a JWKS URL may run a background refresher (Start/Stop); without one it refreshes lazily.
type Verifier struct {
	p      Provider
	parser *jwt.Parser
	static map[string]any // alg -> key or jwt.VerificationKeySet (Secret, PublicKeyFile)
	jwks   *jwks          // JWKSURL
	cache  *tokenCache    // nil: no cache
}

// New validates p, applies its defaults, reads PublicKeyFile, and returns a Verifier. It
// does no network I/O: a JWKS is fetched on first use, by Refresh, or by Start. Errors wrap
// ErrConfig (and ErrWeakSecret for a short secret).
func New(p Provider) (*Verifier, error) {
	p, err := p.withDefaults()
	if err != nil {
		return nil, err
	}
	v := &Verifier{p: p}
	switch {
	case len(p.Secret) > 0:
		v.static = make(map[string]any, len(p.Algorithms))
		for _, alg := range p.Algorithms {
			v.static[alg] = p.Secret
		}
	case p.PublicKeyFile != "":
		keys, err := loadKeyFile(&v.p)
		if err != nil {
			return nil, err
		}
		v.static = make(map[string]any, len(v.p.Algorithms))
		for _, alg := range v.p.Algorithms {
			v.static[alg] = keysFor(keys, "", alg)
		}
	default:
		v.jwks = newJWKS(&v.p)
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(v.p.Algorithms),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(v.p.Leeway),
		jwt.WithTimeFunc(v.p.Now),
		jwt.WithStrictDecoding(),
	}
	if v.p.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(v.p.Issuer))
	}
	if len(v.p.Audience) > 0 {
		opts = append(opts, jwt.WithAudience(v.p.Audience...))
	}
	v.parser = jwt.NewParser(opts...)
	size := v.p.CacheSize
	if size == 0 {
		size = DefaultCacheSize
	}
	v.cache = newTokenCache(size)
	if v.p.CacheTTL <= 0 {
		v.p.CacheTTL = DefaultCacheTTL
	}
	return v, nil
}

// Name is the provider's name.
func (v *Verifier) Name() string { return v.p.Name }

// Algorithms is the provider's effective allowlist (defaults applied). The caller must not
// modify it.
func (v *Verifier) Algorithms() []string { return v.p.Algorithms }

// Verify checks token and returns its claims. The error wraps one of ErrMissingToken,
// ErrTooLarge, ErrMalformed, ErrAlgorithm, ErrBadSignature, ErrUnknownKey, ErrNoKeys,
// ErrExpired, ErrNotYetValid, ErrMissingClaim, ErrIssuer or ErrAudience. ctx bounds the
// wait for a JWKS fetch another request started; a fetch itself runs to FetchTimeout so
// one impatient client cannot fail it for everyone.
func (v *Verifier) Verify(ctx context.Context, token string) (*Claims, error) {
	if token == "" {
		return nil, ErrMissingToken
	}
	if len(token) > MaxTokenSize {
		return nil, fmt.Errorf("%w: %d bytes (limit %d)", ErrTooLarge, len(token), MaxTokenSize)
	}
	now := v.p.Now()
	if c, ok := v.cache.get(token, now); ok {
		return c, nil
	}
	mc := jwt.MapClaims{}
	tok, err := v.parser.ParseWithClaims(token, mc, func(t *jwt.Token) (any, error) {
		return v.key(ctx, t)
	})
	if err != nil {
		return nil, v.classify(tok, mc, err)
	}
	c := newClaims(mc, v.p.RolesClaim)
	until := now.Add(v.p.CacheTTL)
	if exp := c.ExpiresAt.Add(v.p.Leeway); exp.Before(until) {
		until = exp
	}
	v.cache.put(token, c, until)
	return c, nil
}

// key is the jwt.Keyfunc. The parser has already checked the alg against the allowlist,
// so t.Method is one of ours and the key handed out is of that algorithm's family only.
func (v *Verifier) key(ctx context.Context, t *jwt.Token) (any, error) {
	if _, ok := t.Header["crit"]; ok {
		// RFC 7515 §4.1.11: we understand no extensions, so a critical one is fatal.
		return nil, fmt.Errorf("%w: unsupported \"crit\" header", ErrMalformed)
	}
	alg := t.Method.Alg()
	if v.jwks == nil {
		if k, ok := v.static[alg]; ok {
			return k, nil
		}
		return nil, fmt.Errorf("%w: no key for %s", ErrUnknownKey, alg)
	}
	kid := ""
	if raw, ok := t.Header["kid"]; ok {
		s, ok := raw.(string)
		if !ok {
			return nil, fmt.Errorf("%w: \"kid\" is not a string", ErrMalformed)
		}
		kid = s
	}
	return v.jwks.key(ctx, kid, alg)
}

// classify turns a golang-jwt error into exactly one of the package's sentinels.
func (v *Verifier) classify(tok *jwt.Token, mc jwt.MapClaims, err error) error {
	wrap := func(sentinel error) error { return fmt.Errorf("%w: %w", sentinel, err) }
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return wrap(ErrMalformed)
	case tok == nil || tok.Method == nil || !slices.Contains(v.p.Algorithms, tok.Method.Alg()):
		return wrap(ErrAlgorithm)
	case errors.Is(err, ErrMalformed), errors.Is(err, ErrUnknownKey), errors.Is(err, ErrNoKeys):
		return err // from key(), already ours
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return wrap(ErrBadSignature)
	case !errors.Is(err, jwt.ErrTokenInvalidClaims):
		return wrap(ErrMalformed)
	case errors.Is(err, jwt.ErrInvalidType):
		return wrap(ErrMalformed) // e.g. "exp": "tomorrow"
	}
	if exp, _ := mc.GetExpirationTime(); exp == nil {
		return wrap(ErrMissingClaim)
	}
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return wrap(ErrExpired)
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return wrap(ErrNotYetValid)
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return wrap(ErrIssuer)
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return wrap(ErrAudience)
	}
	// What is left is a required claim that is absent: iss or aud (exp was handled above).
	if iss, _ := mc.GetIssuer(); v.p.Issuer != "" && iss == "" {
		return wrap(ErrIssuer)
	}
	if len(v.p.Audience) > 0 {
		return wrap(ErrAudience)
	}
	return wrap(ErrMalformed)
}

// keysFor returns what the jwt.Keyfunc hands out for alg: the single fitting key, or a
// jwt.VerificationKeySet when several fit, or nil when none does. With kid set, only keys
// with that kid count.
func keysFor(keys []publicKey, kid, alg string) any {
	fam := algFamily(alg)
	var found []jwt.VerificationKey
	for i := range keys {
		k := &keys[i]
		if k.fits(alg, fam) && (kid == "" || k.kid == kid) {
			found = append(found, k.key)
		}
	}
	switch len(found) {
	case 0:
		return nil
	case 1:
		return found[0]
	}
	return jwt.VerificationKeySet{Keys: found}
}

// Refresh fetches the provider's JWKS now, ignoring the refetch rate limit, and keeps the
// last good set on failure. It does nothing for a provider without JWKSURL. Call it at
// start-up to warm the cache; a failure is not fatal (tokens are refused with ErrNoKeys
// until a fetch succeeds).
func (v *Verifier) Refresh(ctx context.Context) error {
	if v.jwks == nil {
		return nil
	}
	return v.jwks.refreshNow(ctx)
}

// Start runs a goroutine that refreshes the JWKS every RefreshInterval (retrying failures
// after MinRefetchInterval, doubling up to RefreshInterval), so no request pays for a
// periodic refresh. It fetches at once if nothing is cached. It returns immediately; the
// goroutine exits when ctx is done or Stop is called. Calling Start on a running Verifier
// or a provider without JWKSURL does nothing. Without Start, a request that finds the set
// older than RefreshInterval refreshes it (other requests keep using the cached set).
func (v *Verifier) Start(ctx context.Context) {
	if v.jwks != nil {
		v.jwks.start(ctx)
	}
}

// Stop ends the goroutine Start began and waits for it. It is idempotent and safe to call
// without Start; Start may be called again afterwards.
func (v *Verifier) Stop() {
	if v.jwks != nil {
		v.jwks.stop()
	}
}
