package gateway

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// echo is a backend that answers with what it saw.
type seen struct {
	Method  string      `json:"method"`
	URI     string      `json:"uri"`
	Host    string      `json:"host"`
	Header  http.Header `json:"header"`
	Body    string      `json:"body"`
	Backend string      `json:"backend"`
}

func echoBackend(t testing.TB, name string) *testServer {
	ts := &testServer{}
	ts.Server = backend(t, func(w http.ResponseWriter, r *http.Request) {
		ts.hits.Add(1)
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(seen{r.Method, r.RequestURI, r.Host, r.Header, string(b), name})
	})
	return ts
}

type testServer struct {
	*httptest.Server
	hits atomic.Int64
}

func decodeSeen(t testing.TB, body string) seen {
	t.Helper()
	var s seen
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatalf("backend answer %q: %v", body, err)
	}
	return s
}

const basicConfig = `
gateway {
  address = "127.0.0.1:0"
  max_body_bytes = 1024
  trusted_proxies = ["10.0.0.0/8"]
}
log { format = "json" }
service "a" {
  timeout = "2s"
  instance { address = env("A") }
}
route "static" {
  path = "/hello"
  methods = ["GET"]
  service = "a"
}
route "user" {
  path = "/api/users/:id"
  methods = ["GET", "PUT"]
  service = "a"
  strip_prefix = "/api"
}
route "files" {
  path = "/files/*"
  service = "a"
}
route "cors" {
  path = "/cors"
  methods = ["GET"]
  service = "a"
  cors {
    allowed_origins = ["https://app.example.com"]
    allowed_methods = ["GET"]
  }
}
`

func TestRoutingAndRewrites(t *testing.T) {
	b := echoBackend(t, "a")
	g := startGateway(t, basicConfig, map[string]string{"A": hostOf(b.Server)})

	cases := []struct {
		name, method, path string
		status             int
		upstream           string // RequestURI the backend saw
	}{
		{"static", "GET", "/hello", 200, "/hello"},
		{"static query kept", "GET", "/hello?x=1&y=%20", 200, "/hello?x=1&y=%20"},
		{"param and strip_prefix", "GET", "/api/users/42", 200, "/users/42"},
		{"normalised before matching", "GET", "/api/./users//1", 200, "/users/1"},
		{"dot-dot inside", "GET", "/api/x/../users/7", 200, "/users/7"},
		{"encoded dots", "GET", "/api/users/%2e%2e/users/9", 200, "/users/9"},
		{"encoded slash never splits", "GET", "/files/a%2Fb", 200, "/files/a%2Fb"},
		{"wildcard root", "GET", "/files", 200, "/files"},
		{"wildcard deep", "GET", "/files/x/y/z.txt", 200, "/files/x/y/z.txt"},
		{"climbs above root", "GET", "/api/../../etc/passwd", 400, ""},
		{"no route", "GET", "/nope", 404, ""},
		{"wrong method", "POST", "/hello", 405, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := rawRequest(t, g.Front.Listener.Addr().String(), c.method+" "+c.path+" HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.status, body)
			}
			if resp.Header.Get("X-Request-Id") == "" {
				t.Fatal("no X-Request-Id on the response")
			}
			if c.upstream != "" {
				if s := decodeSeen(t, body); s.URI != c.upstream {
					t.Fatalf("upstream saw %q, want %q", s.URI, c.upstream)
				}
				return
			}
			var e struct {
				Error struct {
					Code      string `json:"code"`
					Message   string `json:"message"`
					RequestID string `json:"request_id"`
				} `json:"error"`
			}
			if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.Code == "" {
				t.Fatalf("error body %q is not the JSON error: %v", body, err)
			}
			if e.Error.RequestID != resp.Header.Get("X-Request-Id") {
				t.Fatalf("request id in body %q != header %q", e.Error.RequestID, resp.Header.Get("X-Request-Id"))
			}
			if c.status == 405 && resp.Header.Get("Allow") == "" {
				t.Fatal("405 without Allow")
			}
		})
	}
}

// rawRequest writes a raw HTTP/1.1 request and reads one response.
func rawRequest(t testing.TB, addr, raw string) (*http.Response, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading response to %q: %v", raw, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestHeaders(t *testing.T) {
	b := echoBackend(t, "a")
	g := startGateway(t, basicConfig, map[string]string{"A": hostOf(b.Server)})

	t.Run("request id generated and sent upstream", func(t *testing.T) {
		resp, body := get(t, g.URL+"/hello")
		id := resp.Header.Get("X-Request-Id")
		if id == "" || decodeSeen(t, body).Header.Get("X-Request-Id") != id {
			t.Fatalf("id %q, upstream %q", id, decodeSeen(t, body).Header.Get("X-Request-Id"))
		}
	})
	t.Run("client request id kept when valid", func(t *testing.T) {
		resp, body := get(t, g.URL+"/hello", "X-Request-Id", "abc-123_x.y")
		if resp.Header.Get("X-Request-Id") != "abc-123_x.y" || decodeSeen(t, body).Header.Get("X-Request-Id") != "abc-123_x.y" {
			t.Fatalf("got %q", resp.Header.Get("X-Request-Id"))
		}
	})
	t.Run("client request id replaced when invalid", func(t *testing.T) {
		resp, body := get(t, g.URL+"/hello", "X-Request-Id", "bad id<script>")
		id := resp.Header.Get("X-Request-Id")
		if id == "bad id<script>" || decodeSeen(t, body).Header.Get("X-Request-Id") != id {
			t.Fatalf("got %q", id)
		}
	})
	t.Run("hop-by-hop and Connection-listed dropped", func(t *testing.T) {
		_, body := get(t, g.URL+"/hello", "Connection", "X-Secret, keep-alive", "X-Secret", "s", "Keep-Alive", "300", "Proxy-Authorization", "x", "X-Kept", "1")
		h := decodeSeen(t, body).Header
		for _, k := range []string{"X-Secret", "Keep-Alive", "Proxy-Authorization"} {
			if h.Get(k) != "" {
				t.Errorf("%s reached the upstream", k)
			}
		}
		if h.Get("X-Kept") != "1" {
			t.Error("X-Kept was dropped")
		}
	})
	t.Run("forged X-Forwarded-For from untrusted client replaced", func(t *testing.T) {
		_, body := get(t, g.URL+"/hello", "X-Forwarded-For", "6.6.6.6", "X-Forwarded-Host", "evil", "X-Forwarded-Proto", "https", "Forwarded", "for=6.6.6.6")
		h := decodeSeen(t, body).Header
		if h.Get("X-Forwarded-For") != "127.0.0.1" || h.Get("X-Forwarded-Proto") != "http" || h.Get("Forwarded") != "" {
			t.Fatalf("upstream saw XFF %q proto %q forwarded %q", h.Get("X-Forwarded-For"), h.Get("X-Forwarded-Proto"), h.Get("Forwarded"))
		}
		if !strings.HasPrefix(h.Get("X-Forwarded-Host"), "127.0.0.1:") {
			t.Fatalf("X-Forwarded-Host %q", h.Get("X-Forwarded-Host"))
		}
	})
	t.Run("response hop-by-hop dropped", func(t *testing.T) {
		hb := backend(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "X-Internal")
			w.Header().Set("X-Internal", "secret")
			w.Header().Set("X-Public", "ok")
		})
		g2 := startGateway(t, basicConfig, map[string]string{"A": hostOf(hb)})
		resp, _ := get(t, g2.URL+"/hello")
		if resp.Header.Get("X-Internal") != "" || resp.Header.Get("X-Public") != "ok" {
			t.Fatalf("headers %v", resp.Header)
		}
	})
}

func TestTrustedProxy(t *testing.T) {
	tp := trustedProxies{mustPrefix("10.0.0.0/8"), mustPrefix("127.0.0.1/32")}
	cases := []struct {
		xff, wantClient, wantXFF string
	}{
		{"", "127.0.0.1", "127.0.0.1"},
		{"1.2.3.4", "1.2.3.4", "1.2.3.4, 127.0.0.1"},
		{"6.6.6.6, 1.2.3.4, 10.1.1.1", "1.2.3.4", "6.6.6.6, 1.2.3.4, 10.1.1.1, 127.0.0.1"},
		{"garbage, 10.1.1.1", "10.1.1.1", "garbage, 10.1.1.1, 127.0.0.1"},
	}
	for _, c := range cases {
		r, _ := http.NewRequest("GET", "http://gw/x", nil)
		r.RemoteAddr = "127.0.0.1:5555"
		if c.xff != "" {
			r.Header.Set("X-Forwarded-For", c.xff)
		}
		got := tp.forwarded(r, remoteAddr(r), testHeaders())
		if got.String() != c.wantClient || r.Header.Get("X-Forwarded-For") != c.wantXFF {
			t.Errorf("xff %q: client %s xff %q, want %s %q", c.xff, got, r.Header.Get("X-Forwarded-For"), c.wantClient, c.wantXFF)
		}
	}
	// An untrusted peer's chain is replaced whatever it says.
	r, _ := http.NewRequest("GET", "http://gw/x", nil)
	r.RemoteAddr = "192.168.1.9:5555"
	r.Header.Set("X-Forwarded-For", "1.2.3.4")
	if got := tp.forwarded(r, remoteAddr(r), testHeaders()); got.String() != "192.168.1.9" || r.Header.Get("X-Forwarded-For") != "192.168.1.9" {
		t.Fatalf("untrusted: client %s xff %q", got, r.Header.Get("X-Forwarded-For"))
	}
}

func TestFraming(t *testing.T) {
	b := echoBackend(t, "a")
	g := startGateway(t, basicConfig, map[string]string{"A": hostOf(b.Server)})
	addr := g.Front.Listener.Addr().String()

	t.Run("two different Content-Lengths", func(t *testing.T) {
		before := b.hits.Load()
		resp, _ := rawRequest(t, addr, "POST /files/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde")
		// net/http's own answer (docs/architecture.md says so): plain text, connection closed.
		if resp.StatusCode != 400 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") || !resp.Close {
			t.Fatalf("status %d, Content-Type %q, close %v", resp.StatusCode, resp.Header.Get("Content-Type"), resp.Close)
		}
		if b.hits.Load() != before {
			t.Fatal("the request reached the upstream")
		}
	})
	t.Run("Content-Length with chunked", func(t *testing.T) {
		resp, body := rawRequest(t, addr, "POST /files/x HTTP/1.1\r\nHost: gw\r\nConnection: close\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
		if resp.StatusCode == 400 {
			return // refusing is allowed
		}
		s := decodeSeen(t, body)
		if s.Header.Get("Content-Length") != "" || s.Body != "abc" {
			t.Fatalf("upstream saw Content-Length %q body %q", s.Header.Get("Content-Length"), s.Body)
		}
	})
	t.Run("body over max_body_bytes", func(t *testing.T) {
		resp, _ := do(t, "POST", g.URL+"/files/x", strings.Repeat("x", 2000))
		if resp.StatusCode != 413 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
	t.Run("chunked body over max_body_bytes", func(t *testing.T) {
		chunk := strings.Repeat("y", 1500)
		resp, _ := rawRequest(t, addr, fmt.Sprintf("POST /files/x HTTP/1.1\r\nHost: gw\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(chunk), chunk))
		if resp.StatusCode != 413 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
	t.Run("headers over the limit", func(t *testing.T) {
		cfg := strings.Replace(basicConfig, "max_body_bytes = 1024", "max_body_bytes = 1024\n  max_header_bytes = 4096", 1)
		hb := echoBackend(t, "h")
		g2 := startGateway(t, cfg, map[string]string{"A": hostOf(hb.Server)})
		// Over the limit: the gateway's JSON 431.
		resp, body := rawRequest(t, g2.Front.Listener.Addr().String(), "GET /hello HTTP/1.1\r\nHost: gw\r\nX-Big: "+strings.Repeat("z", 5000)+"\r\n\r\n")
		if resp.StatusCode != 431 || !strings.Contains(body, `"headers_too_large"`) {
			t.Fatalf("status %d %s", resp.StatusCode, body)
		}
		// Far over it: Go's server refuses before the pipeline, still 431.
		resp, _ = rawRequest(t, g2.Front.Listener.Addr().String(), "GET /hello HTTP/1.1\r\nHost: gw\r\nX-Big: "+strings.Repeat("z", 20000)+"\r\n\r\n")
		if resp.StatusCode != 431 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if hb.hits.Load() != 0 {
			t.Fatal("an oversized request reached the upstream")
		}
	})
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// testHeaders is a Gateway with just its constant header values, for unit tests.
func testHeaders() *Gateway {
	return &Gateway{hdrHTTP: []string{"http"}, hdrHTTPS: []string{"https"}}
}
