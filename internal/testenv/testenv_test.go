package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/redis/go-redis/v9"

	"github.com/infinityxone/gateway/internal/proc"
)

// eventually polls cond every 20ms until it returns nil or timeout passes.
func eventually(t *testing.T, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRedisPingStopStart(t *testing.T) {
	r := StartRedis(t)
	if !strings.HasPrefix(r.Addr, "127.0.0.1:") {
		t.Fatalf("Addr = %q, want 127.0.0.1:PORT", r.Addr)
	}
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer rdb.Close()

	if got, err := rdb.Ping(ctx).Result(); err != nil || got != "PONG" {
		t.Fatalf("PING = %q, %v; want PONG", got, err)
	}
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}

	addr := r.Addr
	r.Stop()
	r.Stop() // idempotent
	// A raw probe: go-redis would log its failed dials.
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		conn.Close()
		t.Fatal("the port accepts connections after Stop")
	}

	r.Start()
	if r.Addr != addr {
		t.Fatalf("Addr after Start = %q, want %q", r.Addr, addr)
	}
	if got, err := rdb.Ping(ctx).Result(); err != nil || got != "PONG" {
		t.Fatalf("PING after Start = %q, %v; want PONG", got, err)
	}
	if err := rdb.Get(ctx, "k").Err(); err != redis.Nil {
		t.Fatalf("GET k after restart: err = %v, want redis.Nil (no persistence)", err)
	}
	r.Start() // running: does nothing
}

// consulClient returns an API client for the agent.
func consulClient(t *testing.T, c *Consul) *api.Client {
	t.Helper()
	client, err := api.NewClient(&api.Config{Address: c.Addr})
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// register registers a service with a TTL check in the given status.
func register(t *testing.T, client *api.Client, id, name, status string, port int) {
	t.Helper()
	err := client.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID:      id,
		Name:    name,
		Address: "127.0.0.1",
		Port:    port,
		Check:   &api.AgentServiceCheck{TTL: "30s", Status: status},
	})
	if err != nil {
		t.Fatalf("register %s: %v", id, err)
	}
}

// passingIDs returns the IDs of the passing instances of service name.
func passingIDs(client *api.Client, name string) ([]string, error) {
	entries, _, err := client.Health().Service(name, "", true, nil)
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(entries))
	for _, e := range entries {
		ids = append(ids, e.Service.ID)
	}
	return ids, nil
}

func TestConsulRegisterAndHealth(t *testing.T) {
	start := time.Now()
	c := StartConsul(t)
	t.Logf("StartConsul took %v", time.Since(start))
	client := consulClient(t, c)

	leader, err := client.Status().Leader()
	if err != nil || leader == "" {
		t.Fatalf("leader = %q, %v", leader, err)
	}
	register(t, client, "users-1", "users", api.HealthPassing, 9001)
	register(t, client, "users-2", "users", api.HealthCritical, 9002)

	eventually(t, 10*time.Second, func() error {
		ids, err := passingIDs(client, "users")
		if err != nil {
			return err
		}
		if len(ids) != 1 || ids[0] != "users-1" {
			return errorf("passing users = %v, want [users-1]", ids)
		}
		return nil
	})
	entries, _, err := client.Health().Service("users", "", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if e := entries[0]; e.Service.Address != "127.0.0.1" || e.Service.Port != 9001 || e.Node.Node != c.Node {
		t.Fatalf("entry = %s:%d on %q, want 127.0.0.1:9001 on %q", e.Service.Address, e.Service.Port, e.Node.Node, c.Node)
	}
}

func TestConsulStopStart(t *testing.T) {
	c := StartConsul(t)
	client := consulClient(t, c)
	register(t, client, "web-1", "web", api.HealthPassing, 8080)
	eventually(t, 10*time.Second, func() error {
		ids, err := passingIDs(client, "web")
		if err == nil && len(ids) != 1 {
			return errorf("passing web = %v", ids)
		}
		return err
	})

	addr := c.Addr
	c.Stop()
	c.Stop() // idempotent
	if _, err := client.Status().Leader(); err == nil {
		t.Fatal("agent answered after Stop")
	}

	start := time.Now()
	c.Start()
	t.Logf("Consul.Start took %v", time.Since(start))
	if c.Addr != addr {
		t.Fatalf("Addr after Start = %q, want %q", c.Addr, addr)
	}
	ids, err := passingIDs(client, "web")
	if err != nil || len(ids) != 0 {
		t.Fatalf("after restart passing web = %v, %v; want none (fresh dev state)", ids, err)
	}
	register(t, client, "web-2", "web", api.HealthPassing, 8081)
	eventually(t, 10*time.Second, func() error {
		ids, err := passingIDs(client, "web")
		if err == nil && (len(ids) != 1 || ids[0] != "web-2") {
			return errorf("passing web = %v, want [web-2]", ids)
		}
		return err
	})
}

// TestParallelAgents starts servers side by side: each gets its own ports and
// sees only its own registrations.
func TestParallelAgents(t *testing.T) {
	for _, name := range []string{"a", "b"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := StartConsul(t)
			r := StartRedis(t)
			client := consulClient(t, c)
			register(t, client, "svc-"+name, "svc", api.HealthPassing, 1)
			eventually(t, 10*time.Second, func() error {
				ids, err := passingIDs(client, "svc")
				if err == nil && (len(ids) != 1 || ids[0] != "svc-"+name) {
					return errorf("passing svc = %v, want [svc-%s]", ids, name)
				}
				return err
			})
			rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
			defer rdb.Close()
			if err := rdb.Ping(context.Background()).Err(); err != nil {
				t.Fatalf("PING: %v", err)
			}
		})
	}
}

// errorf is fmt.Errorf, kept short for conditions.
func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

// TestPortCollision checks that a server whose port was taken meanwhile is
// reported as proc.ErrPortInUse (so StartRedis/StartConsul pick new ports) and is not
// mistaken for the server that holds the port.
func TestPortCollision(t *testing.T) {
	t.Run("redis", func(t *testing.T) {
		holder := StartRedis(t)
		dir := t.TempDir()
		r := &Redis{t: t, bin: holder.bin, port: holder.port, Addr: holder.Addr, dir: dir, logPath: filepath.Join(dir, "redis.log")}
		if err := r.launch(); !errors.Is(err, proc.ErrPortInUse) {
			r.Stop()
			t.Fatalf("launch on a taken port: err = %v, want proc.ErrPortInUse", err)
		}
	})
	t.Run("consul", func(t *testing.T) {
		holder := StartConsul(t)
		c := &Consul{
			t: t, bin: holder.bin, ports: holder.ports, Addr: holder.Addr, Node: "other",
			cfgPath: holder.cfgPath, logPath: filepath.Join(t.TempDir(), "consul.log"), client: holder.client,
		}
		if err := c.launch(); !errors.Is(err, proc.ErrPortInUse) {
			c.Stop()
			t.Fatalf("launch on taken ports: err = %v, want proc.ErrPortInUse", err)
		}
	})
}

func TestConsulServerKeepsCAAcrossRestart(t *testing.T) {
	c := StartConsulServer(t)
	cl := c.Client(t)
	before, _, err := cl.Agent().ConnectCARoots(nil)
	if err != nil || len(before.Roots) == 0 {
		t.Fatalf("roots: %v %v", before, err)
	}
	if err := cl.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "kept", Name: "kept", Port: 1}); err != nil {
		t.Fatal(err)
	}
	c.Stop()
	c.Start()
	after, _, err := cl.Agent().ConnectCARoots(nil)
	if err != nil {
		t.Fatal(err)
	}
	if after.ActiveRootID != before.ActiveRootID || after.TrustDomain != before.TrustDomain {
		t.Fatalf("CA changed across a restart: %s/%s -> %s/%s", before.ActiveRootID, before.TrustDomain, after.ActiveRootID, after.TrustDomain)
	}
	eventually(t, 20*time.Second, func() error {
		svcs, err := cl.Agent().Services()
		if err != nil {
			return err
		}
		if _, ok := svcs["kept"]; !ok {
			return errors.New("registration lost")
		}
		return nil
	})
}
