package consul

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
)

// Defaults of Registration.
const (
	DefaultCheckInterval                  = 10 * time.Second
	DefaultCheckTimeout                   = 5 * time.Second
	DefaultDeregisterCriticalServiceAfter = time.Minute
	// DefaultCallTimeout bounds each call a Registrar makes to the agent.
	DefaultCallTimeout = 10 * time.Second
)

// AgentAPI is the part of the agent API a Registrar uses. *api.Agent
// (client.Agent()) implements it.
type AgentAPI interface {
	ServiceRegisterOpts(service *api.AgentServiceRegistration, opts api.ServiceRegisterOpts) error
	ServiceDeregisterOpts(serviceID string, q *api.QueryOptions) error
	Service(serviceID string, q *api.QueryOptions) (*api.AgentService, *api.QueryMeta, error)
}

// Registration describes one service instance to register with the local agent.
type Registration struct {
	// ID is the service ID. "" means ServiceID(Service, Address or the host
	// name, Port): unique per service, host and port.
	ID string
	// Service is the service name. Required.
	Service string
	// Address is what others dial. "" means the agent's node address.
	Address string
	// Port is the service port, 1–65535.
	Port int
	// Tags and Meta are registered as given.
	Tags []string
	Meta map[string]string
	// ConnectNative registers a Connect-native service: it speaks mutual TLS
	// with Connect certificates itself and is listed by /v1/health/connect.
	ConnectNative bool
	// SidecarPort, when not 0, registers a sidecar_service for Consul's built-in
	// Connect proxy (`consul connect proxy -sidecar-for ID`): its public listener on
	// Address:SidecarPort, forwarding to 127.0.0.1:Port. Its checks are a TCP check
	// of that listener every Interval and an alias of the instance's own health, so
	// it is in /v1/health/connect as soon as it listens, and leaves with the app.
	SidecarPort int
	// CheckURL is the URL of the HTTP health check the agent runs (GET, 2xx is
	// passing, 429 warning, anything else critical). "" registers no check, and
	// the instance is then always passing.
	CheckURL string
	// Interval between checks. Default DefaultCheckInterval (10s); Consul runs
	// checks at most once a second.
	Interval time.Duration
	// Timeout of one check. Default the smaller of DefaultCheckTimeout (5s) and
	// Interval.
	Timeout time.Duration
	// DeregisterCriticalServiceAfter removes the instance after its check has
	// been critical this long: the safety net when the process dies without
	// deregistering. Default DefaultDeregisterCriticalServiceAfter (1m, also
	// Consul's minimum); negative disables it.
	DeregisterCriticalServiceAfter time.Duration
}

// Validate reports a registration that cannot work; errors wrap ErrInvalidOptions.
func (r Registration) Validate() error {
	var errs []error
	if r.Service == "" {
		errs = append(errs, errors.New("service name is empty"))
	}
	if r.Port < 1 || r.Port > 65535 {
		errs = append(errs, fmt.Errorf("port %d is not 1-65535", r.Port))
	}
	if r.Interval < 0 || r.Timeout < 0 {
		errs = append(errs, errors.New("check interval and timeout must not be negative"))
	}
	if r.SidecarPort < 0 || r.SidecarPort > 65535 || r.SidecarPort != 0 && (r.Address == "" || r.ConnectNative) {
		errs = append(errs, fmt.Errorf("sidecar port %d needs 1-65535, an address, and no ConnectNative", r.SidecarPort))
	}
	if r.CheckURL != "" && !strings.HasPrefix(r.CheckURL, "http://") && !strings.HasPrefix(r.CheckURL, "https://") {
		errs = append(errs, fmt.Errorf("check URL %q is not http:// or https://", r.CheckURL))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: register %q: %w", ErrInvalidOptions, r.Service, errors.Join(errs...))
	}
	return nil
}

// ServiceID returns "service-host-port" with every character outside
// [A-Za-z0-9._-] replaced by '-'. An empty host means this machine's host name.
func ServiceID(service, host string, port int) string {
	if host == "" {
		host, _ = os.Hostname()
		if host == "" {
			host = "localhost"
		}
	}
	id := service + "-" + host + "-" + strconv.Itoa(port)
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			return r
		}
		return '-'
	}, id)
}

// Registrar registers one service instance through the local agent and
// deregisters it. It is safe for concurrent use. Every call to the agent
// (register, deregister, the presence check of Keep) is bounded by the call
// timeout (DefaultCallTimeout unless WithCallTimeout), so an agent that accepts
// a connection and never answers cannot wedge it: the call fails with an
// error wrapping context.DeadlineExceeded, and Keep retries it.
type Registrar struct {
	agent       AgentAPI
	log         hclog.Logger
	callTimeout time.Duration

	mu sync.Mutex
	id string // registered service ID; "" when none
}

// RegistrarOption changes a Registrar's defaults; see NewRegistrar.
type RegistrarOption func(*Registrar)

// WithCallTimeout bounds each call to the agent by d instead of
// DefaultCallTimeout; d <= 0 keeps the default.
func WithCallTimeout(d time.Duration) RegistrarOption {
	return func(r *Registrar) {
		if d > 0 {
			r.callTimeout = d
		}
	}
}

// NewRegistrar returns a Registrar that talks to agent (client.Agent()). A nil
// logger means no logging.
func NewRegistrar(agent AgentAPI, logger hclog.Logger, opts ...RegistrarOption) *Registrar {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	r := &Registrar{agent: agent, log: logger.Named("consul"), callTimeout: DefaultCallTimeout}
	for _, o := range opts {
		o(r)
	}
	return r
}

// callCtx is ctx bounded by the call timeout, for one call to the agent.
func (r *Registrar) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.callTimeout)
}

// ID returns the ID of the registered instance, "" when none is.
func (r *Registrar) ID() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.id
}

// Register registers reg with the agent, replacing the checks of an earlier
// registration with the same ID. When this Registrar had registered another ID,
// that one is deregistered afterwards. The check starts critical until it first
// passes, so an instance receives traffic only once it is ready.
func (r *Registrar) Register(ctx context.Context, reg Registration) error {
	if err := reg.Validate(); err != nil {
		return err
	}
	id := reg.ID
	if id == "" {
		id = ServiceID(reg.Service, reg.Address, reg.Port)
	}
	svc := &api.AgentServiceRegistration{
		ID:      id,
		Name:    reg.Service,
		Address: reg.Address,
		Port:    reg.Port,
		Tags:    reg.Tags,
		Meta:    reg.Meta,
	}
	if reg.ConnectNative {
		svc.Connect = &api.AgentServiceConnect{Native: true}
	}
	if reg.SidecarPort != 0 {
		interval := cmp.Or(reg.Interval, DefaultCheckInterval)
		svc.Connect = &api.AgentServiceConnect{SidecarService: &api.AgentServiceRegistration{
			Port: reg.SidecarPort,
			Checks: api.AgentServiceChecks{
				{Name: "Connect sidecar listening", TCP: net.JoinHostPort(reg.Address, strconv.Itoa(reg.SidecarPort)), Interval: interval.String(), Timeout: min(DefaultCheckTimeout, interval).String()},
				{Name: "Connect sidecar aliasing " + id, AliasService: id},
			},
		}}
	}
	if reg.CheckURL != "" {
		interval := cmp.Or(reg.Interval, DefaultCheckInterval)
		timeout := cmp.Or(reg.Timeout, min(DefaultCheckTimeout, interval))
		check := &api.AgentServiceCheck{
			CheckID:  "service:" + id,
			Name:     reg.Service + " health",
			HTTP:     reg.CheckURL,
			Method:   "GET",
			Interval: interval.String(),
			Timeout:  timeout.String(),
		}
		if d := cmp.Or(reg.DeregisterCriticalServiceAfter, DefaultDeregisterCriticalServiceAfter); d > 0 {
			check.DeregisterCriticalServiceAfter = d.String()
		}
		svc.Check = check
	}
	cctx, cancel := r.callCtx(ctx)
	err := r.agent.ServiceRegisterOpts(svc, api.ServiceRegisterOpts{ReplaceExistingChecks: true}.WithContext(cctx))
	cancel()
	if err != nil {
		return classify(fmt.Sprintf("register service %q as %q", reg.Service, id), err)
	}
	r.mu.Lock()
	old := r.id
	r.id = id
	r.mu.Unlock()
	r.log.Info("registered with consul", "service", reg.Service, "id", id, "check", reg.CheckURL)
	if old != "" && old != id {
		if err := r.deregister(ctx, old); err != nil {
			r.log.Warn("could not deregister the previous registration", "id", old, "error", err)
		}
	}
	return nil
}

// Keep registers reg and keeps it registered until ctx ends: it retries with capped
// backoff while the agent is unreachable (it may start after us, as in docker compose),
// then checks every `every` that the agent still knows the instance and registers it
// again when it does not (an agent restarted with fresh state, a dev agent above all).
// Called after a successful Register, it only watches. Cancel ctx before Deregister.
func (r *Registrar) Keep(ctx context.Context, reg Registration, every time.Duration) error {
	const minWait, maxWait = 250 * time.Millisecond, 10 * time.Second
	wait := minWait
	registered := r.ID() != "" // already registered by Register: only watch over it
	for {
		next := every
		if !registered || !r.present(ctx) {
			if ctx.Err() != nil {
				return nil
			}
			err := r.Register(ctx, reg)
			switch {
			case errors.Is(err, ErrInvalidOptions):
				return err
			case err != nil:
				if ctx.Err() != nil {
					return nil
				}
				r.log.Warn("consul registration failed; retrying", "service", reg.Service, "error", err, "retry_in", wait)
				next = wait
				wait = min(2*wait, maxWait)
			default:
				if registered {
					r.log.Warn("consul had lost this instance; registered it again", "id", r.ID())
				}
				registered, wait = true, minWait
			}
		}
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// present reports whether the agent still has the registered instance. An agent that
// cannot be asked counts as present: nothing can be done about it until it answers.
func (r *Registrar) present(ctx context.Context) bool {
	id := r.ID()
	if id == "" {
		return false
	}
	cctx, cancel := r.callCtx(ctx)
	defer cancel()
	_, _, err := r.agent.Service(id, (&api.QueryOptions{}).WithContext(cctx))
	var se api.StatusError
	if errors.As(err, &se) && se.Code == http.StatusNotFound {
		return false
	}
	return true
}

// Deregister removes the registered instance from the agent. It does nothing
// when nothing is registered, so it may be called more than once; after an
// error the instance counts as still registered and Deregister may be retried.
func (r *Registrar) Deregister(ctx context.Context) error {
	r.mu.Lock()
	id := r.id
	r.mu.Unlock()
	if id == "" {
		return nil
	}
	if err := r.deregister(ctx, id); err != nil {
		return err
	}
	r.mu.Lock()
	if r.id == id {
		r.id = ""
	}
	r.mu.Unlock()
	r.log.Info("deregistered from consul", "id", id)
	return nil
}

func (r *Registrar) deregister(ctx context.Context, id string) error {
	cctx, cancel := r.callCtx(ctx)
	defer cancel()
	err := r.agent.ServiceDeregisterOpts(id, (&api.QueryOptions{}).WithContext(cctx))
	var se api.StatusError
	if errors.As(err, &se) && se.Code == http.StatusNotFound {
		return nil // already gone (a restarted agent, or removed by hand): the goal is met
	}
	if err != nil {
		return classify(fmt.Sprintf("deregister service %q", id), err)
	}
	return nil
}
