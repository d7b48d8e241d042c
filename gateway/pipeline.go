package gateway

import (
	"fmt"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/infinityxone/gateway/gateway/router"
)

// Handler serves one exchange. Every stage of a route's pipeline is a Handler wrapping
// the next one.
type Handler interface{ Serve(x *Exchange) }

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(x *Exchange)

// Serve calls f(x).
func (f HandlerFunc) Serve(x *Exchange) { f(x) }

// Stage builds one step of a route's pipeline around next. A stage that does not apply to
// the route returns next unchanged. Stages run in the order docs/architecture.md gives; a later
// feature adds its stage to Gateway.stages in the right place.
type Stage func(rt *Route, next Handler) Handler

// ServeHTTP is the gateway's front: recover, request id, access log and metrics, path
// normalisation and routing; then the route's own pipeline.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	x := g.pool.Get().(*Exchange)
	x.W.reset(w)
	x.W.writeTimeout = g.cfg.Gateway.ClientWriteTimeout
	x.R = r
	x.Start = time.Now()
	defer g.finish(x)
	st := g.cur.Load()   // reload: this request's routes, from start to end
	if g.tracer != nil { // tracing hook: server span, continuing the client's traceparent
		x.Trace = g.tracer.StartRequest(r)
	}

	h := r.Header
	var ids []string
	if id := h.Get("X-Request-Id"); validRequestID(id) {
		x.RequestID = id
		ids = h["X-Request-Id"][:1:1]
	} else {
		x.RequestID = g.ids.next()
		ids = []string{x.RequestID}
	}
	// Hop-by-hop headers, and every header the client names in Connection, go first:
	// nothing the gateway sets below can then be stripped by a client's Connection list.
	// Upgrades pass on (docs/architecture.md), except h2c: an upstream that accepts it would give
	// the client an HTTP/2 tunnel past the route's stages ("h2c smuggling").
	if up := upgradeType(h); up != "" && !hasToken(up, "h2c") {
		x.upgrade = up
	}
	x.teTrailers = h.Get("Te") == "trailers"
	removeHopHeaders(h)
	h["X-Request-Id"] = ids
	w.Header()["X-Request-Id"] = ids
	x.ClientIP = g.trusted.forwarded(r, remoteAddr(r), g)
	dropProtected(h, st.claimHeaders)

	if max := g.cfg.Gateway.MaxHeaderBytes; max > 0 && headerBytes(r) > max {
		// The head was read but not believed: the stream is unsure, so the connection
		// closes after the answer and nothing pipelined behind it is served.
		x.W.Header()["Connection"] = g.hdrClose
		x.Fail(ErrHeadersTooLarge)
		return
	}
	if g.maxBody > 0 && r.Body != nil && r.Body != http.NoBody {
		if r.ContentLength > g.maxBody {
			x.Fail(ErrBodyTooLarge)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, g.maxBody) // the real writer: it closes the connection after
	}

	raw := rawPath(r)
	path, ok := router.Normalize(raw)
	if !ok {
		x.Fail(ErrBadPath)
		return
	}
	x.Path = path
	res := st.table.Match(r.Host, r.Method, path)
	switch res.Status {
	case router.Found:
		x.Route = st.routes[res.Route]
		x.Route.handler.Serve(x)
	case router.MethodNotAllowed:
		// A CORS preflight is answered for a route with a cors block whatever its methods.
		if isPreflight(r) {
			pre := st.table.Match(r.Host, r.Header.Get("Access-Control-Request-Method"), path)
			if pre.Status == router.Found && st.routes[pre.Route].cors != nil {
				x.Route = st.routes[pre.Route]
				st.routes[pre.Route].cors.preflight(x)
				return
			}
		}
		x.W.Header().Set("Allow", res.Allow)
		x.Fail(ErrMethodNotAllowed)
	default:
		x.Fail(ErrNotFound)
	}
}

// dropProtected removes what no client may send: the headers the gateway sets from JWT
// claims, and any header with an underscore whose dash-folded name is one the gateway
// sets (CGI-style backends fold "X-User_Id" into the same variable as "X-User-Id").
func dropProtected(h http.Header, claimHeaders []string) {
	for _, name := range claimHeaders {
		delete(h, name)
	}
	for k := range h {
		if strings.IndexByte(k, '_') < 0 {
			continue
		}
		folded := http.CanonicalHeaderKey(strings.ReplaceAll(k, "_", "-"))
		if strings.HasPrefix(folded, "X-Forwarded-") || folded == "X-Real-Ip" || folded == "X-Request-Id" ||
			folded == "Forwarded" || slices.Contains(claimHeaders, folded) {
			delete(h, k)
		}
	}
}

// headerBytes approximates the size of the request head as sent: the request line and
// every header line.
func headerBytes(r *http.Request) int {
	n := len(r.Method) + len(r.RequestURI) + len(r.Proto) + 4
	for k, vv := range r.Header {
		for _, v := range vv {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// rawPath is the request's path as the client wrote it (escapes intact).
func rawPath(r *http.Request) string {
	if u := r.RequestURI; u != "" && u[0] == '/' {
		if i := strings.IndexByte(u, '?'); i >= 0 {
			return u[:i]
		}
		return u
	}
	return r.URL.EscapedPath()
}

// finish recovers a panic into a 500, then writes the access log and metrics and
// returns the exchange to the pool.
func (g *Gateway) finish(x *Exchange) {
	p := recover()
	if p != nil && p != http.ErrAbortHandler {
		err := fmt.Errorf("panic: %v", p)
		g.log.Error("panic while serving a request", "error", err, "request_id", x.RequestID, "stack", string(debug.Stack()))
		if !x.W.wroteHeader && !x.W.hijacked {
			x.Fail(errInternal)
			p = nil // answered: the connection lives on
		} else {
			p = http.ErrAbortHandler
		}
	}
	end := time.Now()
	route := ""
	if x.Route != nil {
		route = x.Route.Name
		x.Route.duration.Observe(end.Sub(x.Start).Seconds())
	}
	g.metrics.request(route, x.R.Method, x.W.Status())
	if x.Trace.Active() { // tracing hook: name and end the server span
		g.endTrace(x)
	}
	if g.accessLog != nil {
		g.accessLog.Log(x, end)
	}
	if x.tunnel != nil {
		g.tunnels.done(x.tunnel) // logged: shutdown may go on
	}
	x.reset()
	g.pool.Put(x)
	if p != nil {
		panic(p) // http.ErrAbortHandler: net/http drops the connection quietly
	}
}
