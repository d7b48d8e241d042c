package router

import (
	"errors"
	"strings"
	"testing"
)

// refMatch is a plain reference matcher for one parsed pattern: segment by segment,
// no tree, no precedence. path is normalised.
func refMatch(segs []segment, path string) bool {
	parts := strings.Split(path[1:], "/")
	for i, s := range segs {
		switch s.kind {
		case segWild:
			return true // the rest, even nothing
		case segParam:
			if i >= len(parts) || parts[i] == "" {
				return false
			}
		case segStatic:
			if i >= len(parts) || parts[i] != s.text {
				return false
			}
		}
	}
	return len(parts) == len(segs)
}

// FuzzRouter builds a table from three fuzzed routes and matches a fuzzed request:
// New and Check agree; Match never panics; a Found route's pattern, host and method do
// match the request; a request that a host-less, method-less route matches is never
// 404; MatchParams agrees with Match.
func FuzzRouter(f *testing.F) {
	f.Add("/api/users/:id", "", "", "/api/*", "a.example.test", "GET", "/files/*rest", "*.example.test", "POST",
		"a.example.test", "GET", "/api/users/7")
	f.Add("/a/:1bad", "a..b", "G T", "/a/b*c", "[::1]", "", "/", "*", "",
		"[::1]:80", "DELETE", "/a/b")
	f.Add("/p", "a.example.test", "GET", "/p", "*.example.test", "GET", "/p", "", "GET",
		"b.example.test", "GET", "/p")
	f.Add("/u/:id/x", "", "PUT", "/u/*", "", "", "/u/me/x", "", "GET",
		"", "POST", "/u/me/x")
	f.Add("/caf%C3%A9/:x", "", "", "/café/*", "h", "", "/%41/", "", "",
		"H", "GET", "/caf%C3%A9/1")
	f.Add("/a/..%2Fb", "", "", "/a/..;x", "", "", "/a/%2e", "", "",
		"", "GET", "/a/b")
	f.Fuzz(func(t *testing.T, p0, h0, m0, p1, h1, m1, p2, h2, m2, host, method, path string) {
		routes := []Route{{Path: p0}, {Path: p1}, {Path: p2}}
		for i, hm := range [][2]string{{h0, m0}, {h1, m1}, {h2, m2}} {
			if hm[0] != "" {
				routes[i].Hosts = strings.Split(hm[0], ",")
			}
			if hm[1] != "" {
				routes[i].Methods = strings.Split(hm[1], ",")
			}
		}
		tb, err := New(routes)
		errs := Check(routes)
		if (err == nil) != (len(errs) == 0) || err != nil && err.Error() != errs[0].Error() {
			t.Fatalf("New = %v, Check = %v", err, errs)
		}
		for _, e := range errs {
			var re *RouteError
			var ce *ConflictError
			if !errors.As(e, &re) && !errors.As(e, &ce) {
				t.Fatalf("Check: %T %v is neither a RouteError nor a ConflictError", e, e)
			}
		}
		if err != nil {
			return
		}
		if method == "" {
			method = "GET"
		}
		norm, ok := Normalize(path)
		if !ok {
			return
		}
		res := tb.Match(host, method, norm)
		res2, params := tb.MatchParams(host, method, norm, nil)
		if res != res2 {
			t.Fatalf("Match = %+v, MatchParams = %+v", res, res2)
		}
		switch res.Status {
		case Found:
			r := routes[res.Route]
			segs, _, _ := parsePattern(r.Path)
			if !refMatch(segs, norm) {
				t.Fatalf("route %d %q does not match %q", res.Route, r.Path, norm)
			}
			if len(params) != len(tb.names[res.Route]) {
				t.Fatalf("%d params for route %d, want %d", len(params), res.Route, len(tb.names[res.Route]))
			}
			if len(r.Methods) > 0 && !methodAllowed(r.Methods, method) {
				t.Fatalf("route %d (methods %q) served %s", res.Route, r.Methods, method)
			}
			if len(r.Hosts) > 0 && !hostAllowed(r.Hosts, host) {
				t.Fatalf("route %d (hosts %q) served host %q", res.Route, r.Hosts, host)
			}
		case MethodNotAllowed:
			if res.Allow == "" || strings.Contains(", "+res.Allow+",", ", "+method+",") {
				t.Fatalf("405 for %s with Allow %q", method, res.Allow)
			}
		}
		if res.Status != Found {
			for i, r := range routes {
				segs, _, _ := parsePattern(r.Path)
				if len(r.Hosts) == 0 && len(r.Methods) == 0 && refMatch(segs, norm) {
					t.Fatalf("route %d %q matches %q for every host and method, but Match = %+v", i, r.Path, norm, res)
				}
			}
		}
	})
}

func methodAllowed(methods []string, m string) bool {
	for _, x := range methods {
		x = strings.ToUpper(x)
		if x == m || x == "GET" && m == "HEAD" {
			return true
		}
	}
	return false
}

// hostAllowed is a reference host check: exact (case-insensitive, port and one
// trailing dot ignored), "*.suffix" or "*".
func hostAllowed(hosts []string, host string) bool {
	var buf [maxHostLen]byte
	h, ok := requestHost(host, &buf)
	if !ok {
		return false
	}
	req := string(h)
	for _, x := range hosts {
		x = strings.TrimSuffix(strings.ToLower(x), ".")
		switch {
		case x == "*" || x == req:
			return true
		case strings.HasPrefix(x, "*.") && strings.HasSuffix(req, x[1:]) && len(req) > len(x)-1:
			return true
		}
	}
	return false
}
