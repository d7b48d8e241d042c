package consul

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/infinityxone/gateway/internal/testenv"
)

// TestRegistrarHungAgent: a real agent behind a fault proxy that accepts
// connections and never answers. Register and Deregister return with a
// deadline error of their own call timeout (the caller's context has none);
// Keep keeps retrying and registers once the agent answers again, and stops
// promptly when cancelled even while a call hangs.
func TestRegistrarHungAgent(t *testing.T) {
	agent := testenv.StartConsul(t)
	proxy := testenv.NewFaultProxy(t, agent.Addr)
	c, err := api.NewClient(&api.Config{Address: proxy.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	direct, err := api.NewClient(&api.Config{Address: agent.Addr})
	if err != nil {
		t.Fatal(err)
	}
	listed := func() bool {
		svcs, err := direct.Agent().Services()
		_, ok := svcs["edge-1"]
		return err == nil && ok
	}
	const callTimeout = 300 * time.Millisecond
	reg := NewRegistrar(c.Agent(), testLogger(t), WithCallTimeout(callTimeout))
	r := Registration{ID: "edge-1", Service: "edge", Address: "127.0.0.1", Port: 8080}

	proxy.Stall()
	returns := func(what string, f func() error) error {
		t.Helper()
		errc := make(chan error, 1)
		go func() { errc <- f() }()
		select {
		case err := <-errc:
			return err
		case <-time.After(waitLong): // generous: the call timeout is 300ms
			t.Fatalf("%s against a hung agent did not return", what)
			return nil
		}
	}
	err = returns("Register", func() error { return reg.Register(context.Background(), r) })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Register against a hung agent: %v, want a deadline error", err)
	}
	if reg.ID() != "" {
		t.Fatalf("ID %q after a failed registration", reg.ID())
	}

	// Keep retries through the hang and registers once the agent answers.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- reg.Keep(ctx, r, 100*time.Millisecond) }()
	eventually(t, waitLong, "Keep trying through the proxy", func() bool { return proxy.Accepted() >= 2 })
	proxy.Resume()
	eventually(t, waitLong, "registered once the agent answers", listed)

	// The presence check hangs now; cancelling Keep still returns at once.
	proxy.Stall()
	cancel()
	if err := returns("Keep", func() error { return <-done }); err != nil {
		t.Fatal(err)
	}
	err = returns("Deregister", func() error { return reg.Deregister(context.Background()) })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Deregister against a hung agent: %v, want a deadline error", err)
	}
	proxy.Resume()
	if err := reg.Deregister(context.Background()); err != nil || listed() {
		t.Fatalf("Deregister after the hang: %v, still listed %v", err, listed())
	}
}
