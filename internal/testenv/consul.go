package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/infinityxone/gateway/internal/tools"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
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

	mu   sync.Mutex
	proc *process // nil while stopped
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
		if t.Failed() {
			t.Logf("testenv: consul agent %s log:\n%s", c.Addr, tail(c.logPath))
		}
	})
	for attempt := 1; ; attempt++ {
		ports, err := tools.FreePorts(3, 1)
		if err != nil {
			t.Fatal(err)
		}
		c.ports = consulPorts{serfLAN: ports[0], http: ports[1], server: ports[2]}
		c.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(c.ports.http))
		err = c.launch()
		if err == nil {
			return c
		}
		if !errors.Is(err, errPortInUse) || attempt == 5 {
			t.Fatalf("testenv: start consul agent: %v", err)
		}
	}
}

// Stop kills the agent (SIGKILL: no graceful leave) and waits until it has exited.
// Blocking queries in flight fail as after a crash. Stopping a stopped agent does
// nothing.
func (c *Consul) Stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc != nil {
		c.proc.kill()
		c.proc = nil
	}
}

// Start starts a stopped agent again on the same ports and returns once it is
// ready, as StartConsul does. A dev agent starts from an empty state (services
// registered before Stop are gone, and Connect has a new CA); a server from
// StartConsulServer keeps its state. Starting a running agent does nothing.
func (c *Consul) Start() {
	c.t.Helper()
	deadline := time.Now().Add(consulStartTimeout)
	for {
		err := c.launch()
		if err == nil {
			return
		}
		if !errors.Is(err, errPortInUse) || time.Now().After(deadline) {
			c.t.Fatalf("testenv: restart consul agent on %s: %v", c.Addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// launch starts the agent on c.ports and waits until it is ready.
func (c *Consul) launch() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc != nil {
		return nil
	}
	log, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close() // the child holds its own descriptor
	offset := logSize(c.logPath)
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
	p, err := startProcess(c.bin, args, log)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(consulStartTimeout)
	for {
		if p.exited() {
			if bindFailed(logSince(c.logPath, offset)) {
				return errPortInUse
			}
			return fmt.Errorf("consul agent exited before it was ready: %v\n%s", p.err, logSince(c.logPath, offset))
		}
		err := c.ready()
		switch {
		case err == nil:
			c.client.CloseIdleConnections()
			c.proc = p
			return nil
		case errors.Is(err, errPortInUse):
			p.kill()
			return err
		}
		if time.Now().After(deadline) {
			p.kill()
			return fmt.Errorf("consul agent on %s not ready within %v: %v", c.Addr, consulStartTimeout, err)
		}
		time.Sleep(pollInterval)
	}
}

// ready returns nil once the agent on c.Addr is ours, has a leader, and its node
// is in the catalog with serfHealth passing; errPortInUse when another agent
// answers on our HTTP port.
func (c *Consul) ready() error {
	var self struct {
		Config struct{ NodeName string }
	}
	if err := c.get("/v1/agent/self", &self); err != nil {
		return err
	}
	if self.Config.NodeName != c.Node {
		return fmt.Errorf("%w: agent %q answers on %s", errPortInUse, self.Config.NodeName, c.Addr)
	}
	var leader string
	if err := c.get("/v1/status/leader", &leader); err != nil {
		return err
	}
	if leader == "" {
		return errors.New("no leader yet")
	}
	var checks []struct{ CheckID, Status string }
	if err := c.get("/v1/health/node/"+url.PathEscape(c.Node), &checks); err != nil {
		return err
	}
	for _, ch := range checks {
		if ch.CheckID == "serfHealth" && ch.Status == "passing" {
			return nil
		}
	}
	return errors.New("node not yet in the catalog with serfHealth passing")
}

// get decodes the JSON answer of a GET on the agent's HTTP API into v.
func (c *Consul) get(path string, v any) error {
	resp, err := c.client.Get("http://" + c.Addr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}
