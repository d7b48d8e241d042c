package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/infinityxone/gateway/internal/proc"
	"github.com/infinityxone/gateway/internal/tools"
)

// consulStartTimeout bounds how long one start waits for the agent to be ready.
const consulStartTimeout = 60 * time.Second

// consulConfig is written to the agent's config file. Every client in a test is
// 127.0.0.1, and Consul allows only 200 HTTP connections per client IP by default.
const consulConfig = `limits { http_max_conns_per_client = 10000 }
disable_update_check = true
`

// consulServerConfig is added for a persistent server: what -dev turns on by itself.
const consulServerConfig = `connect { enabled = true }
performance { raft_multiplier = 1 }
`

// Consul is a `consul agent -dev` owned by one test: a single-server datacenter
// "dc1" with state in memory, bound to 127.0.0.1, DNS, WAN gossip and gRPC off.
type Consul struct {
	// Addr is the agent's HTTP "127.0.0.1:PORT" (what CONSUL_HTTP_ADDR would hold);
	// it stays the same across Stop and Start.
	Addr string
	// Node is the agent's node name, as the catalog and health APIs report it.
	Node string

	t       testing.TB
	bin     string
	ports   consulPorts
	cfgPath string
	logPath string
	client  *http.Client

	// dataDir is set for a persistent server (StartConsulServer): its state, the
	// Connect CA above all, survives Stop and Start.
	dataDir string

	proc *proc.Process // nil until the first launch
}

// consulPorts are the ports an agent listens on; every other port is disabled.
type consulPorts struct {
	serfLAN, http, server int
}

// StartConsul starts a Consul agent in -dev mode on free loopback ports and
// returns once it has elected itself leader and its node is in the catalog with a
// passing serfHealth check, so services registered through the agent API reach
// the catalog and health APIs at the next sync (usually within milliseconds; tests
// should still poll for them). The agent is stopped when the test ends; if the test
// failed its log is printed with t.Log. A missing binary or an agent that does not
// come up fails the test.
func StartConsul(t testing.TB) *Consul {
	t.Helper()
	return startConsul(t, false)
}

// StartConsulServer starts a persistent single-server datacenter "dc1" instead of a
// -dev agent: `consul agent -server -bootstrap-expect 1` with a data directory and
// Connect on (built-in CA). Unlike a dev agent, a Stop and Start keeps its state:
// the same cluster, trust domain and Connect CA, the services registered through
// it and their checks (which restart in the state they were registered with). Use
// it where a test restarts the agent and expects the same cluster back. It takes a
// little longer to start than a dev agent (a real leader election).
func StartConsulServer(t testing.TB) *Consul {
	t.Helper()
	return startConsul(t, true)
}

func startConsul(t testing.TB, persistent bool) *Consul {
	t.Helper()
	bin, err := tools.Consul()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	dir := t.TempDir()
	c := &Consul{
		t:       t,
		bin:     bin,
		Node:    "testenv-" + randomHex(4),
		cfgPath: filepath.Join(dir, "consul.hcl"),
		logPath: filepath.Join(dir, "consul.log"),
		client: &http.Client{
			Timeout:   2 * time.Second,
			Transport: &http.Transport{DisableKeepAlives: true},
		},
	}
	cfg := consulConfig
	if persistent {
		c.dataDir = filepath.Join(dir, "data")
		cfg += consulServerConfig
	}
	if err := os.WriteFile(c.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Stop()
		logOnFailure(t, c.proc)
	})
	err = proc.RetryPortInUse(startTries, func() error {
		ports, err := tools.FreePorts(3, 1)
		if err != nil {
			return err
		}
		c.ports = consulPorts{serfLAN: ports[0], http: ports[1], server: ports[2]}
		c.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(c.ports.http))
		return c.launch()
	})
	if err != nil {
		t.Fatalf("testenv: start consul agent: %v", err)
	}
	return c
}

// Stop kills the agent (SIGKILL: no graceful leave) and waits until it has exited.
// Blocking queries in flight fail as after a crash. Stopping a stopped agent does
// nothing.
func (c *Consul) Stop() {
	if c.proc != nil {
		c.proc.Kill()
	}
}

// Start starts a stopped agent again on the same ports and returns once it is
// ready, as StartConsul does. A dev agent starts from an empty state (services
// registered before Stop are gone, and Connect has a new CA); a server from
// StartConsulServer keeps its state. Starting a running agent does nothing.
func (c *Consul) Start() {
	c.t.Helper()
	if err := restart(c.proc, consulStartTimeout); err != nil {
		c.t.Fatalf("testenv: restart consul agent on %s: %v", c.Addr, err)
	}
}

// launch starts a new agent process on c.ports and waits until it is ready: it is
// ours, has a leader, and its node is in the catalog with serfHealth passing.
func (c *Consul) launch() error {
	mode := []string{"-dev"}
	if c.dataDir != "" {
		mode = []string{"-server", "-bootstrap-expect", "1", "-data-dir", c.dataDir, "-ui=false"}
	}
	args := append([]string{"agent"}, mode...)
	args = append(args,
		"-node", c.Node,
		"-bind", "127.0.0.1",
		"-client", "127.0.0.1",
		"-http-port", strconv.Itoa(c.ports.http),
		"-server-port", strconv.Itoa(c.ports.server),
		"-serf-lan-port", strconv.Itoa(c.ports.serfLAN),
		"-serf-wan-port", "-1",
		"-dns-port", "-1",
		"-grpc-port", "-1",
		"-grpc-tls-port", "-1",
		"-https-port", "-1",
		"-log-level", "info",
		"-config-file", c.cfgPath,
	)
	c.proc = &proc.Process{
		Name: "consul agent", Addr: c.Addr, Path: c.bin, Args: args, LogPath: c.logPath,
		Ready: func(ctx context.Context, _ int) error { return tools.ConsulServerReady(ctx, c.client, c.Addr, c.Node) },
	}
	return startWithin(c.proc, consulStartTimeout)
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}
