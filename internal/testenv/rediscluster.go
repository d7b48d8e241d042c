package testenv

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/infinityxone/gateway/internal/proc"
	"github.com/infinityxone/gateway/internal/tools"
)

// RedisClusterMasters is how many masters StartRedisCluster creates, each with
// one replica.
const RedisClusterMasters = 3

// RedisCluster is a Redis Cluster owned by one test: six `redis-server
// --cluster-enabled yes` nodes on loopback, created by `redis-cli --cluster
// create … --cluster-replicas 1`: three masters sharing the slots, each with one
// replica. cluster-node-timeout is tools.RedisClusterNodeTimeout, so a killed
// master's replica takes over within seconds.
type RedisCluster struct {
	// Addrs are the six nodes' "127.0.0.1:PORT", the seed list of a client.
	Addrs []string

	t     testing.TB
	nodes []*proc.Process
}

// StartRedisCluster starts six cluster nodes on free loopback ports (each with its
// own cluster bus port), creates the cluster and returns once every node reports
// cluster_state:ok with three masters serving all 16384 slots, each with a
// replica. The nodes are killed by PID when the test ends.
func StartRedisCluster(t testing.TB) *RedisCluster {
	t.Helper()
	bin, err := tools.Redis()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	cli, err := tools.RedisCLI()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	dir := t.TempDir()
	c := &RedisCluster{t: t}
	cleanupMembers(t, func() []*proc.Process { return c.nodes })
	const n = 2 * RedisClusterMasters
	attempt := 0
	err = proc.RetryPortInUse(startTries, func() error {
		attempt++
		ports, err := tools.FreePorts(2*n, 0)
		if err != nil {
			return err
		}
		c.nodes, c.Addrs = nil, nil
		for i := 0; i < n; i++ {
			name := "redis cluster node-" + strconv.Itoa(i+1)
			d := memberDir(t, dir, fmt.Sprintf("node-%d-try%d", i+1, attempt))
			m := redisMember(name, net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[i])), bin,
				tools.RedisClusterNodeArgs(ports[i], ports[n+i], d), d+"/redis.log")
			c.nodes = append(c.nodes, m)
			c.Addrs = append(c.Addrs, m.Addr)
		}
		return startMembers(c.nodes)
	})
	if err != nil {
		t.Fatalf("testenv: start redis cluster nodes: %v", err)
	}
	err = withTimeout(clusterStartTimeout, func(ctx context.Context) error {
		if err := tools.CreateRedisCluster(ctx, cli, c.Addrs); err != nil {
			return err
		}
		return tools.Poll(ctx, 100*time.Millisecond, func(ctx context.Context) error {
			return tools.RedisClusterReady(ctx, c.Addrs, RedisClusterMasters, true)
		})
	})
	if err != nil {
		t.Fatalf("testenv: create redis cluster: %v", err)
	}
	return c
}

// Nodes returns the cluster as a running node sees it.
func (c *RedisCluster) Nodes() []tools.ClusterNode {
	c.t.Helper()
	for _, m := range c.nodes {
		if !m.Running() {
			continue
		}
		var nodes []tools.ClusterNode
		err := withTimeout(5*time.Second, func(ctx context.Context) (err error) {
			nodes, err = tools.RedisClusterNodes(ctx, m.Addr)
			return err
		})
		if err == nil {
			return nodes
		}
	}
	c.t.Fatal("testenv: no redis cluster node answers CLUSTER NODES")
	return nil
}

// Masters returns the addresses of the healthy masters that serve slots.
func (c *RedisCluster) Masters() []string {
	c.t.Helper()
	var out []string
	for _, n := range c.Nodes() {
		if n.Master && !n.Failing && n.Slots > 0 {
			out = append(out, n.Addr)
		}
	}
	return out
}

// MasterOf returns the address of the healthy master serving key's slot, or ""
// when none does (its master is down and not yet replaced).
func (c *RedisCluster) MasterOf(key string) string {
	c.t.Helper()
	slot := RedisSlot(key)
	for _, n := range c.Nodes() {
		if n.Master && !n.Failing && n.Serves(slot) {
			return n.Addr
		}
	}
	return ""
}

// ReplicaOf returns the address of a healthy replica of the master at addr.
func (c *RedisCluster) ReplicaOf(addr string) string {
	c.t.Helper()
	nodes := c.Nodes()
	id := ""
	for _, n := range nodes {
		if n.Addr == addr {
			id = n.ID
		}
	}
	for _, n := range nodes {
		if !n.Master && !n.Failing && n.MasterID == id {
			return n.Addr
		}
	}
	return ""
}

// Kill kills the node at addr (SIGKILL, as a crash) and waits until it has
// exited. It stays down.
func (c *RedisCluster) Kill(addr string) {
	c.t.Helper()
	if !killMember(c.nodes, addr) {
		c.t.Fatalf("testenv: %s is not a node of this cluster", addr)
	}
}

// WaitHealthy waits until every running node reports cluster_state:ok with three
// healthy masters serving all slots (after a kill: once a replica has been
// promoted in place of the dead master). It fails the test after a generous
// deadline.
func (c *RedisCluster) WaitHealthy() {
	c.t.Helper()
	var down []string
	for _, m := range c.nodes {
		if !m.Running() {
			down = append(down, m.Addr)
		}
	}
	err := withTimeout(clusterStartTimeout, func(ctx context.Context) error {
		return tools.Poll(ctx, 50*time.Millisecond, func(ctx context.Context) error {
			return tools.RedisClusterReady(ctx, c.Addrs, RedisClusterMasters, false, down...)
		})
	})
	if err != nil {
		c.t.Fatalf("testenv: redis cluster not healthy: %v", err)
	}
}

// Client returns a cluster client over every node, closed when the test ends.
func (c *RedisCluster) Client() *redis.ClusterClient {
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs})
	c.t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// RedisSlot is the Redis Cluster hash slot of key: CRC16 (XMODEM) of the key,
// or of its {hash tag} when it has a non-empty one, modulo 16384.
func RedisSlot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for k := 0; k < len(key); k++ {
		crc ^= uint16(key[k]) << 8
		for b := 0; b < 8; b++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}
