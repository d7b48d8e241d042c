package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"

	"github.com/infinityxone/gateway/internal/testenv"
)

// TestLogsSayThingsOnce: against a real Consul agent, a replica that registers itself and
// watches a service logs under single logger names (gateway.consul, never
// gateway.consul.consul), one line per instance-set change, one line for its
// deregistration, and its version in the "config loaded" line and gateway_build_info.
func TestLogsSayThingsOnce(t *testing.T) {
	agent := testenv.StartConsul(t)
	c := consulClient(t, agent.Addr)
	a := echoBackend(t, "a")
	src := `
gateway {
  address = "127.0.0.1:0"
  shutdown_timeout = "5s"
}
admin { address = "127.0.0.1:0" }
consul {
  address   = env("CONSUL")
  wait_time = "2s"
  register {
    service = "edge"
    deregister_delay = "100ms"
  }
}
service "echo" {
  consul { name = "echo" }
}
route "echo" {
  path = "/*"
  service = "echo"
}`
	logs := &syncBuffer{}
	logger := hclog.New(&hclog.LoggerOptions{Name: "gateway", Level: hclog.Info, Output: logs, JSONFormat: true})
	g, err := New(parseConfig(t, src, map[string]string{"CONSUL": agent.Addr}), Options{Logger: logger, AccessLog: &syncBuffer{}, Version: "v9.9.9-test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	<-g.Started()

	eventually(t, 15*time.Second, "registered", func() bool {
		entries, _, err := c.Health().Service("edge", "", true, nil)
		return err == nil && len(entries) == 1
	})
	_, metrics := get(t, "http://"+g.AdminAddr()+"/metrics")
	mustContain(t, metrics, `gateway_build_info{version="v9.9.9-test"} 1`)

	id := registerTTL(t, c, "echo", a.Server, api.HealthPassing)
	eventually(t, 10*time.Second, "instance in rotation", func() bool { return g.Service("echo").Set.Len() == 1 })
	if err := c.Agent().ServiceDeregister(id); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "instance gone", func() bool { return g.Service("echo").Set.Len() == 0 })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return")
	}

	count := map[string]int{}
	modules := map[string]bool{}
	var loaded map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		msg, _ := m["@message"].(string)
		mod, _ := m["@module"].(string)
		count[msg]++
		modules[mod] = true
		if msg == "config loaded" {
			loaded = m
		}
		if _, ok := m["service"].([]any); ok {
			t.Errorf("service key given twice: %s", line)
		}
	}
	for mod := range modules {
		parts := strings.Split(mod, ".")
		for i := 1; i < len(parts); i++ {
			if parts[i] == parts[i-1] {
				t.Errorf("doubled logger name %q", mod)
			}
		}
	}
	if !modules["gateway.consul"] {
		t.Errorf("no gateway.consul logger among %v", modules)
	}
	for msg, want := range map[string]int{
		"instance set changed":     2, // added, then removed
		"instance added":           0, // said by "instance set changed"
		"instance removed":         0,
		"registered with consul":   1,
		"deregistered from consul": 1,
		"config loaded":            1,
	} {
		if count[msg] != want {
			t.Errorf("%q logged %d times, want %d\n%s", msg, count[msg], want, logs.String())
		}
	}
	if loaded == nil || loaded["version"] != "v9.9.9-test" {
		t.Errorf("config loaded line without the version: %v", loaded)
	}
}

// TestJWKSLogNamesProviderOnce: a failing JWKS endpoint is logged under gateway.jwt.jwks
// with the provider named once.
func TestJWKSLogNamesProviderOnce(t *testing.T) {
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer idp.Close()
	b := echoBackend(t, "a")
	src := `
gateway { address = "127.0.0.1:0" }
admin { address = "127.0.0.1:0" }
jwt "idp" {
  algorithms = ["RS256"]
  jwks_url   = env("JWKS")
}
service "a" {
  instance { address = env("A") }
}
route "a" {
  path = "/a"
  service = "a"
  jwt = "idp"
}`
	logs := &syncBuffer{}
	logger := hclog.New(&hclog.LoggerOptions{Name: "gateway", Level: hclog.Info, Output: logs})
	g, err := New(parseConfig(t, src, map[string]string{"JWKS": idp.URL, "A": hostOf(b.Server)}), Options{Logger: logger, AccessLog: &syncBuffer{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-g.Started()
	eventually(t, 10*time.Second, "a JWKS failure logged", func() bool { return strings.Contains(logs.String(), "JWKS fetch failed") })
	for _, line := range strings.Split(logs.String(), "\n") {
		if !strings.Contains(line, "JWKS fetch failed") {
			continue
		}
		if !strings.Contains(line, "gateway.jwt.jwks:") || strings.Count(line, "provider=idp") != 1 {
			t.Fatalf("JWKS line: %s", line)
		}
	}
}
