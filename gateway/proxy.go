package gateway

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/infinityxone/gateway/gateway/balancer"
)

// proxy is the last stage of every route: it picks an instance, forwards the request,
// and streams the answer back. Modelled on net/http/httputil.ReverseProxy, but it knows
// the exchange (client IP for ip_hash, the instances already tried) without putting
// anything into the request's context.
type proxy struct {
	g       *Gateway
	route   *Route
	service *Service
	timeout time.Duration
	strip   string
	bufs    *sync.Pool
}

// Serve forwards x upstream.
func (p *proxy) Serve(x *Exchange) {
	r := x.R
	ctx, cancel := context.WithTimeout(r.Context(), p.timeout)
	defer cancel()

	out := r.WithContext(ctx)
	out.RequestURI = ""
	out.Close = false
	// The normalised path goes upstream as written (Opaque keeps its escapes exactly).
	u := url.URL{Scheme: "http", Opaque: p.upstreamPath(x.Path), RawQuery: r.URL.RawQuery}
	out.URL = &u
	out.Host = r.Host

	h := out.Header
	upType := upgradeType(h)
	removeHopHeaders(h)
	if upType != "" {
		h["Connection"] = []string{"Upgrade"}
		h["Upgrade"] = []string{upType}
	}
	if te := r.Header.Get("Te"); te == "trailers" {
		h["Te"] = []string{"trailers"}
	}
	h["X-Request-Id"] = []string{x.RequestID}
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = []string{""} // don't let the transport add Go's
	}

	var body *trackedBody
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		body = &trackedBody{rc: r.Body}
		out.Body = body
	} else {
		out.Body = nil
	}

	var (
		resp *http.Response
		ep   *balancer.Endpoint
		err  error
		skip tried
	)
	svc := p.service
	key := ""
	if svc.hashKey {
		key = x.ClientIP.String()
	}
	for attempt := 1; ; attempt++ {
		ep = svc.Set.Pick(key, skip.Skip)
		if ep == nil {
			if err == nil {
				err = ErrNoInstance
			}
			break
		}
		skip.add(ep)
		x.Attempts = attempt
		x.Upstream = ep.Address
		u.Host = ep.Address
		ep.Acquire()
		start := time.Now()
		resp, err = svc.transport.RoundTrip(out)
		svc.upstreamDuration.Observe(time.Since(start).Seconds())
		if err == nil {
			p.g.metrics.upstream(svc.Name, ep.Address, outcomeOf(resp.StatusCode))
			break
		}
		ep.Release()
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = ErrUpstreamTimeout
			p.g.metrics.upstream(svc.Name, ep.Address, "timeout")
			break
		}
		p.g.metrics.upstream(svc.Name, ep.Address, "error")
		// Default retry policy (DESIGN.md): a request whose connection failed before
		// anything was sent is tried once more on another instance.
		if attempt >= 2 || !dialFailed(err) || (body != nil && body.read.Load()) || r.Context().Err() != nil {
			break
		}
		p.g.metrics.upstreamRetries.WithLabelValues(svc.Name).Inc()
		if p.g.log.IsDebug() {
			p.g.log.Debug("retrying after connect failure", "service", svc.Name, "instance", ep.Address, "error", err, "request_id", x.RequestID)
		}
	}
	if err != nil {
		if errors.Is(err, ErrNoInstance) && p.route.fallback != nil {
			p.route.fallback.serve(x)
			return
		}
		if r.Context().Err() != nil {
			// The client went away; nobody reads the answer. 499 in logs, like nginx.
			x.W.status = 499
			x.ErrorCode = "client_closed_request"
			return
		}
		var mbe *http.MaxBytesError
		if !errors.As(err, &mbe) && !errors.Is(err, ErrNoInstance) && !errors.Is(err, ErrUpstreamTimeout) {
			p.g.log.Warn("upstream request failed", "service", svc.Name, "instance", x.Upstream, "error", err, "request_id", x.RequestID)
		}
		x.Fail(err)
		return
	}
	defer ep.Release()
	p.respond(x, resp)
}

// upstreamPath applies strip_prefix to the normalised path.
func (p *proxy) upstreamPath(path string) string {
	if p.strip == "" || !strings.HasPrefix(path, p.strip) {
		return path
	}
	rest := path[len(p.strip):]
	switch {
	case rest == "":
		return "/"
	case rest[0] == '/':
		return rest
	case strings.HasSuffix(p.strip, "/"):
		return path[len(p.strip)-1:]
	}
	return path // prefix ended mid-segment: not a prefix of segments
}

// respond copies the upstream's answer to the client, streaming the body.
func (p *proxy) respond(x *Exchange, resp *http.Response) {
	if resp.StatusCode == http.StatusSwitchingProtocols {
		p.upgrade(x, resp)
		return
	}
	defer resp.Body.Close()
	removeHopHeaders(resp.Header)
	h := x.W.Header()
	for k, vv := range resp.Header {
		h[k] = vv
	}
	if n := len(resp.Trailer); n > 0 {
		names := make([]string, 0, n)
		for k := range resp.Trailer {
			names = append(names, k)
		}
		h["Trailer"] = []string{strings.Join(names, ", ")}
	}
	x.W.WriteHeader(resp.StatusCode)

	bp := p.bufs.Get().(*[]byte)
	defer p.bufs.Put(bp)
	buf := *bp
	flush := resp.ContentLength == -1
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := x.W.Write(buf[:n]); werr != nil {
				return // client gone
			}
			if flush {
				x.W.Flush()
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			// The upstream failed mid-body. The status is sent; the only honest thing left
			// is to abort the client's connection so it cannot take a truncated body for
			// a whole one.
			x.ErrorCode = "upstream_aborted"
			p.g.log.Warn("upstream failed mid-response", "service", p.service.Name, "instance", x.Upstream, "error", rerr, "request_id", x.RequestID)
			panic(http.ErrAbortHandler)
		}
	}
	for k, vv := range resp.Trailer {
		h[k] = vv
	}
}

// upgrade splices a switched-protocol connection (WebSocket and friends) to the client.
func (p *proxy) upgrade(x *Exchange, resp *http.Response) {
	up, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		x.Fail(errors.New("upgrade: upstream body not writable"))
		return
	}
	defer up.Close()
	h := x.W.Header()
	for k, vv := range resp.Header {
		h[k] = vv
	}
	rc := http.NewResponseController(x.W)
	conn, brw, err := rc.Hijack()
	if err != nil {
		x.Fail(err)
		return
	}
	defer conn.Close()
	x.W.status = resp.StatusCode
	x.W.wroteHeader = true
	// Hijacked: the server no longer enforces deadlines; the upgraded stream runs until
	// either side closes.
	_ = conn.SetDeadline(time.Time{})
	resp.Body = nil
	if err := resp.Write(brw); err != nil {
		return
	}
	if err := brw.Flush(); err != nil {
		return
	}
	errc := make(chan error, 2)
	go func() { _, err := io.Copy(conn, up); errc <- err }()
	go func() {
		var err error
		if n := brw.Reader.Buffered(); n > 0 {
			b, _ := brw.Reader.Peek(n)
			_, err = up.Write(b)
		}
		if err == nil {
			_, err = io.Copy(up, conn)
		}
		errc <- err
	}()
	<-errc
}

// trackedBody remembers whether the transport read any of the request body, which
// decides whether a failed attempt may be sent again. Close is left to net/http's server.
type trackedBody struct {
	rc   io.ReadCloser
	read atomic.Bool
}

func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.read.Store(true)
	}
	return n, err
}

func (b *trackedBody) Close() error { return nil }

// tried is the balancer filter that skips instances this request already tried.
type tried struct {
	n   int
	eps [4]*balancer.Endpoint
}

func (t *tried) add(e *balancer.Endpoint) {
	if t.n < len(t.eps) {
		t.eps[t.n] = e
		t.n++
	}
}

// Skip is the balancer.Filter: true for instances already tried.
func (t *tried) Skip(e *balancer.Endpoint) bool {
	for i := 0; i < t.n; i++ {
		if t.eps[i] == e {
			return true
		}
	}
	return false
}

func outcomeOf(code int) string {
	switch {
	case code >= 500:
		return "5xx"
	case code >= 400:
		return "4xx"
	case code >= 300:
		return "3xx"
	}
	return "2xx"
}
