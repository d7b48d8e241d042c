package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/infinityxone/gateway/internal/proc"
	"github.com/infinityxone/gateway/internal/tools"
)

// SentinelMasterName is the master name the sentinels of StartRedisSentinel watch.
const SentinelMasterName = "gateway"

// RedisSentinel is a Sentinel-managed Redis owned by one test: one master, one
// replica and three sentinels (quorum 2), all redis-server processes on loopback.
// down-after-milliseconds is tools.SentinelDownAfter, so a killed master is
// replaced within seconds.
type RedisSentinel struct {
	// MasterName is the name the sentinels know the master by (master_name).
	MasterName string
	// Sentinels are the three sentinels' "127.0.0.1:PORT".
	Sentinels []string
	// Servers are the master's and the replica's addresses, master first at start.
	Servers []string

	t       testing.TB
	servers []*proc.Process
	watch   []*proc.Process
}

// StartRedisSentinel starts a master, a replica of it and three sentinels on free
// loopback ports and returns once every sentinel names the master, knows the two
// other sentinels and sees the replica in sync. Everything is killed by PID when
// the test ends.
func StartRedisSentinel(t testing.TB) *RedisSentinel {
	t.Helper()
	bin, err := tools.Redis()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	dir := t.TempDir()
	s := &RedisSentinel{t: t, MasterName: SentinelMasterName}
	cleanupMembers(t, func() []*proc.Process { return slices.Concat(s.servers, s.watch) })
	attempt := 0
	err = proc.RetryPortInUse(startTries, func() error {
		attempt++
		ports, err := tools.FreePorts(5, 0)
		if err != nil {
			return err
		}
		s.servers, s.watch, s.Servers, s.Sentinels = nil, nil, nil, nil
		addr := func(p int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)) }
		for i, role := range []string{"master", "replica"} {
			d := memberDir(t, dir, fmt.Sprintf("%s-try%d", role, attempt))
			args := tools.RedisBaseArgs(ports[i], d)
			if role == "replica" {
				args = append(args, "--replicaof", "127.0.0.1", strconv.Itoa(ports[0]))
			}
			m := redisMember("redis "+role, addr(ports[i]), bin, args, d+"/redis.log")
			s.servers = append(s.servers, m)
			s.Servers = append(s.Servers, m.Addr)
		}
		for i := 0; i < 3; i++ {
			d := memberDir(t, dir, fmt.Sprintf("sentinel-%d-try%d", i+1, attempt))
			cfg := filepath.Join(d, "sentinel.conf")
			if err := os.WriteFile(cfg, []byte(tools.SentinelConfig(ports[2+i], d, s.MasterName, s.Servers[0])), 0o644); err != nil {
				return err
			}
			m := redisMember(fmt.Sprintf("sentinel-%d", i+1), addr(ports[2+i]), bin, []string{cfg, "--sentinel"}, d+"/sentinel.log")
			s.watch = append(s.watch, m)
			s.Sentinels = append(s.Sentinels, m.Addr)
		}
		return startMembers(slices.Concat(s.servers, s.watch))
	})
	if err != nil {
		t.Fatalf("testenv: start sentinel setup: %v", err)
	}
	err = withTimeout(clusterStartTimeout, func(ctx context.Context) error {
		return tools.Poll(ctx, 100*time.Millisecond, func(ctx context.Context) error {
			return tools.SentinelReady(ctx, s.Sentinels, s.MasterName, s.Servers[0], 1)
		})
	})
	if err != nil {
		t.Fatalf("testenv: sentinels not ready: %v", err)
	}
	return s
}

// Master returns the master's address as the first running sentinel reports it.
func (s *RedisSentinel) Master() string {
	s.t.Helper()
	var last error
	for _, m := range s.watch {
		if !m.Running() {
			continue
		}
		var addr string
		last = withTimeout(5*time.Second, func(ctx context.Context) (err error) {
			addr, err = tools.SentinelMaster(ctx, m.Addr, s.MasterName)
			return err
		})
		if last == nil {
			return addr
		}
	}
	s.t.Fatalf("testenv: no sentinel names the master: %v", last)
	return ""
}

// Kill kills the Redis server (master or replica) at addr with SIGKILL and waits
// until it has exited. It stays down.
func (s *RedisSentinel) Kill(addr string) {
	s.t.Helper()
	if !killMember(s.servers, addr) {
		s.t.Fatalf("testenv: %s is not a server of this setup", addr)
	}
}

// WaitMaster waits until every sentinel names a master other than old and that
// server answers as a master (role:master). It returns the new master's address
// and fails the test after a generous deadline.
func (s *RedisSentinel) WaitMaster(old string) string {
	s.t.Helper()
	var master string
	err := withTimeout(clusterStartTimeout, func(ctx context.Context) error {
		return tools.Poll(ctx, 50*time.Millisecond, func(ctx context.Context) error {
			master = ""
			for _, a := range s.Sentinels {
				m, err := tools.SentinelMaster(ctx, a, s.MasterName)
				if err != nil {
					return err
				}
				if m == old {
					return fmt.Errorf("sentinel %s still names %s", a, old)
				}
				if master != "" && m != master {
					return fmt.Errorf("sentinels disagree: %s and %s", master, m)
				}
				master = m
			}
			return tools.RedisRole(ctx, master, "master")
		})
	})
	if err != nil {
		s.t.Fatalf("testenv: no new master: %v", err)
	}
	return master
}
