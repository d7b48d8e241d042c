package gateway

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/hashicorp/go-hclog"
)

func TestCORS(t *testing.T) {
	b := echoBackend(t, "a")
	g := startGateway(t, basicConfig, map[string]string{"A": hostOf(b.Server)})

	// The route allows GET only, yet the preflight is answered by the gateway.
	before := b.hits.Load()
	resp, _ := do(t, "OPTIONS", g.URL+"/cors", "", "Origin", "https://app.example.com", "Access-Control-Request-Method", "GET")
	if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		resp.Header.Get("Access-Control-Allow-Methods") != "GET" {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
	if b.hits.Load() != before {
		t.Fatal("preflight reached the upstream")
	}
	// A disallowed origin gets no allow headers.
	resp, _ = do(t, "OPTIONS", g.URL+"/cors", "", "Origin", "https://evil.example", "Access-Control-Request-Method", "GET")
	if resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("evil origin allowed: %v", resp.Header)
	}
	// Actual request gets the origin header.
	resp, _ = get(t, g.URL+"/cors", "Origin", "https://app.example.com")
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Fatalf("actual: %d %v", resp.StatusCode, resp.Header)
	}
	// A route without cors: plain OPTIONS is 405 there (methods = GET).
	resp, _ = do(t, "OPTIONS", g.URL+"/hello", "", "Origin", "https://app.example.com", "Access-Control-Request-Method", "GET")
	if resp.StatusCode != 405 {
		t.Fatalf("no cors block: %d", resp.StatusCode)
	}
}

func TestWebSocket(t *testing.T) {
	echo := backend(t, func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, append([]byte("echo: "), msg...)); err != nil {
				return
			}
		}
	})
	g := startGateway(t, basicConfig, map[string]string{"A": hostOf(echo)})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(g.URL, "http")+"/files/ws", nil)
	if err != nil {
		t.Fatalf("dial through the gateway: %v", err)
	}
	defer c.CloseNow()
	for _, m := range []string{"one", "two", strings.Repeat("big", 10000)} {
		if err := c.Write(ctx, websocket.MessageText, []byte(m)); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != "echo: "+m {
			t.Fatalf("got %.40q", got)
		}
	}
	_ = c.Close(websocket.StatusNormalClosure, "")
}

// selfSigned writes a certificate for 127.0.0.1 and its key into dir.
func selfSigned(t testing.TB, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "gateway-test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	_ = os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// runGateway runs a gateway with its real listeners until the test ends.
func runGateway(t testing.TB, src string, vars map[string]string) (*Gateway, *syncBuffer, context.CancelFunc, chan error) {
	t.Helper()
	cfg := parseConfig(t, src, vars)
	acc := &syncBuffer{}
	g, err := New(cfg, Options{Logger: hclog.NewNullLogger(), AccessLog: acc})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	select {
	case <-g.Started():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return")
		}
	})
	return g, acc, cancel, done
}

func TestHTTP2OverTLS(t *testing.T) {
	b := echoBackend(t, "a")
	cert, key, pool := selfSigned(t, t.TempDir())
	src := `
gateway {
  address = "127.0.0.1:0"
  tls {
    cert_file = env("CERT")
    key_file  = env("KEY")
  }
}
admin { address = "127.0.0.1:0" }
service "a" {
  instance { address = env("A") }
}
route "all" {
  path = "/*"
  service = "a"
}`
	g, _, _, _ := runGateway(t, src, map[string]string{"A": hostOf(b.Server), "CERT": cert, "KEY": key})
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	resp, err := client.Get("https://" + g.Addr() + "/x")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s seen
	_ = json.NewDecoder(resp.Body).Decode(&s)
	if resp.ProtoMajor != 2 || resp.StatusCode != 200 || s.Header.Get("X-Forwarded-Proto") != "https" {
		t.Fatalf("proto %s status %d xfp %q", resp.Proto, resp.StatusCode, s.Header.Get("X-Forwarded-Proto"))
	}
}

func TestAccessLogFormats(t *testing.T) {
	b := echoBackend(t, "a")
	cases := map[string]*regexp.Regexp{
		"json":     regexp.MustCompile(`^\{"time":"[^"]+","request_id":"rid-1","client_ip":"127\.0\.0\.1","method":"GET","host":"[^"]+","path":"/hello","proto":"HTTP/1\.1","status":200,"bytes":\d+,"duration_ms":[0-9.]+,"route":"static","service":"a","upstream":"[^"]+","referer":"\[REDACTED\]","user_agent":"ua/1"\}$`),
		"combined": regexp.MustCompile(`^127\.0\.0\.1 - - \[[^\]]+\] "GET /hello HTTP/1\.1" 200 \d+ "\[REDACTED\]" "ua/1" duration=[0-9.]+ request_id=rid-1$`),
		"common":   regexp.MustCompile(`^127\.0\.0\.1 - - \[[^\]]+\] "GET /hello HTTP/1\.1" 200 \d+ duration=[0-9.]+ request_id=rid-1$`),
		"dev":      regexp.MustCompile(`^\x1b\[32m200\x1b\[0m GET /hello [0-9.]+[µm]?s route=static upstream=\S+ id=rid-1$`),
	}
	for format, re := range cases {
		t.Run(format, func(t *testing.T) {
			cfg := strings.Replace(basicConfig, `log { format = "json" }`, `log {
  format = "`+format+`"
  redact_headers = ["Referer", "Authorization"]
}`, 1)
			g := startGateway(t, cfg, map[string]string{"A": hostOf(b.Server)})
			get(t, g.URL+"/hello", "X-Request-Id", "rid-1", "User-Agent", "ua/1", "Referer", "https://secret.example/?token=x")
			g.accessLog.Flush()
			line := strings.TrimSuffix(g.AccessLog.String(), "\n")
			if !re.MatchString(line) {
				t.Fatalf("line %q does not match %s", line, re)
			}
			if strings.Contains(line, "secret.example") {
				t.Fatal("redacted header logged")
			}
		})
	}
}

func TestAdminEndpoints(t *testing.T) {
	b := echoBackend(t, "a")
	src := strings.Replace(basicConfig, `path = "/files/*"`, `path = "/files/*"
  metadata = { team = "storage", tier = "2" }`, 1) + `
admin { address = "127.0.0.1:0" }`
	g, _, _, _ := runGateway(t, src, map[string]string{"A": hostOf(b.Server)})
	admin := "http://" + g.AdminAddr()
	get(t, "http://"+g.Addr()+"/hello")

	if resp, _ := get(t, admin+"/healthz"); resp.StatusCode != 200 {
		t.Fatalf("healthz %d", resp.StatusCode)
	}
	if resp, _ := get(t, admin+"/readyz"); resp.StatusCode != 200 {
		t.Fatalf("readyz %d", resp.StatusCode)
	}
	_, metrics := get(t, admin+"/metrics")
	for _, want := range []string{
		`gateway_requests_total{code="200",method="GET",route="static"} 1`,
		`gateway_request_duration_seconds_count{route="static"} 1`,
		`gateway_upstream_requests_total{instance="` + hostOf(b.Server) + `",outcome="2xx",service="a"} 1`,
		`gateway_upstream_request_duration_seconds_count{service="a"} 1`,
		`gateway_service_instances{service="a"} 1`,
	} {
		mustContain(t, metrics, want)
	}
	_, routes := get(t, admin+"/admin/routes")
	var rs []RouteInfo
	if err := json.Unmarshal([]byte(routes), &rs); err != nil || len(rs) != 4 || rs[1].Path != "/api/users/:id" || rs[1].Service != "a" ||
		rs[2].Name != "files" || len(rs[2].Metadata) != 2 || rs[2].Metadata["team"] != "storage" || rs[2].Metadata["tier"] != "2" {
		t.Fatalf("routes %s (%v)", routes, err)
	}
	var raw []map[string]any
	if err := json.Unmarshal([]byte(routes), &raw); err != nil || raw[0]["metadata"] == nil {
		t.Fatalf("a route without metadata should show an empty map: %s", routes)
	}
	_, services := get(t, admin+"/admin/services")
	var ss []ServiceInfo
	if err := json.Unmarshal([]byte(services), &ss); err != nil || len(ss) != 1 || ss[0].Source != "static" ||
		len(ss[0].Instances) != 1 || ss[0].Instances[0].Address != hostOf(b.Server) || ss[0].Instances[0].Breaker != "none" {
		t.Fatalf("services %s (%v)", services, err)
	}
}

func TestConnectFailureTriedOnAnotherInstance(t *testing.T) {
	ok := echoBackend(t, "ok")
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	src := `
service "a" {
  load_balancer = "round_robin"
  instance { address = env("DEAD") }
  instance { address = env("OK") }
}
route "all" {
  path = "/*"
  service = "a"
}`
	g := startGateway(t, src, map[string]string{"DEAD": dead, "OK": hostOf(ok.Server)})
	for i := 0; i < 10; i++ {
		// POST too: nothing reached the dead upstream, so even a POST is sent again.
		resp, body := do(t, "POST", g.URL+"/x", "payload")
		if resp.StatusCode != 200 || decodeSeen(t, body).Body != "payload" {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, body)
		}
	}
}

func TestNoInstanceIs503AndFallback(t *testing.T) {
	src := `
service "a" {
  instance { address = "127.0.0.1:1" }
}
route "plain" {
  path = "/plain"
  service = "a"
}
route "fb" {
  path = "/fb"
  service = "a"
  fallback {
    status = 503
    content_type = "application/json"
    body = "{\"message\":\"resting\"}"
  }
}`
	g := startGateway(t, src, nil)
	g.Service("a").Set.Update(nil)
	resp, body := get(t, g.URL+"/plain")
	if resp.StatusCode != 503 || !strings.Contains(body, "service_unavailable") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	resp, body = get(t, g.URL+"/fb")
	if resp.StatusCode != 503 || body != `{"message":"resting"}` || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}
