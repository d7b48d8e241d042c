package stack

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"

	"github.com/infinityxone/gateway/internal/proc"
	"github.com/infinityxone/gateway/internal/tools"
)

// Cluster mode (Options.Cluster) runs the stack on real clusters instead of one
// Consul dev agent and one redis-server: a Consul datacenter of three servers
// (-bootstrap-expect 3) with one client agent, which the instances register
// through and the gateways watch, and a Redis Cluster of six nodes (three masters,
// three replicas, made by redis-cli --cluster create), which the gateways'
// redis block is rewritten to use (addresses = the six nodes). With Options.Mesh
// too, the servers run Connect's CA and every instance's sidecar registers through
// the client agent, as in a production datacenter.

// clusterFormTimeout bounds how long the clusters may take to form.
const clusterFormTimeout = 2 * time.Minute

// freshDir empties dir (a data directory left by a failed attempt) and creates it.
func freshDir(dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.MkdirAll(dir, 0o755)
}

// startRedisCluster starts six cluster nodes and creates the cluster.
func (s *Stack) startRedisCluster(ctx context.Context, bin string) error {
	cli, err := tools.RedisCLI()
	if err != nil {
		return err
	}
	const n = 6
	err = proc.RetryPortInUse(startTries, func() error {
		ports, err := tools.FreePorts(2*n, 0)
		if err != nil {
			return err
		}
		nodes := make([]*proc.Process, n)
		for i := range nodes {
			name := "redis-" + strconv.Itoa(i+1)
			dir := filepath.Join(s.Dir, "redis", name)
			if err := freshDir(dir); err != nil {
				return err
			}
			nodes[i] = s.redisProcess(name, ports[i], bin, tools.RedisClusterNodeArgs(ports[i], ports[n+i], dir))
		}
		if err := proc.StartAll(ctx, nodes); err != nil {
			return err
		}
		s.RedisNodes = nodes
		return nil
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, clusterFormTimeout)
	defer cancel()
	if err := tools.CreateRedisCluster(ctx, cli, s.RedisAddrs()); err != nil {
		return err
	}
	return tools.Poll(ctx, 100*time.Millisecond, func(ctx context.Context) error {
		return tools.RedisClusterReady(ctx, s.RedisAddrs(), 3, true)
	})
}

// RedisAddrs returns the Redis addresses the gateways use: the cluster's nodes in
// cluster mode, else the one server.
func (s *Stack) RedisAddrs() []string {
	if len(s.RedisNodes) == 0 {
		if s.Redis == nil {
			return nil
		}
		return []string{s.Redis.Addr}
	}
	out := make([]string, len(s.RedisNodes))
	for i, p := range s.RedisNodes {
		out[i] = p.Addr
	}
	return out
}

// startConsulCluster starts three Consul servers and one client agent; s.Consul is
// the client agent.
func (s *Stack) startConsulCluster(ctx context.Context, bin string) error {
	cfg := filepath.Join(s.Dir, "consul.hcl")
	text := tools.ConsulClusterConfig
	if s.opts.Mesh {
		// A dev agent has Connect on by default; a datacenter's servers run the CA
		// only when told to.
		text += "connect { enabled = true }\n"
	}
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		return err
	}
	const servers = 3
	suffix := randomHex(3)
	err := proc.RetryPortInUse(startTries, func() error {
		const n = servers + 1
		ports, err := tools.FreePorts(3*n, n) // gossip (TCP and UDP), HTTP, server RPC
		if err != nil {
			return err
		}
		join := ports[:servers]
		agents := make([]*proc.Process, n)
		for i := range agents {
			name, node, expect := fmt.Sprintf("consul-server-%d", i+1), fmt.Sprintf("stack-server-%d-%s", i+1, suffix), servers
			if i == servers {
				name, node, expect = "consul", "stack-client-"+suffix, 0
			}
			dir := filepath.Join(s.Dir, "consul", node)
			if err := freshDir(dir); err != nil {
				return err
			}
			addr := loopback(ports[n+i])
			agents[i] = &proc.Process{
				Name: name, Addr: addr, LogPath: filepath.Join(s.Dir, "logs", name+".log"),
				Path: bin, Env: s.env, CleanExits: []int{1}, OwnGroup: true,
				Args: tools.ConsulAgentArgs(node, tools.ConsulPorts{SerfLAN: ports[i], HTTP: ports[n+i], Server: ports[2*n+i]},
					expect, dir, cfg, join),
				Ready: func(ctx context.Context, _ int) error { return tools.ConsulAgentIs(ctx, s.client, addr, node) },
			}
		}
		if err := proc.StartAll(ctx, agents); err != nil {
			return err
		}
		s.ConsulServers, s.Consul = agents[:servers], agents[servers]
		return nil
	})
	if err != nil {
		return err
	}
	var addrs []string
	for _, p := range append(slices.Clone(s.ConsulServers), s.Consul) {
		addrs = append(addrs, p.Addr)
	}
	ctx, cancel := context.WithTimeout(ctx, clusterFormTimeout)
	defer cancel()
	return tools.Poll(ctx, 100*time.Millisecond, func(ctx context.Context) error {
		_, err := tools.ConsulClusterReady(ctx, s.client, addrs, servers, servers+1)
		return err
	})
}

// useRedisCluster rewrites the redis block of every config file in the config
// directory: addresses = the cluster's nodes instead of address.
func (s *Stack) useRedisCluster() error {
	files, err := filepath.Glob(filepath.Join(s.ConfigDir, "*.hcl"))
	if err != nil {
		return err
	}
	addrs := s.RedisAddrs()
	vals := make([]cty.Value, len(addrs))
	for i, a := range addrs {
		vals[i] = cty.StringVal(a)
	}
	for _, path := range files {
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		f, ds := hclwrite.ParseConfig(src, filepath.Base(path), hcl.InitialPos)
		if ds.HasErrors() {
			return fmt.Errorf("stack: %w", ds)
		}
		changed := false
		for _, b := range f.Body().Blocks() {
			if b.Type() != "redis" {
				continue
			}
			b.Body().RemoveAttribute("address")
			b.Body().SetAttributeValue("addresses", cty.ListVal(vals))
			changed = true
		}
		if changed {
			if err := os.WriteFile(path, f.Bytes(), 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

// catalogPassing waits until the catalog (the servers, not only the client agent
// the instances registered with) lists every instance of every service as
// passing: a client agent syncs its services to the servers a moment after it
// accepts them, and the gateways read the servers' view. In the mesh variant it
// also waits for every instance's sidecar, which is what the gateways route to
// (/v1/health/connect).
func (s *Stack) catalogPassing(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, clusterFormTimeout)
	defer cancel()
	views := []string{"service"}
	if s.opts.Mesh {
		views = append(views, "connect")
	}
	return tools.Poll(ctx, 50*time.Millisecond, func(ctx context.Context) error {
		for _, svc := range s.opts.Services {
			for _, view := range views {
				var entries []json.RawMessage
				if err := tools.GetJSON(ctx, s.client, "http://"+s.Consul.Addr+"/v1/health/"+view+"/"+url.PathEscape(svc.Name)+"?passing=1", &entries); err != nil {
					return err
				}
				if len(entries) != svc.Instances {
					return fmt.Errorf("the catalog lists %d passing %s instances of %s, want %d", len(entries), view, svc.Name, svc.Instances)
				}
			}
		}
		return nil
	})
}
