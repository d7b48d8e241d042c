package gateway

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Requests that try to make the gateway blame an instance, drop its own headers or
// forge identity, each with what docs/architecture.md (HTTP behaviour) says must happen.
func TestHostileRequests(t *testing.T) {
	b := newCueBackend(t, "a", 200)
	src := authConfig + `
service "cb" {
  instance { address = env("A") }
  circuit_breaker { failure_threshold = 2 }
}
route "cb" {
  path = "/cb/*"
  service = "cb"
}`
	g := startGateway(t, src, map[string]string{"A": hostOf(b.Server), "SECRET": testSecret})
	addr := g.Front.Listener.Addr().String()
	breakerState := func() string {
		for _, s := range g.serviceInfo() {
			if s.Name == "cb" {
				return s.Instances[0].Breaker
			}
		}
		return ""
	}

	t.Run("malformed chunked body is 400 and never opens the breaker", func(t *testing.T) {
		for i := 0; i < 4; i++ {
			resp, body := rawRequest(t, addr, "POST /cb/x HTTP/1.1\r\nHost: gw\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n")
			if resp.StatusCode != 400 {
				t.Fatalf("status %d %s", resp.StatusCode, body)
			}
		}
		if s := breakerState(); s != "closed" {
			t.Fatalf("breaker %s after client errors", s)
		}
	})

	t.Run("an upstream status over 599 is 502 and leaks nothing", func(t *testing.T) {
		b.status.Store(999)
		defer b.status.Store(200)
		for i := 0; i < 3; i++ {
			if resp, _ := get(t, g.URL+"/cb/x"); resp.StatusCode != 502 && resp.StatusCode != 503 {
				t.Fatalf("status %d", resp.StatusCode)
			}
		}
		for _, s := range g.serviceInfo() {
			for _, in := range s.Instances {
				if in.InFlight != 0 {
					t.Fatalf("%s: in_flight %d", s.Name, in.InFlight)
				}
			}
		}
	})

	t.Run("Connection cannot strip the gateway's headers", func(t *testing.T) {
		echo := echoBackend(t, "e")
		g2 := startGateway(t, authConfig, map[string]string{"A": hostOf(echo.Server), "SECRET": testSecret})
		tok := hs256(t, testSecret, map[string]any{"alg": "HS256"}, map[string]any{
			"sub": "alice", "iss": "infinity-x-one", "aud": "api", "exp": time.Now().Unix() + 600, "roles": []string{"admin"}})
		_, body := get(t, g2.URL+"/admin", "Authorization", "Bearer "+tok,
			"Connection", "X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, X-User-Id, X-Request-Id")
		h := decodeSeen(t, body).Header
		for _, k := range []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-User-Id", "X-Request-Id"} {
			if h.Get(k) == "" {
				t.Errorf("%s was stripped by the client's Connection header", k)
			}
		}
	})

	t.Run("other forwarded headers and underscore look-alikes are dropped", func(t *testing.T) {
		echo := echoBackend(t, "e")
		g2 := startGateway(t, authConfig, map[string]string{"A": hostOf(echo.Server), "SECRET": testSecret})
		resp, body := rawRequest(t, g2.Front.Listener.Addr().String(), "GET /open HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n"+
			"X-Forwarded-Port: 443\r\nX-Forwarded-Prefix: /evil\r\nX-Real-Ip: 6.6.6.6\r\nX-User_Id: root\r\nX-Forwarded_For: 6.6.6.6\r\n\r\n")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		h := decodeSeen(t, body).Header
		for _, k := range []string{"X-Forwarded-Port", "X-Forwarded-Prefix", "X-Real-Ip", "X-User_id", "X-User_Id", "X-Forwarded_for", "X-Forwarded_For"} {
			if len(h[k]) > 0 {
				t.Errorf("%s reached the upstream: %v", k, h[k])
			}
		}
	})

	t.Run("upstream cannot replace the request id or the CORS Vary", func(t *testing.T) {
		up := backend(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Request-Id", "upstream-own")
			w.Header().Set("Vary", "Accept-Encoding")
			w.Header().Set("Access-Control-Allow-Origin", "*")
		})
		g2 := startGateway(t, basicConfig, map[string]string{"A": hostOf(up)})
		resp, _ := get(t, g2.URL+"/cors", "Origin", "https://app.example.com", "X-Request-Id", "mine")
		if resp.Header.Get("X-Request-Id") != "mine" {
			t.Fatalf("X-Request-Id %q", resp.Header.Get("X-Request-Id"))
		}
		if v := strings.Join(resp.Header.Values("Vary"), ","); !strings.Contains(v, "Origin") || !strings.Contains(v, "Accept-Encoding") {
			t.Fatalf("Vary %q", v)
		}
		if o := resp.Header.Values("Access-Control-Allow-Origin"); len(o) != 1 || o[0] != "https://app.example.com" {
			t.Fatalf("Access-Control-Allow-Origin %q", o)
		}
	})

	t.Run("h2c upgrade is not passed on", func(t *testing.T) {
		echo := echoBackend(t, "e")
		g2 := startGateway(t, basicConfig, map[string]string{"A": hostOf(echo.Server)})
		_, body := get(t, g2.URL+"/hello", "Connection", "Upgrade, HTTP2-Settings", "Upgrade", "h2c", "HTTP2-Settings", "AAMAAABkAAQCAAAAAAIAAAAA")
		h := decodeSeen(t, body).Header
		if h.Get("Upgrade") != "" || h.Get("Http2-Settings") != "" {
			t.Fatalf("upstream saw Upgrade %q", h.Get("Upgrade"))
		}
	})
}

func TestQueryTokenNeverLogged(t *testing.T) {
	b := echoBackend(t, "a")
	src := strings.Replace(authConfig, `forward_claims = { sub = "X-User-Id" }`, `forward_claims = { sub = "X-User-Id" }
  token_query    = "access_token"
  forward_authorization = false`, 1)
	g := startGateway(t, src, map[string]string{"A": hostOf(b.Server), "SECRET": testSecret})
	tok := hs256(t, testSecret, map[string]any{"alg": "HS256"}, map[string]any{
		"sub": "alice", "iss": "infinity-x-one", "aud": "api", "exp": time.Now().Unix() + 600, "roles": []string{"admin"}})
	resp, body := get(t, g.URL+"/admin?x=1&access_token="+tok)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	s := decodeSeen(t, body)
	if strings.Contains(s.URI, tok) || s.Header.Get("Authorization") != "" || !strings.Contains(s.URI, "x=1") {
		t.Fatalf("upstream saw %q / %q", s.URI, s.Header.Get("Authorization"))
	}
	g.accessLog.Flush()
	if strings.Contains(g.AccessLog.String(), tok) {
		t.Fatal("the token is in the access log")
	}
}

func TestAccessLogJSONAlwaysValid(t *testing.T) {
	b := echoBackend(t, "a")
	g := startGateway(t, basicConfig, map[string]string{"A": hostOf(b.Server)})
	rawRequest(t, g.Front.Listener.Addr().String(), "GET /files/%1b%00x HTTP/1.1\r\nHost: gw\r\nConnection: close\r\nUser-Agent: caf\xe9 \"q\" \\\r\n\r\n")
	g.accessLog.Flush()
	line := strings.TrimSpace(g.AccessLog.String())
	var v map[string]any
	if err := json.Unmarshal([]byte(line), &v); err != nil {
		t.Fatalf("invalid JSON %q: %v", line, err)
	}
	if v["path"] != "/files/\x1b\x00x" || v["user_agent"] != "caf\ufffd \"q\" \\" {
		t.Fatalf("decoded %q %q", v["path"], v["user_agent"])
	}
}

func TestStalledUploadBoundedByTimeout(t *testing.T) {
	b := newCueBackend(t, "a", 200)
	cfg := strings.Replace(basicConfig, `timeout = "2s"`, `timeout = "300ms"`, 1)
	g := startGateway(t, cfg, map[string]string{"A": hostOf(b.Server)})
	start := time.Now()
	resp, _ := rawRequest(t, g.Front.Listener.Addr().String(), "PUT /files/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 10\r\n\r\nx")
	if took := time.Since(start); resp.StatusCode != 504 || took > 300*time.Millisecond+1500*time.Millisecond {
		t.Fatalf("status %d after %v", resp.StatusCode, took)
	}
	eventually(t, 5*time.Second, "in-flight released", func() bool { return g.serviceInfo()[0].Instances[0].InFlight == 0 })
}
