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

	upgrade    string  // "websocket" when the client asked to switch to it
	tunnel     *tunnel // the upgraded connection, once hijacked
	teTrailers bool    // the client sent "TE: trailers"
	ipStr      string  // ClientIP.String(), made on first use
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

// FailWith answers with an apiError that statusFor made.
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
//
// It also bounds every write to the client by writeTimeout (client_write_timeout): a
// client that stops reading gets its connection cut instead of holding the handler, its
// buffer and the instance's in-flight count.
type responseWriter struct {
	w            http.ResponseWriter
	status       int
	written      int64
	wroteHeader  bool
	hijacked     bool
	writeTimeout time.Duration // 0: writes are not bounded
	writeBy      time.Time     // the write deadline last set on the connection
}

// extendWriteDeadline gives the next write writeTimeout from now. Setting a deadline
// updates a runtime timer, so it is renewed only once a sixteenth of the timeout has
// gone by: a fast stream does not pay it on every write, and every write still gets at
// least 15/16 of the timeout. The deadline stays on the connection, which is why every
// response sets its own before its first write.
func (rw *responseWriter) extendWriteDeadline() {
	if rw.writeTimeout <= 0 || rw.hijacked {
		return
	}
	now := time.Now()
	if !rw.writeBy.IsZero() && rw.writeBy.Sub(now) > rw.writeTimeout-rw.writeTimeout/16 {
		return
	}
	rw.writeBy = now.Add(rw.writeTimeout)
	_ = http.NewResponseController(rw.w).SetWriteDeadline(rw.writeBy)
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
	rw.extendWriteDeadline()
	rw.w.WriteHeader(code)
}

func (rw *responseWriter) Write(p []byte) (int, error) {
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	rw.extendWriteDeadline()
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

func (rw *responseWriter) Flush() { _ = rw.flush() }

// FlushError is Flush with the write's error (http.ResponseController prefers it).
func (rw *responseWriter) FlushError() error { return rw.flush() }

func (rw *responseWriter) flush() error {
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	rw.extendWriteDeadline()
	return http.NewResponseController(rw.w).Flush()
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
