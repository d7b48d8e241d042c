package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/infinityxone/gateway/internal/tools"
)

// meshBackendService is the Consul name of the backend in the gateway-mesh row.
const meshBackendService = "bench-backend"

// startMesh starts what the gateway-mesh row needs, pinned like wrk and the backend
// (they stand for the backend's machine): a `consul agent -dev` (Connect on, built-in
// CA), the backend registered as bench-backend with a sidecar_service, and Consul's
// built-in sidecar proxy for it. It returns the agent's HTTP address once the sidecar
// is listed as passing by /v1/health/connect.
func (h *harness) startMesh(backendAddr string) (string, error) {
	bin, err := tools.Consul()
	if err != nil {
		return "", fmt.Errorf("%w (or leave gateway-mesh out with -targets)", err)
	}
	addr := freeAddr()
	_, httpPort, _ := net.SplitHostPort(addr)
	port := func() string { _, p, _ := net.SplitHostPort(freeAddr()); return p }
	if _, err := h.start("consul", h.loadCPU, nil, bin, "agent", "-dev", "-node", "bench",
		"-bind", "127.0.0.1", "-client", "127.0.0.1", "-http-port", httpPort,
		"-server-port", port(), "-serf-lan-port", port(), "-serf-wan-port", "-1", "-dns-port", "-1",
		"-grpc-port", "-1", "-grpc-tls-port", "-1", "-https-port", "-1", "-log-level", "warn"); err != nil {
		return "", err
	}
	client, err := api.NewClient(&api.Config{Address: addr})
	if err != nil {
		return "", err
	}
	if err := h.poll("consul agent with Connect roots", func() error {
		roots, _, err := client.Agent().ConnectCARoots(nil)
		if err == nil && len(roots.Roots) == 0 {
			err = errors.New("no roots yet")
		}
		return err
	}); err != nil {
		return "", err
	}
	host, bport, _ := net.SplitHostPort(backendAddr)
	backendPort, _ := strconv.Atoi(bport)
	sidecar := freeAddr()
	_, sp, _ := net.SplitHostPort(sidecar)
	sidecarPort, _ := strconv.Atoi(sp)
	id := meshBackendService + "-1"
	if err := client.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: id, Name: meshBackendService, Address: host, Port: backendPort,
		Connect: &api.AgentServiceConnect{SidecarService: &api.AgentServiceRegistration{
			Port: sidecarPort,
			Checks: api.AgentServiceChecks{{
				Name: "sidecar listening", TCP: sidecar, Interval: "1s", Timeout: "1s", Status: api.HealthPassing,
			}},
		}},
	}); err != nil {
		return "", err
	}
	if _, err := h.start("sidecar", h.loadCPU, nil, bin, "connect", "proxy", "-sidecar-for", id, "-http-addr", addr, "-log-level", "warn"); err != nil {
		return "", err
	}
	err = h.poll("the sidecar passing in /v1/health/connect", func() error {
		entries, _, err := client.Health().Connect(meshBackendService, "", true, nil)
		if err == nil && len(entries) != 1 {
			err = fmt.Errorf("%d passing entries", len(entries))
		}
		if err == nil {
			var c net.Conn
			if c, err = net.DialTimeout("tcp", sidecar, time.Second); err == nil {
				c.Close()
			}
		}
		return err
	})
	return addr, err
}

// poll calls cond every 50 ms until it returns nil, for at most 30 s.
func (h *harness) poll(what string, cond func() error) error {
	return h.pollFor(what, 30*time.Second, 50*time.Millisecond, cond)
}

// pollFor calls cond every interval until it returns nil, for at most timeout or
// until the harness is interrupted.
func (h *harness) pollFor(what string, timeout, interval time.Duration, cond func() error) error {
	ctx, cancel := context.WithTimeout(h.ctx, timeout)
	defer cancel()
	err := tools.Poll(ctx, interval, func(context.Context) error { return cond() })
	if err != nil && h.ctx.Err() != nil {
		return h.ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("waiting for %s: %w", what, err)
	}
	return nil
}
