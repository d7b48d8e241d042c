package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// buildGateway compiles the real binary once per test run.
var buildOnce = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "gateway-bin")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "gateway")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

func gatewayBinary(t *testing.T) string {
	t.Helper()
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestSIGTERMDrainsInFlightRequests(t *testing.T) {
	var started sync.WaitGroup
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started.Done()
		time.Sleep(1500 * time.Millisecond)
		_, _ = io.WriteString(w, "done")
	}))
	defer slow.Close()

	dir := t.TempDir()
	addr, admin := freeAddr(t), freeAddr(t)
	cfg := fmt.Sprintf(`
gateway {
  address = %q
  shutdown_timeout = "10s"
}
admin { address = %q }
service "slow" {
  timeout = "10s"
  instance { address = %q }
}
route "slow" {
  path = "/slow"
  service = "slow"
}`, addr, admin, strings.TrimPrefix(slow.URL, "http://"))
	path := filepath.Join(dir, "gw.hcl")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(gatewayBinary(t), "run", "-config", path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()

	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("gateway never became ready: %v\n%s", err, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	const n = 8
	started.Add(n)
	results := make(chan string, n)
	for i := 0; i < n; i++ {
		go func() {
			resp, err := http.Get("http://" + addr + "/slow")
			if err != nil {
				results <- err.Error()
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			results <- fmt.Sprintf("%d %s", resp.StatusCode, b)
		}()
	}
	started.Wait() // every request is at the backend
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// While draining, the listener stops accepting: new connections are refused soon.
	refused := false
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			refused = true
			break
		}
		c.Close()
	}
	if !refused {
		t.Error("the listener kept accepting after SIGTERM")
	}
	for i := 0; i < n; i++ {
		if r := <-results; r != "200 done" {
			t.Errorf("in-flight request: %s", r)
		}
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	select {
	case err := <-waitErr:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("gateway did not exit")
	}
	if !strings.Contains(stderr.String(), "shutdown begun") {
		t.Errorf("no shutdown log line:\n%s", stderr.String())
	}
}

func TestValidateCommand(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.hcl")
	bad := filepath.Join(dir, "bad.hcl")
	_ = os.WriteFile(good, []byte(`
service "a" {
  instance { address = "127.0.0.1:9000" }
}
route "r" {
  path = "/x"
  service = "a"
}`), 0o600)
	_ = os.WriteFile(bad, []byte(`
service "a" {
  instance { address = "127.0.0.1:9000" }
  timeout = "ten seconds"
}
route "r" {
  path = "/x"
  service = "missing"
}`), 0o600)

	var out, errb bytes.Buffer
	if code := run([]string{"validate", "-config", good}, &out, &errb); code != 0 {
		t.Fatalf("good config: exit %d: %s", code, errb.String())
	}
	out.Reset()
	errb.Reset()
	if code := run([]string{"validate", "-config", bad}, &out, &errb); code != 1 {
		t.Fatalf("bad config: exit %d", code)
	}
	lines := strings.Split(strings.TrimSpace(errb.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], bad+":4:") || !strings.HasPrefix(lines[1], bad+":8:") {
		t.Fatalf("diagnostics:\n%s", errb.String())
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if code := run([]string{"version"}, &out, io.Discard); code != 0 || !strings.HasPrefix(out.String(), "gateway ") {
		t.Fatalf("%d %q", code, out.String())
	}
}

// lockedBuffer is a bytes.Buffer safe to read while a process writes to it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestDevServes(t *testing.T) {
	t.Setenv("GATEWAY_ADDR", freeAddr(t))
	t.Setenv("GATEWAY_ADMIN_ADDR", freeAddr(t))
	cmd := exec.Command(gatewayBinary(t), "dev")
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	base := "http://" + os.Getenv("GATEWAY_ADDR")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	call := func(path, auth string) (int, string) {
		for {
			req, _ := http.NewRequest("GET", base+path, nil)
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				return resp.StatusCode, string(b)
			}
			if ctx.Err() != nil {
				t.Fatalf("%s: %v\n%s", path, err, stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for _, path := range []string{"/hello", "/api/users/42", "/static/css/site.css"} {
		if code, body := call(path, ""); code != 200 {
			t.Fatalf("%s: %d %s", path, code, body)
		}
	}
	resp, err := http.Get(base + "/hello")
	if err != nil || resp.Header.Get("Ratelimit-Limit") != "60" {
		t.Fatalf("/hello: %v %v", err, resp)
	}
	resp.Body.Close()
	if code, _ := call("/api/me", ""); code != 401 {
		t.Fatalf("/api/me without a token: %d", code)
	}
	// The printed token works against the protected route.
	var token string
	for end := time.Now().Add(5 * time.Second); token == "" && time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		out := stderr.String()
		if i := strings.Index(out, "Bearer "); i >= 0 {
			token = strings.Fields(out[i+len("Bearer "):])[0]
			token = strings.TrimSuffix(token, `"`)
		}
	}
	if code, body := call("/api/me", "Bearer "+token); code != 200 || !strings.Contains(body, `"X-User-Id": "dev-user"`) {
		t.Fatalf("/api/me with the printed token: %d %s", code, body)
	}
	if !strings.Contains(stderr.String(), "curl -i "+base+"/hello") {
		t.Fatalf("dev did not print curl lines:\n%s", stderr.String())
	}
}

func TestExamplesValidate(t *testing.T) {
	files, _ := filepath.Glob("../../examples/*.hcl")
	files = append(files, "dev.hcl")
	if len(files) < 3 {
		t.Fatalf("examples: %v", files)
	}
	for _, f := range files {
		var out, errb bytes.Buffer
		if f == "dev.hcl" {
			t.Setenv("DEV_DEMO_1", "127.0.0.1:9001")
			t.Setenv("DEV_DEMO_2", "127.0.0.1:9002")
			t.Setenv("DEV_USERS_1", "127.0.0.1:9003")
		}
		if code := run([]string{"validate", "-config", f}, &out, &errb); code != 0 {
			t.Errorf("%s: %s", f, errb.String())
		}
	}
}
