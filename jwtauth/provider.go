package jwtauth

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Limits and defaults.
const (
	// MaxTokenSize is the longest token Verify parses (8 KiB); longer ones are ErrTooLarge.
	MaxTokenSize = 8 << 10
	// MinSecretLen is the shortest HMAC secret New and Mint accept, in bytes.
	MinSecretLen = 32
	// DefaultRolesClaim is Provider.RolesClaim when it is empty.
	DefaultRolesClaim = "roles"
	// DefaultRefreshInterval is Provider.RefreshInterval when it is zero.
	DefaultRefreshInterval = 5 * time.Minute
	// DefaultMinRefetchInterval is Provider.MinRefetchInterval when it is zero.
	DefaultMinRefetchInterval = 10 * time.Second
	// DefaultFetchTimeout is Provider.FetchTimeout when it is zero.
	DefaultFetchTimeout = 10 * time.Second
	// DefaultCacheSize is Provider.CacheSize when it is zero.
	DefaultCacheSize = 10000
	// DefaultCacheTTL is Provider.CacheTTL when it is zero.
	DefaultCacheTTL = 30 * time.Second
	// maxJWKSBytes caps a JWKS document.
	maxJWKSBytes = 1 << 20
)

// Provider configures one token issuer (a `jwt "name"` block). Exactly one key source is
// set: Secret (HS*), PublicKeyFile or JWKSURL (RS*, PS*, ES*, EdDSA). A provider is either
// symmetric or asymmetric, never both, so a token can never choose its key type: an HS256
// token is refused by an RS256 provider whatever it was signed with.
type Provider struct {
	// Name identifies the provider in errors and logs.
	Name string

	// Algorithms is the allowlist of "alg" values: HS256 HS384 HS512 RS256 RS384 RS512
	// PS256 PS384 PS512 ES256 ES384 ES512 EdDSA. "none" is refused. Empty means: HS256 with
	// Secret; the algorithm(s) the keys of PublicKeyFile imply (RSA: RS256, P-256: ES256,
	// P-384: ES384, P-521: ES512, Ed25519: EdDSA); RS256 with JWKSURL.
	Algorithms []string

	// Secret is the HMAC key for HS* (at least MinSecretLen bytes).
	Secret []byte

	// PublicKeyFile is a PEM file with one or more "PUBLIC KEY" (PKIX: RSA, ECDSA,
	// Ed25519), "RSA PUBLIC KEY" (PKCS#1) or "CERTIFICATE" blocks. Every key whose type
	// fits the token's alg is tried; the token's "kid" is not consulted. Private keys are
	// refused; RSA keys must have at least 2048 bits. The file is read once, by New.
	PublicKeyFile string

	// JWKSURL is an http:// or https:// JWK Set. Keys are fetched on first use (or by
	// Refresh/Start), refreshed every RefreshInterval, refetched when a token names an
	// unknown "kid" (at most once per MinRefetchInterval), and the last good set is kept
	// while the endpoint fails. One fetch runs at a time and every request that needs
	// it waits for it and gets its result or its error (at most FetchTimeout); while
	// the endpoint is known to fail (the last fetch failed), requests that find no
	// usable key are refused at once instead of waiting for the retry. A token without
	// "kid" is tried against at most two keys of its algorithm; a JWKS with more refuses
	// it (ErrUnknownKey).
	JWKSURL string

	// Issuer, when set, must equal the token's "iss".
	Issuer string
	// Audience, when not empty, must share at least one value with the token's "aud".
	Audience []string
	// Leeway is the clock skew allowed on "exp" and "nbf" (default 0).
	Leeway time.Duration

	// RolesClaim names the claim Claims.Roles reads (default "roles"): an array of strings,
	// a space-separated string (OAuth "scope"), or a dotted path into nested objects
	// ("realm_access.roles"). A claim whose own name contains dots wins over the path.
	RolesClaim string

	// HTTPClient fetches the JWKS (default: a client with FetchTimeout as its timeout).
	HTTPClient *http.Client
	// RefreshInterval is the age at which a JWKS is refreshed (default 5m).
	RefreshInterval time.Duration
	// MinRefetchInterval is the least time between the end of one JWKS fetch and the
	// start of a fetch triggered by tokens (unknown kid, nothing cached, a failed
	// refresh) (default 10s).
	MinRefetchInterval time.Duration
	// FetchTimeout bounds one JWKS fetch (default 10s).
	FetchTimeout time.Duration

	// CacheSize is how many verified tokens are remembered, so a client that sends the
	// same token again is not verified again (default 10,000; negative: no cache). A
	// cached token is still refused once it expires.
	CacheSize int
	// CacheTTL is the longest a verified token is trusted without being verified again
	// (default 30s), which bounds how long a key removed from a JWKS keeps working.
	CacheTTL time.Duration

	// Now is the clock (default time.Now). Tests move it instead of sleeping.
	Now func() time.Time
	// Logger receives JWKS fetch failures (default: a null logger).
	Logger hclog.Logger
}

// family is the key type an algorithm needs.
type family uint8

const (
	famHMAC family = iota + 1
	famRSA
	famEC256
	famEC384
	famEC521
	famEd25519
)

// algFamily returns the key family of a supported algorithm, or 0.
func algFamily(alg string) family {
	switch alg {
	case "HS256", "HS384", "HS512":
		return famHMAC
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		return famRSA
	case "ES256":
		return famEC256
	case "ES384":
		return famEC384
	case "ES512":
		return famEC521
	case "EdDSA":
		return famEd25519
	}
	return 0
}

// withDefaults validates p and fills the defaults that do not depend on keys.
func (p Provider) withDefaults() (Provider, error) {
	bad := func(format string, args ...any) (Provider, error) {
		return p, fmt.Errorf("%w: provider %q: %s", ErrConfig, p.Name, fmt.Sprintf(format, args...))
	}
	sources := 0
	for _, set := range []bool{len(p.Secret) > 0, p.PublicKeyFile != "", p.JWKSURL != ""} {
		if set {
			sources++
		}
	}
	if sources != 1 {
		return bad("exactly one of secret, public_key_file and jwks_url must be set")
	}
	for _, alg := range p.Algorithms {
		if algFamily(alg) == 0 {
			return bad("unsupported algorithm %q", alg)
		}
		if (algFamily(alg) == famHMAC) != (len(p.Secret) > 0) {
			if len(p.Secret) > 0 {
				return bad("algorithm %s needs a public key, not a secret", alg)
			}
			return bad("algorithm %s needs a secret", alg)
		}
	}
	p.Algorithms = slices.Clone(p.Algorithms)
	if len(p.Secret) > 0 {
		if len(p.Secret) < MinSecretLen {
			return p, fmt.Errorf("%w: provider %q: %w", ErrConfig, p.Name, ErrWeakSecret)
		}
		p.Secret = slices.Clone(p.Secret)
		if len(p.Algorithms) == 0 {
			p.Algorithms = []string{"HS256"}
		}
	}
	if p.JWKSURL != "" {
		u, err := url.Parse(p.JWKSURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return bad("jwks_url %q is not an http:// or https:// URL", p.JWKSURL)
		}
		if len(p.Algorithms) == 0 {
			p.Algorithms = []string{"RS256"}
		}
	}
	if p.Leeway < 0 {
		return bad("negative leeway")
	}
	if p.RefreshInterval < 0 || p.MinRefetchInterval < 0 || p.FetchTimeout < 0 {
		return bad("negative JWKS interval")
	}
	p.Audience = slices.Clone(p.Audience)
	if p.RolesClaim == "" {
		p.RolesClaim = DefaultRolesClaim
	}
	if p.RefreshInterval == 0 {
		p.RefreshInterval = DefaultRefreshInterval
	}
	if p.MinRefetchInterval == 0 {
		p.MinRefetchInterval = DefaultMinRefetchInterval
	}
	if p.FetchTimeout == 0 {
		p.FetchTimeout = DefaultFetchTimeout
	}
	if p.HTTPClient == nil {
		p.HTTPClient = &http.Client{Timeout: p.FetchTimeout}
	}
	if p.Now == nil {
		p.Now = time.Now
	}
	if p.Logger == nil {
		p.Logger = hclog.NewNullLogger()
	}
	return p, nil
}
