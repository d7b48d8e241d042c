package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// This file holds what internal/testenv and the local stack share to run real
// clusters on loopback: the command lines and config texts of Redis Cluster nodes,
// Redis Sentinels and Consul server agents, and the checks that say a cluster
// has formed. internal/proc starts and stops the processes.

// RedisCLI resolves redis-cli: $REDIS_CLI, then PATH (Debian's redis-tools, which
// redis-server depends on).
func RedisCLI() (string, error) { return Find("REDIS_CLI", "redis-cli") }

// Timings of the clusters run on loopback: low, so that a failover takes seconds.
const (
	// RedisClusterNodeTimeout is cluster-node-timeout: a master silent for this
	// long is failing, and its replica starts an election.
	RedisClusterNodeTimeout = 1000 * time.Millisecond
	// SentinelDownAfter is down-after-milliseconds: a master silent for this long
	// is subjectively down for a sentinel.
	SentinelDownAfter = 1000 * time.Millisecond
)

// RedisBaseArgs are the arguments of every redis-server the clusters run: bound to
// 127.0.0.1 on port, no persistence, files in dir, log on stdout.
func RedisBaseArgs(port int, dir string) []string {
	return []string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", dir,
		"--logfile", "",
		"--daemonize", "no",
	}
}

// RedisClusterNodeArgs are the arguments of one Redis Cluster node: its client
// port, its cluster bus port (given explicitly with cluster-port, so any two free
// ports do), state in dir/nodes.conf. A master that stops answering loses its
// slots to its replica after about RedisClusterNodeTimeout; a replica always may
// take over (validity factor 0, its data may be slightly behind); the masters
// that are still up keep serving their slots while one is down (full coverage is
// not required).
func RedisClusterNodeArgs(port, busPort int, dir string) []string {
	return append(RedisBaseArgs(port, dir),
		"--cluster-enabled", "yes",
		"--cluster-config-file", "nodes.conf",
		"--cluster-port", strconv.Itoa(busPort),
		"--cluster-node-timeout", strconv.Itoa(int(RedisClusterNodeTimeout/time.Millisecond)),
		"--cluster-replica-validity-factor", "0",
		"--cluster-require-full-coverage", "no",
		"--cluster-allow-replica-migration", "no",
	)
}

// CreateRedisCluster runs `redis-cli --cluster create ADDRS --cluster-replicas 1
// --cluster-yes` over fresh cluster nodes: half of them become masters sharing
// the 16384 slots, each of the others a replica of one.
func CreateRedisCluster(ctx context.Context, cli string, addrs []string) error {
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("redis-cli --cluster create: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "All 16384 slots covered") {
		return fmt.Errorf("redis-cli --cluster create did not cover every slot:\n%s", out)
	}
	return nil
}

// ClusterNode is one node as CLUSTER NODES reports it.
type ClusterNode struct {
	ID, Addr string
	Master   bool
	MasterID string // a replica's master
	Failing  bool   // fail or fail? flag, or disconnected
	Slots    int    // slots served (masters)
	Ranges   [][2]int
}

// Serves reports whether the node serves slot.
func (n ClusterNode) Serves(slot int) bool {
	for _, r := range n.Ranges {
		if slot >= r[0] && slot <= r[1] {
			return true
		}
	}
	return false
}

// RedisClusterNodes returns the cluster as the node at addr sees it.
func RedisClusterNodes(ctx context.Context, addr string) ([]ClusterNode, error) {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second, PoolSize: 1, Protocol: 2})
	defer c.Close()
	text, err := c.ClusterNodes(ctx).Result()
	if err != nil {
		return nil, err
	}
	var nodes []ClusterNode
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		n := ClusterNode{ID: f[0], Addr: f[1], MasterID: f[3]}
		if i := strings.IndexByte(n.Addr, '@'); i >= 0 {
			n.Addr = n.Addr[:i]
		}
		flags := f[2]
		n.Master = strings.Contains(flags, "master")
		n.Failing = strings.Contains(flags, "fail") || f[7] != "connected"
		for _, r := range f[8:] {
			if strings.HasPrefix(r, "[") {
				continue // a slot being migrated
			}
			lo, hi, ok := strings.Cut(r, "-")
			a, err1 := strconv.Atoi(lo)
			b := a
			var err2 error
			if ok {
				b, err2 = strconv.Atoi(hi)
			}
			if err1 == nil && err2 == nil {
				n.Slots += b - a + 1
				n.Ranges = append(n.Ranges, [2]int{a, b})
			}
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}

// RedisClusterReady returns nil once every node at addrs that is up reports
// cluster_state:ok and, in its view, `masters` healthy masters serve all 16384
// slots, each of them with at least one healthy replica when replicas is set.
// skip lists addresses of nodes that are known to be down.
func RedisClusterReady(ctx context.Context, addrs []string, masters int, replicas bool, skip ...string) error {
	for _, a := range addrs {
		if contains(skip, a) {
			continue
		}
		c := redis.NewClient(&redis.Options{Addr: a, MaxRetries: -1, DialTimeout: time.Second, PoolSize: 1, Protocol: 2})
		info, err := c.ClusterInfo(ctx).Result()
		c.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", a, err)
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return fmt.Errorf("%s: cluster_state not ok", a)
		}
		nodes, err := RedisClusterNodes(ctx, a)
		if err != nil {
			return fmt.Errorf("%s: %w", a, err)
		}
		slots, ms := 0, 0
		healthyReplicas := map[string]int{}
		for _, n := range nodes {
			switch {
			case n.Failing:
			case n.Master && n.Slots > 0:
				slots += n.Slots
				ms++
			case !n.Master:
				healthyReplicas[n.MasterID]++
			}
		}
		if slots != 16384 || ms != masters {
			return fmt.Errorf("%s sees %d healthy masters serving %d slots", a, ms, slots)
		}
		if replicas {
			for _, n := range nodes {
				if n.Master && n.Slots > 0 && !n.Failing && healthyReplicas[n.ID] == 0 {
					return fmt.Errorf("%s sees master %s without a replica", a, n.Addr)
				}
			}
		}
	}
	return nil
}

// SentinelConfig is the config file of a sentinel on port watching the master
// named name at masterAddr with a quorum of 2; it decides a master is down after
// SentinelDownAfter. Sentinel rewrites its config file, which must be writable.
func SentinelConfig(port int, dir, name, masterAddr string) string {
	host, mport, _ := net.SplitHostPort(masterAddr)
	return fmt.Sprintf(`port %d
bind 127.0.0.1
daemonize no
logfile ""
dir %q
sentinel monitor %s %s %s 2
sentinel down-after-milliseconds %s %d
sentinel failover-timeout %s 10000
sentinel parallel-syncs %s 1
`, port, dir, name, host, mport, name, SentinelDownAfter/time.Millisecond, name, name)
}

// SentinelReady returns nil once every sentinel at sentinels names master as the
// master of name, knows all the other sentinels and sees replicas healthy
// replicas of it.
func SentinelReady(ctx context.Context, sentinels []string, name, master string, replicas int) error {
	for _, a := range sentinels {
		s := redis.NewSentinelClient(&redis.Options{Addr: a, MaxRetries: -1, DialTimeout: time.Second, PoolSize: 1, Protocol: 2})
		err := func() error {
			m, err := s.GetMasterAddrByName(ctx, name).Result()
			if err != nil {
				return err
			}
			if len(m) != 2 || net.JoinHostPort(m[0], m[1]) != master {
				return fmt.Errorf("master is %v, want %s", m, master)
			}
			others, err := s.Sentinels(ctx, name).Result()
			if err != nil {
				return err
			}
			if len(others) != len(sentinels)-1 {
				return fmt.Errorf("knows %d other sentinels, want %d", len(others), len(sentinels)-1)
			}
			reps, err := s.Replicas(ctx, name).Result()
			if err != nil {
				return err
			}
			ok := 0
			for _, r := range reps {
				if r["flags"] == "slave" && r["master-link-status"] == "ok" {
					ok++
				}
			}
			if ok != replicas {
				return fmt.Errorf("sees %d healthy replicas, want %d", ok, replicas)
			}
			return nil
		}()
		s.Close()
		if err != nil {
			return fmt.Errorf("sentinel %s: %w", a, err)
		}
	}
	return nil
}

// SentinelMaster returns the master address of name as the sentinel at addr
// reports it.
func SentinelMaster(ctx context.Context, addr, name string) (string, error) {
	s := redis.NewSentinelClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second, PoolSize: 1, Protocol: 2})
	defer s.Close()
	m, err := s.GetMasterAddrByName(ctx, name).Result()
	if err != nil {
		return "", err
	}
	if len(m) != 2 {
		return "", fmt.Errorf("sentinel %s answered %v", addr, m)
	}
	return net.JoinHostPort(m[0], m[1]), nil
}

// RedisRole returns nil when the server at addr reports role:want in INFO
// replication ("master" or "slave").
func RedisRole(ctx context.Context, addr, want string) error {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second, PoolSize: 1, Protocol: 2})
	defer c.Close()
	info, err := c.Info(ctx, "replication").Result()
	if err != nil {
		return err
	}
	if !strings.Contains(info, "role:"+want+"\r\n") {
		return fmt.Errorf("%s is not a %s", addr, want)
	}
	return nil
}

// ConsulPorts are the ports of one agent of a Consul cluster on loopback; DNS,
// gRPC, HTTPS and WAN gossip are off.
type ConsulPorts struct {
	HTTP, SerfLAN, Server int
}

// ConsulClusterConfig is the config file of every agent of a cluster on loopback:
// Raft at its fastest timing (raft_multiplier 1, elections within seconds), and
// enough HTTP connections for one client IP (every client here is 127.0.0.1).
const ConsulClusterConfig = `limits { http_max_conns_per_client = 10000 }
performance { raft_multiplier = 1 }
disable_update_check = true
`

// ConsulAgentArgs are the arguments of one agent of a cluster on loopback: a
// server expecting `servers` servers when servers > 0, else a client agent; it
// joins the agents whose LAN gossip ports are join. State lives in dataDir.
func ConsulAgentArgs(node string, p ConsulPorts, servers int, dataDir, configFile string, join []int) []string {
	args := []string{
		"agent", "-node", node,
		"-data-dir", dataDir,
		"-bind", "127.0.0.1", "-client", "127.0.0.1",
		"-http-port", strconv.Itoa(p.HTTP),
		"-serf-lan-port", strconv.Itoa(p.SerfLAN),
		"-server-port", strconv.Itoa(p.Server),
		"-serf-wan-port", "-1", "-dns-port", "-1", "-grpc-port", "-1", "-grpc-tls-port", "-1", "-https-port", "-1",
		"-log-level", "info", "-config-file", configFile,
	}
	if servers > 0 {
		args = append(args, "-server", "-bootstrap-expect", strconv.Itoa(servers))
	}
	for _, j := range join {
		args = append(args, "-retry-join", "127.0.0.1:"+strconv.Itoa(j), "-retry-interval", "1s")
	}
	return args
}

// ConsulClusterReady returns nil once the agent at each of addrs answers, all
// agree on one leader, the Raft configuration has `servers` voters and the
// catalog lists `nodes` nodes whose serfHealth passes. It returns the leader's
// server address (127.0.0.1:SERVER_PORT).
func ConsulClusterReady(ctx context.Context, client *http.Client, addrs []string, servers, nodes int) (string, error) {
	leader := ""
	for _, a := range addrs {
		var l string
		if err := GetJSON(ctx, client, "http://"+a+"/v1/status/leader", &l); err != nil {
			return "", fmt.Errorf("%s: %w", a, err)
		}
		if l == "" {
			return "", fmt.Errorf("%s: no leader yet", a)
		}
		if leader != "" && l != leader {
			return "", fmt.Errorf("agents disagree on the leader: %s and %s", leader, l)
		}
		leader = l
	}
	var peers []string
	if err := GetJSON(ctx, client, "http://"+addrs[0]+"/v1/status/peers", &peers); err != nil {
		return "", err
	}
	if len(peers) != servers {
		return "", fmt.Errorf("%d Raft peers, want %d", len(peers), servers)
	}
	var checks []struct{ Node, CheckID, Status string }
	if err := GetJSON(ctx, client, "http://"+addrs[0]+"/v1/health/state/any", &checks); err != nil {
		return "", err
	}
	passing := map[string]bool{}
	for _, c := range checks {
		if c.CheckID == "serfHealth" && c.Status == "passing" {
			passing[c.Node] = true
		}
	}
	if len(passing) != nodes {
		names := make([]string, 0, len(passing))
		for n := range passing {
			names = append(names, n)
		}
		sort.Strings(names)
		return "", fmt.Errorf("%d nodes with serfHealth passing (%v), want %d", len(passing), names, nodes)
	}
	return leader, nil
}

// GetJSON decodes the JSON answer of a GET on url into v.
func GetJSON(ctx context.Context, client *http.Client, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// Poll calls check every interval until it returns nil or ctx ends; then it
// returns check's last error.
func Poll(ctx context.Context, interval time.Duration, check func(ctx context.Context) error) error {
	for {
		err := check(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), err)
		case <-time.After(interval):
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
