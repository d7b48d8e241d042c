package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
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

// TestExamplesValidate: every config shipped in the repository validates on its own,
// with none of the variables it reads set: the examples, the deployment's config and the
// dev config the README invites users to copy.
func TestExamplesValidate(t *testing.T) {
	var files []string
	for _, pattern := range []string{"../../examples/*.hcl", "../../deploy/*.hcl", "dev.hcl"} {
		m, err := filepath.Glob(pattern)
		if err != nil || len(m) == 0 {
			t.Fatalf("%s: no files (%v)", pattern, err)
		}
		files = append(files, m...)
	}
	for _, name := range envNames(t, files) {
		t.Setenv(name, "") // restored after the test
		os.Unsetenv(name)
	}
	// The deployment's config alone requires one: no image may start with a known key.
	for _, f := range files {
		if b, _ := os.ReadFile(f); strings.Contains(string(b), `env("JWT_SECRET")`) && !strings.Contains(f, "deploy") {
			t.Errorf("%s requires JWT_SECRET; only the deployment's config may", f)
		}
	}
	t.Setenv("JWT_SECRET", "0123456789abcdef0123456789abcdef")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run([]string{"validate", f}, &out, &errb); code != 0 {
				t.Fatalf("exit %d:\n%s", code, errb.String())
			}
			if !strings.HasPrefix(out.String(), f+": ok (") {
				t.Fatalf("stdout: %q", out.String())
			}
		})
	}
}

// envNames lists the variables the files read through env("NAME", …).
func envNames(t *testing.T, files []string) []string {
	t.Helper()
	var names []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for rest := string(b); ; {
			i := strings.Index(rest, `env("`)
			if i < 0 {
				break
			}
			rest = rest[i+len(`env("`):]
			if j := strings.IndexByte(rest, '"'); j > 0 {
				names = append(names, rest[:j])
			}
		}
	}
	if len(names) == 0 {
		t.Fatal("no env() in the shipped configs: the test would prove nothing about defaults")
	}
	return names
}

// TestCLI is the command-line table: each subcommand with -h, a bad flag, a stray or
// positional argument, and what it exits with and prints first.
func TestCLI(t *testing.T) {
	t.Setenv("GATEWAY_CONFIG", "")
	t.Setenv("JWT_SECRET", "")
	dir := t.TempDir()
	good := filepath.Join(dir, "good.hcl")
	if err := os.WriteFile(good, []byte(`
service "a" {
  instance { address = "127.0.0.1:9000" }
}
route "r" {
  path    = "/x"
  service = "a"
}`), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.hcl")
	if err := os.WriteFile(bad, []byte(`
service "a" {
  load_balancer = round_robin
  instance { address = "127.0.0.1:70000" }
}
route "r" {
  path    = "/x"
  service = "a"
}`), 0o600); err != nil {
		t.Fatal(err)
	}
	const secret = "0123456789abcdef0123456789abcdef"
	tests := []struct {
		args   []string
		code   int
		stdout string // prefix of the first stdout line ("" = no output)
		stderr string // prefix of the first stderr line ("" = no output)
	}{
		{nil, 2, "", "Usage: gateway <command>"},
		{[]string{"-h"}, 0, "Usage: gateway <command>", ""},
		{[]string{"help"}, 0, "Usage: gateway <command>", ""},
		{[]string{"help", "validate"}, 0, "Usage: gateway validate [options] [PATH]", ""},
		{[]string{"help", "nope"}, 2, "", `gateway help: unknown command "nope"`},
		{[]string{"nope"}, 2, "", `gateway: unknown command "nope"`},

		{[]string{"run", "-h"}, 0, "Usage: gateway run [options] [PATH]", ""},
		{[]string{"run", "--help"}, 0, "Usage: gateway run [options] [PATH]", ""},
		{[]string{"run", "-nope"}, 2, "", "gateway run: flag provided but not defined: -nope"},
		{[]string{"run"}, 2, "", "gateway run: a config PATH (or -config PATH, or GATEWAY_CONFIG) is required"},
		{[]string{"run", good, "extra"}, 2, "", `gateway run: unexpected argument "extra"`},
		{[]string{"run", bad}, 1, "", bad + ":3:19: "},
		{[]string{"run", "-config", bad}, 1, "", bad + ":3:19: "},

		{[]string{"validate", "-h"}, 0, "Usage: gateway validate [options] [PATH]", ""},
		{[]string{"validate", "-nope"}, 2, "", "gateway validate: flag provided but not defined: -nope"},
		{[]string{"validate"}, 2, "", "gateway validate: a config PATH (or -config PATH, or GATEWAY_CONFIG) is required"},
		{[]string{"validate", good}, 0, good + ": ok (1 routes, 1 services)", ""},
		{[]string{"validate", "-config", good}, 0, good + ": ok (1 routes, 1 services)", ""},
		{[]string{"validate", "-config", good, good}, 0, good + ": ok", ""},
		{[]string{"validate", "-config", good, bad}, 2, "", "gateway validate: two configs named: -config " + good + " and " + bad},
		{[]string{"validate", good, bad}, 2, "", `gateway validate: unexpected argument "` + bad + `"`},
		{[]string{"validate", bad}, 1, "", bad + `:3:19: service "a": load_balancer: a string is written in quotes: "round_robin", not round_robin`},
		{[]string{"validate", filepath.Join(dir, "missing.hcl")}, 1, "", ""},

		{[]string{"dev", "-h"}, 0, "Usage: gateway dev [options]", ""},
		{[]string{"dev", "-nope"}, 2, "", "gateway dev: flag provided but not defined: -nope"},
		{[]string{"dev", "extra"}, 2, "", `gateway dev: unexpected argument "extra"`},

		{[]string{"token", "-h"}, 0, "Usage: gateway token [options]", ""},
		{[]string{"token", "-nope"}, 2, "", "gateway token: flag provided but not defined: -nope"},
		{[]string{"token", "-secret", secret}, 2, "", "gateway token: -sub and -secret (or JWT_SECRET) are required"},
		{[]string{"token", "-secret", secret, "-sub", "a", "extra"}, 2, "", `gateway token: unexpected argument "extra"`},
		{[]string{"token", "-secret", secret, "-sub", "alice"}, 0, "eyJ", ""},
		{[]string{"token", "-secret", "short", "-sub", "alice"}, 1, "", "gateway token: "},

		{[]string{"version", "-h"}, 0, "Usage: gateway version", ""},
		{[]string{"version", "-nope"}, 2, "", "gateway version: flag provided but not defined: -nope"},
		{[]string{"version", "extra"}, 2, "", `gateway version: unexpected argument "extra"`},
		{[]string{"version"}, 0, "gateway ", ""},
		{[]string{"-version"}, 0, "gateway ", ""},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(tt.args, &out, &errb)
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, out.String(), errb.String())
			}
			check := func(stream, got, want string) {
				first, _, _ := strings.Cut(got, "\n")
				switch {
				case want == "" && tt.code == 1 && stream == "stderr":
					if got == "" {
						t.Errorf("%s: empty, want a diagnostic", stream)
					}
				case want == "" && got != "":
					t.Errorf("%s: %q, want nothing", stream, got)
				case !strings.HasPrefix(first, want):
					t.Errorf("%s first line: %q, want prefix %q", stream, first, want)
				}
			}
			check("stdout", out.String(), tt.stdout)
			check("stderr", errb.String(), tt.stderr)
			if tt.code == 0 && strings.Contains(strings.Join(tt.args, " "), "-h") && !strings.Contains(out.String(), "\n\n") {
				t.Errorf("help without a description:\n%s", out.String())
			}
		})
	}
}

// TestDiagnosticsName: the port and quoting mistakes get a message that says what is wrong.
func TestDiagnosticsName(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "gw.hcl")
	if err := os.WriteFile(path, []byte(`gateway { address = "127.0.0.1:99999" }
service "a" {
  instance { address = "127.0.0.1:70000" }
}
route "r" {
  path    = "/x"
  service = a
  methods = [GET, "POST"]
}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"validate", path}, &out, &errb); code != 1 {
		t.Fatalf("exit %d", code)
	}
	want := []string{
		path + `:1:11: gateway: address "127.0.0.1:99999": port 99999 is out of range (0-65535)`,
		path + `:3:14: service "a" instance: address "127.0.0.1:70000": port 70000 is out of range (0-65535)`,
		path + `:7:13: route "r": service: a string is written in quotes: "a", not a`,
		path + `:8:14: route "r": methods: a string is written in quotes: "GET", not GET`,
	}
	if got := strings.Split(strings.TrimSpace(errb.String()), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("diagnostics:\n%s\nwant:\n%s", errb.String(), strings.Join(want, "\n"))
	}
}

// TestVersionFallsBackToBuildInfo: unstamped, the version comes from what Go recorded.
func TestVersionFallsBackToBuildInfo(t *testing.T) {
	info := func(main string, settings ...string) func() (*debug.BuildInfo, bool) {
		return func() (*debug.BuildInfo, bool) {
			bi := &debug.BuildInfo{GoVersion: "go1.26.7", Main: debug.Module{Path: "github.com/infinityxone/gateway", Version: main}}
			for i := 0; i+1 < len(settings); i += 2 {
				bi.Settings = append(bi.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
			}
			return bi, true
		}
	}
	none := func() (*debug.BuildInfo, bool) { return nil, false }
	const rev = "fe14c4ec64d12d0f3219bcbc027e81638fade7b3"
	tests := []struct {
		name, stamped string
		info          func() (*debug.BuildInfo, bool)
		want          buildVersion
	}{
		{"stamped wins", "v1.4.0", info("v0.0.0-x", "vcs.revision", rev), buildVersion{"v1.4.0", rev, "go1.26.7"}},
		{"go install @version", "", info("v1.3.0"), buildVersion{"v1.3.0", "", "go1.26.7"}},
		{"pseudo-version from VCS", "dev", info("v0.0.0-20261204165400-fe14c4ec64d1+dirty", "vcs.revision", rev, "vcs.modified", "true"),
			buildVersion{"v0.0.0-20261204165400-fe14c4ec64d1+dirty", rev + " (modified)", "go1.26.7"}},
		{"devel with revision", "", info("(devel)", "vcs.revision", rev, "vcs.modified", "true"), buildVersion{"dev+fe14c4ec64d1.dirty", rev + " (modified)", "go1.26.7"}},
		{"devel, clean", "", info("(devel)", "vcs.revision", rev, "vcs.modified", "false"), buildVersion{"dev+fe14c4ec64d1", rev, "go1.26.7"}},
		{"nothing known", "", none, buildVersion{Version: "dev"}},
		{"devel without VCS", "", info("(devel)"), buildVersion{"dev", "", "go1.26.7"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := versionString(tt.stamped, tt.info); got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
	// The real binary, built by the test without a stamp, reports a version line.
	out, err := exec.Command(gatewayBinary(t), "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "gateway ") || strings.HasPrefix(string(out), "gateway \n") {
		t.Fatalf("%v %q", err, out)
	}
}

// TestDocumentedConfigsValidate: the complete example of docs/configuration.md and every
// hcl block of README.md are valid configs, so the documentation cannot drift from the
// code.
func TestDocumentedConfigsValidate(t *testing.T) {
	t.Setenv("JWT_SECRET", "0123456789abcdef0123456789abcdef")
	ref, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	_, complete, ok := strings.Cut(string(ref), "## A complete example")
	if !ok {
		t.Fatal(`docs/configuration.md has no "A complete example" section`)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := map[string]string{}
	if b := hclBlocks(complete); len(b) > 0 {
		blocks["configuration.md complete example"] = b[0]
	}
	for i, b := range hclBlocks(string(readme)) {
		blocks[fmt.Sprintf("README.md block %d", i+1)] = b
	}
	if len(blocks) < 2 {
		t.Fatalf("found %d hcl blocks", len(blocks))
	}
	for name, src := range blocks {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "doc.hcl")
			if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
				t.Fatal(err)
			}
			var out, errb bytes.Buffer
			if code := run([]string{"validate", path}, &out, &errb); code != 0 {
				t.Fatalf("exit %d:\n%s\n%s", code, errb.String(), src)
			}
		})
	}
}

// hclBlocks returns the contents of the ```hcl fences in markdown, in order.
func hclBlocks(md string) []string {
	var out []string
	for {
		_, rest, ok := strings.Cut(md, "```hcl\n")
		if !ok {
			return out
		}
		block, after, ok := strings.Cut(rest, "```")
		if !ok {
			return out
		}
		out = append(out, block)
		md = after
	}
}

// TestValidateReadsFiles: validate refuses what run would refuse on disk (a missing or
// unreadable certificate, a public_key_file that is missing or holds no public key),
// with the FILE:LINE:COL of the block that names the file, and passes once they exist.
func TestValidateReadsFiles(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	pubFile := filepath.Join(dir, "pub.pem")
	cfgFile := filepath.Join(dir, "gateway.hcl")
	src := `gateway {
  address = "127.0.0.1:0"
  tls {
    cert_file = "` + certFile + `"
    key_file  = "` + keyFile + `"
  }
}
jwt "idp" {
  algorithms      = ["ES256"]
  public_key_file = "` + pubFile + `"
}
service "a" {
  instance { address = "127.0.0.1:9000" }
}
route "r" {
  path    = "/x"
  service = "a"
  jwt     = "idp"
}
`
	if err := os.WriteFile(cfgFile, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	validate := func() (int, []string) {
		var out, errb bytes.Buffer
		code := run([]string{"validate", cfgFile}, &out, &errb)
		return code, strings.Split(strings.TrimSpace(errb.String()), "\n")
	}

	code, lines := validate()
	if code != exitError || len(lines) != 2 ||
		!strings.HasPrefix(lines[0], cfgFile+":3:3: tls: open "+certFile+": no such file") ||
		!strings.HasPrefix(lines[1], cfgFile+`:8:1: jwt "idp": `) || !strings.Contains(lines[1], pubFile) {
		t.Fatalf("files missing: exit %d, stderr:\n%s", code, strings.Join(lines, "\n"))
	}

	writeCert(t, certFile, keyFile, 1)
	if err := os.WriteFile(pubFile, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, lines = validate()
	if code != exitError || len(lines) != 1 || !strings.HasPrefix(lines[0], cfgFile+`:8:1: jwt "idp": `) {
		t.Fatalf("key file without a key: exit %d, stderr:\n%s", code, strings.Join(lines, "\n"))
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, lines = validate(); code != exitOK {
		t.Fatalf("files in place: exit %d, stderr:\n%s", code, strings.Join(lines, "\n"))
	}
}
