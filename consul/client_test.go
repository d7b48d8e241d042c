package consul

import (
	"context"
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/consul/api"
)

// tokenServer answers the health API with an empty list and remembers the tokens
// and datacenters it was sent.
type tokenServer struct {
	mu     sync.Mutex
	tokens []string
	dcs    []string
}

func (s *tokenServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.tokens = append(s.tokens, r.Header.Get("X-Consul-Token"))
	s.dcs = append(s.dcs, r.URL.Query().Get("dc"))
	s.mu.Unlock()
	w.Header().Set("X-Consul-Index", "1")
	_, _ = w.Write([]byte("[]"))
}

func (s *tokenServer) last() (token, dc string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokens[len(s.tokens)-1], s.dcs[len(s.dcs)-1]
}

// consulEnv lists the variables NewClient may read; each test starts with none.
var consulEnv = []string{"CONSUL_HTTP_ADDR", "CONSUL_HTTP_TOKEN", "CONSUL_HTTP_TOKEN_FILE", "CONSUL_HTTP_SSL",
	"CONSUL_HTTP_SSL_VERIFY", "CONSUL_CACERT", "CONSUL_CAPATH", "CONSUL_CLIENT_CERT", "CONSUL_CLIENT_KEY",
	"CONSUL_TLS_SERVER_NAME", "CONSUL_NAMESPACE", "CONSUL_PARTITION", "CONSUL_HTTP_AUTH"}

func clearConsulEnv(t *testing.T) {
	for _, k := range consulEnv {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
}

func TestNewClientHonoursEnvironment(t *testing.T) {
	envSrv, cfgSrv := &tokenServer{}, &tokenServer{}
	env, cfg := httptest.NewServer(envSrv), httptest.NewServer(cfgSrv)
	defer env.Close()
	defer cfg.Close()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("file-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name      string
		env       map[string]string
		cfg       Config
		srv       *tokenServer
		token, dc string
	}{
		{"environment", map[string]string{"CONSUL_HTTP_ADDR": env.URL, "CONSUL_HTTP_TOKEN": "env-token"}, Config{}, envSrv, "env-token", ""},
		{"address without scheme", map[string]string{"CONSUL_HTTP_ADDR": strings.TrimPrefix(env.URL, "http://")}, Config{}, envSrv, "", ""},
		{"token file", map[string]string{"CONSUL_HTTP_ADDR": env.URL, "CONSUL_HTTP_TOKEN_FILE": tokenFile}, Config{}, envSrv, "file-token", ""},
		{"config overrides", map[string]string{"CONSUL_HTTP_ADDR": env.URL, "CONSUL_HTTP_TOKEN": "env-token", "CONSUL_HTTP_TOKEN_FILE": tokenFile},
			Config{Address: cfg.URL, Token: "cfg-token", Datacenter: "dc9"}, cfgSrv, "cfg-token", "dc9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearConsulEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			c, err := NewClient(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := c.Health().Service("web", "", true, nil); err != nil {
				t.Fatal(err)
			}
			if token, dc := tc.srv.last(); token != tc.token || dc != tc.dc {
				t.Fatalf("sent token %q dc %q, want %q %q", token, dc, tc.token, tc.dc)
			}
		})
	}
}

func TestNewClientDefaultAddress(t *testing.T) {
	clearConsulEnv(t)
	c, err := NewClient(Config{})
	if err != nil {
		t.Fatal(err)
	}
	// A cancelled query never touches the network; its error names the URL.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err = c.Health().Service("web", "", true, (&api.QueryOptions{}).WithContext(ctx))
	if err == nil || !strings.Contains(err.Error(), "http://127.0.0.1:8500/") {
		t.Fatalf("query error %v, want it to name http://127.0.0.1:8500/", err)
	}
}

// CONSUL_CACERT makes an https:// agent trusted, as it does for the Consul CLI.
func TestNewClientCACertFromEnvironment(t *testing.T) {
	srv := httptest.NewUnstartedServer(&tokenServer{})
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	srv.StartTLS()
	defer srv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	clearConsulEnv(t)
	t.Setenv("CONSUL_HTTP_ADDR", srv.URL) // https://127.0.0.1:PORT

	c, err := NewClient(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Health().Service("web", "", true, nil); err == nil {
		t.Fatal("an untrusted certificate was accepted")
	}

	t.Setenv("CONSUL_CACERT", caFile)
	if c, err = NewClient(Config{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Health().Service("web", "", true, nil); err != nil {
		t.Fatalf("with CONSUL_CACERT: %v", err)
	}
}
