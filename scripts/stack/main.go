// Command stack runs the docker-compose topology as local processes, without Docker:
// a Consul dev agent, Redis, the echo services "users" and "orders" (two instances
// each, registered through the Consul agent) and three gateway replicas on
// deploy/gateway.hcl. It prints the addresses and a sample token, and on Ctrl-C
// stops everything by PID (gateways first, so each one drains).
//
//	go run ./scripts/stack [-gateways 3] [-instances 2] [-port 8081] [-jwt-secret S] [-keep] [-mesh] [-cluster]
//
// -mesh runs the mesh variant (docker-compose.mesh.yml): every instance behind a
// Consul Connect sidecar, the replicas on deploy/gateway-mesh.hcl.
// -cluster runs it on a three-server Consul datacenter with a client agent and a
// six-node Redis Cluster instead of one dev agent and one redis-server. The two
// combine: -mesh -cluster puts the sidecars on the datacenter.
//
// It is what `make stack` runs; see internal/stack.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/infinityxone/gateway/internal/stack"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("stack", flag.ContinueOnError)
	fs.SetOutput(stderr)
	gateways := fs.Int("gateways", stack.DefaultGateways, "gateway replicas")
	instances := fs.Int("instances", 2, "instances of each example service")
	port := fs.Int("port", 8081, "first replica's port (the others follow; admin ports are these +1000); 0 = free ports")
	configPath := fs.String("config", "", "gateway config (default deploy/gateway.hcl)")
	dir := fs.String("dir", "", "directory for binaries, config and logs (default: a temporary one)")
	keep := fs.Bool("keep", false, "keep the temporary directory (logs) after stopping")
	sub := fs.String("sub", "demo", "subject of the sample token")
	mesh := fs.Bool("mesh", false, "mesh variant: instances behind Consul Connect sidecars, deploy/gateway-mesh.hcl")
	cluster := fs.Bool("cluster", false, "run on a 3-server Consul datacenter (+ client agent) and a 6-node Redis Cluster")
	secret := fs.String("jwt-secret", os.Getenv("JWT_SECRET"), "the replicas' HS256 secret, 32+ bytes (default $JWT_SECRET, else random)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "stack: unexpected arguments %v\n", fs.Args())
		return 2
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "stack", Output: stderr, Level: hclog.Info})

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	services := stack.DefaultServices()
	for i := range services {
		services[i].Instances = *instances
	}
	startCtx, cancel := context.WithTimeout(ctx, 5*time.Minute) // the first build may be slow
	s, err := stack.Start(startCtx, stack.Options{
		Config: *configPath, Dir: *dir, KeepDir: *keep,
		Gateways: *gateways, Services: services, GatewayPort: *port,
		JWTSecret: *secret, Logger: logger, Mesh: *mesh, Cluster: *cluster,
	})
	cancel()
	if err != nil {
		fmt.Fprintln(stderr, "stack:", err)
		if *port != 0 {
			fmt.Fprintf(stderr, "stack: if port %d or the ones after it are taken, try -port 0 (free ports)\n", *port)
		}
		return 1
	}
	token, err := s.Token(ctx, *sub)
	if err != nil {
		fmt.Fprintln(stderr, "stack:", err)
		_ = s.Stop()
		return 1
	}

	fmt.Fprintln(stdout)
	s.Describe(stdout)
	g := s.Gateways[0]
	fmt.Fprintf(stdout, `
Try:
  curl -s %s
  curl -si %s                                  # 401: no token
  TOKEN=%s
  curl -s -H "Authorization: Bearer $TOKEN" %s
  curl -s %s | jq

More tokens: JWT_SECRET=%s %s
Each replica also answers on its own port; the rate limit on /api/orders is shared
through Redis. Ctrl-C stops everything.
%s`,
		g.URL("/api/users/42"), g.URL("/api/orders/7"), token, g.URL("/api/orders/7"),
		g.AdminURL("/admin/services"), s.JWTSecret, s.TokenCommand("alice"), meshHint(*mesh, s))

	<-ctx.Done()
	stop() // a second Ctrl-C kills this process, and the kernel its children
	fmt.Fprintln(stderr, "stack: stopping (gateways drain first; Ctrl-C again to kill everything)")
	if err := s.Stop(); err != nil {
		fmt.Fprintln(stderr, "stack:", err)
		return 1
	}
	if *keep || *dir != "" {
		fmt.Fprintf(stderr, "stack: logs kept in %s/logs\n", s.Dir)
	}
	fmt.Fprintln(stderr, "stack: stopped")
	return 0
}

// meshHint tells how to see an intention at work in the mesh variant.
func meshHint(mesh bool, s *stack.Stack) string {
	if !mesh {
		return ""
	}
	return fmt.Sprintf(`
Mesh: the gateways reach users and orders only through their Connect sidecars.
  CONSUL_HTTP_ADDR=%s consul intention create -replace -deny gateway users   # then 502 mesh_denied
  CONSUL_HTTP_ADDR=%s consul intention create -replace -allow gateway users
`, s.Consul.Addr, s.Consul.Addr)
}
