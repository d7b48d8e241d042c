package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// runGateway starts the real binary on the config at path and waits for /readyz.
// It returns the process and its captured stderr; the process is killed at cleanup.
func runGateway(t *testing.T, path, admin string) (*exec.Cmd, *syncBuf) {
	t.Helper()
	cmd := exec.Command(gatewayBinary(t), "run", "-config", path)
	stderr := &syncBuf{}
	cmd.Stderr = stderr
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("gateway stderr:\n%s", stderr.String())
		}
	})
	waitFor(t, 20*time.Second, "gateway ready", func() bool {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return cmd, stderr
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func getBody(url string) (int, string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	// Write then rename, as config management tools do: the gateway never reads half a file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func metric(t *testing.T, admin, line string) bool {
	t.Helper()
	_, body, err := getBody("http://" + admin + "/metrics")
	return err == nil && strings.Contains(body, line)
}

// TestReloadOnSIGHUP: under steady load and with a WebSocket open, a SIGHUP adds a
// route, changes a service's instances and removes a route without a failed request;
// a broken file changes nothing.
func TestReloadOnSIGHUP(t *testing.T) {
	named := func(name string) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, name) }))
		t.Cleanup(s.Close)
		return s
	}
	a, b := named("A"), named("B")
	ws := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
			if err := c.Write(r.Context(), typ, msg); err != nil {
				return
			}
		}
	}))
	t.Cleanup(ws.Close)
	host := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

	addr, admin := freeAddr(t), freeAddr(t)
	conf := func(appInstance string, routes string) string {
		return fmt.Sprintf(`
gateway {
  address = %q
}
admin {
  address = %q
}
service "app" {
  instance {
    address = %q
  }
}
service "ws" {
  instance {
    address = %q
  }
}
route "ws" {
  path    = "/ws"
  service = "ws"
}
%s`, addr, admin, appInstance, host(ws), routes)
	}
	const appRoute = `
route "app" {
  path    = "/app"
  service = "app"
}
`
	path := filepath.Join(t.TempDir(), "gateway.hcl")
	writeFile(t, path, conf(host(a), appRoute+`
route "old" {
  path    = "/old"
  service = "app"
}
`))
	cmd, _ := runGateway(t, path, admin)
	base := "http://" + addr
	if code, body, _ := getBody(base + "/old"); code != 200 || body != "A" {
		t.Fatalf("/old before reload: %d %q", code, body)
	}

	// An open WebSocket through the gateway, echoing all along.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws://"+addr+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	echo := func(i int) error {
		ectx, ecancel := context.WithTimeout(ctx, 10*time.Second)
		defer ecancel()
		msg := fmt.Sprintf("ping %d", i)
		if err := conn.Write(ectx, websocket.MessageText, []byte(msg)); err != nil {
			return err
		}
		_, got, err := conn.Read(ectx)
		if err != nil {
			return err
		}
		if string(got) != msg {
			return fmt.Errorf("echo %q, want %q", got, msg)
		}
		return nil
	}
	if err := echo(0); err != nil {
		t.Fatal(err)
	}

	// Steady load on /app while the config changes under it.
	var (
		wg           sync.WaitGroup
		stop         atomic.Bool
		sent, failed atomic.Int64
		firstFailure atomic.Value
		client       = &http.Client{Timeout: 10 * time.Second}
		sawB         atomic.Bool
	)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				sent.Add(1)
				resp, err := client.Get(base + "/app")
				if err != nil {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, err.Error())
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || (string(body) != "A" && string(body) != "B") {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, fmt.Sprintf("%d %q", resp.StatusCode, body))
				}
				if string(body) == "B" {
					sawB.Store(true)
				}
			}
		}()
	}
	waitFor(t, 10*time.Second, "load running", func() bool { return sent.Load() > 20 })

	writeFile(t, path, conf(host(b), appRoute+`
route "new" {
  path    = "/new"
  service = "app"
}
`))
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the new route", func() bool {
		code, body, _ := getBody(base + "/new")
		return code == 200 && body == "B"
	})
	waitFor(t, 10*time.Second, "load on /app reaching the changed instance", sawB.Load)
	if code, _, _ := getBody(base + "/old"); code != 404 {
		t.Errorf("removed route /old: status %d, want 404", code)
	}
	for i := 1; i <= 5; i++ {
		if err := echo(i); err != nil {
			t.Fatalf("WebSocket after reload: %v", err)
		}
	}
	if !metric(t, admin, `gateway_config_reloads_total{result="ok"} 1`) {
		t.Error(`gateway_config_reloads_total{result="ok"} is not 1`)
	}

	// A broken file: nothing changes, the metric says error.
	writeFile(t, path, "route \"x\" {\n  path = \n")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, `gateway_config_reloads_total{result="error"} 1`, func() bool {
		return metric(t, admin, `gateway_config_reloads_total{result="error"} 1`)
	})
	if code, body, _ := getBody(base + "/new"); code != 200 || body != "B" {
		t.Errorf("after a broken reload /new: %d %q", code, body)
	}
	if err := echo(99); err != nil {
		t.Errorf("WebSocket after a broken reload: %v", err)
	}

	stop.Store(true)
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Errorf("%d of %d requests failed during reloads; first: %v", n, sent.Load(), firstFailure.Load())
	}
	t.Logf("%d requests, none failed", sent.Load())
	_ = conn.Close(websocket.StatusNormalClosure, "")
}

// TestReloadRotatesCertificate: the certificate files are read again on SIGHUP.
func TestReloadRotatesCertificate(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeCert(t, certFile, keyFile, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }))
	defer up.Close()
	addr, admin := freeAddr(t), freeAddr(t)
	path := filepath.Join(dir, "gateway.hcl")
	writeFile(t, path, fmt.Sprintf(`
gateway {
  address = %q
  tls {
    cert_file = %q
    key_file  = %q
  }
}
admin {
  address = %q
}
service "s" {
  instance {
    address = %q
  }
}
route "r" {
  path    = "/"
  service = "s"
}
`, addr, certFile, keyFile, admin, strings.TrimPrefix(up.URL, "http://")))
	cmd, _ := runGateway(t, path, admin)
	serial := func() int64 {
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) // self-signed test certificates
		if err != nil {
			return -1
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
	}
	if s := serial(); s != 1 {
		t.Fatalf("serial %d before rotation, want 1", s)
	}
	writeCert(t, certFile, keyFile, 2)
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the rotated certificate", func() bool { return serial() == 2 })
}

// writeCert writes a self-signed certificate for 127.0.0.1 with the given serial.
func writeCert(t *testing.T, certFile, keyFile string, serial int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "gateway test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		DNSNames:     []string{"localhost"},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})))
	writeFile(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
}
