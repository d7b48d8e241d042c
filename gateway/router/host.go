package router

import (
	"fmt"
	"net/netip"
	"strings"
)

// maxHostLen bounds the host names the router compares. A request host longer than
// this (after its port is stripped) matches only host-less routes.
const maxHostLen = 255

// hostKind says which group of the table a configured host selects.
type hostKind uint8

const (
	hostAny   hostKind = iota // "*": same as no hosts
	hostExact                 // "api.example.com", "10.0.0.1", "[::1]"
	hostWild                  // "*.example.com"; key is ".example.com"
)

// parseHost validates a configured host and returns its kind and lookup key. Hosts
// are case-insensitive and lower-cased here; one trailing dot is dropped; a port is
// refused, because the port of a request's Host is never compared.
func parseHost(h string) (hostKind, string, error) {
	orig := h
	bad := func(reason string) (hostKind, string, error) {
		return 0, "", fmt.Errorf("%w %q: %s", ErrBadHost, orig, reason)
	}
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	switch {
	case h == "":
		return bad("empty")
	case h == "*":
		return hostAny, "", nil
	case strings.HasPrefix(h, "["):
		if !strings.HasSuffix(h, "]") {
			return bad("an IPv6 literal is written [addr], without a port")
		}
		a, err := netip.ParseAddr(h[1 : len(h)-1])
		if err != nil || !a.Is6() {
			return bad("not an IPv6 address")
		}
		return hostExact, h, nil
	case strings.IndexByte(h, ':') >= 0:
		return bad("must not carry a port (the port of a request's Host is ignored); write IPv6 as [addr]")
	case strings.HasPrefix(h, "*."):
		if err := checkHostName(h[2:]); err != "" {
			return bad(err)
		}
		return hostWild, h[1:], nil
	}
	if err := checkHostName(h); err != "" {
		return bad(err)
	}
	return hostExact, h, nil
}

// checkHostName returns why the lower-case name h is not a host name, or "".
func checkHostName(h string) string {
	if len(h) > 253 {
		return "longer than 253 characters"
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" {
			return "empty label"
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' {
				continue
			}
			if c == '*' {
				return "'*' is allowed only as a whole first label (\"*.example.com\")"
			}
			return fmt.Sprintf("invalid character %q", c)
		}
	}
	return ""
}

// requestHost writes the comparable form of a request's Host into buf: port stripped
// ("example.com:8080", "[::1]:8080"), one trailing dot dropped, ASCII lower-cased.
// It reports false when the result does not fit in buf.
func requestHost(host string, buf *[maxHostLen]byte) ([]byte, bool) {
	if len(host) > 0 && host[0] == '[' {
		if i := strings.IndexByte(host, ']'); i >= 0 {
			host = host[:i+1]
		}
	} else if i := strings.IndexByte(host, ':'); i >= 0 && strings.IndexByte(host[i+1:], ':') < 0 {
		host = host[:i]
	}
	if n := len(host); n > 0 && host[n-1] == '.' {
		host = host[:n-1]
	}
	if len(host) > len(buf) {
		return nil, false
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return buf[:len(host)], true
}
