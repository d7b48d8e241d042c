package testenv

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/infinityxone/gateway/internal/proc"
	"github.com/infinityxone/gateway/internal/tools"
)

// sidecarStartTimeout bounds how long a sidecar may take to listen.
const sidecarStartTimeout = 30 * time.Second

// Sidecar is Consul's built-in Connect proxy (`consul connect proxy -sidecar-for
// ID`) in front of one service instance, owned by one test and stopped by PID when
// it ends. It accepts mutual TLS from the mesh on Addr, asks the agent whether
// intentions allow each new client, and forwards allowed connections to the app.
type Sidecar struct {
	// ServiceID is the app's service ID; ProxyID the sidecar's ("ID-sidecar-proxy").
	ServiceID, ProxyID string
	// Addr is the sidecar's public listener, "127.0.0.1:PORT": what
	// /v1/health/connect/NAME lists.
	Addr string

	t    testing.TB
	proc *proc.Process
}

// Client returns an API client for the agent.
func (c *Consul) Client(t testing.TB) *api.Client {
	t.Helper()
	cl, err := api.NewClient(&api.Config{Address: c.Addr})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// RegisterWithSidecar registers instance id of service name, served at appAddr
// (host:port, normally a loopback listener the mesh alone should reach), with a
// sidecar_service on a free port, and starts the sidecar. The sidecar's check is a
// TCP check every second that starts passing (instead of Consul's default 10 s
// check that passes only after ~11 s), so it is in /v1/health/connect at once and
// stays there across a restart of a persistent server. It returns once the
// sidecar listens.
func (c *Consul) RegisterWithSidecar(t testing.TB, name, id, appAddr string) *Sidecar {
	t.Helper()
	return c.registerWithSidecar(t, name, id, appAddr, false)
}

// RegisterWithProxyService is RegisterWithSidecar with the sidecar registered as a
// service of its own (Kind connect-proxy, Proxy.DestinationServiceID = id) instead
// of through the app's sidecar_service, and without a check. The difference shows
// when a persistent server restarts: an app restored with a sidecar_service gets its
// sidecar restored with Consul's default checks (a TCP check every 10 s), and every
// restored check starts critical until it first runs, so the sidecar would leave
// /v1/health/connect for a moment; a proxy registered on its own without a check
// stays passing throughout.
func (c *Consul) RegisterWithProxyService(t testing.TB, name, id, appAddr string) *Sidecar {
	t.Helper()
	return c.registerWithSidecar(t, name, id, appAddr, true)
}

func (c *Consul) registerWithSidecar(t testing.TB, name, id, appAddr string, explicit bool) *Sidecar {
	t.Helper()
	host, portStr, err := net.SplitHostPort(appAddr)
	if err != nil {
		t.Fatal(err)
	}
	appPort, _ := strconv.Atoi(portStr)
	ports, err := tools.FreePorts(1, 1)
	if err != nil {
		t.Fatal(err)
	}
	pub := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	check := &api.AgentServiceCheck{
		Name: "sidecar listener", TCP: pub, Interval: "1s", Timeout: "1s", Status: api.HealthPassing,
	}
	app := &api.AgentServiceRegistration{ID: id, Name: name, Address: host, Port: appPort}
	regs := []*api.AgentServiceRegistration{app}
	if explicit {
		regs = append(regs, &api.AgentServiceRegistration{
			Kind: api.ServiceKindConnectProxy, ID: id + "-sidecar-proxy", Name: name + "-sidecar-proxy",
			Address: "127.0.0.1", Port: ports[0],
			Proxy: &api.AgentServiceConnectProxyConfig{
				DestinationServiceName: name, DestinationServiceID: id,
				LocalServiceAddress: host, LocalServicePort: appPort,
			},
		})
	} else {
		app.Connect = &api.AgentServiceConnect{SidecarService: &api.AgentServiceRegistration{
			Port: ports[0], Checks: api.AgentServiceChecks{check},
		}}
	}
	for _, reg := range regs {
		if err := c.Client(t).Agent().ServiceRegister(reg); err != nil {
			t.Fatalf("testenv: register %s with a sidecar: %v", reg.ID, err)
		}
	}
	return c.StartSidecar(t, id, pub)
}

// StartSidecar starts `consul connect proxy -sidecar-for serviceID` for an instance
// registered with a sidecar (by the caller, e.g. through consul.Registration's
// SidecarPort), and returns once it accepts connections on publicAddr.
func (c *Consul) StartSidecar(t testing.TB, serviceID, publicAddr string) *Sidecar {
	t.Helper()
	bin, err := tools.Consul()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	id := serviceID
	s := &Sidecar{ServiceID: id, ProxyID: id + "-sidecar-proxy", Addr: publicAddr, t: t}
	s.proc = &proc.Process{
		Name: "sidecar " + s.ProxyID, Addr: publicAddr, Path: bin,
		Args:    []string{"connect", "proxy", "-sidecar-for", id, "-http-addr", c.Addr, "-log-level", "info"},
		LogPath: filepath.Join(t.TempDir(), "sidecar-"+id+".log"),
		Ready: func(ctx context.Context, _ int) error {
			conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", publicAddr)
			if err == nil {
				conn.Close()
			}
			return err
		},
	}
	t.Cleanup(func() {
		s.Stop()
		logOnFailure(t, s.proc)
	})
	s.Start()
	return s
}

// Start starts the sidecar process (again) and waits until it accepts connections.
// Starting a running sidecar does nothing.
func (s *Sidecar) Start() {
	s.t.Helper()
	if err := startWithin(s.proc, sidecarStartTimeout); err != nil {
		s.t.Fatalf("testenv: sidecar for %s: %v", s.ServiceID, err)
	}
}

// Stop kills the sidecar (SIGKILL) and waits until it has exited.
func (s *Sidecar) Stop() { s.proc.Kill() }

// Intention sets the intention from source to destination to "allow" or "deny"
// (PUT /v1/connect/intentions/exact), creating or replacing it.
func (c *Consul) Intention(t testing.TB, source, destination, action string) {
	t.Helper()
	ixn := &api.Intention{SourceName: source, DestinationName: destination, Action: api.IntentionAction(action)}
	if _, err := c.Client(t).Connect().IntentionUpsert(ixn, nil); err != nil {
		t.Fatalf("testenv: intention %s -> %s %s: %v", source, destination, action, err)
	}
}

// RotateCA gives the built-in Connect CA a new private key (and so a new root):
// Consul then lists both roots and re-issues every watched leaf under the new one
// after a short random delay. It returns the new active root's ID.
func (c *Consul) RotateCA(t testing.TB) string {
	t.Helper()
	cl := c.Client(t)
	roots, _, err := cl.Agent().ConnectCARoots(nil)
	if err != nil {
		t.Fatal(err)
	}
	old := roots.ActiveRootID
	conf, _, err := cl.Connect().CAGetConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	key, err := newPrivateKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	if conf.Config == nil {
		conf.Config = map[string]any{}
	}
	conf.Config["PrivateKey"] = key
	conf.Config["RootCert"] = ""
	if _, err := cl.Connect().CASetConfig(conf, nil); err != nil {
		t.Fatalf("testenv: rotate the Connect CA: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		roots, _, err = cl.Agent().ConnectCARoots(nil)
		if err == nil && roots.ActiveRootID != old {
			return roots.ActiveRootID
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: the Connect CA kept root %s after the rotation (%v)", old, err)
		}
		time.Sleep(pollInterval)
	}
}

// String names the sidecar in test messages.
func (s *Sidecar) String() string { return fmt.Sprintf("sidecar %s at %s", s.ProxyID, s.Addr) }

// newPrivateKeyPEM returns a new EC P-256 private key in PEM, as the built-in CA takes it.
func newPrivateKeyPEM() (string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})), nil
}
