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
//
// The work is split the way Caddy's reverse proxy splits it: Serve runs the loop,
// tryInstance is one attempt (send, classify, record), retryTarget decides whether and
// where the next attempt goes, and finalizeResponse streams the accepted answer.
type proxy struct {
	g       *Gateway
	route   *Route
	service *Service
	timeout time.Duration
	strip   string
	bufs    *sync.Pool
}

// forward is one exchange's state across its attempts.
type forward struct {
	x          *Exchange
	ctx        context.Context // the upstream request's context
	clock      *upstreamClock  // timeout until the headers, then idle_timeout
	out        *http.Request
	url        url.URL
	body       *retry.Body // nil: no request body
	idempotent bool
	key        string // balancer key (client IP for ip_hash)
	skip       tried
}

// attempt is one try on one instance and what came of it.
type attempt struct {
	ep     *balancer.Endpoint
	br     *breaker.Breaker // nil: the service has no breaker
	ticket breaker.Ticket
	resp   *http.Response
	err    error
	fault  fault
}

// fault says whose fault a failed attempt was; it decides the breaker verdict, the
// metric outcome and whether the attempt may be retried.
type fault uint8

const (
	faultNone     fault = iota // an answer arrived
	faultClient                // the client's body failed: never the instance's
	faultGone                  // the client went away: nobody learnt anything
	faultTimeout               // the route's timeout passed before the headers
	faultUpstream              // the instance failed (refused, reset, garbage)
	faultMesh                  // the instance's mesh refused the gateway (an intention denies it)
)

// Serve forwards x upstream: one attempt per tryInstance call until an answer is
// accepted or the retry policy says stop, then finalizeResponse streams it back.
func (p *proxy) Serve(x *Exchange) {
	ctx, cancel := context.WithCancelCause(x.R.Context())
	defer cancel(nil)
	var f forward
	f.clock = newUpstreamClock(p.timeout, p.service.IdleTimeout, cancel)
	defer f.clock.stop()
	p.prepare(&f, x, ctx)
	if f.body != nil {
		// A client that stalls its upload must not hold the upstream past the timeout:
		// the transport waits for its body reader, so the read is cut off too. The
		// server's own writer, not the pooled wrapper: see upstreamClock.
		f.clock.cutUploadOf(x.W.w)
	}
	pol := &p.service.retry
	if pol.configured {
		pol.budget.Request()
	}
	a := attempt{}
	a.ep, a.br, a.ticket = p.pick(f.key, &f.skip, false)
	if a.ep == nil {
		p.closeIfUploadUnread(&f)
		p.noInstance(x)
		return
	}
	for n := 1; ; n++ {
		p.tryInstance(&f, &a, n)
		next, ok := p.retryTarget(&f, &a, n)
		if !ok {
			break
		}
		a = next
	}
	if a.err != nil {
		p.failExchange(&f, &a)
		return
	}
	p.finalizeResponse(&f, &a)
}

// prepare builds the outgoing request: the normalised path, the gateway's own hop
// headers, and the body wrapped so that an attempt can be replayed.
func (p *proxy) prepare(f *forward, x *Exchange, ctx context.Context) {
	r := x.R
	f.x, f.ctx = x, ctx
	out := r.WithContext(ctx)
	out.RequestURI = ""
	out.Close = false
	// The normalised path goes upstream as written (Opaque keeps its escapes exactly).
	f.url = url.URL{Scheme: "http", Opaque: p.upstreamPath(x.Path), RawQuery: r.URL.RawQuery}
	out.URL = &f.url
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
	pol := &p.service.retry
	f.idempotent = retry.Idempotent(r.Method, r.Header, pol.idempotencyKey)
	replay := pol.configured && f.idempotent
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		// Wrapped even when it will not be replayed: the transport closes a failed
		// attempt's body, and a connection that was never made may still be retried.
		// Bytes are kept only when the policy could send them again.
		keep := int64(-1)
		if replay {
			keep = pol.bufferBytes
		}
		f.body = retry.NewBody(r.Body, r.ContentLength, keep)
		out.Body, _ = f.body.Rewind()
		if replay {
			out.GetBody = f.body.GetBody
		}
	} else {
		out.Body = nil
	}
	if !replay {
		hideIdempotencyKeys(h)
	}
	f.out = out
	if p.service.hashKey {
		f.key = x.clientIP()
	}
}

// hideIdempotencyKeys keeps Go's transport from replaying a request the gateway's policy
// does not replay. The transport re-sends, on a kept-alive connection that died, any
// request without a body (or with GetBody) whose header map has an "Idempotency-Key"
// or "X-Idempotency-Key" key, whatever its method or value. Under a non-canonical key
// the header goes upstream unchanged (header names are case-insensitive), but the
// transport no longer sees it.
func hideIdempotencyKeys(h http.Header) {
	for _, k := range [...]string{"Idempotency-Key", "X-Idempotency-Key"} {
		if v, ok := h[k]; ok {
			delete(h, k)
			h[strings.ToLower(k[:2])+k[2:]] = v // "idempotency-Key": not canonical
		}
	}
}

// tryInstance sends the request to a.ep once, then classifies the outcome, gives the
// breaker its verdict and counts the attempt.
func (p *proxy) tryInstance(f *forward, a *attempt, n int) {
	x, svc := f.x, p.service
	x.Attempts = n
	x.Upstream = a.ep.Address
	f.url.Host = a.ep.Address
	f.skip.add(a.ep)
	a.ep.Acquire()
	start := time.Now()
	span := x.Trace.StartAttempt(f.out, svc.Name, a.ep.Address, n) // tracing hook: client span, traceparent upstream
	a.resp, a.err = svc.transport.RoundTrip(f.out)
	span.End(a.resp, a.err) // tracing hook
	svc.upstreamDuration.Observe(time.Since(start).Seconds())
	if a.err == nil && (a.resp.StatusCode < 100 || a.resp.StatusCode > 599) {
		a.resp.Body.Close()
		a.resp, a.err = nil, errBadStatus
	}
	a.fault = p.blame(f, a)
	p.breakerVerdict(a)
	p.countAttempt(a)
	if a.err != nil {
		a.ep.Release()
	}
	switch a.fault {
	case faultClient:
		// A stalled upload cut off by the route's timeout is still a 504; anything
		// else wrong with the body is the client's 400 (or 413).
		if f.clock.timedOut() {
			a.err = ErrUpstreamTimeout
		} else {
			a.err = clientRequestError{a.err}
		}
	case faultTimeout:
		a.err = ErrUpstreamTimeout // a timeout is never retried
	}
}

// blame decides whose fault the attempt's outcome was.
func (p *proxy) blame(f *forward, a *attempt) fault {
	if a.err == nil {
		return faultNone
	}
	if f.body != nil {
		if err := f.body.SourceErr(); err != nil {
			a.err = err
			return faultClient
		}
	}
	if f.clock.timedOut() {
		if f.body != nil && f.body.Waiting() {
			return faultClient // the upload stalled: the gateway was waiting for the client
		}
		return faultTimeout
	}
	if f.x.R.Context().Err() != nil {
		return faultGone
	}
	if meshDenied(a.err) {
		return faultMesh
	}
	return faultUpstream
}

// breakerVerdict tells the instance's breaker what the attempt showed. An answer that
// looks fine gets its verdict only once its body has streamed (finalizeResponse), so an
// instance that dies mid-body is not a success.
func (p *proxy) breakerVerdict(a *attempt) {
	if a.br == nil {
		return
	}
	switch a.fault {
	case faultClient, faultGone, faultMesh:
		a.br.Cancel(a.ticket) // nobody learnt anything about the instance's health
		a.br = nil
	case faultTimeout, faultUpstream:
		a.br.Done(a.ticket, false)
		a.br = nil
	default:
		if p.service.breakers.failure(a.resp.StatusCode) {
			a.br.Done(a.ticket, false)
			a.br = nil
		}
	}
}

// countAttempt records the attempt's outcome in gateway_upstream_requests_total.
func (p *proxy) countAttempt(a *attempt) {
	outcome := "error"
	switch a.fault {
	case faultClient:
		outcome = "client_error"
	case faultTimeout:
		outcome = "timeout"
	case faultMesh:
		outcome = codeMeshDenied
	case faultNone:
		outcome = outcomeOf(a.resp.StatusCode)
	}
	p.g.metrics.upstream(p.service.Name, a.ep.Address, outcome)
}

// retryTarget decides whether the attempt a is followed by another, and if so on which
// instance. Once it commits to a retry the answer in hand is discarded.
func (p *proxy) retryTarget(f *forward, a *attempt, n int) (attempt, bool) {
	pol := &p.service.retry
	// A mesh refusal is not retried: every instance enforces the same intentions.
	if a.fault == faultClient || a.fault == faultTimeout || a.fault == faultMesh || f.x.R.Context().Err() != nil ||
		n >= pol.attempts || !p.mayRetry(a.resp, a.err, f.body, f.idempotent) {
		return attempt{}, false
	}
	var wait time.Duration
	if pol.configured {
		wait = retry.Backoff(n, pol.backoff, pol.maxBackoff, nil)
	}
	if f.clock.remaining() <= wait {
		return attempt{}, false // never past the route's timeout
	}
	var next attempt
	next.ep, next.br, next.ticket = p.pick(f.key, &f.skip, true)
	if next.ep == nil {
		return attempt{}, false
	}
	var rb io.ReadCloser
	if f.body != nil {
		var ok bool
		if rb, ok = f.body.Rewind(); !ok {
			cancelTicket(next.br, next.ticket)
			return attempt{}, false
		}
	}
	if pol.configured && !pol.budget.TryRetry() {
		cancelTicket(next.br, next.ticket)
		return attempt{}, false
	}
	// Committed to the retry: the answer in hand is discarded.
	if rb != nil {
		f.out.Body = rb
	}
	if a.resp != nil {
		a.resp.Body.Close()
		a.ep.Release()
		a.resp = nil
	}
	if a.br != nil {
		a.br.Done(a.ticket, true)
	}
	pol.retries.Inc()
	if p.g.log.IsDebug() {
		p.g.log.Debug("retrying", "service", p.service.Name, "instance", a.ep.Address, "next", next.ep.Address, "error", a.err, "request_id", f.x.RequestID)
	}
	if wait > 0 && !sleepCtx(f.ctx, wait) {
		cancelTicket(next.br, next.ticket)
		a.err = ErrUpstreamTimeout
		if err := f.x.R.Context().Err(); err != nil {
			a.err = err
		}
		return attempt{}, false
	}
	return next, true
}

// failExchange answers an exchange whose last attempt failed.
func (p *proxy) failExchange(f *forward, a *attempt) {
	x, err := f.x, a.err
	var ce clientRequestError
	isClient := errors.As(err, &ce)
	isTimeout := errors.Is(err, ErrUpstreamTimeout)
	if x.R.Context().Err() != nil && !isTimeout && !isClient {
		// The client went away; nobody reads the answer. 499 in logs, like nginx.
		x.W.status = 499
		x.ErrorCode = codeClientGone
		return
	}
	p.closeIfUploadUnread(f)
	if !isClient && !isTimeout {
		p.g.log.Warn("upstream request failed", "service", p.service.Name, "instance", x.Upstream, "attempts", x.Attempts, "error", err, "request_id", x.RequestID)
	}
	x.Fail(err)
}

// closeIfUploadUnread marks the answer `Connection: close` when the client's body was
// not read to its end. Otherwise net/http reads the rest before sending the answer, and
// a client that stalls its upload would hold the connection and its handler with no
// limit; the stream is unsure anyway.
func (p *proxy) closeIfUploadUnread(f *forward) {
	if f.body != nil && !f.body.Drained() {
		f.x.W.Header()["Connection"] = p.g.hdrClose
	}
}

// finalizeResponse streams the accepted answer to the client, then releases the
// instance and gives its breaker the pending verdict.
func (p *proxy) finalizeResponse(f *forward, a *attempt) {
	x := f.x
	defer a.ep.Release()
	if !f.clock.startBody() {
		// The timeout passed just as the headers arrived: the answer is too late.
		a.resp.Body.Close()
		if a.br != nil {
			a.br.Done(a.ticket, false)
		}
		x.Fail(ErrUpstreamTimeout)
		return
	}
	if a.br != nil {
		defer func() { p.bodyVerdict(x, a) }()
	}
	p.closeIfUploadUnread(f)
	p.respond(f, a.resp)
}

// bodyVerdict gives the breaker its verdict on an answer once its body has streamed:
// a failure when the upstream broke off or went silent, nothing when the client left or
// stopped reading (nobody learnt anything about the instance), else a success.
func (p *proxy) bodyVerdict(x *Exchange, a *attempt) {
	switch x.ErrorCode {
	case codeUpstreamAborted, codeUpstreamIdle, codeBadGateway: // bad_gateway: a wrong 101
		a.br.Done(a.ticket, false)
	case codeClientGone, codeClientWriteTimeout:
		a.br.Cancel(a.ticket)
	default:
		a.br.Done(a.ticket, true)
	}
}

func cancelTicket(b *breaker.Breaker, t breaker.Ticket) {
	if b != nil {
		b.Cancel(t)
	}
}

// mayRetry decides whether a failed attempt may be sent again (docs/architecture.md): any
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
		x.Fail(ErrBreakersOpen)
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
func (p *proxy) respond(f *forward, resp *http.Response) {
	x := f.x
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

	if !p.streamBody(f, resp.Body, resp.ContentLength == -1) {
		return
	}
	for k, vv := range resp.Trailer {
		h[k] = vv
	}
}

// streamBody copies the upstream's body to the client. Each wait for the upstream is
// bounded by idle_timeout, each write to the client by client_write_timeout (set by the
// responseWriter). It returns false when the copy ended early, with x.ErrorCode saying
// whose fault it was.
func (p *proxy) streamBody(f *forward, body io.Reader, flush bool) bool {
	x, clock := f.x, f.clock
	bp := p.bufs.Get().(*[]byte)
	defer p.bufs.Put(bp)
	buf := *bp
	for {
		clock.awaitBody()
		n, rerr := body.Read(buf)
		clock.bodyArrived()
		if n > 0 {
			_, werr := x.W.Write(buf[:n])
			if werr == nil && flush {
				werr = x.W.flush()
			}
			if werr != nil {
				x.ErrorCode = codeClientGone
				if isTimeout(werr) {
					x.ErrorCode = codeClientWriteTimeout
				}
				return false
			}
		}
		if rerr == io.EOF {
			return true
		}
		if rerr != nil {
			p.upstreamBodyFailed(f, rerr)
			return false
		}
	}
}

// upstreamBodyFailed handles a body read that failed after the status was sent. The
// client that left is no one's fault; otherwise the upstream broke off or went silent,
// and the only honest thing left is to abort the client's connection so it cannot take
// a truncated body for a whole one.
func (p *proxy) upstreamBodyFailed(f *forward, err error) {
	x := f.x
	switch {
	case f.clock.idleExpired():
		x.ErrorCode = codeUpstreamIdle
		p.g.log.Warn("upstream silent mid-response past idle_timeout", "service", p.service.Name, "instance", x.Upstream, "idle_timeout", p.service.IdleTimeout, "request_id", x.RequestID)
	case x.R.Context().Err() != nil:
		x.ErrorCode = codeClientGone
		return
	default:
		x.ErrorCode = codeUpstreamAborted
		p.g.log.Warn("upstream failed mid-response", "service", p.service.Name, "instance", x.Upstream, "error", err, "request_id", x.RequestID)
	}
	panic(http.ErrAbortHandler)
}

// upgrade splices a switched-protocol connection (WebSocket and friends) to the client.
func (p *proxy) upgrade(x *Exchange, resp *http.Response) {
	up, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		resp.Body.Close()
		x.Fail(errors.New("upgrade: upstream body not writable"))
		return
	}
	defer up.Close()
	// As httputil.ReverseProxy checks it: the upstream may only switch to the protocol
	// the client asked for.
	if got := upgradeType(resp.Header); x.upgrade == "" || !printableASCII(got) || !strings.EqualFold(got, x.upgrade) {
		p.g.log.Warn("upstream switched to a protocol the client did not ask for", "service", p.service.Name, "instance", x.Upstream, "asked", x.upgrade, "got", got, "request_id", x.RequestID)
		x.Fail(errBadUpgrade)
		return
	}
	// The gateway's own headers (X-Request-Id, CORS, RateLimit-*) win, as on any answer.
	for k, vv := range x.W.Header() {
		if k == "Vary" {
			vv = append(vv[:len(vv):len(vv)], resp.Header[k]...)
		}
		resp.Header[k] = vv
	}
	// Tracked from before the hijack until its access-log line is written: shutdown
	// sends it a close frame and waits for it (see tunnels).
	t := p.g.tunnels.add()
	x.tunnel = t
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
	t.attach(conn, up, x.upgrade)
	bp1, bp2 := p.bufs.Get().(*[]byte), p.bufs.Get().(*[]byte)
	defer p.bufs.Put(bp1)
	defer p.bufs.Put(bp2)
	errc := make(chan error, 2)
	go func() { errc <- t.toClient.run(up, *bp1) }()
	go func() {
		var err error
		if n := brw.Reader.Buffered(); n > 0 {
			b, _ := brw.Reader.Peek(n)
			err = t.toUpstream.forward(b)
		}
		if err == nil {
			err = t.toUpstream.run(conn, *bp2)
		}
		errc <- err
	}()
	<-errc
	// Both connections close (deferred) and the other pump ends; wait for it, so that
	// its buffer goes back to the pool unused.
	conn.Close()
	up.Close()
	<-errc
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return s != ""
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
