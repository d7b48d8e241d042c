package gateway

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/infinityxone/gateway/breaker"
	"github.com/infinityxone/gateway/gateway/balancer"
	"github.com/infinityxone/gateway/gateway/retry"
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

	// Hop-by-hop headers were removed at the front, before the gateway set its own; only
	// what the gateway itself decides goes back in.
	h := out.Header
	if x.upgrade != "" {
		h["Connection"] = p.g.hdrUpgrade
		h["Upgrade"] = []string{x.upgrade}
	}
	if x.teTrailers {
		h["Te"] = p.g.hdrTrailers
	}
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = p.g.hdrEmpty // don't let the transport add Go's
	}

	svc := p.service
	pol := &svc.retry
	var body *retry.Body
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		body = retry.NewBody(r.Body, r.ContentLength, pol.bufferBytes)
		out.Body, _ = body.Rewind()
		out.GetBody = body.GetBody
		// A client that stalls its upload must not hold the upstream past the timeout:
		// the transport waits for its body reader, so the read is cut off too.
		stop := context.AfterFunc(ctx, func() {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				_ = http.NewResponseController(x.W).SetReadDeadline(time.Now())
			}
		})
		defer stop()
	} else {
		out.Body = nil
	}
	idempotent := retry.Idempotent(r.Method, r.Header, pol.idempotencyKey)
	if pol.configured {
		pol.budget.Request()
	}
	key := ""
	if svc.hashKey {
		key = x.clientIP()
	}

	var skip tried
	ep, br, ticket := p.pick(key, &skip, false)
	if ep == nil {
		p.noInstance(x)
		return
	}
	var (
		resp *http.Response
		err  error
		// pending is the breaker verdict of an answer that looked fine: it is given only
		// once its body has streamed, so an instance that dies mid-body is not a success.
		pending *breaker.Breaker
	)
	for attempt := 1; ; attempt++ {
		x.Attempts = attempt
		x.Upstream = ep.Address
		u.Host = ep.Address
		skip.add(ep)
		ep.Acquire()
		start := time.Now()
		span := x.Trace.StartAttempt(out, svc.Name, ep.Address, attempt) // tracing hook: client span, traceparent upstream
		resp, err = svc.transport.RoundTrip(out)
		span.End(resp, err) // tracing hook
		svc.upstreamDuration.Observe(time.Since(start).Seconds())
		if err == nil && (resp.StatusCode < 100 || resp.StatusCode > 599) {
			resp.Body.Close()
			resp, err = nil, errBadStatus
		}
		timedOut := err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded)
		clientGone := r.Context().Err() != nil
		var clientErr error
		if body != nil && err != nil {
			clientErr = body.SourceErr() // the client's body failed: not the instance's fault
		}
		if br != nil {
			switch {
			case clientErr != nil || clientGone && !timedOut:
				br.Cancel(ticket) // nobody learnt anything about the instance
			case err != nil:
				br.Done(ticket, false)
			case svc.breakers.failure(resp.StatusCode):
				br.Done(ticket, false)
			default:
				pending = br
			}
		}
		switch {
		case clientErr != nil:
			p.g.metrics.upstream(svc.Name, ep.Address, "client_error")
		case timedOut:
			p.g.metrics.upstream(svc.Name, ep.Address, "timeout")
		case err != nil:
			p.g.metrics.upstream(svc.Name, ep.Address, "error")
		default:
			p.g.metrics.upstream(svc.Name, ep.Address, outcomeOf(resp.StatusCode))
		}
		if err != nil {
			ep.Release()
		}
		if clientErr != nil {
			// A stalled upload cut off by the route's timeout is still a 504; anything
			// else wrong with the body is the client's 400 (or 413).
			err = clientRequestError{clientErr}
			if timedOut {
				err = ErrUpstreamTimeout
			}
			break
		}
		if timedOut {
			err = ErrUpstreamTimeout // a timeout is never retried
			break
		}
		if clientGone || attempt >= pol.attempts || !p.mayRetry(resp, err, body, idempotent) {
			break
		}
		var wait time.Duration
		if pol.configured {
			wait = retry.Backoff(attempt, pol.backoff, pol.maxBackoff, nil)
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= wait {
			break // never past the route's timeout
		}
		next, nbr, nticket := p.pick(key, &skip, true)
		if next == nil {
			break
		}
		var rb io.ReadCloser
		if body != nil {
			var ok bool
			if rb, ok = body.Rewind(); !ok {
				cancelTicket(nbr, nticket)
				break
			}
		}
		if pol.configured && !pol.budget.TryRetry() {
			cancelTicket(nbr, nticket)
			break
		}
		// Committed to the retry: the answer in hand is discarded.
		if rb != nil {
			out.Body = rb
		}
		if resp != nil {
			resp.Body.Close()
			ep.Release()
			resp = nil
		}
		if pending != nil {
			pending.Done(ticket, true)
			pending = nil
		}
		pol.retries.Inc()
		if p.g.log.IsDebug() {
			p.g.log.Debug("retrying", "service", svc.Name, "instance", ep.Address, "next", next.Address, "error", err, "request_id", x.RequestID)
		}
		if wait > 0 && !sleepCtx(ctx, wait) {
			cancelTicket(nbr, nticket)
			err = ErrUpstreamTimeout
			if r.Context().Err() != nil {
				err = r.Context().Err()
			}
			break
		}
		ep, br, ticket = next, nbr, nticket
	}
	if err != nil {
		var ce clientRequestError
		if r.Context().Err() != nil && !errors.Is(err, ErrUpstreamTimeout) && !errors.As(err, &ce) {
			// The client went away; nobody reads the answer. 499 in logs, like nginx.
			x.W.status = 499
			x.ErrorCode = "client_closed_request"
			return
		}
		if !errors.As(err, &ce) && !errors.Is(err, ErrUpstreamTimeout) {
			p.g.log.Warn("upstream request failed", "service", svc.Name, "instance", x.Upstream, "attempts", x.Attempts, "error", err, "request_id", x.RequestID)
		}
		x.Fail(err)
		return
	}
	defer ep.Release()
	if pending != nil {
		defer func() { pending.Done(ticket, x.ErrorCode != codeUpstreamAborted) }()
	}
	p.respond(x, resp)
}

func cancelTicket(b *breaker.Breaker, t breaker.Ticket) {
	if b != nil {
		b.Cancel(t)
	}
}

// mayRetry decides whether a failed attempt may be sent again (DESIGN.md, Retries): any
// request whose connection failed before anything was sent; with a retry block, also
// idempotent requests after a connection error or a 502/503/504 answer, provided the
// body (if any) can be replayed.
func (p *proxy) mayRetry(resp *http.Response, err error, body *retry.Body, idempotent bool) bool {
	replayable := body == nil || body.Replayable()
	if err != nil && dialFailed(err) && (body == nil || !body.Started() || replayable) {
		return true
	}
	if !p.service.retry.configured || !idempotent || !replayable {
		return false
	}
	if err != nil {
		var mbe *http.MaxBytesError
		return !errors.As(err, &mbe)
	}
	return retryableStatus(resp.StatusCode)
}

// pick chooses an instance whose breaker admits the request, skipping those already
// tried. For a retry with no untried instance left, an instance already tried may be
// used again (never one whose breaker refused).
func (p *proxy) pick(key string, skip *tried, again bool) (*balancer.Endpoint, *breaker.Breaker, breaker.Ticket) {
	set := p.service.Set
	for i := 0; i <= set.Len(); i++ {
		e := set.Pick(key, skip.Skip)
		if e == nil && again {
			e = set.Pick(key, skip.SkipRefused)
		}
		if e == nil {
			return nil, nil, breaker.Ticket{}
		}
		b := breakerOf(e)
		if b == nil {
			return e, nil, breaker.Ticket{}
		}
		t, err := b.Allow()
		if err == nil {
			return e, b, t
		}
		skip.refuse(e)
	}
	return nil, nil, breaker.Ticket{}
}

// noInstance answers when the service has no instance to try: the route's fallback if
// it has one, else 503 — with Retry-After when every instance's breaker is open.
func (p *proxy) noInstance(x *Exchange) {
	if p.route.fallback != nil {
		p.route.fallback.serve(x)
		return
	}
	if p.service.breakers != nil && p.service.Set.Len() > 0 {
		x.W.Header().Set("Retry-After", strconv.Itoa(retryAfterOpen(p.service.Set, p.service.breakers.settings.Now)))
		x.FailWith(apiError{http.StatusServiceUnavailable, codeUnavailable, "every instance's circuit breaker is open"})
		return
	}
	x.Fail(ErrNoInstance)
}

// sleepCtx waits d, or less if ctx ends first (then it returns false).
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// copyHeaders copies the upstream's response headers over what the gateway already set.
// What the gateway set wins (X-Request-Id, RateLimit-*, CORS, Retry-After), except Vary,
// which is merged; on a route with a cors block the upstream's own Access-Control-*
// headers are dropped, so the gateway's policy is the only one a browser sees.
func (p *proxy) copyHeaders(dst, src http.Header) {
	cors := p.route.cors != nil
	for k, vv := range src {
		if cors && strings.HasPrefix(k, "Access-Control-") {
			continue
		}
		if mine, ok := dst[k]; ok {
			if k == "Vary" {
				dst[k] = append(mine[:len(mine):len(mine)], vv...)
			}
			continue
		}
		dst[k] = vv
	}
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
	p.copyHeaders(x.W.Header(), resp.Header)
	h := x.W.Header()
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
			x.ErrorCode = codeUpstreamAborted
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
	resp.Header["X-Request-Id"] = []string{x.RequestID}
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

// tried is the balancer filter of one request: instances already tried, those whose
// breaker refused it, and instances whose breaker is open. The first eight live in
// fixed arrays, so the value stays on the caller's stack; more spill into slices.
type tried struct {
	n           int
	eps         [8]*balancer.Endpoint
	refused     [8]bool
	more        []*balancer.Endpoint
	moreRefused []bool
}

// index returns e's position, -1 if it was not tried.
func (t *tried) index(e *balancer.Endpoint) int {
	for i := 0; i < t.n; i++ {
		if t.eps[i] == e {
			return i
		}
	}
	for i, x := range t.more {
		if x == e {
			return len(t.eps) + i
		}
	}
	return -1
}

func (t *tried) add(e *balancer.Endpoint) {
	if t.index(e) >= 0 {
		return
	}
	if t.n < len(t.eps) {
		t.eps[t.n] = e
		t.n++
		return
	}
	t.more = append(t.more, e)
	t.moreRefused = append(t.moreRefused, false)
}

func (t *tried) refuse(e *balancer.Endpoint) {
	t.add(e)
	if i := t.index(e); i < len(t.eps) {
		t.refused[i] = true
	} else {
		t.moreRefused[i-len(t.eps)] = true
	}
}

func (t *tried) wasRefused(i int) bool {
	if i < len(t.eps) {
		return t.refused[i]
	}
	return t.moreRefused[i-len(t.eps)]
}

// Skip is the balancer.Filter of a first try: skip what was tried or is open.
func (t *tried) Skip(e *balancer.Endpoint) bool {
	return t.index(e) >= 0 || isOpen(e)
}

// SkipRefused is the filter of a retry with no untried instance left.
func (t *tried) SkipRefused(e *balancer.Endpoint) bool {
	if i := t.index(e); i >= 0 {
		return t.wasRefused(i)
	}
	return isOpen(e)
}

func isOpen(e *balancer.Endpoint) bool {
	b := breakerOf(e)
	return b != nil && b.State() == breaker.Open
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
