package gateway

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"sync"
	"syscall"
	"time"
)

// h1Pool is the upstream transport of a plain-HTTP service: a pool of HTTP/1.1
// connections per instance (host:port) on which the request is written and the answer
// read on the caller's goroutine. net/http's Transport runs two goroutines per
// connection (a read loop and a write loop) and hands every request and response
// between them and the caller over channels; here there are none, and a connection at
// rest in the pool holds no goroutine at all.
//
// It serves only what it can serve exactly like the Transport: bodyless GET, HEAD and
// OPTIONS requests to an http:// URL, not asking for an upgrade. Everything else (request
// bodies, other methods, upgrades, non-ASCII hosts) goes to fallback, the service's own
// *http.Transport. Answers are parsed by net/http itself (http.ReadResponse): chunked
// bodies and trailers, close-delimited bodies, HEAD, 204 and 304 are framed as the
// Transport frames them, and 1xx interim answers other than 101 are skipped.
//
// A connection goes back to the pool only when its answer's body was read to its end,
// neither side asked for `Connection: close`, nothing unsolicited follows the answer and
// the request's context did not end while the connection was in use. Before a pooled
// connection is used, its socket is peeked at: one that the upstream closed, or sent
// bytes on, while it rested is given up before anything is written. When a connection
// fails anyway before one byte of the answer came back, the request is sent once more
// on a new connection (these methods are idempotent and bodyless; net/http's Transport
// retries them the same way).
type h1Pool struct {
	fallback    *http.Transport
	dial        func(ctx context.Context, network, addr string) (net.Conn, error)
	maxIdle     int           // idle connections kept per instance; < 0: none
	idleTimeout time.Duration // an idle connection is closed after this; 0: never

	mu       sync.Mutex
	idle     map[string][]*h1Conn // by host:port, oldest first
	sweep    *time.Timer          // closes connections idle past idleTimeout
	sweeping bool                 // sweep is armed
	closing  bool                 // CloseIdleConnections ran and no request came since
}

// newH1Pool builds the pool of a service in front of its Transport, with the
// Transport's dialer and idle limits.
func newH1Pool(fallback *http.Transport) *h1Pool {
	p := &h1Pool{
		fallback:    fallback,
		dial:        fallback.DialContext,
		maxIdle:     fallback.MaxIdleConnsPerHost,
		idleTimeout: fallback.IdleConnTimeout,
		idle:        map[string][]*h1Conn{},
	}
	if p.maxIdle == 0 {
		p.maxIdle = http.DefaultMaxIdleConnsPerHost // as the Transport reads 0
	}
	if p.dial == nil {
		p.dial = (&net.Dialer{}).DialContext
	}
	return p
}

// Sizes of a pooled connection's buffers. An answer's head and a small body arrive in
// one read; a request's head goes out in one write. Bodies larger than the read buffer
// are read straight into the proxy's 32 KiB copy buffer (bufio passes large reads
// through).
const (
	h1ReadBuffer  = 8 << 10
	h1WriteBuffer = 4 << 10
	// h1MaxHeaderBytes bounds an answer's head (1xx heads included), as the
	// Transport's default MaxResponseHeaderBytes does.
	h1MaxHeaderBytes = 10 << 20
	// h1Max1xx is how many interim (1xx) answers may precede the final one.
	h1Max1xx = 5
)

var (
	errH1HeadTooLarge = errors.New("upstream answer's head too large")
	errH1TooMany1xx   = errors.New("too many 1xx informational answers")
	// A pooled connection found unusable before the request was written to it.
	errH1Unsolicited = errors.New("upstream sent bytes on an idle connection")
	errH1ClosedIdle  = errors.New("upstream closed an idle connection")
)

// aLongTimeAgo is the deadline that makes a connection's blocked reads and writes
// return at once.
var aLongTimeAgo = time.Unix(1, 0)

// h1Conn is one upstream connection. It is used by one request at a time.
type h1Conn struct {
	pool  *h1Pool
	key   string // host:port
	conn  net.Conn
	br    *bufio.Reader
	bw    *bufio.Writer
	abort func() // conn's deadlines to the past: made once, registered per request

	// Sending the request with the read side armed first (sendArmed): raw is the
	// connection's syscall.RawConn (nil: not a socket), sendFn the callback made once.
	raw      syscall.RawConn
	sendFn   func(fd uintptr) bool
	reused   bool // the request at hand took it from the pool
	sent     bool
	flushErr error

	nread  int64     // bytes read for the current request
	limit  int64     // bytes the current head may still take
	idleAt time.Time // when it went back to the pool
}

// Read is what br reads from: it counts the answer's bytes (a stale pooled connection
// is one that answered nothing) and bounds the answer's head.
func (c *h1Conn) Read(p []byte) (int, error) {
	if c.limit <= 0 {
		return 0, errH1HeadTooLarge
	}
	if int64(len(p)) > c.limit {
		p = p[:c.limit]
	}
	n, err := c.conn.Read(p)
	c.nread += int64(n)
	c.limit -= int64(n)
	return n, err
}

// handles reports whether req is one the pool serves itself (see h1Pool).
func (p *h1Pool) handles(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		return false
	}
	if req.URL.Scheme != "http" || (req.Body != nil && req.Body != http.NoBody) {
		return false
	}
	if _, up := req.Header["Upgrade"]; up {
		return false
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	return plainHost(host)
}

// plainHost reports whether h is a Host value made only of printable ASCII without
// spaces: anything else (an IDN, say) is left to the Transport's own rules.
func plainHost(h string) bool {
	for i := 0; i < len(h); i++ {
		if h[i] <= ' ' || h[i] >= 0x7f || h[i] == '%' { // '%': an IPv6 zone, which the Transport strips
			return false
		}
	}
	return h != ""
}

// RoundTrip sends req and returns the answer, whose body the caller must close.
func (p *h1Pool) RoundTrip(req *http.Request) (*http.Response, error) {
	if !p.handles(req) || !validRequest(req) {
		// The Transport's rules and errors for everything else.
		return p.fallback.RoundTrip(req)
	}
	ctx := req.Context()
	for retried := false; ; retried = true {
		c, reused, err := p.get(ctx, req.URL.Host, retried)
		if err != nil {
			return nil, err
		}
		resp, err := p.roundTrip(ctx, c, req)
		if err == nil {
			return resp, nil
		}
		// A pooled connection the upstream closed while it rested: nothing came back, the
		// request is idempotent and bodyless, so it goes once more on a new connection
		// (not another pooled one: after an upstream restart they are all dead).
		if reused && !retried && c.nread == 0 && ctx.Err() == nil {
			continue
		}
		return nil, err
	}
}

// roundTrip is one exchange on c. On error c is closed.
func (p *h1Pool) roundTrip(ctx context.Context, c *h1Conn, req *http.Request) (*http.Response, error) {
	// The request's end (the route's timeout, idle_timeout, the client gone) cuts the
	// connection's reads and writes short.
	stop := context.AfterFunc(ctx, c.abort)
	c.nread, c.limit = 0, h1MaxHeaderBytes
	writeRequest(c.bw, req)
	err := c.send()
	var resp *http.Response
	if err == nil {
		resp, err = readFinalResponse(c.br, req)
	}
	c.limit = math.MaxInt64
	if err != nil {
		stop()
		c.conn.Close()
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("upstream connection: %w", err)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// Not asked for (upgrades go to the Transport): the proxy refuses it. The body is
		// the connection, as the Transport gives it, and the connection is not reused.
		stop()
		resp.Body = &h1Switched{c: c}
		return resp, nil
	}
	reuse := !resp.Close && !req.Close
	if resp.Body == http.NoBody {
		p.release(c, stop, reuse)
		return resp, nil
	}
	resp.Body = &h1Body{rc: resp.Body, c: c, ctx: ctx, stop: stop, reuse: reuse}
	return resp, nil
}

// readFinalResponse reads answers until the final one: interim 1xx answers other than
// 101 are skipped, as the Transport skips them.
func readFinalResponse(br *bufio.Reader, req *http.Request) (*http.Response, error) {
	for n := 0; ; n++ {
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode < 100 || resp.StatusCode > 199 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, nil
		}
		if n == h1Max1xx {
			return nil, errH1TooMany1xx
		}
	}
}

// release ends c's use by one request: back to the pool when reuse holds, the request's
// context did not touch the connection and nothing unsolicited is buffered; else closed.
func (p *h1Pool) release(c *h1Conn, stop func() bool, reuse bool) {
	if !stop() || !reuse || c.br.Buffered() > 0 {
		c.conn.Close()
		return
	}
	p.put(c)
}

// get returns an idle connection to key (reused true) or, if there is none or fresh is
// set, dials a new one.
func (p *h1Pool) get(ctx context.Context, key string, fresh bool) (*h1Conn, bool, error) {
	p.mu.Lock()
	p.closing = false
	if list := p.idle[key]; len(list) > 0 && !fresh {
		c := list[len(list)-1]
		list[len(list)-1] = nil
		p.idle[key] = list[:len(list)-1]
		p.mu.Unlock()
		c.reused = true
		return c, true, nil
	}
	p.mu.Unlock()
	conn, err := p.dial(ctx, "tcp", key)
	if err != nil {
		return nil, false, err
	}
	c := &h1Conn{pool: p, key: key, conn: conn}
	c.br = bufio.NewReaderSize(c, h1ReadBuffer)
	c.bw = bufio.NewWriterSize(conn, h1WriteBuffer)
	c.abort = func() { _ = conn.SetDeadline(aLongTimeAgo) }
	if sc, ok := conn.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw = raw
			c.sendFn = c.sendArmed
		}
	}
	return c, false, nil
}

// send flushes the request and waits until the answer can be read.
//
// A connection taken from the pool is first checked for what arrived while it rested:
// bytes nobody asked for (which a plain read would take for this request's answer, as
// the Transport's read loop would not) or the upstream's close; either way nothing is
// written and the connection is given up. The check is one non-blocking peek; it takes
// the place of the read that would otherwise follow the write and find nothing yet: the
// request is written from inside RawConn.Read, after the poller's read readiness was
// reset, and the wait for the answer starts without a read.
func (c *h1Conn) send() error {
	if c.raw == nil {
		return c.bw.Flush()
	}
	c.sent, c.flushErr = false, nil
	err := c.raw.Read(c.sendFn)
	if c.flushErr != nil {
		return c.flushErr
	}
	return err
}

// sendArmed is RawConn.Read's callback: the first call checks a reused connection and
// writes the request, then asks to wait for readability; the next call (the socket is
// readable) ends the wait.
func (c *h1Conn) sendArmed(fd uintptr) bool {
	if c.sent {
		return true
	}
	c.sent = true
	if c.reused {
		if c.flushErr = peekIdle(fd); c.flushErr != nil {
			return true
		}
	}
	c.flushErr = c.bw.Flush()
	return c.flushErr != nil
}

// put keeps c idle for the next request, or closes it when its instance already has
// maxIdle idle connections, or when CloseIdleConnections ran since the last request
// began (a retired service's pool must not fill again with the connections of the
// requests it was still serving, as the Transport's do not).
func (p *h1Pool) put(c *h1Conn) {
	if p.maxIdle < 0 || c.raw == nil { // without its socket a resting connection cannot be checked
		c.conn.Close()
		return
	}
	p.mu.Lock()
	list := p.idle[c.key]
	if len(list) >= p.maxIdle || p.closing {
		p.mu.Unlock()
		c.conn.Close()
		return
	}
	if p.idleTimeout > 0 {
		c.idleAt = time.Now()
		if !p.sweeping {
			p.sweeping = true
			if p.sweep == nil {
				p.sweep = time.AfterFunc(p.idleTimeout, p.sweepIdle)
			} else {
				p.sweep.Reset(p.idleTimeout)
			}
		}
	}
	p.idle[c.key] = append(list, c)
	p.mu.Unlock()
}

// sweepIdle closes the connections idle for idleTimeout or more and arms itself again
// for the oldest that is left. The timer runs only while idle connections exist.
func (p *h1Pool) sweepIdle() {
	var old []*h1Conn
	p.mu.Lock()
	if !p.sweeping {
		p.mu.Unlock()
		return
	}
	now := time.Now()
	var next time.Time
	for key, list := range p.idle {
		n := 0
		for n < len(list) && now.Sub(list[n].idleAt) >= p.idleTimeout {
			n++
		}
		old = append(old, list[:n]...)
		if n == len(list) {
			delete(p.idle, key)
			continue
		}
		rest := make([]*h1Conn, len(list)-n, cap(list))
		copy(rest, list[n:])
		p.idle[key] = rest
		if next.IsZero() || rest[0].idleAt.Before(next) {
			next = rest[0].idleAt
		}
	}
	if next.IsZero() {
		p.sweeping = false
	} else {
		p.sweep.Reset(next.Add(p.idleTimeout).Sub(now))
	}
	p.mu.Unlock()
	for _, c := range old {
		c.conn.Close()
	}
}

// CloseIdleConnections closes every idle connection, the pool's and the Transport's.
// Connections in use are closed when their request ends, unless another request came
// in the meantime (then the pool is in use again), as the Transport does.
func (p *h1Pool) CloseIdleConnections() {
	p.mu.Lock()
	p.closing = true
	idle := p.idle
	p.idle = map[string][]*h1Conn{}
	p.sweeping = false
	if p.sweep != nil {
		p.sweep.Stop()
	}
	p.mu.Unlock()
	for _, list := range idle {
		for _, c := range list {
			c.conn.Close()
		}
	}
	p.fallback.CloseIdleConnections()
}

// h1Body is an answer's body on a pooled connection: at its end the connection goes
// back to the pool; closed before its end, the connection is closed.
type h1Body struct {
	rc    io.ReadCloser // net/http's framing of the body (length, chunks, until close)
	c     *h1Conn
	ctx   context.Context
	stop  func() bool // unregisters the connection's abort
	reuse bool
	done  bool
	end   error // what ended the body (io.EOF, a failure); reads after it return it again
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.done {
		return 0, b.end
	}
	n, err := b.rc.Read(p)
	switch {
	case err == io.EOF:
		b.done, b.end = true, io.EOF
		b.c.pool.release(b.c, b.stop, b.reuse)
	case err != nil:
		b.stop()
		b.c.conn.Close()
		if b.ctx.Err() != nil {
			err = context.Cause(b.ctx)
		}
		b.done, b.end = true, err
	}
	return n, err
}

// Close closes the connection unless the body was read to its end (net/http's own
// Close would read the rest first). Reads after Close fail as net/http's do.
func (b *h1Body) Close() error {
	if !b.done {
		b.stop()
		b.c.conn.Close()
	}
	b.done, b.end = true, http.ErrBodyReadAfterClose
	return nil
}

// h1Switched is the body of a 101 answer: the connection itself, never reused.
type h1Switched struct{ c *h1Conn }

func (s *h1Switched) Read(p []byte) (int, error)  { return s.c.br.Read(p) }
func (s *h1Switched) Write(p []byte) (int, error) { return s.c.conn.Write(p) }
func (s *h1Switched) Close() error                { return s.c.conn.Close() }

// validRequest checks what writeRequest writes as the Transport checks it: header names
// are tokens, values hold no control character but tab, the request URI none at all.
func validRequest(req *http.Request) bool {
	if !validURIPart(req.URL.Opaque) || !validURIPart(req.URL.RawQuery) {
		return false
	}
	for k, vv := range req.Header {
		if !validFieldName(k) {
			return false
		}
		for _, v := range vv {
			if !validFieldValue(v) {
				return false
			}
		}
	}
	return true
}

// validURIPart reports whether s holds no control character and no space.
func validURIPart(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] == 0x7f {
			return false
		}
	}
	return true
}

// validFieldName reports whether k is an RFC 9110 token.
func validFieldName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c >= 0x80 || !tokenChar[c] {
			return false
		}
	}
	return true
}

// validFieldValue reports whether v holds no control character other than tab.
func validFieldValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// tokenChar is RFC 9110's tchar.
var tokenChar = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// writeRequest writes req's head into w (bodyless: the head is the whole request), as
// the Transport writes it: Host first, the first User-Agent value if not empty, then
// every other field except those the Transport also leaves out (Content-Length,
// Transfer-Encoding, Trailer: a bodyless request has none), values trimmed.
func writeRequest(w *bufio.Writer, req *http.Request) {
	w.WriteString(req.Method)
	w.WriteByte(' ')
	if u := req.URL; u.Opaque != "" && !strings.HasPrefix(u.Opaque, "//") {
		w.WriteString(u.Opaque)
		if u.ForceQuery || u.RawQuery != "" {
			w.WriteByte('?')
			w.WriteString(u.RawQuery)
		}
	} else {
		w.WriteString(u.RequestURI())
	}
	w.WriteString(" HTTP/1.1\r\nHost: ")
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	w.WriteString(host)
	w.WriteString("\r\n")
	if ua, ok := req.Header["User-Agent"]; !ok {
		w.WriteString("User-Agent: Go-http-client/1.1\r\n")
	} else if len(ua) > 0 && ua[0] != "" {
		w.WriteString("User-Agent: ")
		w.WriteString(textproto.TrimString(ua[0]))
		w.WriteString("\r\n")
	}
	for k, vv := range req.Header {
		switch k {
		case "Host", "User-Agent", "Content-Length", "Transfer-Encoding", "Trailer":
			continue
		}
		for _, v := range vv {
			w.WriteString(k)
			w.WriteString(": ")
			w.WriteString(textproto.TrimString(v))
			w.WriteString("\r\n")
		}
	}
	if req.Close {
		w.WriteString("Connection: close\r\n")
	}
	w.WriteString("\r\n")
}
