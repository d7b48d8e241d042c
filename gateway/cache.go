package gateway

// The response cache stage of routes with cache = "name". It sits just before the
// proxy: a hit is answered here (no instance is picked, no breaker is asked); a miss
// goes on to the proxy through a writer that streams the answer to the client while
// teeing it into a buffer capped at max_object_bytes, and stores it only once the whole
// body has reached the client.

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	rcache "github.com/infinityxone/gateway/cache"
	"github.com/infinityxone/gateway/gateway/config"
	"github.com/infinityxone/gateway/ratelimit"
)

// cacheStatusName is this cache's name in Cache-Status (RFC 9211).
const cacheStatusName = "gateway"

// minCacheRedisTimeout is the floor of a cache call to Redis: cache values carry whole
// bodies, so the limiter's tight per-call timeout (redis.timeout) is raised to this.
const minCacheRedisTimeout = 250 * time.Millisecond

// routeCache is the runtime form of one cache block.
type routeCache struct {
	name                     string
	c                        *rcache.Cache
	memory                   *rcache.MemoryStore // nil for a redis cache
	hit, miss, stale, bypass prometheus.Counter
	g                        *Gateway
}

// newCaches builds the cache blocks. Redis caches share one client of their own.
func newCaches(g *Gateway, cfg *config.Config, now func() time.Time) (map[string]*routeCache, error) {
	if len(cfg.Caches) == 0 {
		return nil, nil
	}
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_cache_requests_total",
		Help: "Requests on cached routes by cache and result (hit, miss, stale, bypass).",
	}, []string{"cache", "result"})
	g.metrics.Registry.MustRegister(vec)
	out := make(map[string]*routeCache, len(cfg.Caches))
	for _, cc := range cfg.Caches {
		rc := &routeCache{name: cc.Name, g: g,
			hit: vec.WithLabelValues(cc.Name, "hit"), miss: vec.WithLabelValues(cc.Name, "miss"),
			stale: vec.WithLabelValues(cc.Name, "stale"), bypass: vec.WithLabelValues(cc.Name, "bypass")}
		var store rcache.Store
		switch cc.Store {
		case "redis":
			r := cfg.Redis
			if r == nil {
				return nil, fmt.Errorf("%s: cache %q: store = \"redis\" needs a redis block", cc.Pos, cc.Name)
			}
			if g.cacheRedis == nil {
				// The caches' own client: the limiter's is rebuilt by a reload that
				// changes the policies, the caches live as long as the gateway
				// (closed in closeLogs).
				g.cacheRedis = ratelimit.NewRedisClient(ratelimit.RedisConfig{
					Address: r.Address, Addresses: r.Addresses, MasterName: r.MasterName, Password: r.Password, DB: r.DB,
				})
			}
			timeout := minCacheRedisTimeout
			if r.Timeout > timeout {
				timeout = r.Timeout
			}
			store = rcache.NewRedisStore(g.cacheRedis, rcache.RedisOptions{Name: cc.Name, Timeout: timeout, Now: now})
		default:
			rc.memory = rcache.NewMemoryStore(cc.MaxBytes, now)
			store = rc.memory
		}
		rc.c = rcache.New(rcache.Options{Store: store, MaxObjectBytes: cc.MaxObjectBytes, DefaultTTL: cc.DefaultTTL,
			StaleIfError: cc.StaleIfError, Now: now})
		out[cc.Name] = rc
	}
	return out, nil
}

// cacheStage wraps the rest of a route with cache = "name".
func (g *Gateway) cacheStage(rt *Route, next Handler) Handler {
	rc := g.caches[rt.Config.Cache]
	if rc == nil {
		return next
	}
	wait := rt.Config.Timeout
	if wait == 0 && rt.Service != nil {
		wait = rt.Service.Timeout
	}
	if wait <= 0 {
		wait = 30 * time.Second
	}
	return HandlerFunc(func(x *Exchange) { rc.serve(x, next, wait) })
}

// serve answers x from the cache or sends it on and stores the answer. wait bounds how
// long a request waits for another request's miss of the same key on this replica.
func (rc *routeCache) serve(x *Exchange, next Handler, wait time.Duration) {
	r := x.R
	h := x.W.Header()
	req := rcache.Classify(r.Method, r.Host, x.Path, r.URL.RawQuery, r.Header)
	if req.Bypass || x.upgrade != "" {
		rc.bypass.Inc()
		h.Set("Cache-Status", cacheStatusName+"; fwd=bypass")
		next.Serve(x)
		return
	}
	now := rc.c.Now()
	// Concurrent misses of one key on this replica wait for the first one, which does
	// the lookup and, if need be, the upstream request for them all.
	var flight *rcache.Flight
	if r.Method == http.MethodGet && !req.NoCache && !req.NoStore {
		f, leader := rc.c.Join(req.Key)
		if leader {
			flight = f
			defer rc.c.Finish(f, nil) // whatever happens, waiters are released
		} else {
			ctx, cancel := context.WithTimeout(r.Context(), wait)
			e := f.Wait(ctx, r.Header)
			cancel()
			if now = rc.c.Now(); e != nil && rcache.Usable(e, &req, now) {
				rc.hit.Inc()
				rc.serveEntry(x, e, now, "hit; detail=coalesced")
				return
			}
			if r.Context().Err() != nil {
				x.W.status = 499 // gone while waiting; nobody reads an answer
				x.ErrorCode = "client_closed_request"
				return
			}
			// The first request's answer is not one this request can use: on alone.
		}
	}
	fwd := "uri-miss"
	var stale *rcache.Entry
	if req.NoCache {
		fwd = "request"
	} else {
		lk, err := rc.c.Lookup(r.Context(), &req)
		if err != nil {
			// The store is down: the request is served as if the route had no cache.
			if rc.g.log.IsDebug() {
				rc.g.log.Debug("cache store unavailable", "cache", rc.name, "error", err, "request_id", x.RequestID)
			}
			rc.bypass.Inc()
			h.Set("Cache-Status", cacheStatusName+"; fwd=bypass; detail=store-unavailable")
			next.Serve(x)
			return
		}
		switch e := lk.Entry; {
		case e != nil && rcache.Usable(e, &req, now):
			if flight != nil {
				rc.c.Finish(flight, e)
			}
			rc.hit.Inc()
			rc.serveEntry(x, e, now, "hit")
			return
		case e != nil:
			fwd = "stale"
			if rc.c.StaleUsable(e, now) {
				stale = e
			}
		case lk.VaryMiss:
			fwd = "vary-miss"
		}
	}
	fill := &cacheFill{rc: rc, x: x, req: &req, fwd: fwd, stale: stale, requested: now, flight: flight}
	fill.run(next)
}

// serveEntry answers x with a stored entry. Headers the gateway set already win, as
// with a proxied answer (Vary is merged).
func (rc *routeCache) serveEntry(x *Exchange, e *rcache.Entry, now time.Time, status string) {
	h := x.W.Header()
	for k, vv := range e.Header {
		if mine, ok := h[k]; ok {
			if k == "Vary" {
				h[k] = append(mine[:len(mine):len(mine)], vv...)
			}
			continue
		}
		h[k] = vv // entries are immutable and their slices full: shared safely
	}
	age := e.Age(now)
	h["Age"] = []string{strconv.FormatInt(int64(age/time.Second), 10)}
	ttl := int64((e.Lifetime - age) / time.Second)
	h.Set("Cache-Status", cacheStatusName+"; "+status+"; ttl="+strconv.FormatInt(ttl, 10))
	if e.Status == http.StatusOK && notModified(x.R.Header, e.Header) {
		// RFC 9110 §15.4.5: a 304 keeps only these of the stored answer's fields.
		for k := range e.Header {
			switch k {
			case "Cache-Control", "Content-Location", "Date", "Etag", "Expires", "Vary":
			default:
				if _, mine := h[k]; mine && !rc.gwHeader(k) {
					delete(h, k)
				}
			}
		}
		x.W.WriteHeader(http.StatusNotModified)
		return
	}
	if e.Status != http.StatusNoContent && e.Status != http.StatusNotModified {
		h["Content-Length"] = []string{strconv.Itoa(len(e.Body))}
	}
	x.W.WriteHeader(e.Status)
	// In 32 KiB writes, as the proxy streams: each write gets its own
	// client_write_timeout, so a slow but moving client is not cut off on a large hit.
	for b := e.Body; x.R.Method != http.MethodHead && len(b) > 0; {
		n := min(len(b), 32<<10)
		if _, err := x.W.Write(b[:n]); err != nil {
			return
		}
		b = b[n:]
	}
}

// gwHeader reports headers the gateway sets on every answer itself, which a 304 keeps.
func (rc *routeCache) gwHeader(k string) bool {
	return k == "X-Request-Id" || k == "Age" || k == "Cache-Status"
}

// notModified evaluates a client's conditional GET against a stored answer (RFC 9110
// §13.2.2): If-None-Match with weak comparison, else If-Modified-Since.
func notModified(req, stored http.Header) bool {
	if inm := req.Values("If-None-Match"); len(inm) > 0 {
		etag := stored.Get("Etag")
		if etag == "" {
			return false
		}
		for _, v := range inm {
			for tag := range strings.SplitSeq(v, ",") {
				tag = strings.TrimSpace(tag)
				if tag == "*" || strings.TrimPrefix(tag, "W/") == strings.TrimPrefix(etag, "W/") {
					return true
				}
			}
		}
		return false
	}
	ims, lm := req.Get("If-Modified-Since"), stored.Get("Last-Modified")
	if ims == "" || lm == "" {
		return false
	}
	t, err := http.ParseTime(ims)
	m, err2 := http.ParseTime(lm)
	return err == nil && err2 == nil && !m.After(t)
}

// cacheFill is the writer of a miss: it passes the answer to the client and keeps a
// copy of it (at most max_object_bytes) to store once the whole body has been sent.
type cacheFill struct {
	rc        *routeCache
	x         *Exchange
	req       *rcache.Request
	fwd       string
	stale     *rcache.Entry // a stale entry to serve instead of a failure (stale_if_error)
	flight    *rcache.Flight
	requested time.Time

	w          http.ResponseWriter // the writer underneath
	gwKeys     map[string]bool     // header keys the gateway set before the upstream answered
	gwSnapshot http.Header         // their values, kept only when a stale entry may replace a failure
	varyBefore int                 // Vary values the gateway set before the upstream's
	code       int
	received   time.Time
	storing    bool
	lifetime   time.Duration
	header     http.Header
	buf        []byte
	failed     bool // a write to the client failed: the copy is incomplete
	swallowed  bool // the answer is a failure that the stale entry replaces
}

// run sends the request on through next with the fill as the writer.
func (f *cacheFill) run(next Handler) {
	x := f.x
	h := x.W.Header()
	f.gwKeys = make(map[string]bool, len(h))
	for k := range h {
		f.gwKeys[k] = true
	}
	f.varyBefore = len(h["Vary"])
	if f.stale != nil {
		f.gwSnapshot = h.Clone()
	}
	f.w = x.W.w
	x.W.w = f
	completed := false
	defer func() {
		x.W.w = f.w
		if !f.swallowed {
			f.rc.miss.Inc() // went upstream and the upstream's answer (or failure) was sent
		}
		if !completed {
			f.abandon() // a panic: the upstream failed mid-body, the connection is dropped
		}
	}()
	next.Serve(x)
	completed = true
	f.done()
}

func (f *cacheFill) Header() http.Header { return f.w.Header() }

func (f *cacheFill) WriteHeader(code int) {
	if code >= 100 && code < 200 {
		f.w.WriteHeader(code)
		return
	}
	if f.code != 0 {
		return
	}
	f.code = code
	if f.stale != nil && staleOnStatus(code) {
		f.swallowed = true // served from the stale entry once the proxy returns
		return
	}
	h := f.w.Header()
	f.received = f.rc.c.Now()
	f.decide(h)
	status := cacheStatusName + "; fwd=" + f.fwd
	if f.storing {
		status += "; stored"
	}
	h.Set("Cache-Status", status)
	f.w.WriteHeader(code)
}

// staleOnStatus reports the failures that a stale entry may replace (RFC 5861 §4).
func staleOnStatus(code int) bool {
	return code == http.StatusInternalServerError || code == http.StatusBadGateway ||
		code == http.StatusServiceUnavailable || code == http.StatusGatewayTimeout
}

// decide judges whether the answer now starting will be stored, and if so snapshots
// the upstream's headers (what the gateway set itself is left out).
func (f *cacheFill) decide(h http.Header) {
	if f.x.ErrorCode != "" || len(h["Trailer"]) > 0 {
		f.release()
		return
	}
	var length int64 = -1
	if cl := h.Get("Content-Length"); cl != "" {
		n, err := strconv.ParseInt(cl, 10, 64)
		if err != nil || n > f.rc.c.MaxObjectBytes() {
			f.release()
			return
		}
		length = n
	}
	up := make(http.Header, len(h))
	for k, vv := range h {
		switch {
		case k == "Vary":
			if len(vv) > f.varyBefore {
				up[k] = vv[f.varyBefore:]
			}
		case f.gwKeys[k]:
		default:
			up[k] = vv
		}
	}
	life, reason := f.rc.c.Decide(f.req, f.code, up, f.received)
	if reason != rcache.Storable {
		f.release()
		return
	}
	f.storing, f.lifetime, f.header = true, life, up
	if length > 0 {
		f.buf = make([]byte, 0, length)
	}
}

// release tells waiters that this answer will not be stored.
func (f *cacheFill) release() {
	f.storing, f.buf = false, nil
	if f.flight != nil {
		f.rc.c.Finish(f.flight, nil)
	}
}

func (f *cacheFill) Write(p []byte) (int, error) {
	if f.code == 0 {
		f.WriteHeader(http.StatusOK)
	}
	if f.swallowed {
		return len(p), nil
	}
	n, err := f.w.Write(p)
	if err != nil {
		f.failed = true
		f.release()
		return n, err
	}
	if f.storing {
		if int64(len(f.buf)+len(p)) > f.rc.c.MaxObjectBytes() {
			f.release() // too large: it streams on, unstored
		} else {
			f.keep(p)
		}
	}
	return n, nil
}

// keep appends p to the copy, growing it so that its capacity never passes
// max_object_bytes (append alone could double it past the cap).
func (f *cacheFill) keep(p []byte) {
	if need := len(f.buf) + len(p); need > cap(f.buf) {
		c := min(max(2*cap(f.buf), need, 4<<10), int(f.rc.c.MaxObjectBytes()))
		nb := make([]byte, len(f.buf), c)
		copy(nb, f.buf)
		f.buf = nb
	}
	f.buf = append(f.buf, p...)
}

func (f *cacheFill) Flush() { _ = f.FlushError() }

// FlushError flushes and reports a client that cannot take the bytes (a write deadline
// passed), so the proxy blames the client's slowness as it does without a cache.
func (f *cacheFill) FlushError() error {
	if f.code == 0 {
		f.WriteHeader(http.StatusOK)
	}
	if f.swallowed {
		return nil
	}
	if err := http.NewResponseController(f.w).Flush(); err != nil {
		f.failed = true
		return err
	}
	return nil
}

func (f *cacheFill) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(f.w).Hijack()
}

func (f *cacheFill) Unwrap() http.ResponseWriter { return f.w }

// done runs once the proxy returned normally: it serves the stale entry in place of a
// failure, or stores a complete answer.
func (f *cacheFill) done() {
	x := f.x
	if f.swallowed {
		x.W.w = f.w
		// Forget the failure the proxy wrote: its headers, status and error code.
		h := x.W.Header()
		clear(h)
		for k, vv := range f.gwSnapshot {
			h[k] = vv
		}
		x.W.wroteHeader, x.W.status, x.W.written = false, 0, 0
		x.ErrorCode = ""
		f.rc.stale.Inc()
		f.rc.serveEntry(x, f.stale, f.rc.c.Now(), "fwd=stale; fwd-status="+strconv.Itoa(f.code))
		return
	}
	if !f.storing || f.failed || x.ErrorCode != "" {
		return
	}
	if cl := f.header.Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(f.buf)) {
		return // a body shorter than announced is not a whole answer
	}
	e := f.rc.c.NewEntry(f.req, f.code, f.header, f.buf, f.lifetime, f.requested, f.received)
	// The client has its answer; the store call must not be cut short by it leaving.
	ctx := context.WithoutCancel(x.R.Context())
	if err := f.rc.c.Put(ctx, f.req, e); err != nil {
		if f.rc.g.log.IsDebug() {
			f.rc.g.log.Debug("cache store failed", "cache", f.rc.name, "error", err, "request_id", x.RequestID)
		}
	}
	if f.flight != nil {
		f.rc.c.Finish(f.flight, e)
	}
}

// abandon drops the copy of an answer that did not complete.
func (f *cacheFill) abandon() {
	f.failed = true
	f.release()
}
