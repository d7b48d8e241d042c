package gateway

import (
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/infinityxone/gateway/gateway/config"
)

// corsPolicy is a route's compiled `cors` block.
type corsPolicy struct {
	anyOrigin   bool
	origins     []string
	methods     string // joined for Access-Control-Allow-Methods
	headers     string // joined; "" = echo the request's Access-Control-Request-Headers
	exposed     string
	credentials bool
	maxAge      string
}

func newCORS(c *config.CORS) *corsPolicy {
	if c == nil {
		return nil
	}
	p := &corsPolicy{
		anyOrigin:   slices.Contains(c.AllowedOrigins, "*"),
		origins:     c.AllowedOrigins,
		methods:     strings.Join(c.AllowedMethods, ", "),
		headers:     strings.Join(c.AllowedHeaders, ", "),
		exposed:     strings.Join(c.ExposedHeaders, ", "),
		credentials: c.AllowCredentials,
	}
	if p.methods == "" {
		p.methods = "GET, HEAD, POST"
	}
	if c.MaxAge > 0 {
		p.maxAge = strconv.Itoa(int(c.MaxAge.Seconds()))
	}
	return p
}

func (p *corsPolicy) allowOrigin(origin string) bool {
	return p.anyOrigin || slices.Contains(p.origins, origin)
}

// isPreflight reports whether r is a CORS preflight request.
func isPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Origin") != "" &&
		r.Header.Get("Access-Control-Request-Method") != ""
}

// setOrigin writes the origin headers shared by preflight and actual responses.
func (p *corsPolicy) setOrigin(h http.Header, origin string) {
	h.Add("Vary", "Origin")
	if p.anyOrigin && !p.credentials {
		h.Set("Access-Control-Allow-Origin", "*")
	} else {
		h.Set("Access-Control-Allow-Origin", origin)
	}
	if p.credentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
}

// preflight answers a preflight at the gateway: 204 with the policy's headers, or 204
// without any Access-Control-Allow-* header when the origin is not allowed (the browser
// then refuses the real request; nothing reaches the upstream either way).
func (p *corsPolicy) preflight(x *Exchange) {
	r := x.R
	h := x.W.Header()
	origin := r.Header.Get("Origin")
	if p.allowOrigin(origin) {
		p.setOrigin(h, origin)
		h.Set("Access-Control-Allow-Methods", p.methods)
		if p.headers != "" {
			h.Set("Access-Control-Allow-Headers", p.headers)
		} else if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
			h.Set("Access-Control-Allow-Headers", req)
			h.Add("Vary", "Access-Control-Request-Headers")
		}
		if p.maxAge != "" {
			h.Set("Access-Control-Max-Age", p.maxAge)
		}
	}
	x.W.WriteHeader(http.StatusNoContent)
}

// corsStage answers preflights and decorates actual cross-origin responses.
func corsStage(rt *Route, next Handler) Handler {
	p := rt.cors
	if p == nil {
		return next
	}
	return HandlerFunc(func(x *Exchange) {
		origin := x.R.Header.Get("Origin")
		if origin == "" {
			next.Serve(x)
			return
		}
		if isPreflight(x.R) {
			p.preflight(x)
			return
		}
		if p.allowOrigin(origin) {
			h := x.W.Header()
			p.setOrigin(h, origin)
			if p.exposed != "" {
				h.Set("Access-Control-Expose-Headers", p.exposed)
			}
		}
		next.Serve(x)
	})
}
