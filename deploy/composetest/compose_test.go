//go:build composetest

package composetest

import (
	"context"
	"crypto/rand"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infinityxone/gateway/internal/tools"
	"github.com/infinityxone/gateway/jwtauth"
)

// repoRoot is the module root, seen from this package's directory.
const repoRoot = "../.."

// rateLimit is ORDERS_RATE_LIMIT for the run, per hour: the bucket refills one
// token every three minutes, so within the test a user gets exactly this many.
const rateLimit = 20

// project is one docker-compose project on the test's engine.
type project struct {
	e       *engine
	name    string
	root    string
	env     []string
	lbPort  int
	consul  int // Consul's published HTTP port
	stats   int // HAProxy's published stats port
	subnet  *net.IPNet
	secret  []byte
	client  *http.Client
	started time.Time
	isDown  bool // `down` ran and succeeded
}

func TestCompose(t *testing.T) {
	start := time.Now()
	for _, tool := range []string{"docker-compose", "podman"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: run scripts/install-tools.sh (make tools)", tool)
		}
	}
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	e := startEngine(t)
	e.buildImages(t, root)
	p := newProject(t, e, root)

	ctx, cancel := context.WithCancel(context.Background())
	waitChecks := e.runHealthchecks(ctx, t, p.name)
	t.Cleanup(func() { cancel(); waitChecks() })
	t.Cleanup(func() { p.down(t, false) }) // runs first: down, then the checks stop, then the engine

	t.Run("up", p.testUp)
	if t.Failed() {
		return
	}
	t.Run("public route", p.testPublic)
	t.Run("jwt", p.testJWT)
	t.Run("shared rate limit", p.testRateLimit)
	t.Run("scale up under load", p.testScaleUp)
	if t.Failed() {
		return
	}
	t.Run("replica stops under load", p.testStop)
	t.Run("stop reaches every PID 1", p.testStopAll)
	t.Run("down", func(t *testing.T) { p.down(t, true) })
	t.Logf("compose test took %v", time.Since(start).Round(time.Second))
}

func newProject(t *testing.T, e *engine, root string) *project {
	t.Helper()
	ports, err := tools.FreePorts(3, 0)
	if err != nil {
		t.Fatal(err)
	}
	p := &project{
		e:      e,
		name:   "composetest" + randomHex(4),
		root:   root,
		lbPort: ports[0], consul: ports[1], stats: ports[2],
		subnet: freeSubnet(t),
		secret: []byte(randomHex(32)),
		client: &http.Client{
			Timeout:   15 * time.Second,
			Transport: &http.Transport{MaxIdleConnsPerHost: 32},
		},
	}
	p.env = append(slices.Clone(e.env),
		"DOCKER_HOST=unix://"+e.sock,
		"COMPOSE_PROJECT_NAME="+p.name,
		"COMPOSE_HTTP_TIMEOUT=180",
		"GATEWAY_BIND=127.0.0.1",
		"GATEWAY_PORT="+strconv.Itoa(p.lbPort),
		"CONSUL_UI_PORT="+strconv.Itoa(p.consul),
		"HAPROXY_STATS_PORT="+strconv.Itoa(p.stats),
		"GATEWAY_SUBNET="+p.subnet.String(),
		"LB_DNS_SERVER="+gatewayAddr(p.subnet), // podman's DNS server for the network
		"JWT_SECRET="+string(p.secret),
		"ORDERS_RATE_LIMIT="+strconv.Itoa(rateLimit),
		"ORDERS_RATE_PERIOD=1h",
		// The limit must be exact, so no decision may fail open because a busy
		// machine kept Redis from answering within the default 50ms.
		"REDIS_TIMEOUT=2s",
		"GATEWAY_LOG_LEVEL=warn",
	)
	t.Logf("project %s: lb 127.0.0.1:%d, consul 127.0.0.1:%d, stats 127.0.0.1:%d, subnet %v",
		p.name, p.lbPort, p.consul, p.stats, p.subnet)
	return p
}

// compose runs docker-compose on the repository's docker-compose.yml.
func (p *project) compose(t *testing.T, timeout time.Duration, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	args = append([]string{
		"-f", filepath.Join(p.root, "docker-compose.yml"),
		"-f", filepath.Join(p.root, "deploy", "compose.podman.yml"),
		"--project-directory", p.root, "--ansi", "never",
	}, args...)
	cmd := exec.CommandContext(ctx, "docker-compose", args...)
	cmd.Dir = p.root
	cmd.Env = p.env
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %v: %w", timeout, err)
	}
	t.Logf("docker-compose %s: %v", strings.Join(args[8:], " "), time.Since(start).Round(100*time.Millisecond))
	return string(out), err
}

// mustCompose is compose that fails the test (with the containers' logs) on error.
func (p *project) mustCompose(t *testing.T, timeout time.Duration, args ...string) {
	t.Helper()
	if out, err := p.compose(t, timeout, args...); err != nil {
		t.Fatalf("docker-compose %s: %v\n%s\n%s", strings.Join(args, " "), err, out, p.logs(t))
	}
}

// logs returns the end of every container's log, for failure messages.
func (p *project) logs(t *testing.T) string {
	out, _ := p.compose(t, time.Minute, "logs", "--no-color", "--tail=25")
	return out
}

// down runs `docker-compose down -v`; with check it asserts that no container,
// network or volume of the project is left.
func (p *project) down(t *testing.T, check bool) {
	if p.isDown {
		return
	}
	out, err := p.compose(t, 3*time.Minute, "down", "-v", "--remove-orphans", "--timeout", "45")
	p.isDown = err == nil
	if !check {
		return
	}
	if err != nil {
		t.Fatalf("down: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	label := "com.docker.compose.project=" + p.name
	cs, err := p.e.containers(ctx, true, label)
	if err != nil || len(cs) > 0 {
		t.Errorf("after down: containers %v (%v)", names(cs), err)
	}
	f, _ := json.Marshal(map[string][]string{"label": {label}})
	var nets []struct{ Name string }
	if err := p.e.call(ctx, "GET", "/networks?filters="+url.QueryEscape(string(f)), nil, &nets); err != nil || len(nets) > 0 {
		t.Errorf("after down: networks %v (%v)", nets, err)
	}
	var vols struct{ Volumes []struct{ Name string } }
	if err := p.e.call(ctx, "GET", "/volumes?filters="+url.QueryEscape(string(f)), nil, &vols); err != nil || len(vols.Volumes) > 0 {
		t.Errorf("after down: volumes %v (%v)", vols.Volumes, err)
	}
	if all, err := p.e.containers(ctx, true); err != nil || len(all) > 0 {
		t.Errorf("after down: the engine still has containers %v (%v)", names(all), err)
	}
}

func (p *project) testUp(t *testing.T) {
	p.started = time.Now()
	p.mustCompose(t, 5*time.Minute, "up", "-d", "--no-build")
	p.waitTopology(t, 3, 2, "up")

	ctx := context.Background()
	// Consul and everything behind it report healthy through their own checks.
	want := map[string]int{"consul": 1, "redis": 1, "users": 2, "orders": 2, "gateway": 3, "lb": 1}
	p.poll(t, 3*time.Minute, "every container healthy", func() error {
		for svc, n := range want {
			cs, err := p.e.containers(ctx, false, "com.docker.compose.project="+p.name, "com.docker.compose.service="+svc)
			if err != nil {
				return err
			}
			healthy := 0
			for _, c := range cs {
				in, err := p.e.inspect(ctx, c.ID)
				if err != nil {
					return err
				}
				if in.State.Health != nil && in.State.Health.Status == "healthy" {
					healthy++
				}
			}
			if healthy != n {
				return fmt.Errorf("%s: %d of %d containers healthy, want %d", svc, healthy, len(cs), n)
			}
		}
		return nil
	})

	// HAProxy is published on 127.0.0.1 only.
	lb, err := p.e.containers(ctx, false, "com.docker.compose.project="+p.name, "com.docker.compose.service=lb")
	if err != nil || len(lb) != 1 {
		t.Fatalf("lb containers: %v %v", names(lb), err)
	}
	var ports struct {
		HostConfig struct {
			PortBindings map[string][]struct{ HostIP, HostPort string }
		}
	}
	if err := p.e.call(ctx, "GET", "/containers/"+lb[0].ID+"/json", nil, &ports); err != nil {
		t.Fatal(err)
	}
	for port, bs := range ports.HostConfig.PortBindings {
		for _, b := range bs {
			if b.HostIP != "127.0.0.1" {
				t.Errorf("lb publishes %s on %q, want 127.0.0.1 only", port, b.HostIP)
			}
		}
	}
	t.Logf("up and healthy %v after `up`", time.Since(p.started).Round(time.Second))
}

// waitTopology waits until Consul lists gateways and users passing instances (and
// two of orders) at the addresses of their containers, and HAProxy has exactly the
// gateway containers UP.
func (p *project) waitTopology(t *testing.T, gateways, users int, what string) {
	t.Helper()
	ctx := context.Background()
	p.poll(t, 3*time.Minute, what+": Consul and HAProxy see the containers", func() error {
		for svc, n := range map[string]int{"gateway": gateways, "users": users, "orders": 2} {
			cs, err := p.e.containers(ctx, false, "com.docker.compose.project="+p.name, "com.docker.compose.service="+svc)
			if err != nil {
				return err
			}
			var ips []string
			for _, c := range cs {
				if ip := net.ParseIP(c.IP()); ip == nil || !p.subnet.Contains(ip) {
					return fmt.Errorf("%s container %s: address %q not in %v", svc, c.Name(), c.IP(), p.subnet)
				}
				ips = append(ips, c.IP())
			}
			regs, err := p.passing(svc)
			if err != nil {
				return err
			}
			sort.Strings(ips)
			if len(ips) != n || !slices.Equal(regs, ips) {
				return fmt.Errorf("%s: Consul has passing %v, containers are at %v (want %d)", svc, regs, ips, n)
			}
		}
		gws, err := p.e.containers(ctx, false, "com.docker.compose.project="+p.name, "com.docker.compose.service=gateway")
		if err != nil {
			return err
		}
		var ips []string
		for _, c := range gws {
			ips = append(ips, c.IP()+":8080")
		}
		sort.Strings(ips)
		up, err := p.haproxyUp()
		if err != nil {
			return err
		}
		if !slices.Equal(up, ips) {
			return fmt.Errorf("HAProxy has %v UP, gateway containers are %v", up, ips)
		}
		return nil
	})
}

// passing returns the sorted addresses of a service's passing instances in Consul,
// asked through Consul's port published on 127.0.0.1.
func (p *project) passing(service string) ([]string, error) {
	var entries []struct {
		Service struct {
			ID      string
			Address string
			Port    int
		}
	}
	if err := p.getJSON(fmt.Sprintf("http://127.0.0.1:%d/v1/health/service/%s?passing=1", p.consul, service), &entries); err != nil {
		return nil, err
	}
	ids := map[string]bool{}
	var addrs []string
	for _, e := range entries {
		if ids[e.Service.ID] {
			return nil, fmt.Errorf("%s: duplicate service ID %s", service, e.Service.ID)
		}
		ids[e.Service.ID] = true
		addrs = append(addrs, e.Service.Address)
	}
	sort.Strings(addrs)
	return addrs, nil
}

// haproxyUp returns the sorted addresses of the gateway servers HAProxy has UP,
// from its CSV stats page.
func (p *project) haproxyUp() ([]string, error) {
	resp, err := p.client.Get(fmt.Sprintf("http://127.0.0.1:%d/;csv", p.stats))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	r := csv.NewReader(resp.Body)
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil || len(rows) == 0 {
		return nil, fmt.Errorf("stats csv: %v", err)
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[strings.TrimPrefix(strings.TrimSpace(h), "# ")] = i
	}
	var up []string
	for _, row := range rows[1:] {
		if len(row) <= col["addr"] || row[col["pxname"]] != "gateways" || !strings.HasPrefix(row[col["svname"]], "gw") {
			continue
		}
		if row[col["status"]] == "UP" {
			up = append(up, row[col["addr"]])
		}
	}
	sort.Strings(up)
	return up, nil
}

func (p *project) getJSON(url string, v any) error {
	resp, err := p.client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s %s", url, resp.Status, b)
	}
	return json.Unmarshal(b, v)
}

// echoReply is what the example service answers.
type echoReply struct {
	Service    string `json:"service"`
	Instance   string `json:"instance"`
	Path       string `json:"path"`
	RemoteAddr string `json:"remote_addr"`
}

// get sends one request through HAProxy's published port.
func (p *project) get(path, token string) (int, echoReply, error) {
	req, err := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d%s", p.lbPort, path), nil)
	if err != nil {
		return 0, echoReply{}, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, echoReply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, echoReply{}, err
	}
	var r echoReply
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, &r); err != nil {
			return resp.StatusCode, r, fmt.Errorf("body %q: %v", b, err)
		}
	} else {
		r.Path = strings.Join(strings.Fields(string(b)), " ") // for messages
	}
	return resp.StatusCode, r, nil
}

func (p *project) token(t *testing.T, sub string) string {
	t.Helper()
	tok, err := jwtauth.Mint(p.secret, jwtauth.MintOptions{
		Subject: sub, Issuer: "infinity-x-one", Audience: []string{"api"}, TTL: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (p *project) testPublic(t *testing.T) {
	code, r, err := p.get("/api/users/42", "")
	if err != nil || code != 200 {
		t.Fatalf("GET /api/users/42: %d %v", code, err)
	}
	if r.Service != "users" || r.Path != "/users/42" {
		t.Errorf("reply %+v: want service users, path /users/42 (prefix /api stripped)", r)
	}
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	if ip := net.ParseIP(host); ip == nil || !p.subnet.Contains(ip) {
		t.Errorf("users saw the request from %q: want a gateway container's address in %v", r.RemoteAddr, p.subnet)
	}
}

func (p *project) testJWT(t *testing.T) {
	if code, _, err := p.get("/api/orders/1", ""); err != nil || code != http.StatusUnauthorized {
		t.Errorf("GET /api/orders/1 without a token: %d %v, want 401", code, err)
	}
	wrong, err := jwtauth.Mint([]byte(randomHex(32)), jwtauth.MintOptions{Subject: "mallory", Issuer: "infinity-x-one", Audience: []string{"api"}})
	if err != nil {
		t.Fatal(err)
	}
	if code, _, err := p.get("/api/orders/1", wrong); err != nil || code != http.StatusUnauthorized {
		t.Errorf("GET /api/orders/1 with a token signed by another key: %d %v, want 401", code, err)
	}
	code, r, err := p.get("/api/orders/1", p.token(t, "jwt-"+randomHex(4)))
	if err != nil || code != http.StatusOK || r.Service != "orders" {
		t.Errorf("GET /api/orders/1 with a token: %d %+v %v, want 200 from orders", code, r, err)
	}
}

// testRateLimit sends one user's requests through HAProxy, which spreads them over
// the replicas: the bucket in Redis is shared, so exactly rateLimit pass in total.
func (p *project) testRateLimit(t *testing.T) {
	tok := p.token(t, "limit-"+randomHex(4))
	codes := map[int]int{}
	gateways := map[string]bool{}
	for i := 0; i < rateLimit+10; i++ {
		code, r, err := p.get(fmt.Sprintf("/api/orders/%d", i), tok)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		codes[code]++
		if code == 200 {
			host, _, _ := net.SplitHostPort(r.RemoteAddr)
			gateways[host] = true
		}
	}
	if codes[200] != rateLimit || codes[429] != 10 || len(codes) != 2 {
		t.Errorf("statuses %v: want exactly %d x 200 and 10 x 429\n%s", codes, rateLimit, p.logs(t))
	}
	if len(gateways) != 3 {
		t.Errorf("the allowed requests went through gateways %v: want all 3 replicas", keys(gateways))
	}
	// Another user has a bucket of their own.
	if code, _, err := p.get("/api/orders/x", p.token(t, "other-"+randomHex(4))); err != nil || code != 200 {
		t.Errorf("another user: %d %v, want 200", code, err)
	}
}

func (p *project) testScaleUp(t *testing.T) {
	l := p.startLoad(t, "/api/users/scale")
	p.mustCompose(t, 4*time.Minute, "up", "-d", "--no-build", "--scale", "gateway=5", "--scale", "users=4")
	p.waitTopology(t, 5, 4, "scaled up")
	p.poll(t, 2*time.Minute, "traffic reaches every new replica and instance", func() error {
		gws, users := l.seen()
		if len(gws) != 5 || len(users) != 4 {
			return fmt.Errorf("seen gateways %v, users instances %v", gws, users)
		}
		return nil
	})
	l.stop(t)
}

func (p *project) testStop(t *testing.T) {
	ctx := context.Background()
	l := p.startLoad(t, "/api/users/stop")
	// Compose stops (and removes) the replica it no longer needs...
	p.mustCompose(t, 3*time.Minute, "up", "-d", "--no-build", "--scale", "gateway=4", "--scale", "users=4")
	// ...and one more replica is stopped as `docker stop` (or `docker-compose stop`)
	// stops it: SIGTERM to PID 1, SIGKILL after stop_grace_period (40s).
	gws, err := p.e.containers(ctx, false, "com.docker.compose.project="+p.name, "com.docker.compose.service=gateway")
	if err != nil || len(gws) != 4 {
		t.Fatalf("gateway containers after scaling to 4: %v %v", names(gws), err)
	}
	victim := gws[0]
	start := time.Now()
	if err := p.e.call(ctx, "POST", "/containers/"+victim.ID+"/stop?t=40", nil, nil); err != nil {
		t.Fatalf("stop %s: %v", victim.Name(), err)
	}
	took := time.Since(start)
	in, err := p.e.inspect(ctx, victim.ID)
	if err != nil {
		t.Fatal(err)
	}
	if in.State.Running || in.State.ExitCode != 0 || took >= 35*time.Second {
		t.Errorf("%s stopped after %v with exit code %d (running %v): want a clean exit on SIGTERM well before the 40s kill",
			victim.Name(), took.Round(100*time.Millisecond), in.State.ExitCode, in.State.Running)
	}
	t.Logf("%s drained and exited in %v", victim.Name(), took.Round(100*time.Millisecond))

	// Three replicas left, all serving.
	p.waitTopology(t, 3, 4, "after the stops")
	l.stop(t)
}

// testStopAll stops the whole project the way `docker-compose stop` does and checks
// that every container's main process handled its stop signal: none was left to the
// SIGKILL at the end of its grace period (exit code 137).
func (p *project) testStopAll(t *testing.T) {
	start := time.Now()
	p.mustCompose(t, 3*time.Minute, "stop")
	took := time.Since(start)
	cs, err := p.e.containers(context.Background(), true, "com.docker.compose.project="+p.name)
	if err != nil {
		t.Fatal(err)
	}
	var codes []string
	for _, c := range cs {
		in, err := p.e.inspect(context.Background(), c.ID)
		if err != nil {
			t.Fatal(err)
		}
		codes = append(codes, fmt.Sprintf("%s=%d", c.Name(), in.State.ExitCode))
		if in.State.Running || in.State.ExitCode == 137 {
			t.Errorf("%s: running %v, exit code %d: its stop signal did not end it", c.Name(), in.State.Running, in.State.ExitCode)
		}
	}
	sort.Strings(codes)
	t.Logf("stop took %v; exit codes %v", took.Round(100*time.Millisecond), codes)
}

// loadGen sends GETs through HAProxy from a few workers, paced, until stopped (or
// for at most loadLimit), and counts any failure.
type loadGen struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ok     atomic.Int64
	failed atomic.Int64
	mu     sync.Mutex
	errs   []string
	gws    map[string]bool
	users  map[string]bool
}

const (
	loadWorkers = 4
	loadPace    = 25 * time.Millisecond // per worker: 160 requests/s in all
	loadLimit   = 10 * time.Minute      // longer than any phase under load may wait
)

func (p *project) startLoad(t *testing.T, path string) *loadGen {
	ctx, cancel := context.WithTimeout(context.Background(), loadLimit)
	l := &loadGen{cancel: cancel, gws: map[string]bool{}, users: map[string]bool{}}
	for w := 0; w < loadWorkers; w++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			tick := time.NewTicker(loadPace)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				code, r, err := p.get(path, "")
				if err == nil && code != 200 {
					err = fmt.Errorf("status %d: %.200s", code, r.Path)
				}
				l.mu.Lock()
				if err != nil {
					l.failed.Add(1)
					if len(l.errs) < 10 {
						l.errs = append(l.errs, time.Now().Format("15:04:05.000")+" "+err.Error())
					}
				} else {
					l.ok.Add(1)
					host, _, _ := net.SplitHostPort(r.RemoteAddr)
					l.gws[host] = true
					l.users[r.Instance] = true
				}
				l.mu.Unlock()
			}
		}()
	}
	t.Cleanup(l.halt)
	return l
}

func (l *loadGen) halt() { l.cancel(); l.wg.Wait() }

// seen returns the gateway addresses and users instances that answered so far.
func (l *loadGen) seen() (gws, users []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return keys(l.gws), keys(l.users)
}

// stop ends the load and fails the test if any request failed.
func (l *loadGen) stop(t *testing.T) {
	t.Helper()
	l.halt()
	ok, failed := l.ok.Load(), l.failed.Load()
	t.Logf("load: %d ok, %d failed", ok, failed)
	if failed > 0 {
		t.Errorf("%d of %d requests failed under load; first: %s", failed, ok+failed, strings.Join(l.errs, "; "))
	}
	if ok < 100 {
		t.Errorf("only %d requests went through: the load did not run", ok)
	}
}

// poll calls cond until it returns nil, failing the test after timeout.
func (p *project) poll(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v: %v\n%s", what, timeout, err, p.logs(t))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// freeSubnet picks a /24 in 172.28.0.0/16 that no interface of this machine is in,
// so the test's network clashes with nothing else running here.
func freeSubnet(t *testing.T) *net.IPNet {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	_, _ = rand.Read(b)
	for i := 0; i < 250; i++ {
		third := 1 + (int(b[0])+i)%250
		_, sub, _ := net.ParseCIDR(fmt.Sprintf("172.28.%d.0/24", third))
		clash := false
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && (n.Contains(sub.IP) || sub.Contains(n.IP)) {
				clash = true
			}
		}
		if !clash {
			return sub
		}
	}
	t.Fatal("no free /24 in 172.28.0.0/16")
	return nil
}

// gatewayAddr is the first address of a subnet: the network's gateway, where
// podman's aardvark-dns answers.
func gatewayAddr(n *net.IPNet) string {
	ip := slices.Clone(n.IP.To4())
	ip[3]++
	return ip.String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func names(cs []container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name())
	}
	return out
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
