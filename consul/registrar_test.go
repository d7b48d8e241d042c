package consul

import (
	"context"
	"errors"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/consul/api"
)

// fakeAgent records registrations and answers deregistrations from a script.
type fakeAgent struct {
	mu            sync.Mutex
	registered    []*api.AgentServiceRegistration
	replaceChecks []bool
	deregistered  []string
	registerErr   error
	deregisterErr error
}

func (f *fakeAgent) ServiceRegisterOpts(s *api.AgentServiceRegistration, o api.ServiceRegisterOpts) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.registerErr != nil {
		return f.registerErr
	}
	f.registered = append(f.registered, s)
	f.replaceChecks = append(f.replaceChecks, o.ReplaceExistingChecks)
	return nil
}

func (f *fakeAgent) ServiceDeregisterOpts(id string, _ *api.QueryOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deregistered = append(f.deregistered, id)
	return f.deregisterErr
}

func (f *fakeAgent) Service(id string, _ *api.QueryOptions) (*api.AgentService, *api.QueryMeta, error) {
	return &api.AgentService{ID: id}, nil, nil
}

func TestRegistrarRegistration(t *testing.T) {
	host, _ := os.Hostname()
	for _, tc := range []struct {
		name string
		reg  Registration
		want *api.AgentServiceRegistration
	}{
		{
			name: "defaults",
			reg:  Registration{Service: "gateway", Address: "10.0.0.7", Port: 8080, CheckURL: "http://10.0.0.7:9901/readyz"},
			want: &api.AgentServiceRegistration{
				ID: "gateway-10.0.0.7-8080", Name: "gateway", Address: "10.0.0.7", Port: 8080,
				Check: &api.AgentServiceCheck{
					CheckID: "service:gateway-10.0.0.7-8080", Name: "gateway health", HTTP: "http://10.0.0.7:9901/readyz",
					Method: "GET", Interval: "10s", Timeout: "5s", DeregisterCriticalServiceAfter: "1m0s",
				},
			},
		},
		{
			name: "explicit",
			reg: Registration{
				ID: "gw-a", Service: "gateway", Port: 8080, Tags: []string{"edge"}, Meta: map[string]string{"v": "1"},
				CheckURL: "https://gw:9901/readyz", Interval: 2 * 1e9, DeregisterCriticalServiceAfter: 5 * 60 * 1e9,
			},
			want: &api.AgentServiceRegistration{
				ID: "gw-a", Name: "gateway", Port: 8080, Tags: []string{"edge"}, Meta: map[string]string{"v": "1"},
				Check: &api.AgentServiceCheck{
					CheckID: "service:gw-a", Name: "gateway health", HTTP: "https://gw:9901/readyz",
					Method: "GET", Interval: "2s", Timeout: "2s", DeregisterCriticalServiceAfter: "5m0s",
				},
			},
		},
		{
			name: "no check, no safety net needed; host name in the ID",
			reg:  Registration{Service: "echo", Port: 9001, DeregisterCriticalServiceAfter: -1},
			want: &api.AgentServiceRegistration{ID: ServiceID("echo", host, 9001), Name: "echo", Port: 9001},
		},
		{
			name: "safety net disabled",
			reg:  Registration{Service: "echo", Address: "::1", Port: 9001, CheckURL: "http://[::1]:9001/health", DeregisterCriticalServiceAfter: -1},
			want: &api.AgentServiceRegistration{
				ID: "echo---1-9001", Name: "echo", Address: "::1", Port: 9001,
				Check: &api.AgentServiceCheck{
					CheckID: "service:echo---1-9001", Name: "echo health", HTTP: "http://[::1]:9001/health",
					Method: "GET", Interval: "10s", Timeout: "5s",
				},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			agent := &fakeAgent{}
			r := NewRegistrar(agent, nil)
			if err := r.Register(context.Background(), tc.reg); err != nil {
				t.Fatal(err)
			}
			if len(agent.registered) != 1 || !reflect.DeepEqual(agent.registered[0], tc.want) {
				t.Fatalf("registered\n%+v\n%+v\nwant\n%+v\n%+v", agent.registered[0], agent.registered[0].Check, tc.want, tc.want.Check)
			}
			if !agent.replaceChecks[0] {
				t.Fatal("ReplaceExistingChecks not set")
			}
			if r.ID() != tc.want.ID {
				t.Fatalf("ID() = %q", r.ID())
			}
		})
	}
}

func TestRegistrarLifecycle(t *testing.T) {
	ctx := context.Background()
	agent := &fakeAgent{}
	r := NewRegistrar(agent, nil)
	if err := r.Deregister(ctx); err != nil || len(agent.deregistered) != 0 {
		t.Fatalf("Deregister with nothing registered: %v, calls %v", err, agent.deregistered)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(r.Register(ctx, Registration{ID: "a", Service: "s", Port: 1}))
	must(r.Register(ctx, Registration{ID: "a", Service: "s", Port: 1})) // same ID: replaced in place
	must(r.Register(ctx, Registration{ID: "b", Service: "s", Port: 2})) // another ID: the old one goes
	if !slices.Equal(agent.deregistered, []string{"a"}) || r.ID() != "b" {
		t.Fatalf("deregistered %v, ID %q", agent.deregistered, r.ID())
	}

	agent.deregisterErr = api.StatusError{Code: http.StatusInternalServerError, Body: "agent trouble"}
	if err := r.Deregister(ctx); err == nil || !strings.Contains(err.Error(), "agent trouble") || r.ID() != "b" {
		t.Fatalf("failed Deregister: %v, ID %q (want the instance still counted as registered)", err, r.ID())
	}
	agent.deregisterErr = api.StatusError{Code: http.StatusNotFound, Body: `Unknown service ID "b"`}
	if err := r.Deregister(ctx); err != nil || r.ID() != "" {
		t.Fatalf("Deregister of an instance the agent forgot: %v, ID %q; want success", err, r.ID())
	}

	agent.registerErr = api.StatusError{Code: http.StatusForbidden, Body: "Permission denied"}
	if err := r.Register(ctx, Registration{Service: "s", Port: 1}); !errors.Is(err, ErrACL) || r.ID() != "" {
		t.Fatalf("Register with a refused token: %v, ID %q", err, r.ID())
	}
}

func TestRegistrationValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		reg  Registration
		want string
	}{
		{"no service", Registration{Port: 1}, "service name is empty"},
		{"no port", Registration{Service: "s"}, "port 0"},
		{"port too big", Registration{Service: "s", Port: 70000}, "port 70000"},
		{"negative interval", Registration{Service: "s", Port: 1, Interval: -1}, "negative"},
		{"bad check URL", Registration{Service: "s", Port: 1, CheckURL: "localhost:9901/readyz"}, "not http"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := NewRegistrar(&fakeAgent{}, nil).Register(context.Background(), tc.reg)
			if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Register = %v, want ErrInvalidOptions with %q", err, tc.want)
			}
		})
	}
}

func TestServiceID(t *testing.T) {
	host, _ := os.Hostname()
	for _, tc := range []struct {
		service, host string
		port          int
		want          string
	}{
		{"gateway", "10.0.0.7", 8080, "gateway-10.0.0.7-8080"},
		{"gateway", "gw-1.example.com", 443, "gateway-gw-1.example.com-443"},
		{"gateway", "fe80::1%eth0", 80, "gateway-fe80--1-eth0-80"},
		{"my gateway", "h/x", 1, "my-gateway-h-x-1"},
		{"gateway", "", 8080, ServiceID("gateway", host, 8080)},
	} {
		if got := ServiceID(tc.service, tc.host, tc.port); got != tc.want {
			t.Errorf("ServiceID(%q, %q, %d) = %q, want %q", tc.service, tc.host, tc.port, got, tc.want)
		}
	}
}
