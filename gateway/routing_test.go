package gateway

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/infinityxone/gateway/gateway/config"
)

// Host precedence through the real pipeline: for the same method and path, a route
// naming the request's host wins over a wildcard host, which wins over a route without
// hosts; a host's route that does not allow the method leaves it to the next group; a
// method no group allows is 405 with the union in Allow.
func TestHostPrecedenceEndToEnd(t *testing.T) {
	exact, wild, none := echoBackend(t, "exact"), echoBackend(t, "wild"), echoBackend(t, "none")
	src := `
gateway { address = "127.0.0.1:0" }
service "exact" {
  instance {
    address = env("EXACT")
  }
}
service "wild" {
  instance {
    address = env("WILD")
  }
}
service "none" {
  instance {
    address = env("NONE")
  }
}
route "default" {
  path    = "/p"
  methods = ["GET", "DELETE"]
  service = "none"
}
route "wildcard" {
  hosts   = ["*.example.test"]
  methods = ["GET", "PUT"]
  path    = "/p"
  service = "wild"
}
route "exact" {
  hosts   = ["a.example.test"]
  methods = ["GET", "POST"]
  path    = "/p"
  service = "exact"
}
`
	g := startGateway(t, src, map[string]string{"EXACT": hostOf(exact.Server), "WILD": hostOf(wild.Server), "NONE": hostOf(none.Server)})
	cases := []struct {
		host, method string
		status       int
		backend      string // for 200
		allow        string // for 405
	}{
		{"a.example.test", "GET", 200, "exact", ""},
		{"A.Example.Test:8443", "GET", 200, "exact", ""},
		{"b.example.test", "GET", 200, "wild", ""},
		{"example.test", "GET", 200, "none", ""},
		{"other.test", "GET", 200, "none", ""},
		{"a.example.test", "POST", 200, "exact", ""},
		{"a.example.test", "PUT", 200, "wild", ""},
		{"a.example.test", "DELETE", 200, "none", ""},
		{"a.example.test", "PATCH", 405, "", "DELETE, GET, HEAD, POST, PUT"},
		{"b.example.test", "POST", 405, "", "DELETE, GET, HEAD, PUT"},
		{"other.test", "PUT", 405, "", "DELETE, GET, HEAD"},
	}
	for _, c := range cases {
		resp, body := do(t, c.method, g.URL+"/p", "", "Host", c.host)
		if resp.StatusCode != c.status {
			t.Errorf("%s %s /p: status %d, want %d (%s)", c.host, c.method, resp.StatusCode, c.status, body)
			continue
		}
		switch c.status {
		case http.StatusOK:
			if s := decodeSeen(t, body); s.Backend != c.backend {
				t.Errorf("%s %s /p: served by %q, want %q", c.host, c.method, s.Backend, c.backend)
			}
		case http.StatusMethodNotAllowed:
			if got := resp.Header.Get("Allow"); got != c.allow {
				t.Errorf("%s %s /p: Allow %q, want %q", c.host, c.method, got, c.allow)
			}
			mustContain(t, body, `"method_not_allowed"`)
		}
	}
}

// received is what a path-recording backend saw: the request target as sent (escapes
// intact) and the path as a decoding backend reads it.
type received struct {
	Raw     string `json:"raw"`
	Decoded string `json:"decoded"`
}

// pathBackend answers with the path it received, raw and decoded, and counts hits.
func pathBackend(t testing.TB) (*httptest.Server, *atomic.Int64) {
	var hits atomic.Int64
	s := backend(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(received{Raw: r.RequestURI, Decoded: r.URL.Path})
	})
	return s, &hits
}

// sendTarget sends method target exactly as written (no client-side cleaning or
// escaping) and returns the status and body.
func sendTarget(t testing.TB, base, method, target string) (int, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", method, target); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// dotSegment reports whether a decoded path has a "." or ".." segment once '\' is read
// as a separator too and ";params" are dropped, as some backends do.
func dotSegment(decoded string) bool {
	for _, seg := range strings.FieldsFunc(decoded, func(r rune) bool { return r == '/' || r == '\\' }) {
		if i := strings.IndexByte(seg, ';'); i >= 0 {
			seg = seg[:i]
		}
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

const routingSecret = "0123456789abcdef0123456789abcdef"

// Dot segments hidden by encoding are dot segments: the request is routed on the
// path a decoding backend would see (so a protected route stays protected), or is 400
// when it climbs above "/". Whatever reaches the backend has no segment that a backend
// decoding the path reads as "..".
func TestEncodedDotSegmentsEndToEnd(t *testing.T) {
	open, openHits := pathBackend(t)
	protected, protectedHits := pathBackend(t)
	src := `
gateway { address = "127.0.0.1:0" }
jwt "users" {
  algorithms = ["HS256"]
  secret     = env("SECRET")
}
service "open" {
  instance {
    address = env("OPEN")
  }
}
service "protected" {
  instance {
    address = env("PROTECTED")
  }
}
route "me" {
  path    = "/api/me"
  service = "protected"
  jwt     = "users"
}
route "users" {
  path         = "/api/users/*"
  service      = "open"
  strip_prefix = "/api"
}
`
	g := startGateway(t, src, map[string]string{"OPEN": hostOf(open), "PROTECTED": hostOf(protected), "SECRET": routingSecret})
	cases := []struct {
		target string
		status int
		raw    string // what the open backend receives, for 200
	}{
		// Routed as /api/me: the protected route answers 401, the open backend sees nothing.
		{"/api/users/..%2f..%2fapi%2fme", 401, ""},
		{"/api/users/..%2F..%2Fapi%2Fme", 401, ""},
		{"/api/users/%2e%2e%2f%2e%2e%2fapi%2fme", 401, ""},
		{"/api/users/%2e%2e/me", 401, ""},
		{"/api/users/%2E%2E/me", 401, ""},
		{"/api/users/.%2e/me", 401, ""},
		{"/api/users/..;/me", 401, ""},
		{"/api/users/..;x=1/me", 401, ""},
		{"/api/users/..%3bx/me", 401, ""},
		{"/api/users/..%5cme", 401, ""},
		{"/api/users/..\\me", 401, ""},
		{"/api/users/x%2f..%2f..%2fme", 401, ""},
		// Above the root: 400.
		{"/api/users/..%2f..%2f..%2fetc%2fpasswd", 400, ""},
		{"/api/%2e%2e/%2e%2e/etc/passwd", 400, ""},
		{"/api/users/..;/..;/..;/etc", 400, ""},
		{"/api/users/..%5c..%5c..%5cetc", 400, ""},
		// Normalised and still under /api/users: the open backend gets the clean path.
		{"/api/users/7/..%2f8", 200, "/users/8"},
		{"/api/users/7/%2e/8", 200, "/users/7/8"},
		{"/api/users/a%2fb", 200, "/users/a%2Fb"},                       // an encoded slash alone stays encoded
		{"/api/users/..%252f..%252fme", 200, "/users/..%252f..%252fme"}, // decodes once to "..%2f..%2fme": no dot segment
		{"/api/users/me;x=1", 200, "/users/me;x=1"},
	}
	for _, c := range cases {
		beforeOpen, beforeProt := openHits.Load(), protectedHits.Load()
		status, body := sendTarget(t, g.URL, "GET", c.target)
		if status != c.status {
			t.Errorf("GET %s: status %d, want %d (%s)", c.target, status, c.status, body)
			continue
		}
		if n := protectedHits.Load() - beforeProt; n != 0 {
			t.Errorf("GET %s: the protected backend was reached without a token", c.target)
		}
		gotOpen := openHits.Load() - beforeOpen
		if c.status != 200 {
			if gotOpen != 0 {
				t.Errorf("GET %s: the open backend was reached", c.target)
			}
			continue
		}
		var rec received
		if err := json.Unmarshal([]byte(body), &rec); err != nil {
			t.Fatalf("GET %s: backend answer %q: %v", c.target, body, err)
		}
		if rec.Raw != c.raw {
			t.Errorf("GET %s: backend received %q, want %q", c.target, rec.Raw, c.raw)
		}
		if dotSegment(rec.Decoded) || dotSegment(rec.Raw) {
			t.Errorf("GET %s: backend received %q (decoded %q), which has a dot segment", c.target, rec.Raw, rec.Decoded)
		}
		clean := path.Clean(rec.Decoded)
		if strings.HasSuffix(rec.Decoded, "/") && clean != "/" {
			clean += "/"
		}
		if clean != rec.Decoded {
			t.Errorf("GET %s: a backend that cleans %q lands elsewhere: %q", c.target, rec.Decoded, clean)
		}
	}
}

// What reaches an open "/api/*" next to a protected "/api/me", and the two ways to
// protect /api/me properly (docs/routing.md walks through this table). The gateway
// matches paths case-sensitively, keeps a trailing slash and treats ";x=1" as part of
// the segment; a route with methods claims only those methods.
func TestProtectingAPathNextToAnOpenWildcard(t *testing.T) {
	open, _ := pathBackend(t)
	protected, _ := pathBackend(t)
	vars := map[string]string{"OPEN": hostOf(open), "PROTECTED": hostOf(protected), "SECRET": routingSecret}
	const common = `
gateway { address = "127.0.0.1:0" }
jwt "users" {
  algorithms = ["HS256"]
  secret     = env("SECRET")
}
service "open" {
  instance {
    address = env("OPEN")
  }
}
service "protected" {
  instance {
    address = env("PROTECTED")
  }
}
`
	type probe struct {
		method, target string
		status         int // 200: the open backend answered (unprotected); 401: protected
	}
	run := func(t *testing.T, routes string, probes []probe) {
		g := startGateway(t, common+routes, vars)
		for _, p := range probes {
			status, body := sendTarget(t, g.URL, p.method, p.target)
			if status != p.status {
				t.Errorf("%s %s: status %d, want %d (%s)", p.method, p.target, status, p.status, body)
			}
		}
	}

	t.Run("naive: GET /api/me protected, /api/* open", func(t *testing.T) {
		run(t, `
route "me" {
  methods = ["GET"]
  path    = "/api/me"
  service = "protected"
  jwt     = "users"
}
route "open" {
  path    = "/api/*"
  service = "open"
}
`, []probe{
			{"GET", "/api/me", 401},
			{"GET", "/api/me/", 200},     // another path: a backend that ignores the slash serves /api/me
			{"GET", "/api/me;x=1", 200},  // another segment: a servlet backend drops ";x=1"
			{"GET", "/API/me", 404},      // paths are case-sensitive; /api/* does not match either
			{"POST", "/api/me", 200},     // the route claims GET (and HEAD) only; POST goes on to /api/*
			{"HEAD", "/api/me", 401},     // HEAD comes with GET
			{"GET", "/api/x/../me", 401}, // dot segments are applied before routing
			{"GET", "/api/%6De", 401},    // an encoded unreserved character is decoded
			{"GET", "/api//me", 401},     // repeated slashes are merged
			{"GET", "/api/me/x", 200},    // below /api/me: not the route
		})
	})

	t.Run("a subtree without methods: /api/me/* protected", func(t *testing.T) {
		run(t, `
route "me" {
  path    = "/api/me/*"
  service = "protected"
  jwt     = "users"
}
route "open" {
  path    = "/api/*"
  service = "open"
}
`, []probe{
			{"GET", "/api/me", 401},
			{"GET", "/api/me/", 401},
			{"GET", "/api/me/x", 401},
			{"POST", "/api/me", 401},
			{"DELETE", "/api/me/", 401},
			{"GET", "/api/me;x=1", 200}, // still another segment: see the next subtest
			{"GET", "/api/other", 200},
		})
	})

	t.Run("deny by default: /api/* protected, public paths opened", func(t *testing.T) {
		run(t, `
route "api" {
  path    = "/api/*"
  service = "protected"
  jwt     = "users"
}
route "public" {
  path    = "/api/public/*"
  service = "open"
}
`, []probe{
			{"GET", "/api/me", 401},
			{"GET", "/api/me/", 401},
			{"GET", "/api/me;x=1", 401},
			{"POST", "/api/me", 401},
			{"GET", "/api/public/docs", 200},
			{"GET", "/api/public/..%2fme", 401},  // normalised to /api/me
			{"GET", "/api/public;x=1/docs", 401}, // "public;x=1" is not "public"
			{"GET", "/API/public/docs", 404},
		})
	})
}

// A route table New refuses (only a config that skipped validation gets there) is
// reported with the route's name and position, not an index.
func TestNewNamesTheRoute(t *testing.T) {
	b, _ := pathBackend(t)
	src := `
gateway { address = "127.0.0.1:0" }
log { access_log = false }
service "s" {
  instance {
    address = env("B")
  }
}
route "a" {
  path    = "/a"
  service = "s"
}
route "b" {
  path    = "/b"
  service = "s"
}
`
	for _, c := range []struct {
		mutate func(rs []config.Route)
		want   string
	}{
		{func(rs []config.Route) { rs[1].Path = "/a/:1bad" }, `test.hcl:13:1: route "b": malformed path pattern "/a/:1bad"`},
		{func(rs []config.Route) { rs[1].Hosts = []string{"a..b"} }, `test.hcl:13:1: route "b": malformed host "a..b"`},
		{func(rs []config.Route) { rs[1].Path = "/a" }, `test.hcl:13:1: route "b" conflicts with route "a" at test.hcl:9:1: duplicate route`},
	} {
		cfg := parseConfig(t, src, map[string]string{"B": hostOf(b)})
		c.mutate(cfg.Routes)
		_, err := New(cfg, Options{Logger: hclog.NewNullLogger()})
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("New = %v, want %q…", err, c.want)
		}
	}
}
