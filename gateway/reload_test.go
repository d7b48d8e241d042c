package gateway

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/infinityxone/gateway/internal/testenv"
)

const reloadConsulConfig = `
gateway { address = "127.0.0.1:0" }
admin { address = "127.0.0.1:0" }
consul {
  address   = env("CONSUL")
  wait_time = "2s"
}
service "echo" {
  consul {
    name = "echo"
    tags = ["v1"]
  }
}
service "other" {
  consul {
    name = "other"
  }
}
route "echo" {
  path    = "/echo/*"
  service = "echo"
}
route "other" {
  path    = "/other/*"
  service = "other"
}
`

// startReloadConsul runs a gateway on reloadConsulConfig against a real Consul agent
// where "echo" and "other" have one passing instance each, and waits until the gateway
// has both. It returns the gateway, the config's variables and echo's backend.
func startReloadConsul(t *testing.T) (*Gateway, map[string]string, *testServer) {
	t.Helper()
	agent := testenv.StartConsul(t)
	c := consulClient(t, agent.Addr)
	a, b := echoBackend(t, "a"), echoBackend(t, "b")
	registerTTL(t, c, "echo", a.Server, api.HealthPassing)
	registerTTL(t, c, "other", b.Server, api.HealthPassing)
	vars := map[string]string{"CONSUL": agent.Addr}
	g, _, _, _ := runGateway(t, reloadConsulConfig, vars)
	eventually(t, 20*time.Second, "both services have their instance", func() bool {
		return g.Service("echo").Set.Len() == 1 && g.Service("other").Set.Len() == 1
	})
	return g, vars, a
}

// TestReloadKeepsUnchangedConsulWatchers reloads against a real Consul agent: the
// unchanged service keeps its watcher, instance set and breaker state; the changed one
// gets a new watcher that runs at once; the removed route's service is let go.
func TestReloadKeepsUnchangedConsulWatchers(t *testing.T) {
	g, vars, a := startReloadConsul(t)
	echo, other := g.Service("echo"), g.Service("other")
	echoWatcher := echo.watcher

	// "other" now selects by a tag its instance lacks; "echo" is unchanged (only moved
	// down a few lines); a static service and a route are added.
	next := strings.Replace(reloadConsulConfig, `name = "other"`, "name = \"other\"\n    tags = [\"v2\"]", 1)
	next = strings.Replace(next, `service "echo" {`, "\n\n\nservice \"echo\" {", 1)
	next += `
service "static" {
  instance {
    address = "` + hostOf(a.Server) + `"
  }
}
route "static" {
  path    = "/static/*"
  service = "static"
}
`
	if err := g.ReloadConfig(parseConfig(t, next, vars)); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if g.Service("echo") != echo || g.Service("echo").watcher != echoWatcher {
		t.Error("the unchanged Consul service was rebuilt; its watcher should be kept")
	}
	if g.Service("other") == other {
		t.Error("the changed Consul service was kept")
	}
	if !g.Service("other").ready.Load() {
		t.Error("the reload swapped before the rebuilt Consul service's first answer: its routes would answer 503 meanwhile")
	}
	eventually(t, 20*time.Second, "the new watcher's first answer (no v2 instance)", func() bool {
		return g.Service("other").ready.Load() && g.Service("other").Set.Len() == 0
	})
	if resp, _ := get(t, "http://"+g.Addr()+"/echo/x"); resp.StatusCode != 200 {
		t.Errorf("/echo after reload: %d", resp.StatusCode)
	}
	if resp, _ := get(t, "http://"+g.Addr()+"/static/x"); resp.StatusCode != 200 {
		t.Errorf("/static after reload: %d", resp.StatusCode)
	}
	if resp, _ := get(t, "http://"+g.Addr()+"/other/x"); resp.StatusCode != 503 {
		t.Errorf("/other after reload (no instance has tag v2): %d", resp.StatusCode)
	}
	// The old watcher of "other" has stopped: the discovery runs one watcher per service.
	g.disc.mu.Lock()
	n := len(g.disc.watchers)
	g.disc.mu.Unlock()
	if n != 2 {
		t.Errorf("%d watchers running, want 2", n)
	}
	_, metrics := get(t, "http://"+g.AdminAddr()+"/metrics")
	mustContain(t, metrics, `gateway_config_reloads_total{result="ok"} 1`)
	mustContain(t, metrics, `gateway_consul_last_success_age_seconds{service="other"}`)
}

// A failed reload that would have rebuilt a Consul service leaves that service's
// metrics reading its running watcher; a reload that removes a service removes its
// series (instances, upstream requests, Consul watch) from /metrics.
func TestReloadMetricsOfFailedAndRemovedServices(t *testing.T) {
	g, vars, _ := startReloadConsul(t)
	if resp, _ := get(t, "http://"+g.Addr()+"/other/x"); resp.StatusCode != 200 {
		t.Fatalf("/other: %d", resp.StatusCode)
	}
	const age = `gateway_consul_last_success_age_seconds{service="other"}`

	// "other" is rebuilt (a new tag), then the build fails on a Connect service that
	// the running gateway, started without a connect block, cannot serve.
	broken := strings.Replace(reloadConsulConfig, `name = "other"`, "name = \"other\"\n    tags = [\"v2\"]", 1) + `
connect { service_name = "gateway" }
service "meshy" {
  consul {
    connect = true
  }
}
route "meshy" {
  path    = "/meshy/*"
  service = "meshy"
}
`
	err := g.ReloadConfig(parseConfig(t, broken, vars))
	if err == nil || !strings.Contains(err.Error(), "takes a restart") {
		t.Fatalf("reload adding a Connect service without the mesh: %v, want a refusal", err)
	}
	if g.Service("meshy") != nil {
		t.Fatal("the refused Connect service was swapped in")
	}
	if v := metric(t, g, age); v < 0 {
		t.Errorf("%s = %v after a failed reload, want the running watcher's age", age, v)
	}

	removed := strings.Replace(reloadConsulConfig, "service \"other\" {\n  consul {\n    name = \"other\"\n  }\n}\n", "", 1)
	removed = strings.Replace(removed, "route \"other\" {\n  path    = \"/other/*\"\n  service = \"other\"\n}\n", "", 1)
	if strings.Contains(removed, `"other"`) {
		t.Fatalf("the test's edit left %q in:\n%s", "other", removed)
	}
	if err := g.ReloadConfig(parseConfig(t, removed, vars)); err != nil {
		t.Fatalf("reload: %v", err)
	}
	_, metrics := get(t, "http://"+g.AdminAddr()+"/metrics")
	for _, line := range strings.Split(metrics, "\n") {
		if strings.Contains(line, `service="other"`) {
			t.Errorf("series of the removed service still exported: %s", line)
		}
	}
	mustContain(t, metrics, `gateway_service_instances{service="echo"} 1`)
	mustContain(t, metrics, `gateway_consul_last_success_age_seconds{service="echo"}`)
}

// TestReloadRefusesWhatCannotBuild: a config that validates but cannot be built (a JWT
// key file that is missing) leaves the running snapshot in place and counts an error.
func TestReloadRefusesWhatCannotBuild(t *testing.T) {
	up := echoBackend(t, "a")
	src := `
gateway { address = "127.0.0.1:0" }
admin { address = "127.0.0.1:0" }
service "a" {
  instance {
    address = "` + hostOf(up.Server) + `"
  }
}
route "a" {
  path    = "/a"
  service = "a"
}
`
	g, _, _, _ := runGateway(t, src, nil)
	before := g.cur.Load()
	if err := g.Reload(); err == nil {
		t.Error("reload without a config path succeeded")
	}
	broken := src + `
jwt "k" {
  algorithms      = ["RS256"]
  public_key_file = "/nonexistent/key.pem"
}
route "b" {
  path    = "/b"
  service = "a"
  jwt     = "k"
}
`
	if err := g.ReloadConfig(parseConfig(t, broken, nil)); err == nil {
		t.Fatal("a config whose key file is missing was swapped in")
	}
	if g.cur.Load() != before {
		t.Error("snapshot changed")
	}
	if resp, _ := get(t, "http://"+g.Addr()+"/a"); resp.StatusCode != 200 {
		t.Errorf("/a: status %d", resp.StatusCode)
	}
	if resp, _ := get(t, "http://"+g.Addr()+"/b"); resp.StatusCode != 404 {
		t.Errorf("/b: status %d", resp.StatusCode)
	}
	_, metrics := get(t, "http://"+g.AdminAddr()+"/metrics")
	mustContain(t, metrics, `gateway_config_reloads_total{result="error"} 1`)
}

// TestReloadChangesPolicies: a changed rate_limit block and a new JWT provider take
// effect on the next request.
func TestReloadChangesPolicies(t *testing.T) {
	up := echoBackend(t, "a")
	base := `
service "a" {
  instance {
    address = "` + hostOf(up.Server) + `"
  }
}
rate_limit "tight" {
  requests = %d
  period   = "1h"
  store    = "memory"
}
route "a" {
  path       = "/a"
  service    = "a"
  rate_limit = "tight"
}
`
	gw := startGateway(t, fmt.Sprintf(base, 1), nil)
	if resp, _ := get(t, gw.URL+"/a"); resp.StatusCode != 200 {
		t.Fatalf("first: %d", resp.StatusCode)
	}
	if resp, _ := get(t, gw.URL+"/a"); resp.StatusCode != 429 {
		t.Fatalf("second within a limit of 1: %d", resp.StatusCode)
	}
	next := fmt.Sprintf(base, 100) + `
jwt "users" {
  algorithms = ["HS256"]
  secret     = "0123456789abcdef0123456789abcdef"
}
route "private" {
  path    = "/private"
  service = "a"
  jwt     = "users"
}
`
	if err := gw.ReloadConfig(parseConfig(t, next, nil)); err != nil {
		t.Fatal(err)
	}
	if resp, _ := get(t, gw.URL+"/a"); resp.StatusCode != 200 || resp.Header.Get("RateLimit-Limit") != "100" {
		t.Errorf("after raising the limit: %d, RateLimit-Limit %q", resp.StatusCode, resp.Header.Get("RateLimit-Limit"))
	}
	if resp, _ := get(t, gw.URL+"/private"); resp.StatusCode != 401 {
		t.Errorf("new JWT route without a token: %d, want 401", resp.StatusCode)
	}
}
