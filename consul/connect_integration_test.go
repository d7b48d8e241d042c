package consul

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/infinityxone/gateway/internal/testenv"
)

// TestConnectWithRealAgent runs the mesh client against a real dev agent: a plain
// backend behind Consul's built-in sidecar and a Connect-native server made with
// this package, both found through /v1/health/connect, intentions deciding.
func TestConnectWithRealAgent(t *testing.T) {
	agent := testenv.StartConsul(t)
	client := agentClient(t, agent.Addr)

	// A plain backend on loopback, behind a sidecar.
	plain := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "plain "+strconv.FormatBool(r.TLS != nil))
	}), ErrorLog: log.New(io.Discard, "", 0)}
	pln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = plain.Serve(pln) }()
	t.Cleanup(func() { _ = plain.Close() })
	sidecar := agent.RegisterWithSidecar(t, "users", "users-1", pln.Addr().String())

	// The gateway's identity.
	gw := startCerts(t, client.Agent(), "gateway", nil)
	if !strings.HasSuffix(gw.Leaf().URI.String(), "/ns/default/dc/dc1/svc/gateway") || gw.Leaf().URI.Host != gw.Roots().TrustDomain {
		t.Fatalf("leaf URI %s, trust domain %s", gw.Leaf().URI, gw.Roots().TrustDomain)
	}

	// A Connect-native "orders", registered as such.
	orders := startCerts(t, client.Agent(), "orders", nil)
	oaddr := nativeServer(t, orders, client.Agent())
	host, portStr, _ := net.SplitHostPort(oaddr)
	port, _ := strconv.Atoi(portStr)
	if err := client.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: "orders-1", Name: "orders", Address: host, Port: port, Connect: &api.AgentServiceConnect{Native: true},
	}); err != nil {
		t.Fatal(err)
	}

	instances := func(service string) []Instance {
		w, err := NewWatcher(client.Health(), WatchOptions{Service: service, Connect: true, WaitTime: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = w.Run(context.Background()) }()
		t.Cleanup(w.Stop)
		var got []Instance
		waitFor(t, service+" in /v1/health/connect", func() bool { got = w.Instances(); return len(got) == 1 })
		return got
	}
	users := instances("users")
	if users[0].HostPort() != sidecar.Addr || users[0].ID != "users-1-sidecar-proxy" {
		t.Fatalf("users instance %+v, want the sidecar at %s", users[0], sidecar.Addr)
	}
	ord := instances("orders")
	if ord[0].HostPort() != oaddr {
		t.Fatalf("orders instance %+v, want %s", ord[0], oaddr)
	}

	get := func(service string, addr string) (string, error) {
		d := gw.Dialer(service, "", &net.Dialer{Timeout: 5 * time.Second})
		body, err := fetch(meshClient(d), addr)
		return body, ClassifyMeshError(err)
	}
	if body, err := get("users", sidecar.Addr); err != nil || body != "plain false" {
		t.Fatalf("through the sidecar: %q %v", body, err)
	}
	if body, err := get("orders", oaddr); err != nil || !strings.Contains(body, "/svc/gateway ") {
		t.Fatalf("to the native service: %q %v", body, err)
	}
	// The sidecar is not plain HTTP, and it is not "orders".
	if resp, err := http.Get("http://" + sidecar.Addr + "/"); err == nil {
		resp.Body.Close()
		t.Fatal("plain HTTP through the sidecar's public port worked")
	}
	if _, err := get("orders", sidecar.Addr); !errors.Is(err, ErrPeerRejected) {
		t.Fatalf("users' sidecar taken for orders: %v", err)
	}

	for _, dst := range []string{"users", "orders"} {
		addr := map[string]string{"users": sidecar.Addr, "orders": oaddr}[dst]
		agent.Intention(t, "gateway", dst, "deny")
		// Each get is a new connection; the destination's agent may learn of the
		// intention a moment after it was written.
		waitFor(t, dst+" denied", func() bool {
			_, err := get(dst, addr)
			if err != nil && !errors.Is(err, ErrMeshDenied) {
				t.Fatalf("%s denied: err %v, want ErrMeshDenied", dst, err)
			}
			return err != nil
		})
		agent.Intention(t, "gateway", dst, "allow")
		waitFor(t, dst+" allowed again", func() bool { _, err := get(dst, addr); return err == nil })
	}
}
