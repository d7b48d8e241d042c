package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"

	"github.com/infinityxone/gateway/consul"
	"github.com/infinityxone/gateway/internal/testenv"
)

func TestParseOptions(t *testing.T) {
	defaults := options{listen: "127.0.0.1:9001", service: "echo", interval: 2 * time.Second, register: true}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want options
		err  string
	}{
		{name: "defaults", want: defaults},
		{
			name: "environment",
			env: map[string]string{"ECHO_LISTEN": ":9100", "ECHO_ADVERTISE": "10.0.0.5", "ECHO_SERVICE": "users",
				"ECHO_ID": "users-1", "ECHO_TAGS": "v1, blue,", "CONSUL_HTTP_ADDR": "consul:8500",
				"ECHO_CHECK_INTERVAL": "1s", "ECHO_FAIL": "true", "ECHO_REGISTER": "false"},
			want: options{listen: ":9100", advertise: "10.0.0.5", service: "users", id: "users-1", tags: []string{"v1", "blue"},
				consul: "consul:8500", interval: time.Second, fail: true, register: false},
		},
		{
			name: "flags override the environment",
			args: []string{"-listen", ":9200", "-service", "orders", "-tags", "v2", "-fail=false", "-interval", "3s"},
			env:  map[string]string{"ECHO_LISTEN": ":9100", "ECHO_SERVICE": "users", "ECHO_FAIL": "1"},
			want: options{listen: ":9200", service: "orders", tags: []string{"v2"}, interval: 3 * time.Second, register: true},
		},
		{name: "bad interval", env: map[string]string{"ECHO_CHECK_INTERVAL": "soon"}, err: "ECHO_CHECK_INTERVAL"},
		{name: "bad bool", env: map[string]string{"ECHO_FAIL": "maybe"}, err: "ECHO_FAIL"},
		{name: "unknown flag", args: []string{"-nope"}, err: "not defined"},
		{name: "stray argument", args: []string{"extra"}, err: "unexpected arguments"},
		{name: "empty service", args: []string{"-service", ""}, err: "-service is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			getenv := func(k string) string { return tc.env[k] }
			got, err := parseOptions(tc.args, getenv, io.Discard)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("options = %+v, want %+v", got, tc.want)
			}
		})
	}
	if _, err := parseOptions([]string{"-h"}, func(string) string { return "" }, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
}

func TestHandler(t *testing.T) {
	e := &echo{service: "echo", id: "echo-1"}
	e.healthy.Store(true)
	srv := httptest.NewServer(e.routes())
	defer srv.Close()
	do := func(method, path string, hdr map[string]string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Fatalf("%s %s: Content-Type %q", method, path, ct)
		}
		var body map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, body
	}

	status, body := do("GET", "/api/users/7?full=1", map[string]string{"X-Request-Id": "abc"})
	headers, _ := body["headers"].(map[string]any)
	if status != 200 || body["instance"] != "echo-1" || body["service"] != "echo" || body["path"] != "/api/users/7" ||
		body["query"] != "full=1" || body["method"] != "GET" || headers == nil || !reflect.DeepEqual(headers["X-Request-Id"], []any{"abc"}) {
		t.Fatalf("echo: %d %v", status, body)
	}
	if status, body := do("GET", "/health", nil); status != 200 || body["status"] != "passing" {
		t.Fatalf("health: %d %v", status, body)
	}
	if status, body := do("POST", "/admin/fail", nil); status != 200 || body["healthy"] != false {
		t.Fatalf("fail: %d %v", status, body)
	}
	if status, body := do("GET", "/health", nil); status != 503 || body["status"] != "critical" {
		t.Fatalf("health after fail: %d %v", status, body)
	}
	if status, _ := do("GET", "/admin/fail", nil); status != 200 { // GET is echoed, changes nothing
		t.Fatalf("GET /admin/fail: %d", status)
	}
	if status, _ := do("GET", "/health", nil); status != 503 {
		t.Fatal("a GET changed the health")
	}
	if status, body := do("POST", "/admin/pass", nil); status != 200 || body["healthy"] != true {
		t.Fatalf("pass: %d %v", status, body)
	}
	if status, _ := do("GET", "/health", nil); status != 200 {
		t.Fatalf("health after pass: %d", status)
	}
}

func TestAdvertiseHost(t *testing.T) {
	for _, h := range []string{"127.0.0.1", "10.1.2.3", "echo.internal", "::1"} {
		if got := advertiseHost(h); got != h {
			t.Errorf("advertiseHost(%q) = %q", h, got)
		}
	}
	for _, h := range []string{"", "0.0.0.0", "::"} {
		if got := advertiseHost(h); got == "" || got == h {
			t.Errorf("advertiseHost(%q) = %q, want a concrete address", h, got)
		}
	}
}

// TestWithConsul runs the service against a real agent: it registers with a
// passing HTTP check, /admin/fail and /admin/pass move it out of and back into
// Consul's passing list, and stopping it deregisters it.
func TestWithConsul(t *testing.T) {
	agent := testenv.StartConsul(t)
	client, err := consul.NewClient(consul.Config{Address: agent.Addr})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrc := make(chan string, 1)
	done := make(chan error, 1)
	opts := options{listen: "127.0.0.1:0", service: "echo", tags: []string{"demo"}, consul: agent.Addr, interval: time.Second, register: true}
	go func() { done <- run(ctx, opts, hclog.NewNullLogger(), func(a string) { addrc <- a }) }()
	var addr string
	select {
	case addr = <-addrc:
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("not registered within 15s")
	}
	wantID := consul.ServiceID("echo", "127.0.0.1", mustPort(t, addr))

	passing := func() []*api.ServiceEntry {
		entries, _, err := client.Health().Service("echo", "", true, nil)
		if err != nil {
			t.Fatal(err)
		}
		return entries
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("a passing registration", func() bool { return len(passing()) == 1 })
	e := passing()[0]
	if e.Service.ID != wantID || e.Service.Address != "127.0.0.1" || e.Service.Port != mustPort(t, addr) ||
		!reflect.DeepEqual(e.Service.Tags, []string{"demo"}) {
		t.Fatalf("registered %+v", e.Service)
	}

	post := func(path string) {
		t.Helper()
		resp, err := http.Post("http://"+addr+path, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	post("/admin/fail")
	waitFor("the instance leaving the passing list", func() bool { return len(passing()) == 0 })
	post("/admin/pass")
	waitFor("the instance back in the passing list", func() bool { return len(passing()) == 1 })

	cancel() // as SIGTERM does
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	entries, _, err := client.Health().Service("echo", "", false, nil)
	if err != nil || len(entries) != 0 {
		t.Fatalf("after shutdown the health API lists %d entries (%v), want none", len(entries), err)
	}
	if _, err := http.Get("http://" + addr + "/health"); err == nil {
		t.Fatal("still serving after shutdown")
	}
}

// TestRunStopsWhileAgentIsAway: with no agent to register with, run keeps
// retrying and returns cleanly when told to stop.
func TestRunStopsWhileAgentIsAway(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer cancel()
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close() // a port nobody listens on
	opts := options{listen: "127.0.0.1:0", service: "echo", consul: strings.TrimPrefix(dead.URL, "http://"), interval: time.Second, register: true}
	if err := run(ctx, opts, hclog.NewNullLogger(), func(string) { t.Error("started without a registration") }); err != nil {
		t.Fatalf("run = %v", err)
	}
}

func mustPort(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestConnectNative runs the service Connect-native against a real agent: it is listed
// by /v1/health/connect, serves only mutual TLS to clients that intentions allow, and
// tells the client's SPIFFE ID back.
func TestConnectNative(t *testing.T) {
	agent := testenv.StartConsul(t)
	client, err := consul.NewClient(consul.Config{Address: agent.Addr})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrc := make(chan string, 1)
	done := make(chan error, 1)
	opts := options{listen: "127.0.0.1:0", service: "native", consul: agent.Addr, interval: time.Second, register: true, connect: true}
	go func() { done <- run(ctx, opts, hclog.NewNullLogger(), func(a string) { addrc <- a }) }()
	var addr string
	select {
	case addr = <-addrc:
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("not registered within 30s")
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		entries, _, err := client.Health().Connect("native", "", true, nil)
		if err == nil && len(entries) == 1 && entries[0].Service.Port == mustPort(t, addr) && entries[0].Service.Connect.Native {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not passing in /v1/health/connect/native: %v %v", entries, err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	gw, err := consul.NewCerts(client.Agent(), consul.ConnectOptions{Service: "gateway"})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gw.Run(ctx) }()
	defer gw.Stop()
	<-gw.Ready()
	get := func() (map[string]any, error) {
		c := &http.Client{Transport: &http.Transport{DialContext: gw.Dialer("native", "", nil).DialContext}, Timeout: 10 * time.Second}
		resp, err := c.Get("http://" + addr + "/hello")
		if err != nil {
			return nil, consul.ClassifyMeshError(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		return body, json.NewDecoder(resp.Body).Decode(&body)
	}
	body, err := get()
	if err != nil || body["path"] != "/hello" || !strings.HasSuffix(body["peer"].(string), "/svc/gateway") || body["peer_serial"] == "" {
		t.Fatalf("mesh request: %v %v", body, err)
	}
	// Go's TLS server answers a plain request 400 ("client sent an HTTP request to an HTTPS server").
	if resp, err := http.Get("http://" + addr + "/hello"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("plain HTTP on the mesh port: %d", resp.StatusCode)
		}
	}
	// Each get is a new connection; the agent may learn of an intention a moment after
	// it was written.
	agent.Intention(t, "gateway", "native", "deny")
	deadline = time.Now().Add(15 * time.Second)
	for {
		_, err := get()
		if errors.Is(err, consul.ErrMeshDenied) {
			break
		}
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("denied: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	agent.Intention(t, "gateway", "native", "allow")
	deadline = time.Now().Add(15 * time.Second)
	for {
		_, err := get()
		if err == nil {
			break
		}
		if !errors.Is(err, consul.ErrMeshDenied) || time.Now().After(deadline) {
			t.Fatalf("allowed again: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}

// TestBehindSidecar runs the service on loopback with -sidecar-port: it registers a
// sidecar_service, and Consul's built-in proxy started for it carries mesh traffic.
func TestBehindSidecar(t *testing.T) {
	agent := testenv.StartConsul(t)
	client, err := consul.NewClient(consul.Config{Address: agent.Addr})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0") // a free port for the sidecar
	if err != nil {
		t.Fatal(err)
	}
	sidecarPort := mustPort(t, ln.Addr().String())
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrc := make(chan string, 1)
	done := make(chan error, 1)
	opts := options{listen: "127.0.0.1:0", advertise: "127.0.0.1", service: "web", id: "web-1", consul: agent.Addr,
		interval: time.Second, register: true, sidecar: sidecarPort}
	go func() { done <- run(ctx, opts, hclog.NewNullLogger(), func(a string) { addrc <- a }) }()
	select {
	case <-addrc:
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("not registered within 15s")
	}
	sc := agent.StartSidecar(t, "web-1", net.JoinHostPort("127.0.0.1", strconv.Itoa(sidecarPort)))
	deadline := time.Now().Add(20 * time.Second)
	for {
		entries, _, err := client.Health().Connect("web", "", true, nil)
		if err == nil && len(entries) == 1 && entries[0].Service.Port == sidecarPort {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sidecar not passing in /v1/health/connect/web: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	gw, err := consul.NewCerts(client.Agent(), consul.ConnectOptions{Service: "gateway"})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gw.Run(ctx) }()
	defer gw.Stop()
	<-gw.Ready()
	c := &http.Client{Transport: &http.Transport{DialContext: gw.Dialer("web", "", nil).DialContext}, Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + sc.Addr + "/through")
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	err = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if err != nil || body["path"] != "/through" || body["instance"] != "web-1" {
		t.Fatalf("through the sidecar: %v %v", body, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}
