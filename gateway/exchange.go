package gateway

import (
	"bufio"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/infinityxone/gateway/gateway/tracing"
)

// Exchange is one request on its way through the pipeline. It is pooled: a stage must not
// keep it past its Serve call.
type Exchange struct {
	W         *responseWriter
	R         *http.Request
	Start     time.Time
	RequestID string
	ClientIP  netip.Addr
	Route     *Route // nil until routed
	Upstream  string // address of the instance that answered (last tried)
	Attempts  int
	User      string // authenticated subject, for logs
	ErrorCode string // the error code sent, if any
	Path      string // the normalised path

	// Claims are the verified token's claims, set by the auth stage for later stages.
	Claims Claims

	// Trace is the request's server span; the zero value (no tracing block) does nothing.
	Trace tracing.Request

	upgrade    string // "websocket" when the client asked to switch to it
	teTrailers bool   // the client sent "TE: trailers"
	ipStr      string // ClientIP.String(), made on first use
}

// clientIP returns the client IP as a string, formatted once per request.
func (x *Exchange) clientIP() string {
	if x.ipStr == "" {
		x.ipStr = x.ClientIP.String()
	}
	return x.ipStr
}

// Claims is what later stages may read from a verified token.
type Claims interface {
	Claim(name string) (string, bool)
}

// Fail answers the exchange with the error's status and JSON body (once; later calls and
// calls after the response began are ignored).
func (x *Exchange) Fail(err error) {
	x.FailWith(statusFor(err))
}

// FailWith answers with an explicit apiError.
func (x *Exchange) FailWith(e apiError) {
	if x.W.wroteHeader {
		return
	}
	x.ErrorCode = e.code
	writeError(x.W, e, x.RequestID)
}

func (x *Exchange) reset() {
	*x = Exchange{W: x.W}
	x.W.reset(nil)
}

// responseWriter records the status and body size for logs and metrics. It passes Flush,
// Hijack and Unwrap through, so streaming, upgrades and http.ResponseController work.
type responseWriter struct {
	w           http.ResponseWriter
	status      int
	written     int64
	wroteHeader bool
	hijacked    bool
}

func (rw *responseWriter) reset(w http.ResponseWriter) {
	*rw = responseWriter{w: w}
}

func (rw *responseWriter) Header() http.Header { return rw.w.Header() }

func (rw *responseWriter) WriteHeader(code int) {
	if rw.wroteHeader {
		return
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		rw.w.WriteHeader(code) // informational: more headers follow
		return
	}
	rw.wroteHeader = true
	rw.status = code
	rw.w.WriteHeader(code)
}

func (rw *responseWriter) Write(p []byte) (int, error) {
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	n, err := rw.w.Write(p)
	rw.written += int64(n)
	return n, err
}

// Status is the status sent, 200 if the handler wrote nothing.
func (rw *responseWriter) Status() int {
	if rw.status == 0 {
		return http.StatusOK
	}
	return rw.status
}

func (rw *responseWriter) Flush() {
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	if f, ok := rw.w.(http.Flusher); ok {
		f.Flush()
	}
}

func (rw *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := rw.w.(http.Hijacker)
	if !ok {
		return nil, nil, http.ErrNotSupported
	}
	c, brw, err := h.Hijack()
	if err == nil {
		rw.hijacked = true
	}
	return c, brw, err
}

func (rw *responseWriter) Unwrap() http.ResponseWriter { return rw.w }
