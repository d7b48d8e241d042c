// Command echo is a small HTTP service for demos and tests of the gateway's
// Consul discovery. It registers itself with the local Consul agent, with an HTTP
// health check on its own /health, and deregisters on SIGTERM or SIGINT.
//
//	GET  /health      200 while healthy, 503 after POST /admin/fail
//	POST /admin/fail  make the health check fail (the instance leaves Consul's passing list)
//	POST /admin/pass  make it pass again
//	anything else     JSON: service, instance id, method, path, query, host, headers
//
// Flags (each defaults to its environment variable):
//
//	-listen     ECHO_LISTEN          address to listen on (127.0.0.1:9001)
//	-advertise  ECHO_ADVERTISE       address registered in Consul (the listen host; for
//	                                 0.0.0.0 the first non-loopback IPv4 address)
//	-service    ECHO_SERVICE         service name (echo)
//	-id         ECHO_ID              instance id (SERVICE-HOST-PORT)
//	-tags       ECHO_TAGS            comma-separated tags
//	-consul     CONSUL_HTTP_ADDR     Consul agent (127.0.0.1:8500); CONSUL_HTTP_TOKEN etc. honoured
//	-interval   ECHO_CHECK_INTERVAL  health check interval (2s)
//	-fail       ECHO_FAIL            start with a failing health check
//	-register   ECHO_REGISTER        register with Consul (true)
//	-connect    ECHO_CONNECT         Connect-native: serve mutual TLS with a Consul Connect
//	                                 leaf for -service, allow only what intentions allow
//	-health-listen ECHO_HEALTH_LISTEN plain listener of /health and /admin/* for Consul's
//	                                 check (with -connect, default: the listen host, any port)
//	-sidecar-port  ECHO_SIDECAR_PORT register a sidecar_service for `consul connect proxy
//	                                 -sidecar-for ID` listening on ADVERTISE:PORT; with a
//	                                 loopback -listen and no -advertise, ADVERTISE is the
//	                                 first non-loopback IPv4 address (the app is reachable
//	                                 only through its sidecar)
//
// With -connect the service port speaks only mutual TLS: the client must present a
// Connect certificate that chains to the cluster's roots, and the agent is asked on
// each new connection whether intentions allow that client; the reply then also
// carries the client's SPIFFE ID and certificate serial ("peer", "peer_serial").
package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"

	"github.com/infinityxone/gateway/consul"
)

func main() {
	logger := hclog.New(&hclog.LoggerOptions{Name: "echo", Output: os.Stderr})
	opts, err := parseOptions(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, opts, logger, nil); err != nil {
		logger.Error("exiting", "error", err)
		os.Exit(1)
	}
}

// options is the command line, after the environment's defaults.
type options struct {
	listen    string
	advertise string
	service   string
	id        string
	tags      []string
	consul    string
	interval  time.Duration
	fail      bool
	register  bool
	connect   bool
	health    string // -health-listen
	sidecar   int    // -sidecar-port
}

// parseOptions reads flags from args; getenv supplies each flag's default. Usage
// and flag errors are printed to out.
func parseOptions(args []string, getenv func(string) string, out io.Writer) (options, error) {
	env := func(k, def string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return def
	}
	var o options
	interval, err := time.ParseDuration(env("ECHO_CHECK_INTERVAL", "2s"))
	if err != nil {
		return o, fmt.Errorf("ECHO_CHECK_INTERVAL: %w", err)
	}
	fail, err := strconv.ParseBool(env("ECHO_FAIL", "false"))
	if err != nil {
		return o, fmt.Errorf("ECHO_FAIL: %w", err)
	}
	register, err := strconv.ParseBool(env("ECHO_REGISTER", "true"))
	if err != nil {
		return o, fmt.Errorf("ECHO_REGISTER: %w", err)
	}
	connect, err := strconv.ParseBool(env("ECHO_CONNECT", "false"))
	if err != nil {
		return o, fmt.Errorf("ECHO_CONNECT: %w", err)
	}
	sidecar, err := strconv.Atoi(env("ECHO_SIDECAR_PORT", "0"))
	if err != nil {
		return o, fmt.Errorf("ECHO_SIDECAR_PORT: %w", err)
	}
	var tags string
	fs := flag.NewFlagSet("echo", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&o.listen, "listen", env("ECHO_LISTEN", "127.0.0.1:9001"), "address to listen on (ECHO_LISTEN)")
	fs.StringVar(&o.advertise, "advertise", env("ECHO_ADVERTISE", ""), "address registered in Consul (ECHO_ADVERTISE; default: the listen host)")
	fs.StringVar(&o.service, "service", env("ECHO_SERVICE", "echo"), "service name (ECHO_SERVICE)")
	fs.StringVar(&o.id, "id", env("ECHO_ID", ""), "instance id (ECHO_ID; default SERVICE-HOST-PORT)")
	fs.StringVar(&tags, "tags", env("ECHO_TAGS", ""), "comma-separated tags (ECHO_TAGS)")
	fs.StringVar(&o.consul, "consul", env("CONSUL_HTTP_ADDR", ""), "Consul agent address (CONSUL_HTTP_ADDR; default 127.0.0.1:8500)")
	fs.DurationVar(&o.interval, "interval", interval, "health check interval (ECHO_CHECK_INTERVAL)")
	fs.BoolVar(&o.fail, "fail", fail, "start with a failing health check (ECHO_FAIL)")
	fs.BoolVar(&o.register, "register", register, "register with Consul (ECHO_REGISTER)")
	fs.BoolVar(&o.connect, "connect", connect, "Connect-native: mutual TLS with a Consul Connect leaf, intentions enforced (ECHO_CONNECT)")
	fs.IntVar(&o.sidecar, "sidecar-port", sidecar, "register a sidecar_service on this port for `consul connect proxy -sidecar-for ID` (ECHO_SIDECAR_PORT)")
	fs.StringVar(&o.health, "health-listen", env("ECHO_HEALTH_LISTEN", ""), "with -connect: plain listener for /health and /admin/* (ECHO_HEALTH_LISTEN; default: the listen host, any port)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	for _, t := range strings.Split(tags, ",") {
		if t = strings.TrimSpace(t); t != "" {
			o.tags = append(o.tags, t)
		}
	}
	if o.service == "" {
		return o, errors.New("-service is empty")
	}
	if o.sidecar != 0 && o.connect {
		return o, errors.New("-sidecar-port and -connect exclude each other: a Connect-native service needs no sidecar")
	}
	return o, nil
}

// run serves until ctx ends, registered with Consul (unless o.register is
// false), then deregisters and shuts down. started, if not nil, is called with
// the listener's address once the service is registered.
func run(ctx context.Context, o options, logger hclog.Logger, started func(addr string)) error {
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	listenHost, _, _ := net.SplitHostPort(o.listen)
	host := o.advertise
	switch {
	case host == "" && o.sidecar != 0 && isLoopback(listenHost):
		host = advertiseHost("") // others reach the sidecar, not the loopback app
	case host == "":
		host = advertiseHost(listenHost)
	}
	id := o.id
	if id == "" {
		id = consul.ServiceID(o.service, host, port)
	}
	base := logger // the registrar's own lines carry the service and the id
	logger = logger.With("service", o.service, "id", id)
	e := &echo{service: o.service, id: id}
	e.healthy.Store(!o.fail)

	var client *api.Client
	if o.register || o.connect {
		if client, err = consul.NewClient(consul.Config{Address: o.consul, Logger: logger}); err != nil {
			ln.Close()
			return err
		}
	}
	checkAddr := net.JoinHostPort(host, strconv.Itoa(port)) // where Consul's check reaches /health
	var health *http.Server
	if o.connect || o.health != "" {
		if o.connect {
			tlsConf, stopCerts, err := meshTLS(ctx, o.service, client, logger)
			if err != nil || tlsConf == nil { // nil: told to stop while waiting for the leaf
				ln.Close()
				return err
			}
			defer stopCerts()
			ln = tls.NewListener(ln, tlsConf)
		}
		hl, err := net.Listen("tcp", cmp.Or(o.health, net.JoinHostPort(listenHost, "0")))
		if err != nil {
			ln.Close()
			return err
		}
		checkAddr = net.JoinHostPort(host, strconv.Itoa(hl.Addr().(*net.TCPAddr).Port))
		health = &http.Server{Handler: e.healthRoutes(), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = health.Serve(hl) }()
		defer health.Close()
		logger.Info("health listener", "address", hl.Addr().String())
	}
	srv := &http.Server{Handler: e.routes(), ReadHeaderTimeout: 5 * time.Second}
	if o.connect {
		srv.ErrorLog = logger.Named("tls").StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug})
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	logger.Info("listening", "address", ln.Addr().String(), "healthy", !o.fail, "connect", o.connect)

	var (
		reg      *consul.Registrar
		stopKeep = func() {}
	)
	if o.register {
		reg = consul.NewRegistrar(client.Agent(), base)
		registration := consul.Registration{
			ID: id, Service: o.service, Address: host, Port: port, Tags: o.tags,
			CheckURL: "http://" + checkAddr + "/health", Interval: o.interval, ConnectNative: o.connect,
			SidecarPort: o.sidecar,
		}
		err = registerUntilDone(ctx, reg, registration, logger)
		if err != nil {
			_ = srv.Close()
			if ctx.Err() != nil {
				return nil // told to stop before the agent took the registration
			}
			return err
		}
		// Registered: stay registered if the agent restarts and forgets us.
		kctx, cancelKeep := context.WithCancel(ctx)
		keepDone := make(chan struct{})
		go func() {
			defer close(keepDone)
			_ = reg.Keep(kctx, registration, 10*time.Second)
		}()
		stopKeep = func() { cancelKeep(); <-keepDone }
		defer stopKeep()
	}
	if started != nil {
		started(ln.Addr().String())
	}

	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	stopKeep() // no re-registration may land after the deregistration
	if reg != nil {
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := reg.Deregister(dctx); err != nil {
			logger.Warn("deregistration failed; Consul removes the instance once its check has been critical for a minute", "error", err)
		}
		cancel()
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// meshTLS follows the Connect leaf of service and the CA roots (the same code the
// gateway uses, package consul) and returns the server TLS config of a
// Connect-native service once both have arrived, with the function that stops
// following them. It returns a nil config if ctx ends first.
func meshTLS(ctx context.Context, service string, client *api.Client, logger hclog.Logger) (*tls.Config, func(), error) {
	certs, err := consul.NewCerts(client.Agent(), consul.ConnectOptions{Service: service, Logger: logger})
	if err != nil {
		return nil, nil, err
	}
	go func() { _ = certs.Run(context.WithoutCancel(ctx)) }()
	select {
	case <-certs.Ready():
	case <-ctx.Done():
		certs.Stop()
		return nil, nil, nil
	}
	leaf := certs.Leaf()
	logger.Info("connect-native", "uri", leaf.URI.String(), "serial", leaf.Serial)
	return certs.ServerTLS(client.Agent()), certs.Stop, nil
}

// registerUntilDone registers with the agent, retrying while the agent is not
// reachable yet (it may start after us, as in docker compose), until ctx ends.
func registerUntilDone(ctx context.Context, reg *consul.Registrar, r consul.Registration, logger hclog.Logger) error {
	wait := 250 * time.Millisecond
	for {
		err := reg.Register(ctx, r)
		if err == nil || errors.Is(err, consul.ErrInvalidOptions) {
			return err
		}
		logger.Warn("registration failed; retrying", "error", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// advertiseHost is the address to register for a listener on listenHost: that
// host itself, or for every interface ("" or unspecified) the first non-loopback
// IPv4 address, else 127.0.0.1.
func advertiseHost(listenHost string) string {
	if ip := net.ParseIP(listenHost); listenHost != "" && (ip == nil || !ip.IsUnspecified()) {
		return listenHost
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP.String()
		}
	}
	return "127.0.0.1"
}

// isLoopback reports whether host is a loopback address or "localhost".
func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}

// echo is the HTTP side of the service.
type echo struct {
	service string
	id      string
	healthy atomic.Bool
}

func (e *echo) routes() http.Handler {
	mux := e.healthMux()
	mux.HandleFunc("/", e.echo)
	return mux
}

// healthRoutes serves /health and /admin/* only: the plain listener of a
// Connect-native instance, for Consul's check.
func (e *echo) healthRoutes() http.Handler {
	mux := e.healthMux()
	mux.HandleFunc("/", http.NotFound)
	return mux
}

func (e *echo) healthMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", e.health)
	mux.HandleFunc("POST /admin/fail", func(w http.ResponseWriter, r *http.Request) { e.setHealthy(w, false) })
	mux.HandleFunc("POST /admin/pass", func(w http.ResponseWriter, r *http.Request) { e.setHealthy(w, true) })
	return mux
}

func (e *echo) health(w http.ResponseWriter, _ *http.Request) {
	if e.healthy.Load() {
		writeJSON(w, http.StatusOK, map[string]any{"status": "passing", "instance": e.id})
		return
	}
	writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "critical", "instance": e.id})
}

func (e *echo) setHealthy(w http.ResponseWriter, healthy bool) {
	e.healthy.Store(healthy)
	writeJSON(w, http.StatusOK, map[string]any{"healthy": healthy, "instance": e.id})
}

// echoReply is what every other request gets back.
type echoReply struct {
	Service    string      `json:"service"`
	Instance   string      `json:"instance"`
	Method     string      `json:"method"`
	Path       string      `json:"path"`
	Query      string      `json:"query,omitempty"`
	Host       string      `json:"host"`
	RemoteAddr string      `json:"remote_addr"`
	Headers    http.Header `json:"headers"`
	// Peer and PeerSerial are the mesh client's SPIFFE ID and certificate serial
	// (with -connect).
	Peer       string `json:"peer,omitempty"`
	PeerSerial string `json:"peer_serial,omitempty"`
}

func (e *echo) echo(w http.ResponseWriter, r *http.Request) {
	reply := echoReply{
		Service: e.service, Instance: e.id, Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
		Host: r.Host, RemoteAddr: r.RemoteAddr, Headers: r.Header,
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		pc := r.TLS.PeerCertificates[0]
		if len(pc.URIs) > 0 {
			reply.Peer = pc.URIs[0].String()
		}
		reply.PeerSerial = pc.SerialNumber.Text(16)
	}
	writeJSON(w, http.StatusOK, reply)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
