// Package stack runs the deployment's topology as local processes on loopback, the
// way docker-compose.yml runs it in containers: a Consul agent in -dev mode, a
// redis-server, the echo example services (each instance registering itself through
// the Consul agent), and several gateway replicas sharing one config
// (deploy/gateway.hcl: Consul discovery, a JWT route, a rate limit kept in Redis).
//
// `make stack` runs it for people (scripts/stack); the end-to-end test in this
// package runs it for CI. The gateway and echo binaries are built from the module
// into the stack's directory; consul and redis-server are found as internal/testenv
// finds them ($CONSUL_BIN, ~/.cache/gateway-tools/consul, PATH; $REDIS_SERVER, PATH).
//
// With Options.Mesh the stack is the mesh variant (docker-compose.mesh.yml): every
// echo instance listens on loopback behind Consul's built-in Connect sidecar
// (`consul connect proxy -sidecar-for ID`), and the replicas run
// deploy/gateway-mesh.hcl, which reaches users and orders through the mesh only.
//
// Every child is run by internal/proc in its own process group (a terminal's Ctrl-C
// reaches only the owner) and, on Linux, dies with the owner. Stop ends them by PID
// in reverse dependency order: gateways, services, then Redis and Consul.
package stack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/infinityxone/gateway/consul"
	"github.com/infinityxone/gateway/gateway/config"
	"github.com/infinityxone/gateway/internal/proc"
	"github.com/infinityxone/gateway/internal/tools"
)

// modulePath is the module whose root Start looks for.
const modulePath = "github.com/infinityxone/gateway"

// DefaultGateways is the number of gateway replicas when Options.Gateways is 0.
const DefaultGateways = 3

// consulConfig is the agent's extra config: every client of a local stack is
// 127.0.0.1, and Consul allows only 200 HTTP connections per client IP by default.
const consulConfig = `limits { http_max_conns_per_client = 10000 }
disable_update_check = true
`

// Grace periods for Stop: a gateway deregisters, waits deregister_delay, then drains.
const (
	gatewayGrace = 45 * time.Second
	serviceGrace = 15 * time.Second
	serverGrace  = 10 * time.Second
)

// Service is one example service of the stack: Instances echo processes named
// Name, each registered in Consul with Tags.
type Service struct {
	Name      string
	Instances int
	Tags      []string
}

// DefaultServices are the services deploy/gateway.hcl routes to, two instances each,
// as in docker-compose.yml.
func DefaultServices() []Service {
	return []Service{
		{Name: "users", Instances: 2, Tags: []string{"v1"}},
		{Name: "orders", Instances: 2, Tags: []string{"v1"}},
	}
}

// Options configure Start. The zero value runs the default topology on free ports.
type Options struct {
	// Root is the module's root directory, where the binaries are built from.
	// Default: found by walking up from the working directory to the go.mod of
	// github.com/infinityxone/gateway.
	Root string
	// Dir receives the binaries, config, data and logs (in Dir/logs). Default: a new
	// temporary directory, which Stop removes unless KeepDir is set.
	Dir     string
	KeepDir bool
	// Config is the gateway config file; default Root/deploy/gateway.hcl, with
	// Mesh Root/deploy/gateway-mesh.hcl.
	Config string
	// Mesh puts every echo instance behind a Consul Connect sidecar: the mesh
	// variant of the topology.
	Mesh bool
	// ExtraConfig holds more HCL files (file name -> text) merged with Config: the
	// replicas run `gateway run -config DIR` on a directory holding all of them.
	ExtraConfig map[string]string
	// Gateways is the number of gateway replicas; default DefaultGateways.
	Gateways int
	// Services are the example services; default DefaultServices().
	Services []Service
	// GatewayPort, when not 0, fixes the replicas' ports: replica i (from 0) listens
	// on GatewayPort+i and its admin listener on AdminPort+i (default GatewayPort+1000).
	// 0 picks free ports. Every other process always gets free ports.
	GatewayPort int
	AdminPort   int
	// CheckInterval is the echo instances' Consul health check interval; default 1s
	// (Consul's minimum), so a dead instance leaves the passing list within about a second.
	CheckInterval time.Duration
	// Env is extra environment for the gateways (KEY=VALUE), applied after the
	// stack's own, for the env() calls of the config, such as ORDERS_RATE_LIMIT.
	Env []string
	// JWTSecret is the gateways' JWT_SECRET; default 32 random bytes in hex.
	JWTSecret string
	// Logger receives progress messages; default: none.
	Logger hclog.Logger
	// Cluster runs a three-server Consul datacenter with a client agent (the one
	// the instances and gateways use) and a six-node Redis Cluster instead of one
	// dev agent and one redis-server; the gateways' redis block gets the
	// cluster's addresses. See cluster.go.
	Cluster bool
}

// Instance is one running echo instance.
type Instance struct {
	*proc.Process
	// Service is the Consul service name; ID the instance's Consul service ID.
	Service string
	ID      string
	// Sidecar is its Connect sidecar (with Options.Mesh; else nil). Sidecar.Addr is
	// what the gateways dial.
	Sidecar *proc.Process
}

// Gateway is one running gateway replica. Process.Addr is its public listener.
type Gateway struct {
	*proc.Process
	// AdminAddr is the admin listener (/healthz, /readyz, /metrics, /admin/...).
	AdminAddr string
}

// URL returns "http://ADDR" + path for the replica's public listener.
func (g *Gateway) URL(path string) string { return "http://" + g.Addr + path }

// AdminURL returns "http://ADMIN" + path for the replica's admin listener.
func (g *Gateway) AdminURL(path string) string { return "http://" + g.AdminAddr + path }

// Stack is a running local deployment. Its fields are set by Start and must not
// be changed.
type Stack struct {
	// Dir holds bin/, config/, logs/ and data.
	Dir string
	// ConfigDir is what the replicas run with `-config`.
	ConfigDir string
	// GatewayBin and EchoBin are the binaries built for this stack.
	GatewayBin, EchoBin string
	// JWTSecret is the replicas' HS256 secret.
	JWTSecret string
	// Issuer and Audience are those the config's first JWT provider requires
	// (what Token puts in its tokens).
	Issuer   string
	Audience []string

	Consul    *proc.Process
	Redis     *proc.Process
	Instances []*Instance
	Gateways  []*Gateway

	// Cluster mode: Consul is the client agent and Redis is nil.
	ConsulServers []*proc.Process
	RedisNodes    []*proc.Process

	opts    Options
	log     hclog.Logger
	env     []string // the environment every child inherits (ours filtered out)
	gwEnv   []string // the replicas' variables, before opts.Env
	tempDir bool
	client  *http.Client

	stopOnce sync.Once
	stopErr  error
}

// Start builds the binaries and starts the whole stack, returning once every
// process is ready: Consul has a leader, Redis answers, every instance's health
// check passes in Consul, and every replica's /readyz answers 200. On error,
// whatever was started is stopped again.
func Start(ctx context.Context, opts Options) (s *Stack, err error) {
	if opts.Gateways <= 0 {
		opts.Gateways = DefaultGateways
	}
	if opts.Services == nil {
		opts.Services = DefaultServices()
	}
	if opts.CheckInterval <= 0 {
		opts.CheckInterval = time.Second
	}
	if opts.GatewayPort != 0 && opts.AdminPort == 0 {
		opts.AdminPort = opts.GatewayPort + 1000
	}
	if opts.Root == "" {
		if opts.Root, err = moduleRoot(); err != nil {
			return nil, err
		}
	}
	if opts.Config == "" {
		name := "gateway.hcl"
		if opts.Mesh {
			name = "gateway-mesh.hcl"
		}
		opts.Config = filepath.Join(opts.Root, "deploy", name)
	}
	s = &Stack{
		opts:   opts,
		log:    opts.Logger,
		env:    childEnv(os.Environ()),
		client: &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
	}
	if s.log == nil {
		s.log = hclog.NewNullLogger()
	}
	defer func() {
		if err != nil {
			_ = s.Stop()
			s = nil
		}
	}()

	s.Dir = opts.Dir
	if s.Dir == "" {
		if s.Dir, err = os.MkdirTemp("", "gateway-stack-"); err != nil {
			return s, err
		}
		s.tempDir = !opts.KeepDir
	}
	if err := mkdirs(s.Dir); err != nil {
		return s, err
	}
	s.JWTSecret = opts.JWTSecret
	if s.JWTSecret == "" {
		s.JWTSecret = randomHex(32)
	}

	consulBin, err := tools.Consul()
	if err != nil {
		return s, err
	}
	redisBin, err := tools.Redis()
	if err != nil {
		return s, err
	}
	if err := s.writeConfig(); err != nil {
		return s, err
	}
	s.log.Info("building gateway and echo", "into", filepath.Join(s.Dir, "bin"))
	if err := s.build(ctx); err != nil {
		return s, err
	}

	// Consul and Redis have no dependency on each other.
	var consulErr, redisErr error
	var wg sync.WaitGroup
	if opts.Cluster {
		wg.Go(func() { consulErr = s.startConsulCluster(ctx, consulBin) })
		wg.Go(func() { redisErr = s.startRedisCluster(ctx, redisBin) })
	} else {
		wg.Go(func() { consulErr = s.startConsul(ctx, consulBin) })
		wg.Go(func() { redisErr = s.startRedis(ctx, redisBin) })
	}
	wg.Wait()
	if err := errors.Join(consulErr, redisErr); err != nil {
		return s, err
	}
	s.log.Info("consul and redis ready", "consul", s.Consul.Addr, "redis", strings.Join(s.RedisAddrs(), ","))
	if opts.Cluster {
		if err := s.useRedisCluster(); err != nil {
			return s, err
		}
	}

	// The replicas' environment is known now; check the config before starting them,
	// so that a mistake is reported once, with its FILE:LINE:COL.
	s.gwEnv = []string{
		"CONSUL_HTTP_ADDR=" + s.Consul.Addr,
		"REDIS_ADDR=" + s.RedisAddrs()[0],
		"JWT_SECRET=" + s.JWTSecret,
	}
	if err := s.checkConfig(); err != nil {
		return s, err
	}

	if err := s.startInstances(ctx); err != nil {
		return s, err
	}
	if opts.Cluster {
		if err := s.catalogPassing(ctx); err != nil {
			return s, err
		}
	}
	s.log.Info("services ready", "instances", len(s.Instances))
	if err := s.startGateways(ctx); err != nil {
		return s, err
	}
	s.log.Info("gateways ready", "replicas", len(s.Gateways))
	return s, nil
}

// Stop ends every process by PID: the gateways first (SIGTERM: each deregisters,
// keeps serving for its deregister_delay, then drains), then the echo instances
// (they deregister), then Redis and Consul; a process still running after its grace
// period is killed. It removes the stack's temporary directory and returns what did
// not end cleanly. Calling it again returns the first result.
func (s *Stack) Stop() error {
	s.stopOnce.Do(func() {
		var gws, insts []*proc.Process
		for _, g := range s.Gateways {
			gws = append(gws, g.Process)
		}
		for _, in := range s.Instances {
			insts = append(insts, in.Process, in.Sidecar)
		}
		servers := slices.Concat([]*proc.Process{s.Redis, s.Consul}, s.RedisNodes, s.ConsulServers)
		errs := []error{
			proc.StopAll(gatewayGrace, gws),
			proc.StopAll(serviceGrace, insts),
			proc.StopAll(serverGrace, servers),
		}
		if s.tempDir {
			errs = append(errs, os.RemoveAll(s.Dir))
		}
		s.stopErr = errors.Join(errs...)
	})
	return s.stopErr
}

// Token mints a token that the stack's JWT route accepts, by running `gateway token`
// with the stack's secret, issuer and audience (lifetime one hour).
func (s *Stack) Token(ctx context.Context, sub string, roles ...string) (string, error) {
	args := []string{"token", "-sub", sub, "-ttl", "1h"}
	if s.Issuer != "" {
		args = append(args, "-issuer", s.Issuer)
	}
	if len(s.Audience) > 0 {
		args = append(args, "-audience", strings.Join(s.Audience, ","))
	}
	if len(roles) > 0 {
		args = append(args, "-roles", strings.Join(roles, ","))
	}
	cmd := exec.CommandContext(ctx, s.GatewayBin, args...)
	cmd.Env = append(slices.Clone(s.env), "JWT_SECRET="+s.JWTSecret) // not on the command line
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("gateway token: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

// TokenCommand is the shell command that mints a token like Token does, with the
// secret from $JWT_SECRET.
func (s *Stack) TokenCommand(sub string) string {
	cmd := s.GatewayBin + " token -sub " + sub
	if s.Issuer != "" {
		cmd += " -issuer " + s.Issuer
	}
	if len(s.Audience) > 0 {
		cmd += " -audience " + strings.Join(s.Audience, ",")
	}
	return cmd
}

// ServiceInstances returns the instances of one service, in start order.
func (s *Stack) ServiceInstances(service string) []*Instance {
	var out []*Instance
	for _, in := range s.Instances {
		if in.Service == service {
			out = append(out, in)
		}
	}
	return out
}

// Describe writes the stack's addresses, one per line, for people.
func (s *Stack) Describe(w io.Writer) {
	fmt.Fprintf(w, "consul      http://%s/ui   (export CONSUL_HTTP_ADDR=%s)\n", s.Consul.Addr, s.Consul.Addr)
	for _, p := range s.ConsulServers {
		fmt.Fprintf(w, "%-11s http://%s\n", p.Name, p.Addr)
	}
	if s.Redis != nil {
		fmt.Fprintf(w, "redis       %s\n", s.Redis.Addr)
	} else {
		fmt.Fprintf(w, "redis       cluster %s   (redis-cli -c -p %s)\n", strings.Join(s.RedisAddrs(), ","), s.RedisAddrs()[0][strings.LastIndex(s.RedisAddrs()[0], ":")+1:])
	}
	for _, in := range s.Instances {
		fmt.Fprintf(w, "%-11s http://%s   consul id %s\n", in.Name, in.Addr, in.ID)
		if in.Sidecar != nil {
			fmt.Fprintf(w, "%-11s %s (mutual TLS only)   consul id %s-sidecar-proxy\n", in.Sidecar.Name, in.Sidecar.Addr, in.ID)
		}
	}
	for _, g := range s.Gateways {
		fmt.Fprintf(w, "%-11s http://%s   admin http://%s\n", g.Name, g.Addr, g.AdminAddr)
	}
	fmt.Fprintf(w, "config      %s\n", s.ConfigDir)
	fmt.Fprintf(w, "logs        %s\n", filepath.Join(s.Dir, "logs"))
}

// mkdirs creates the stack directory's subdirectories.
func mkdirs(dir string) error {
	for _, d := range []string{"bin", "config", "logs", "redis", "consul"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	return nil
}

// writeConfig copies the config file and the extra files into Dir/config.
func (s *Stack) writeConfig() error {
	s.ConfigDir = filepath.Join(s.Dir, "config")
	src, err := os.ReadFile(s.opts.Config)
	if err != nil {
		return err
	}
	name := filepath.Base(s.opts.Config)
	if err := os.WriteFile(filepath.Join(s.ConfigDir, name), src, 0o644); err != nil {
		return err
	}
	for n, text := range s.opts.ExtraConfig {
		if filepath.Base(n) != n || !strings.HasSuffix(n, ".hcl") || n == name {
			return fmt.Errorf("stack: extra config %q: want a distinct plain file name ending in .hcl", n)
		}
		if err := os.WriteFile(filepath.Join(s.ConfigDir, n), []byte(text), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// checkConfig loads the config as the replicas will (with their environment, the
// listener addresses aside) and records the JWT issuer and audience for Token.
func (s *Stack) checkConfig() error {
	env := map[string]string{}
	for _, kv := range slices.Concat(s.env, s.gwEnv, s.opts.Env) {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	cfg, ds := config.LoadWithEnv(s.ConfigDir, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if len(ds) > 0 {
		return fmt.Errorf("gateway config:\n%w", ds)
	}
	if len(cfg.JWT) > 0 {
		s.Issuer, s.Audience = cfg.JWT[0].Issuer, cfg.JWT[0].Audience
	}
	return nil
}

// build compiles cmd/gateway and examples/services/echo into Dir/bin.
func (s *Stack) build(ctx context.Context) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("stack: the go command is needed to build the gateway: %w", err)
	}
	bin := filepath.Join(s.Dir, "bin")
	cmd := exec.CommandContext(ctx, goBin, "build", "-ldflags", "-X main.version=stack", "-o", bin+string(filepath.Separator),
		"./cmd/gateway", "./examples/services/echo")
	cmd.Dir = s.opts.Root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("stack: go build: %v\n%s", err, out)
	}
	s.GatewayBin = filepath.Join(bin, "gateway")
	s.EchoBin = filepath.Join(bin, "echo")
	return nil
}

// startConsul starts a dev agent on free loopback ports.
func (s *Stack) startConsul(ctx context.Context, bin string) error {
	cfg := filepath.Join(s.Dir, "consul.hcl")
	if err := os.WriteFile(cfg, []byte(consulConfig), 0o644); err != nil {
		return err
	}
	node := "stack-" + randomHex(4)
	return proc.RetryPortInUse(startTries, func() error {
		ports, err := tools.FreePorts(3, 1)
		if err != nil {
			return err
		}
		p := &proc.Process{
			Name: "consul", Addr: loopback(ports[1]), LogPath: filepath.Join(s.Dir, "logs", "consul.log"),
			Path: bin, Env: s.env, CleanExits: []int{1}, OwnGroup: true,
			Args: []string{
				"agent", "-dev", "-node", node,
				"-bind", "127.0.0.1", "-client", "127.0.0.1",
				"-serf-lan-port", strconv.Itoa(ports[0]),
				"-http-port", strconv.Itoa(ports[1]),
				"-server-port", strconv.Itoa(ports[2]),
				"-serf-wan-port", "-1", "-dns-port", "-1", "-grpc-port", "-1", "-grpc-tls-port", "-1", "-https-port", "-1",
				"-log-level", "info", "-config-file", cfg,
			},
		}
		p.Ready = func(ctx context.Context, _ int) error { return tools.ConsulServerReady(ctx, s.client, p.Addr, node) }
		if err := p.Start(ctx); err != nil {
			return err
		}
		s.Consul = p
		return nil
	})
}

// startRedis starts a redis-server without persistence on a free loopback port.
func (s *Stack) startRedis(ctx context.Context, bin string) error {
	return proc.RetryPortInUse(startTries, func() error {
		ports, err := tools.FreePorts(1, 0)
		if err != nil {
			return err
		}
		p := s.redisProcess("redis", ports[0], bin, tools.RedisBaseArgs(ports[0], filepath.Join(s.Dir, "redis")))
		if err := p.Start(ctx); err != nil {
			return err
		}
		s.Redis = p
		return nil
	})
}

// redisProcess is a redis-server on port with args, logging to DIR/logs/NAME.log
// and ready once the server on its port answers INFO with its PID.
func (s *Stack) redisProcess(name string, port int, bin string, args []string) *proc.Process {
	addr := loopback(port)
	return &proc.Process{
		Name: name, Addr: addr, LogPath: filepath.Join(s.Dir, "logs", name+".log"),
		Path: bin, Env: s.env, Args: args, OwnGroup: true,
		Ready: func(ctx context.Context, pid int) error { return tools.RedisIs(ctx, addr, pid) },
	}
}

// startInstances starts every echo instance, each on a free port, and waits until
// Consul reports its health check passing.
func (s *Stack) startInstances(ctx context.Context) error {
	type job struct {
		name, service string
		tags          []string
	}
	var jobs []job
	for _, svc := range s.opts.Services {
		for i := 1; i <= svc.Instances; i++ {
			jobs = append(jobs, job{fmt.Sprintf("%s-%d", svc.Name, i), svc.Name, svc.Tags})
		}
	}
	insts := make([]*Instance, len(jobs))
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Go(func() {
			errs[i] = proc.RetryPortInUse(startTries, func() error {
				ports, err := tools.FreePorts(2, 0)
				if err != nil {
					return err
				}
				args := []string{
					"-listen", loopback(ports[0]), "-service", j.service, "-tags", strings.Join(j.tags, ","),
					"-consul", s.Consul.Addr, "-interval", s.opts.CheckInterval.String(),
				}
				if s.opts.Mesh {
					args = append(args, "-advertise", "127.0.0.1", "-sidecar-port", strconv.Itoa(ports[1]))
				}
				id := consul.ServiceID(j.service, "127.0.0.1", ports[0])
				in := &Instance{
					Process: &proc.Process{
						Name: j.name, Addr: loopback(ports[0]), LogPath: filepath.Join(s.Dir, "logs", j.name+".log"),
						Path: s.EchoBin, Env: s.env, Args: args, OwnGroup: true,
						Ready: func(ctx context.Context, _ int) error { return s.instancePassing(ctx, id) },
					},
					Service: j.service,
					ID:      id,
				}
				if err := in.Start(ctx); err != nil {
					return err
				}
				if s.opts.Mesh {
					if err := s.startSidecar(ctx, in, loopback(ports[1])); err != nil {
						_ = in.Stop(serviceGrace)
						return err
					}
				}
				insts[i] = in
				return nil
			})
		})
	}
	wg.Wait()
	for _, in := range insts {
		if in != nil {
			s.Instances = append(s.Instances, in)
		}
	}
	return errors.Join(errs...)
}

// startSidecar starts Consul's built-in Connect proxy for in (registered by echo
// -sidecar-port with its public listener on addr) and waits until Consul lists it as
// passing.
func (s *Stack) startSidecar(ctx context.Context, in *Instance, addr string) error {
	bin, err := tools.Consul()
	if err != nil {
		return err
	}
	name := in.Name + "-sidecar"
	p := &proc.Process{
		Name: name, Addr: addr, LogPath: filepath.Join(s.Dir, "logs", name+".log"),
		Path: bin, Env: s.env, CleanExits: []int{1}, OwnGroup: true,
		Args:  []string{"connect", "proxy", "-sidecar-for", in.ID, "-http-addr", s.Consul.Addr, "-log-level", "info"},
		Ready: func(ctx context.Context, _ int) error { return s.instancePassing(ctx, in.ID+"-sidecar-proxy") },
	}
	if err := p.Start(ctx); err != nil {
		return err
	}
	in.Sidecar = p
	return nil
}

// instancePassing returns nil once the agent reports the service instance id passing.
func (s *Stack) instancePassing(ctx context.Context, id string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.Consul.Addr+"/v1/agent/health/service/id/"+url.PathEscape(id), nil)
	if err != nil {
		return err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("consul: instance %s is %s", id, resp.Status)
	}
	return nil
}

// startGateways starts the replicas and waits until each one's /readyz answers 200.
func (s *Stack) startGateways(ctx context.Context) error {
	gws := make([]*Gateway, s.opts.Gateways)
	errs := make([]error, len(gws))
	var wg sync.WaitGroup
	for i := range gws {
		wg.Go(func() {
			start := func() error {
				port, admin := s.opts.GatewayPort+i, s.opts.AdminPort+i
				if s.opts.GatewayPort == 0 {
					ports, err := tools.FreePorts(2, 0)
					if err != nil {
						return err
					}
					port, admin = ports[0], ports[1]
				}
				g := &Gateway{
					Process: &proc.Process{
						Name: fmt.Sprintf("gateway-%d", i+1), Addr: loopback(port),
						LogPath:  filepath.Join(s.Dir, "logs", fmt.Sprintf("gateway-%d.log", i+1)),
						Path:     s.GatewayBin,
						Args:     []string{"run", "-config", s.ConfigDir},
						OwnGroup: true,
						Env: slices.Concat(s.env, s.gwEnv, []string{
							"GATEWAY_ADDR=" + loopback(port),
							"GATEWAY_ADMIN_ADDR=" + loopback(admin),
						}, s.opts.Env),
					},
					AdminAddr: loopback(admin),
				}
				g.Ready = func(ctx context.Context, _ int) error { return s.gatewayReady(ctx, g) }
				if err := g.Start(ctx); err != nil {
					return err
				}
				gws[i] = g
				return nil
			}
			if s.opts.GatewayPort != 0 {
				errs[i] = start() // fixed ports: a port in use is the caller's to fix
			} else {
				errs[i] = proc.RetryPortInUse(startTries, start)
			}
		})
	}
	wg.Wait()
	for _, g := range gws {
		if g != nil {
			s.Gateways = append(s.Gateways, g)
		}
	}
	return errors.Join(errs...)
}

// gatewayReady returns nil once the replica's /readyz answers 200.
func (s *Stack) gatewayReady(ctx context.Context, g *Gateway) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.AdminURL("/readyz"), nil)
	if err != nil {
		return err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s /readyz: %s %s", g.Name, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// childEnv is the environment the children inherit: the caller's, without the
// variables through which the stack itself wires them together (so a CONSUL_HTTP_ADDR
// or JWT_SECRET in the caller's shell cannot point a replica elsewhere).
func childEnv(environ []string) []string {
	out := make([]string, 0, len(environ))
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if k == "JWT_SECRET" || k == "REDIS_ADDR" || k == "REDIS_PASSWORD" ||
			strings.HasPrefix(k, "CONSUL_HTTP_") || strings.HasPrefix(k, "CONSUL_GRPC_") ||
			strings.HasPrefix(k, "GATEWAY_") || strings.HasPrefix(k, "ECHO_") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// moduleRoot walks up from the working directory to the go.mod of modulePath.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && modLine(string(b)) == modulePath {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("stack: no go.mod of %s above the working directory; run from the repository or set Options.Root", modulePath)
		}
		dir = parent
	}
}

// modLine returns the module path declared in a go.mod's text.
func modLine(gomod string) string {
	for _, l := range strings.Split(gomod, "\n") {
		if m, ok := strings.CutPrefix(strings.TrimSpace(l), "module "); ok {
			return strings.Trim(strings.TrimSpace(m), `"`)
		}
	}
	return ""
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}
