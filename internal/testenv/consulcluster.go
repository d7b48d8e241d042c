package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/infinityxone/gateway/internal/proc"
	"github.com/infinityxone/gateway/internal/tools"
)

// ConsulServers is how many server agents StartConsulCluster runs.
const ConsulServers = 3

// ConsulCluster is a Consul datacenter "dc1" owned by one test: three server
// agents (-server -bootstrap-expect 3) and one client agent, each on its own
// loopback ports with its own data directory. Raft runs at raft_multiplier 1, so a
// new leader is elected within seconds of the old one's death.
type ConsulCluster struct {
	// Addr is the client agent's HTTP "127.0.0.1:PORT": what gateways are given.
	Addr string
	// ClientNode is the client agent's node name.
	ClientNode string
	// Servers are the server agents' HTTP addresses.
	Servers []string

	t       testing.TB
	client  *http.Client
	servers []*proc.Process
	agent   *proc.Process
	rpc     map[string]string // server RPC address -> HTTP address
}

// StartConsulCluster starts three servers and a client agent on free loopback ports
// and returns once all four agree on a leader, Raft has three voters and the
// catalog lists the four nodes with serfHealth passing. Every agent is killed by
// PID when the test ends.
func StartConsulCluster(t testing.TB) *ConsulCluster {
	t.Helper()
	bin, err := tools.Consul()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "consul.hcl")
	if err := os.WriteFile(cfg, []byte(tools.ConsulClusterConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	c := &ConsulCluster{
		t:      t,
		client: &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
	}
	cleanupMembers(t, func() []*proc.Process { return append(slices.Clone(c.servers), c.agent) })
	const n = ConsulServers + 1
	suffix := randomHex(3)
	attempt := 0
	err = proc.RetryPortInUse(startTries, func() error {
		attempt++
		ports, err := tools.FreePorts(3*n, n)
		if err != nil {
			return err
		}
		// ports[0:n] gossip (TCP and UDP), then HTTP, then server RPC.
		serfs := ports[:ConsulServers]
		c.servers, c.agent, c.Servers, c.rpc = nil, nil, nil, map[string]string{}
		var all []*proc.Process
		for i := 0; i < n; i++ {
			p := tools.ConsulPorts{SerfLAN: ports[i], HTTP: ports[n+i], Server: ports[2*n+i]}
			servers, node := ConsulServers, fmt.Sprintf("server-%d-%s", i+1, suffix)
			if i == ConsulServers {
				servers, node = 0, "client-"+suffix
			}
			d := memberDir(t, dir, fmt.Sprintf("%s-try%d", node, attempt))
			addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p.HTTP))
			m := &proc.Process{
				Name: "consul agent " + node, Addr: addr, Path: bin,
				Args:    tools.ConsulAgentArgs(node, p, servers, filepath.Join(d, "data"), cfg, serfs),
				LogPath: filepath.Join(d, "consul.log"),
				// The agent is up once its HTTP API answers with its own node name;
				// the cluster forms afterwards (see waitFormed).
				Ready: func(ctx context.Context, _ int) error { return tools.ConsulAgentIs(ctx, c.client, addr, node) },
			}
			all = append(all, m)
			if servers > 0 {
				c.servers = append(c.servers, m)
				c.Servers = append(c.Servers, m.Addr)
				c.rpc[net.JoinHostPort("127.0.0.1", strconv.Itoa(p.Server))] = m.Addr
			} else {
				c.agent, c.Addr, c.ClientNode = m, m.Addr, node
			}
		}
		return startMembers(all)
	})
	if err != nil {
		t.Fatalf("testenv: start consul cluster: %v", err)
	}
	c.waitFormed(ConsulServers, ConsulServers+1)
	return c
}

// waitFormed waits until the running agents agree on a leader, with `voters` Raft
// voters and `nodes` nodes passing serfHealth.
func (c *ConsulCluster) waitFormed(voters, nodes int) string {
	c.t.Helper()
	var leader string
	err := withTimeout(clusterStartTimeout, func(ctx context.Context) error {
		return tools.Poll(ctx, 100*time.Millisecond, func(ctx context.Context) (err error) {
			leader, err = tools.ConsulClusterReady(ctx, c.client, c.running(), voters, nodes)
			return err
		})
	})
	if err != nil {
		c.t.Fatalf("testenv: consul cluster not formed: %v", err)
	}
	return c.rpc[leader]
}

// running returns the HTTP addresses of the running agents.
func (c *ConsulCluster) running() []string {
	var out []string
	for _, m := range append(slices.Clone(c.servers), c.agent) {
		if m != nil && m.Running() {
			out = append(out, m.Addr)
		}
	}
	return out
}

// Leader returns the HTTP address of the server that is the Raft leader.
func (c *ConsulCluster) Leader() string {
	c.t.Helper()
	var leader string
	err := withTimeout(clusterStartTimeout, func(ctx context.Context) error {
		return tools.Poll(ctx, 100*time.Millisecond, func(ctx context.Context) error {
			for _, m := range c.servers {
				if !m.Running() {
					continue
				}
				if err := tools.GetJSON(ctx, c.client, "http://"+m.Addr+"/v1/status/leader", &leader); err != nil {
					return err
				}
				if c.rpc[leader] == "" {
					return fmt.Errorf("no leader known to %s", m.Addr)
				}
				return nil
			}
			return errors.New("no server running")
		})
	})
	if err != nil {
		c.t.Fatalf("testenv: consul leader: %v", err)
	}
	return c.rpc[leader]
}

// KillServer kills the server agent whose HTTP address is addr (SIGKILL: no leave)
// and waits until it has exited. It stays down.
func (c *ConsulCluster) KillServer(addr string) {
	c.t.Helper()
	if !killMember(c.servers, addr) {
		c.t.Fatalf("testenv: %s is not a consul server of this cluster", addr)
	}
}

// WaitNewLeader waits until the running servers agree on a leader other than old
// (an HTTP address, as Leader returns) and returns it.
func (c *ConsulCluster) WaitNewLeader(old string) string {
	c.t.Helper()
	var leader string
	err := withTimeout(clusterStartTimeout, func(ctx context.Context) error {
		return tools.Poll(ctx, 50*time.Millisecond, func(ctx context.Context) error {
			leader = ""
			for _, m := range c.servers {
				if !m.Running() {
					continue
				}
				var l string
				if err := tools.GetJSON(ctx, c.client, "http://"+m.Addr+"/v1/status/leader", &l); err != nil {
					return err
				}
				h := c.rpc[l]
				if h == "" || h == old {
					return fmt.Errorf("%s: leader %q", m.Addr, l)
				}
				if leader != "" && h != leader {
					return fmt.Errorf("servers disagree on the leader")
				}
				leader = h
			}
			return nil
		})
	})
	if err != nil {
		c.t.Fatalf("testenv: no new consul leader: %v", err)
	}
	return leader
}

// StopClient kills the client agent (SIGKILL) and waits until it has exited: the
// gateways' agent is gone while the servers keep running.
func (c *ConsulCluster) StopClient() {
	c.agent.Kill()
}
