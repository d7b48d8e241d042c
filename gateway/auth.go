package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/infinityxone/gateway/gateway/config"
	"github.com/infinityxone/gateway/jwtauth"
)

// Authenticator verifies a bearer token. *jwtauth.Verifier is the production one; the
// seam is here so the pipeline does not depend on how tokens are checked.
type Authenticator interface {
	Verify(ctx context.Context, token string) (*jwtauth.Claims, error)
}

// authProvider is a compiled `jwt` block.
type authProvider struct {
	name     string
	auth     Authenticator
	stop     func()
	cookie   string
	query    string
	forward  [][2]string // claim, header
	keepAuth bool
	results  map[string]prometheus.Counter
	vec      *prometheus.CounterVec
}

// newVerifier is a jwt block's verifier; it reads public_key_file but does no network I/O.
func newVerifier(c config.JWT, log hclog.Logger) (*jwtauth.Verifier, error) {
	v, err := jwtauth.New(jwtauth.Provider{
		Name:          c.Name,
		Algorithms:    c.Algorithms,
		Secret:        []byte(c.Secret),
		PublicKeyFile: c.PublicKeyFile,
		JWKSURL:       c.JWKSURL,
		Issuer:        c.Issuer,
		Audience:      c.Audience,
		Leeway:        c.Leeway,
		RolesClaim:    c.RolesClaim,
		Logger:        log.Named("jwt").With("provider", c.Name),
	})
	if err != nil {
		return nil, fmt.Errorf("%s: jwt %q: %w", c.Pos, c.Name, err)
	}
	return v, nil
}

func newAuthProvider(c config.JWT, log hclog.Logger, m *Metrics) (*authProvider, error) {
	v, err := newVerifier(c, log)
	if err != nil {
		return nil, err
	}
	p := &authProvider{
		name: c.Name, auth: v, stop: v.Stop, cookie: c.TokenCookie, query: c.TokenQuery,
		keepAuth: c.ForwardAuthorization, vec: m.jwtValidations, results: map[string]prometheus.Counter{},
	}
	if c.JWKSURL != "" {
		v.Start(context.Background()) // refresh off the request path; stopped in closeLogs
	}
	for claim, header := range c.ForwardClaims {
		p.forward = append(p.forward, [2]string{claim, http.CanonicalHeaderKey(header)})
	}
	return p, nil
}

// count records one validation by result; results are a small fixed set.
func (p *authProvider) count(result string) {
	c, ok := p.results[result]
	if !ok {
		c = p.vec.WithLabelValues(p.name, result)
	}
	c.Inc()
}

// warm pre-creates the counters so the hot path reads a map that never changes.
func (p *authProvider) warm() {
	for _, r := range []string{"ok", "missing", "invalid_request", "too_large", "malformed", "algorithm",
		"bad_signature", "unknown_key", "no_keys", "expired", "not_yet_valid", "missing_claim", "issuer",
		"audience", "forbidden", "error"} {
		p.results[r] = p.vec.WithLabelValues(p.name, r)
	}
}

// moveQueryToken takes every token parameter out of the query string, whether or not the
// token is valid and whichever credential was used, so that it reaches neither the
// upstream's URL nor the access log (a 401 or 403 is logged too). When Authorization is
// forwarded and the client sent none, the token goes upstream in that header instead.
func (p *authProvider) moveQueryToken(x *Exchange, tok string) {
	if x.R.URL.RawQuery == "" {
		return
	}
	q := x.R.URL.Query()
	v, ok := q[p.query]
	if !ok {
		return
	}
	q.Del(p.query)
	x.R.URL.RawQuery = q.Encode()
	h := x.R.Header
	if p.keepAuth && tok != "" && len(v) > 0 && v[0] == tok && h.Get("Authorization") == "" {
		h.Set("Authorization", "Bearer "+tok)
	}
}

// authStage checks the route's `jwt` and `roles`: 401 with WWW-Authenticate for a
// missing or bad token, 403 for a valid token without a required role. On success it
// sets the forward_claims headers (removed from the client's request at the front).
func (g *Gateway) authStage(rt *Route, next Handler) Handler {
	if rt.Config.JWT == "" {
		return next
	}
	p := rt.auth
	roles := rt.Config.Roles
	realm := rt.Config.JWT
	return HandlerFunc(func(x *Exchange) {
		tok, err := jwtauth.FromRequest(x.R, p.cookie, p.query)
		if p.query != "" {
			p.moveQueryToken(x, tok)
		}
		var claims *jwtauth.Claims
		if err == nil {
			claims, err = p.auth.Verify(x.R.Context(), tok)
		}
		if err != nil {
			reason := jwtauth.Reason(err)
			if errors.Is(err, jwtauth.ErrMissingToken) {
				reason = "missing"
			}
			p.count(reason)
			x.W.Header().Set("WWW-Authenticate", jwtauth.ChallengeHeader(realm, err))
			x.Fail(unauthorized(err))
			return
		}
		x.User = claims.Subject
		if !claims.HasAnyRole(roles) {
			p.count("forbidden")
			x.W.Header().Set("WWW-Authenticate", jwtauth.ChallengeHeader(realm, jwtauth.ErrInsufficientRole))
			x.Fail(unauthorized(jwtauth.ErrInsufficientRole))
			return
		}
		p.count("ok")
		x.Claims = claims
		h := x.R.Header
		for _, f := range p.forward {
			if v, ok := claims.Claim(f[0]); ok && !strings.ContainsAny(v, "\r\n\x00") {
				h[f[1]] = []string{v}
			}
		}
		if !p.keepAuth {
			delete(h, "Authorization")
		}
		next.Serve(x)
	})
}
