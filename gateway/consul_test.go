package gateway

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/infinityxone/gateway/internal/testenv"
)

func consulClient(t testing.TB, addr string) *api.Client {
	t.Helper()
	c, err := api.NewClient(&api.Config{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// registerTTL registers a backend with a TTL check in the given state.
func registerTTL(t testing.TB, c *api.Client, service string, b *httptest.Server, status string) string {
	t.Helper()
	host, portStr, _ := strings.Cut(hostOf(b), ":")
	port, _ := strconv.Atoi(portStr)
	id := service + "-" + portStr
	err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: id, Name: service, Address: host, Port: port, Tags: []string{"v1"},
		Check: &api.AgentServiceCheck{CheckID: "check-" + id, TTL: "10m", Status: status},
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func setTTL(t testing.TB, c *api.Client, id, status string) {
	t.Helper()
	if err := c.Agent().UpdateTTL("check-"+id, "", status); err != nil {
		t.Fatal(err)
	}
}

const consulConfig = `
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
  timeout = "5s"
}
route "echo" {
  path = "/*"
  service = "echo"
}`

// backendsSeen sends n requests and returns the set of backends that answered.
func backendsSeen(t testing.TB, url string, n int) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for i := 0; i < n; i++ {
		resp, body := get(t, url)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		seen[decodeSeen(t, body).Backend]++
	}
	return seen
}

func TestConsulInstancesFollowHealth(t *testing.T) {
	agent := testenv.StartConsul(t)
	c := consulClient(t, agent.Addr)
	a, b := echoBackend(t, "a"), echoBackend(t, "b")

	g, _, _, _ := runGateway(t, consulConfig, map[string]string{"CONSUL": agent.Addr})
	url := "http://" + g.Addr() + "/x"
	admin := "http://" + g.AdminAddr()

	// Before the service has any passing instance the route answers 503.
	if resp, _ := get(t, url); resp.StatusCode != 503 {
		t.Fatalf("no instances: %d", resp.StatusCode)
	}
	ida := registerTTL(t, c, "echo", a.Server, api.HealthPassing)
	idb := registerTTL(t, c, "echo", b.Server, api.HealthPassing)
	eventually(t, 10*time.Second, "both instances in rotation", func() bool { return g.Service("echo").Set.Len() == 2 })
	if seen := backendsSeen(t, url, 10); seen["a"] == 0 || seen["b"] == 0 {
		t.Fatalf("traffic %v", seen)
	}
	if resp, body := get(t, admin+"/readyz"); resp.StatusCode != 200 {
		t.Fatalf("readyz %d %s", resp.StatusCode, body)
	}

	setTTL(t, c, ida, api.HealthCritical)
	eventually(t, 10*time.Second, "a leaves", func() bool { return g.Service("echo").Set.Len() == 1 })
	if seen := backendsSeen(t, url, 10); seen["a"] != 0 {
		t.Fatalf("failed instance still picked: %v", seen)
	}
	setTTL(t, c, ida, api.HealthPassing)
	eventually(t, 10*time.Second, "a returns", func() bool { return g.Service("echo").Set.Len() == 2 })
	if seen := backendsSeen(t, url, 10); seen["a"] == 0 {
		t.Fatalf("returned instance not picked: %v", seen)
	}
	if err := c.Agent().ServiceDeregister(idb); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "b leaves", func() bool { return g.Service("echo").Set.Len() == 1 })
	if seen := backendsSeen(t, url, 10); seen["b"] != 0 {
		t.Fatalf("deregistered instance still picked: %v", seen)
	}

	_, services := get(t, admin+"/admin/services")
	mustContain(t, services, `"source": "consul"`)
	mustContain(t, services, `"v1"`)
	_, metrics := get(t, admin+"/metrics")
	mustContain(t, metrics, `gateway_consul_watch_updates_total{service="echo"}`)
	mustContain(t, metrics, `gateway_consul_last_success_age_seconds{service="echo"}`)
	mustContain(t, metrics, `gateway_service_instances{service="echo"} 1`)
}

// load sends requests from a few clients until stop is closed and counts failures.
type load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
	wg         sync.WaitGroup
	stop       chan struct{}
}

func startLoad(url string, clients int) *load {
	l := &load{stop: make(chan struct{})}
	for i := 0; i < clients; i++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				resp, err := http.Get(url)
				if err == nil {
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != 200 {
					l.failed.Add(1)
					l.mu.Lock()
					if err != nil {
						l.errs = append(l.errs, err.Error())
					} else {
						l.errs = append(l.errs, resp.Status)
					}
					l.mu.Unlock()
				} else {
					l.ok.Add(1)
				}
				time.Sleep(5 * time.Millisecond) // bounded, steady load
			}
		}()
	}
	return l
}

func (l *load) finish(t testing.TB) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	if l.failed.Load() > 0 {
		t.Fatalf("%d of %d requests failed: %v", l.failed.Load(), l.failed.Load()+l.ok.Load(), l.errs[:min(len(l.errs), 5)])
	}
	if l.ok.Load() == 0 {
		t.Fatal("no request succeeded")
	}
}

func TestConsulDownKeepsServing(t *testing.T) {
	agent := testenv.StartConsul(t)
	c := consulClient(t, agent.Addr)
	a, b := echoBackend(t, "a"), echoBackend(t, "b")
	registerTTL(t, c, "echo", a.Server, api.HealthPassing)
	g, _, _, _ := runGateway(t, consulConfig, map[string]string{"CONSUL": agent.Addr})
	eventually(t, 10*time.Second, "first instance", func() bool { return g.Service("echo").Set.Len() == 1 })

	l := startLoad("http://"+g.Addr()+"/x", 4)
	agent.Stop()
	_, metrics := get(t, "http://"+g.AdminAddr()+"/metrics")
	eventually(t, 10*time.Second, "watch errors counted", func() bool {
		_, metrics = get(t, "http://"+g.AdminAddr()+"/metrics")
		return !strings.Contains(metrics, `gateway_consul_watch_errors_total{service="echo"} 0`)
	})
	before := l.ok.Load()
	eventually(t, 10*time.Second, "traffic while consul is down", func() bool { return l.ok.Load() > before+20 })

	l.finish(t) // no request failed while Consul was down

	// A dev agent restarts empty (its answer is briefly "no instances", which the
	// gateway believes), so the new instance is registered right away.
	agent.Start()
	c = consulClient(t, agent.Addr)
	registerTTL(t, c, "echo", b.Server, api.HealthPassing)
	eventually(t, 20*time.Second, "new instance picked up without a restart", func() bool {
		for _, e := range g.Service("echo").Set.Endpoints() {
			if e.Address == hostOf(b.Server) {
				return true
			}
		}
		return false
	})
	if resp, _ := get(t, "http://"+g.Addr()+"/x"); resp.StatusCode != 200 {
		t.Fatalf("after recovery: %d", resp.StatusCode)
	}
}

func TestConsulRollingRestart(t *testing.T) {
	agent := testenv.StartConsul(t)
	c := consulClient(t, agent.Addr)
	var backs [3]*testServer
	var ids [3]string
	for i := range backs {
		backs[i] = echoBackend(t, fmt.Sprint(i))
		ids[i] = registerTTL(t, c, "echo", backs[i].Server, api.HealthPassing)
	}
	g, _, _, _ := runGateway(t, consulConfig, map[string]string{"CONSUL": agent.Addr})
	eventually(t, 10*time.Second, "three instances", func() bool { return g.Service("echo").Set.Len() == 3 })

	l := startLoad("http://"+g.Addr()+"/x", 4)
	for i := range backs {
		// deregister, wait until the gateway has dropped it, stop, start, register.
		if err := c.Agent().ServiceDeregister(ids[i]); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "instance dropped", func() bool { return g.Service("echo").Set.Len() == 2 })
		addr := backs[i].Listener.Addr().String()
		backs[i].Close()
		backs[i] = restartOn(t, addr, fmt.Sprint(i))
		ids[i] = registerTTL(t, c, "echo", backs[i].Server, api.HealthPassing)
		eventually(t, 10*time.Second, "instance back", func() bool { return g.Service("echo").Set.Len() == 3 })
	}
	l.finish(t)
}

// restartOn starts an echo backend again on the same address.
func restartOn(t testing.TB, addr, name string) *testServer {
	t.Helper()
	ts := echoBackend(t, name) // a fresh server to borrow its handler
	ts.Server.Close()
	s := httptest.NewUnstartedServer(ts.Config.Handler)
	deadline := time.Now().Add(5 * time.Second)
	for {
		ln, err := netListen(addr)
		if err == nil {
			s.Listener = ln
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.Start()
	t.Cleanup(s.Close)
	return &testServer{Server: s}
}

func TestSelfRegistration(t *testing.T) {
	agent := testenv.StartConsul(t)
	c := consulClient(t, agent.Addr)
	src := `
gateway {
  address = "127.0.0.1:0"
  shutdown_timeout = "5s"
}
admin { address = "127.0.0.1:0" }
consul {
  address = env("CONSUL")
  register {
    service = "edge"
    tags = ["edge"]
    deregister_delay = "300ms"
  }
}
service "a" {
  instance { address = "127.0.0.1:1" }
}
route "a" {
  path = "/a"
  service = "a"
}`
	g, _, cancel, done := runGateway(t, src, map[string]string{"CONSUL": agent.Addr})
	eventually(t, 15*time.Second, "registered and passing", func() bool {
		entries, _, err := c.Health().Service("edge", "edge", true, nil)
		return err == nil && len(entries) == 1 && entries[0].Service.Port > 0
	})
	entries, _, _ := c.Health().Service("edge", "", true, nil)
	if got := fmt.Sprintf("%s:%d", entries[0].Service.Address, entries[0].Service.Port); got != g.Addr() {
		t.Fatalf("registered %s, listening on %s", got, g.Addr())
	}
	cancel() // SIGTERM in main
	eventually(t, 5*time.Second, "deregistered", func() bool {
		entries, _, err := c.Health().Service("edge", "", false, nil)
		return err == nil && len(entries) == 0
	})
	// Deregistered while still serving: the listener answers during deregister_delay.
	select {
	case err := <-done:
		done <- err
	default:
		if ok, why := g.Ready(); ok || why != "draining" {
			t.Fatalf("ready=%v %q while draining", ok, why)
		}
	}
}

func TestReadyzShowsACLRefusal(t *testing.T) {
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte("ACL not found"))
	}))
	defer fake.Close()
	g, _, _, _ := runGateway(t, consulConfig, map[string]string{"CONSUL": hostOf(fake)})
	eventually(t, 10*time.Second, "ACL reason in /readyz", func() bool {
		resp, body := get(t, "http://"+g.AdminAddr()+"/readyz")
		return resp.StatusCode == 503 && strings.Contains(body, "ACL")
	})
}
