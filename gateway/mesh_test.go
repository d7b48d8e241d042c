package gateway

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/infinityxone/gateway/consul"
	"github.com/infinityxone/gateway/internal/testenv"
)

// Tests in this file put the gateway in a real Consul service mesh: plain backends
// behind Consul's built-in sidecar proxy, and Connect-native backends made with package
// consul's server side (the code path of examples/services/echo -connect).

// meshSeen is what a mesh backend answers.
type meshSeen struct {
	Backend    string `json:"backend"`
	TLS        bool   `json:"tls"`
	PeerURI    string `json:"peer_uri"`
	PeerSerial string `json:"peer_serial"`
	RemoteAddr string `json:"remote_addr"`
}

// meshBackend is a backend of the mesh test: plain (behind a sidecar) or native.
type meshBackend struct {
	addr string
	hits atomic.Int64
}

func serveMeshBackend(t testing.TB, name string, tlsConf *tls.Config) *meshBackend {
	t.Helper()
	b := &meshBackend{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.addr = ln.Addr().String()
	if tlsConf != nil {
		ln = tls.NewListener(ln, tlsConf)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b.hits.Add(1)
			s := meshSeen{Backend: name, TLS: r.TLS != nil, RemoteAddr: r.RemoteAddr}
			if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
				pc := r.TLS.PeerCertificates[0]
				s.PeerURI, s.PeerSerial = pc.URIs[0].String(), pc.SerialNumber.String()
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(s)
		}),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0), // refused handshakes are part of the tests
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return b
}

// nativeBackend starts a Connect-native backend presenting the leaf of identity and
// registers it as an instance of service name.
func nativeBackend(t testing.TB, agent *testenv.Consul, name, identity string) *meshBackend {
	t.Helper()
	client := agent.Client(t)
	certs, err := consul.NewCerts(client.Agent(), consul.ConnectOptions{Service: identity, WaitTime: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = certs.Run(context.Background()) }()
	t.Cleanup(certs.Stop)
	select {
	case <-certs.Ready():
	case <-time.After(30 * time.Second):
		t.Fatalf("native %s: no leaf and roots: %v", identity, certs.Err())
	}
	b := serveMeshBackend(t, name, certs.ServerTLS(client.Agent()))
	host, port, _ := net.SplitHostPort(b.addr)
	p, _ := strconv.Atoi(port)
	if err := client.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: name + "-" + port, Name: name, Address: host, Port: p, Connect: &api.AgentServiceConnect{Native: true},
	}); err != nil {
		t.Fatal(err)
	}
	return b
}

const meshConfig = `
gateway { address = "127.0.0.1:0" }
admin { address = "127.0.0.1:0" }
consul {
  address   = env("CONSUL")
  wait_time = "5s"
}
connect { service_name = "gateway" }
service "users" {
  consul {
    connect = true
  }
  timeout = "30s" # generous: only the mesh may fail these tests, not a slow machine
  retry { attempts = 3 }
  circuit_breaker { failure_threshold = 1 }
}
service "orders" {
  consul {
    connect = true
  }
  timeout = "30s" # generous: only the mesh may fail these tests, not a slow machine
}
service "billing" {
  consul {
    connect = true
  }
  timeout = "30s" # generous: only the mesh may fail these tests, not a slow machine
}
route "users" {
  path = "/users/*"
  service = "users"
}
route "orders" {
  path = "/orders/*"
  service = "orders"
}
route "billing" {
  path = "/billing/*"
  service = "billing"
}`

// meshGet sends one request and decodes a backend's answer (zero for an error answer).
func meshGet(t testing.TB, url string) (int, meshSeen, string) {
	t.Helper()
	resp, body := get(t, url)
	var s meshSeen
	if resp.StatusCode == 200 {
		if err := json.Unmarshal([]byte(body), &s); err != nil {
			t.Fatalf("answer %q: %v", body, err)
		}
	}
	return resp.StatusCode, s, body
}

// metric returns the value of one series of the gateway's /metrics, -1 when absent.
func metric(t testing.TB, g *Gateway, series string) float64 {
	t.Helper()
	_, body := get(t, "http://"+g.AdminAddr()+"/metrics")
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	return -1
}

// loadGen sends requests to urls from workers goroutines until stopped.
type loadGen struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
	stop       chan struct{}
	wg         sync.WaitGroup
}

func startMeshLoad(urls []string, workers int) *loadGen {
	l := &loadGen{stop: make(chan struct{})}
	client := &http.Client{Timeout: 60 * time.Second}
	for i := 0; i < workers; i++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for n := 0; ; n++ {
				select {
				case <-l.stop:
					return
				default:
				}
				url := urls[(i+n)%len(urls)]
				resp, err := client.Get(url)
				if err == nil {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = fmt.Errorf("%s: %d %s", url, resp.StatusCode, b)
					}
				}
				if err != nil {
					l.failed.Add(1)
					l.mu.Lock()
					if len(l.errs) < 5 {
						l.errs = append(l.errs, err.Error())
					}
					l.mu.Unlock()
				} else {
					l.ok.Add(1)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	return l
}

// end stops the load and fails the test on any failed request.
func (l *loadGen) end(t testing.TB, what string) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	if n := l.failed.Load(); n > 0 {
		t.Fatalf("%s: %d of %d requests failed: %v", what, n, n+l.ok.Load(), l.errs)
	}
	t.Logf("%s: %d requests, none failed", what, l.ok.Load())
}

func TestMeshReadyzWaitsForLeafAndRoots(t *testing.T) {
	// Nothing listens at the agent's address: the static service is ready, the mesh is not.
	g, _, _, _ := runGateway(t, `
gateway { address = "127.0.0.1:0" }
admin { address = "127.0.0.1:0" }
consul { address = "127.0.0.1:1" }
connect {}
service "s" {
  instance { address = "127.0.0.1:9" }
}
route "s" {
  path = "/s"
  service = "s"
}`, nil)
	eventually(t, 10*time.Second, "readyz names the missing leaf", func() bool {
		resp, body := get(t, "http://"+g.AdminAddr()+"/readyz")
		return resp.StatusCode == 503 && strings.Contains(body, "Connect leaf certificate and CA roots")
	})
}

func TestMesh(t *testing.T) {
	agent := testenv.StartConsul(t)
	users := serveMeshBackend(t, "users", nil)
	sidecar := agent.RegisterWithSidecar(t, "users", "users-1", users.addr)
	orders := nativeBackend(t, agent, "orders", "orders")
	// billing's only instance presents a valid certificate, but it is orders'.
	impostor := nativeBackend(t, agent, "billing", "orders")

	g, _, _, _ := runGateway(t, meshConfig, map[string]string{"CONSUL": agent.Addr})
	base := "http://" + g.Addr()
	admin := "http://" + g.AdminAddr()
	eventually(t, 30*time.Second, "ready with every instance", func() bool {
		ok, _ := g.Ready()
		return ok && g.Service("users").Set.Len() == 1 && g.Service("orders").Set.Len() == 1 && g.Service("billing").Set.Len() == 1
	})

	t.Run("through the sidecar and to the native service", func(t *testing.T) {
		code, s, body := meshGet(t, base+"/users/1")
		if code != 200 || s.Backend != "users" || s.TLS {
			t.Fatalf("users: %d %s", code, body)
		}
		code, s, body = meshGet(t, base+"/orders/1")
		if code != 200 || s.Backend != "orders" || !strings.HasSuffix(s.PeerURI, "/svc/gateway") {
			t.Fatalf("orders: %d %s", code, body)
		}
		// The gateway dials the sidecar, never the backend; the sidecar wants mutual TLS.
		var services []ServiceInfo
		_, body = get(t, admin+"/admin/services")
		if err := json.Unmarshal([]byte(body), &services); err != nil {
			t.Fatal(err)
		}
		for _, si := range services {
			if si.Name == "users" && (len(si.Instances) != 1 || si.Instances[0].Address != sidecar.Addr || !si.Instances[0].Mesh) {
				t.Fatalf("users in /admin/services: %+v, want the sidecar %s with mesh true", si.Instances, sidecar.Addr)
			}
		}
		if resp, err := http.Get("http://" + sidecar.Addr + "/users/1"); err == nil {
			resp.Body.Close()
			t.Fatal("plain HTTP to the sidecar was served")
		}
		if v := metric(t, g, "gateway_connect_leaf_expiry_timestamp_seconds"); v < float64(time.Now().Unix()) {
			t.Fatalf("leaf expiry metric %v", v)
		}
	})

	t.Run("an upstream with another service's certificate is refused", func(t *testing.T) {
		code, _, body := meshGet(t, base+"/billing/1")
		if code != 502 || !strings.Contains(body, `"bad_gateway"`) {
			t.Fatalf("billing: %d %s", code, body)
		}
		if n := impostor.hits.Load(); n != 0 {
			t.Fatalf("the impostor served %d requests", n)
		}
	})

	t.Run("a deny intention is 502 mesh_denied, allow serves again", func(t *testing.T) {
		// Warm, pooled connections: the sidecar checks intentions only when a connection
		// opens, so the gateway must notice the change and open fresh ones.
		for i := 0; i < 5; i++ {
			if code, _, body := meshGet(t, base+"/users/1"); code != 200 {
				t.Fatalf("before deny: %d %s", code, body)
			}
		}
		agent.Intention(t, "gateway", "users", "deny")
		var body string
		eventually(t, 10*time.Second, "the deny applied to pooled traffic", func() bool {
			var code int
			code, _, body = meshGet(t, base+"/users/1")
			if code != 200 && code != 502 {
				t.Fatalf("after deny: %d %s", code, body)
			}
			return code == 502
		})
		if !strings.Contains(body, `"code":"mesh_denied"`) {
			t.Fatalf("denied answer %s", body)
		}
		for i := 0; i < 3; i++ { // the breaker (threshold 1) must not open on it
			if code, _, body := meshGet(t, base+"/users/1"); code != 502 || !strings.Contains(body, "mesh_denied") {
				t.Fatalf("denied again: %d %s", code, body)
			}
		}
		if v := metric(t, g, `gateway_upstream_retries_total{service="users"}`); v != 0 {
			t.Fatalf("%v retries of a denied request", v)
		}
		if v := metric(t, g, `gateway_upstream_requests_total{instance="`+sidecar.Addr+`",outcome="mesh_denied",service="users"}`); v < 4 {
			t.Fatalf("mesh_denied outcomes %v", v)
		}
		agent.Intention(t, "gateway", "users", "allow")
		eventually(t, 20*time.Second, "users served again", func() bool {
			code, _, _ := meshGet(t, base+"/users/1")
			return code == 200
		})
	})

	t.Run("CA rotation under load", func(t *testing.T) {
		_, before, _ := meshGet(t, base+"/orders/1")
		leafRot := metric(t, g, `gateway_connect_rotations_total{kind="leaf"}`)
		load := startMeshLoad([]string{base + "/users/1", base + "/orders/1"}, 4)
		agent.RotateCA(t)
		eventually(t, 20*time.Second, "roots rotation counted", func() bool {
			return metric(t, g, `gateway_connect_rotations_total{kind="roots"}`) >= 1
		})
		// Consul re-issues watched leaves after a random delay (~20–30 s).
		eventually(t, 90*time.Second, "the gateway presents a new leaf", func() bool {
			_, s, _ := meshGet(t, base+"/orders/1")
			return s.PeerSerial != "" && s.PeerSerial != before.PeerSerial
		})
		load.end(t, "CA rotation")
		if v := metric(t, g, `gateway_connect_rotations_total{kind="leaf"}`); v < leafRot+1 {
			t.Fatalf("leaf rotations %v, want more than %v", v, leafRot)
		}
	})

	if users.hits.Load() == 0 || orders.hits.Load() == 0 {
		t.Fatalf("hits: users %d orders %d", users.hits.Load(), orders.hits.Load())
	}
}

// TestMeshSurvivesAgentRestart stops the agent under steady load and starts it again.
// A restarted -dev agent would be another cluster (a new CA), so the agent here is a
// persistent single server whose CA and registrations survive. While it is down, the
// sidecar cannot authorize new connections, so traffic flows on the gateway's open
// pooled connections with the cached leaf, roots and instance lists.
func TestMeshSurvivesAgentRestart(t *testing.T) {
	agent := testenv.StartConsulServer(t)
	users := serveMeshBackend(t, "users", nil)
	// Registered on its own and without a check, the sidecar stays in the passing list
	// across the restart, where a restored check would start critical for a moment (see
	// RegisterWithProxyService): this test is about the mesh, not about health checks.
	agent.RegisterWithProxyService(t, "users", "users-1", users.addr)
	orders := nativeBackend(t, agent, "orders", "orders")

	g, _, _, _ := runGateway(t, meshConfig, map[string]string{"CONSUL": agent.Addr})
	base := "http://" + g.Addr()
	eventually(t, 30*time.Second, "ready with both instances", func() bool {
		ok, _ := g.Ready()
		return ok && g.Service("users").Set.Len() == 1 && g.Service("orders").Set.Len() == 1
	})
	load := startMeshLoad([]string{base + "/users/1", base + "/orders/1"}, 1)
	eventually(t, 10*time.Second, "traffic", func() bool { return load.ok.Load() > 10 })

	errs := metric(t, g, `gateway_consul_watch_errors_total{service="users"}`)
	agent.Stop()
	eventually(t, 20*time.Second, "the gateway sees the agent gone", func() bool {
		return metric(t, g, `gateway_consul_watch_errors_total{service="users"}`) > errs
	})
	down := load.ok.Load()
	eventually(t, 20*time.Second, "traffic while the agent is down", func() bool { return load.ok.Load() > down+50 })
	if ok, why := g.Ready(); !ok {
		t.Fatalf("not ready while the agent is down: %s", why)
	}

	agent.Start()
	up := load.ok.Load()
	eventually(t, 30*time.Second, "traffic after the agent is back", func() bool { return load.ok.Load() > up+50 })
	load.end(t, "agent restart")
	if users.hits.Load() == 0 || orders.hits.Load() == 0 {
		t.Fatalf("hits: users %d orders %d", users.hits.Load(), orders.hits.Load())
	}
	// New connections (the sidecar and the native service authorize them with the
	// agent again) work with the same cluster's certificates.
	for _, name := range []string{"users", "orders"} {
		g.Service(name).transport.CloseIdleConnections()
		if code, _, body := meshGet(t, base+"/"+name+"/2"); code != 200 {
			t.Fatalf("%s on a new connection after the restart: %d %s", name, code, body)
		}
	}
}

// A reload that changes a Connect service builds it a new mesh transport: the
// connections counter is registered once per service and keeps counting, the retired
// transport is forgotten, and the service keeps serving through the mesh.
func TestMeshReloadChangedService(t *testing.T) {
	agent := testenv.StartConsul(t)
	orders := nativeBackend(t, agent, "orders", "orders")
	vars := map[string]string{"CONSUL": agent.Addr}
	g, _, _, _ := runGateway(t, meshConfig, vars)
	base := "http://" + g.Addr()
	eventually(t, 30*time.Second, "orders ready", func() bool {
		ok, _ := g.Ready()
		return ok && g.Service("orders").Set.Len() == 1
	})
	if code, _, body := meshGet(t, base+"/orders/1"); code != 200 {
		t.Fatalf("before reload: %d %s", code, body)
	}
	before := metric(t, g, `gateway_connect_upstream_connections_total{service="orders"}`)
	transports := func() int {
		g.disc.mesh.mu.Lock()
		defer g.disc.mesh.mu.Unlock()
		return len(g.disc.mesh.transports)
	}
	n := transports()

	for i, timeout := range []string{"31s", "32s"} { // twice: a second registration would panic
		next := strings.Replace(meshConfig, "service \"orders\" {\n  consul {\n    connect = true\n  }\n  timeout = \"30s\"",
			"service \"orders\" {\n  consul {\n    connect = true\n  }\n  timeout = \""+timeout+"\"", 1)
		if next == meshConfig {
			t.Fatal("the test's config edit matched nothing")
		}
		old := g.Service("orders")
		if err := g.ReloadConfig(parseConfig(t, next, vars)); err != nil {
			t.Fatalf("reload %d: %v", i+1, err)
		}
		if g.Service("orders") == old {
			t.Fatalf("reload %d: the changed Connect service was kept", i+1)
		}
		eventually(t, 30*time.Second, "orders back after the reload", func() bool {
			return g.Service("orders").Set.Len() == 1
		})
		if code, _, body := meshGet(t, base+"/orders/1"); code != 200 {
			t.Fatalf("after reload %d: %d %s", i+1, code, body)
		}
	}
	if got := transports(); got != n {
		t.Errorf("%d mesh transports after two reloads, want %d (retired ones forgotten)", got, n)
	}
	if after := metric(t, g, `gateway_connect_upstream_connections_total{service="orders"}`); after <= before {
		t.Errorf("connections counter %v after reloads, was %v: it must keep counting", after, before)
	}
	if orders.hits.Load() < 3 {
		t.Errorf("orders served %d requests, want 3", orders.hits.Load())
	}
}
