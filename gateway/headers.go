package gateway

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
)

// hopHeaders are the hop-by-hop headers of RFC 9110 §7.6.1 (and the legacy ones Go's
// ReverseProxy also drops). They never cross the gateway.
var hopHeaders = [...]string{
	"Connection",
	"Proxy-Connection",
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",
	"Trailer",
	"Transfer-Encoding",
	"Upgrade",
}

// removeHopHeaders drops hop-by-hop headers and every header named in Connection.
func removeHopHeaders(h http.Header) {
	for _, f := range h["Connection"] {
		for sf := range strings.SplitSeq(f, ",") {
			if sf = strings.TrimSpace(sf); sf != "" {
				h.Del(sf)
			}
		}
	}
	for _, name := range hopHeaders {
		delete(h, name)
	}
}

// upgradeType returns the Upgrade protocol when the Connection header asks for one.
func upgradeType(h http.Header) string {
	for _, v := range h["Connection"] {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), "upgrade") {
				return h.Get("Upgrade")
			}
		}
	}
	return ""
}

// hasToken reports whether the comma-separated list v holds token (case-insensitive);
// a token may carry a version ("h2c/1").
func hasToken(v, token string) bool {
	for t := range strings.SplitSeq(v, ",") {
		t = strings.TrimSpace(t)
		if i := strings.IndexByte(t, '/'); i >= 0 {
			t = t[:i]
		}
		if strings.EqualFold(t, token) {
			return true
		}
	}
	return false
}

// requestIDs makes request ids: a random per-process prefix and a counter. Unique without
// a syscall or a lock per request.
type requestIDs struct {
	prefix string
	n      atomic.Uint64
}

func newRequestIDs() *requestIDs {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return &requestIDs{prefix: hex.EncodeToString(b[:]) + "-"}
}

func (g *requestIDs) next() string {
	var buf [32]byte
	b := append(buf[:0], g.prefix...)
	b = strconv.AppendUint(b, g.n.Add(1), 36)
	return string(b)
}

// validRequestID reports whether a client's X-Request-Id may be kept: 1–128 characters
// of A-Z a-z 0-9 . _ -.
func validRequestID(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// trustedProxies decides whose X-Forwarded-* headers are believed.
type trustedProxies []netip.Prefix

func (t trustedProxies) contains(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range t {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// remoteAddr parses r.RemoteAddr ("ip:port") without allocating.
func remoteAddr(r *http.Request) netip.Addr {
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		return ap.Addr().Unmap()
	}
	if a, err := netip.ParseAddr(r.RemoteAddr); err == nil {
		return a.Unmap()
	}
	return netip.Addr{}
}

// forwarded sets X-Forwarded-For/-Proto/-Host for the upstream and returns the client IP.
//
// From an untrusted peer every client-sent X-Forwarded-* (and Forwarded) is replaced by the
// gateway's own values. From a trusted proxy the chain is kept and the peer appended; the
// client IP is then the rightmost address of X-Forwarded-For that is not itself trusted.
func (t trustedProxies) forwarded(r *http.Request, peer netip.Addr, g *Gateway) (client netip.Addr) {
	h := r.Header
	proto := g.hdrHTTP
	if r.TLS != nil {
		proto = g.hdrHTTPS
	}
	peerStr := ""
	if peer.IsValid() {
		peerStr = peer.String()
	}
	if len(t) == 0 || !peer.IsValid() || !t.contains(peer) {
		// Every X-Forwarded-* (Port, Prefix … too), X-Real-Ip and Forwarded the client
		// sent is dropped; the gateway's own values replace them.
		for k := range h {
			if strings.HasPrefix(k, "X-Forwarded-") || k == "X-Real-Ip" || k == "Forwarded" {
				delete(h, k)
			}
		}
		h["X-Forwarded-For"] = []string{peerStr}
		h["X-Forwarded-Proto"] = proto
		h["X-Forwarded-Host"] = []string{r.Host}
		return peer
	}
	client = peer
	prior := h.Values("X-Forwarded-For")
	if len(prior) > 0 {
		all := strings.Join(prior, ", ")
		client = t.rightmostUntrusted(all, peer)
		h["X-Forwarded-For"] = []string{all + ", " + peerStr}
	} else {
		h["X-Forwarded-For"] = []string{peerStr}
	}
	if h.Get("X-Forwarded-Proto") == "" {
		h["X-Forwarded-Proto"] = proto
	}
	if h.Get("X-Forwarded-Host") == "" {
		h["X-Forwarded-Host"] = []string{r.Host}
	}
	return client
}

// rightmostUntrusted walks an X-Forwarded-For list from the right and returns the first
// address that is not a trusted proxy. A malformed entry stops the walk: what lies left of
// it cannot be believed, so the last good address is the client.
func (t trustedProxies) rightmostUntrusted(xff string, peer netip.Addr) netip.Addr {
	client := peer
	for xff != "" {
		i := strings.LastIndexByte(xff, ',')
		part := strings.TrimSpace(xff[i+1:])
		if i < 0 {
			xff = ""
		} else {
			xff = xff[:i]
		}
		a, err := netip.ParseAddr(part)
		if err != nil {
			if ap, err2 := netip.ParseAddrPort(part); err2 == nil {
				a = ap.Addr()
			} else {
				return client
			}
		}
		a = a.Unmap()
		client = a
		if !t.contains(a) {
			return a
		}
	}
	return client
}
