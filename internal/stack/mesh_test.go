package stack_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/infinityxone/gateway/internal/stack"
)

// TestStackMesh runs the mesh variant (what docker-compose.mesh.yml runs in
// containers): echo instances on loopback behind Consul's built-in Connect sidecar,
// one gateway replica on deploy/gateway-mesh.hcl. The gateway reaches each service
// through its sidecar only, over mutual TLS.
func TestStackMesh(t *testing.T) {
	checkMesh(t, startMesh(t, false))
}

// TestStackMeshOnCluster runs the mesh variant on the cluster topology (`make stack
// STACK_FLAGS="-mesh -cluster"`): the CA runs on three Consul servers, the instances
// and their sidecars register through the client agent, and the gateway's leaf and
// the sidecars' certificates come from the servers.
func TestStackMeshOnCluster(t *testing.T) {
	s := startMesh(t, true)
	if len(s.ConsulServers) != 3 || s.Redis != nil {
		t.Fatalf("topology: %d consul servers, single redis %v", len(s.ConsulServers), s.Redis != nil)
	}
	checkMesh(t, s)
	// The servers hold the CA: every one of them knows the active root.
	for _, srv := range s.ConsulServers {
		var roots struct {
			ActiveRootID string
			Roots        []struct{ ID string }
		}
		r := newClient().get("http://" + srv.Addr + "/v1/connect/ca/roots")
		if r.err != nil || r.status != http.StatusOK {
			t.Fatalf("%s: CA roots: %v %d", srv.Name, r.err, r.status)
		}
		if err := json.Unmarshal([]byte(r.body), &roots); err != nil || roots.ActiveRootID == "" || len(roots.Roots) == 0 {
			t.Fatalf("%s: CA roots %q: %v", srv.Name, r.body, err)
		}
	}
}

// startMesh starts the mesh variant with one gateway and one instance of users and
// orders, on the cluster topology when cluster is set.
func startMesh(t *testing.T, cluster bool) *stack.Stack {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s, err := stack.Start(ctx, stack.Options{
		Mesh: true, Cluster: cluster, Gateways: 1,
		Services: []stack.Service{{Name: "users", Instances: 1, Tags: []string{"v1"}}, {Name: "orders", Instances: 1, Tags: []string{"v1"}}},
	})
	if err != nil {
		t.Fatalf("start mesh stack (cluster %v): %v", cluster, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range processes(s) {
				t.Logf("--- %s log (end):\n%s", p.Name, p.Tail(12<<10))
			}
		}
		if err := s.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return s
}

// checkMesh checks that the gateway reaches each service through its sidecar only,
// over mutual TLS.
func checkMesh(t *testing.T, s *stack.Stack) {
	t.Helper()
	g := s.Gateways[0]
	c := newClient()
	users := s.ServiceInstances("users")[0]
	if users.Sidecar == nil {
		t.Fatal("no sidecar in the mesh variant")
	}
	// A sidecar passes its check a moment after the stack is up: the gateway is ready
	// (every service answered once) before it sees the sidecars.
	waitFor(t, time.Minute, "both services seen through their sidecars", func() error {
		if err := wantInstances(c, g, "users", 1); err != nil {
			return err
		}
		return wantInstances(c, g, "orders", 1)
	})
	r := c.do(t, http.MethodGet, g.URL("/api/users/42"), nil)
	if e := r.echo(t); e.Instance != users.ID || e.Path != "/users/42" {
		t.Fatalf("through the sidecar: %+v", e)
	}
	tok := token(t, s, "mesh")
	if e := c.do(t, http.MethodGet, g.URL("/api/orders/7"), bearer(tok)).echo(t); e.Service != "orders" {
		t.Fatalf("orders: %+v", e)
	}
	var svcs []struct {
		Name      string
		Instances []struct {
			Address string
			Mesh    bool
		}
	}
	if err := json.Unmarshal([]byte(c.do(t, http.MethodGet, g.AdminURL("/admin/services"), nil).body), &svcs); err != nil {
		t.Fatal(err)
	}
	for _, sv := range svcs {
		if sv.Name == "users" && (len(sv.Instances) != 1 || sv.Instances[0].Address != users.Sidecar.Addr || !sv.Instances[0].Mesh) {
			t.Fatalf("users instances %+v, want the sidecar %s in the mesh", sv.Instances, users.Sidecar.Addr)
		}
	}
	if r := c.get("http://" + users.Sidecar.Addr + "/users/42"); r.err == nil && r.status == http.StatusOK {
		t.Fatal("plain HTTP through the sidecar was served")
	}
	var out strings.Builder
	s.Describe(&out)
	if !strings.Contains(out.String(), users.Sidecar.Addr) {
		t.Fatalf("Describe leaves out the sidecar:\n%s", out.String())
	}
}
