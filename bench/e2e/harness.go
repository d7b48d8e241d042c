package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/infinityxone/gateway/internal/proc"
	"github.com/infinityxone/gateway/jwtauth"
)

// options are the harness's flags.
type options struct {
	rounds     int
	duration   int // seconds per wrk run
	warmup     int // seconds of unmeasured load per target before round 1
	conns      int
	threads    int
	quick      bool
	cpuprofile string // directory for profiles; empty: no profiling
	accessLog  string // where the gateway with the access log on writes it
	gatewayBin string // prebuilt gateway binary; empty: go build ./cmd/gateway
	out        string // also write the report here
	keep       bool   // keep the work directory
	targets    []targetSpec
}

func parseOptions(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("e2e", flag.ContinueOnError)
	fs.IntVar(&o.rounds, "rounds", 3, "rounds; every target runs once per round, targets alternate")
	fs.IntVar(&o.duration, "duration", 5, "seconds per wrk run")
	fs.IntVar(&o.warmup, "warmup", 2, "seconds of unmeasured load per target before the first round")
	fs.IntVar(&o.conns, "c", 32, "wrk connections")
	fs.IntVar(&o.threads, "t", 1, "wrk threads")
	fs.BoolVar(&o.quick, "quick", false, "short run: 2 rounds × 2 s, 1 s warm-up (overrides -rounds, -duration, -warmup)")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "directory: the floor and the gateway (served in-process by this program) write CPU and allocation profiles there")
	fs.StringVar(&o.accessLog, "access-log", "", "file the gateway's JSON access log goes to (default: a file in the work directory; /dev/null is allowed)")
	fs.StringVar(&o.gatewayBin, "gateway-bin", "", "use this gateway binary instead of building ./cmd/gateway")
	fs.StringVar(&o.out, "o", "", "also write the Markdown report to this file")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (configs, logs, access log)")
	targets := fs.String("targets", "all", "comma-separated targets or groups to measure: "+targetKeys()+
		"; groups all, core (direct, floor, gateway log off/on), features (plain gateway, JWT, breaker+retry, Redis limit, full pipeline). "+
		"The floor is always measured, and gateway-log-off with any feature row")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	var err error
	if o.targets, err = selectTargets(*targets); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.quick {
		o.rounds, o.duration, o.warmup = 2, 2, 1
	}
	if o.rounds < 1 || o.duration < 1 || o.conns < 1 || o.threads < 1 || o.warmup < 0 {
		return o, errors.New("-rounds, -duration, -c and -t must be at least 1, -warmup at least 0")
	}
	return o, nil
}

// target is one thing wrk is pointed at.
type target struct {
	targetSpec
	url     string
	headers []string      // extra wrk -H values
	proxy   *proc.Process // the proxy under test; nil for direct
	redis   *proc.Process // the redis-server the proxy calls, if any
	admin   string        // gateway admin address, for the feature check
	check   string        // what the gateway's metrics say after the run
	rounds  []roundResult
}

// roundResult is one measured wrk run.
type roundResult struct {
	round     int
	wrk       wrkResult
	proxyUS   float64 // proxy CPU per request, µs (0 for direct)
	backendUS float64 // backend CPU per request, µs
	otherPct  float64 // busy time on the proxy's CPU not spent by the proxy, % of the run
	redisUS   float64 // redis-server CPU per request, µs (0 without Redis)
}

func runHarness(args []string) int {
	o, err := parseOptions(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 2
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	h := &harness{opts: o, ctx: ctx}
	defer h.cleanup()
	if err := h.run(args); err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(os.Stderr, "e2e: interrupted; stopping processes")
			return 130
		}
		fmt.Fprintln(os.Stderr, "e2e:", err)
		h.showLogs()
		return 1
	}
	return 0
}

// harness owns the work directory and every process it starts.
type harness struct {
	opts  options
	ctx   context.Context
	dir   string
	procs []*proc.Process

	clk       int64
	pinned    bool
	proxyCPU  string // taskset CPU list for the proxy under test
	loadCPU   string // for wrk and the backend
	pinNote   string
	backend   *proc.Process
	otlp      *proc.Process // the OTLP receiver of the tracing rows, if any
	targets   []*target
	accessOut string
	env       envInfo
}

func (h *harness) run(args []string) error {
	o := h.opts
	if _, err := exec.LookPath("wrk"); err != nil {
		return errors.New("wrk not found: run `bash scripts/install-tools.sh wrk` (Debian package wrk)")
	}
	dir, err := os.MkdirTemp("", "gateway-e2e-")
	if err != nil {
		return err
	}
	h.dir = dir
	h.clk = clockTicks()
	h.pin()
	h.env = gatherEnv()

	self, err := os.Executable()
	if err != nil {
		return err
	}
	gw := o.gatewayBin
	needGateway := slices.ContainsFunc(o.targets, func(t targetSpec) bool { return t.kind == kindGateway })
	if o.cpuprofile == "" && gw == "" && needGateway {
		gw = filepath.Join(dir, "gateway")
		if err := buildGateway(h.ctx, gw); err != nil {
			return err
		}
	}
	if o.cpuprofile != "" {
		if err := os.MkdirAll(o.cpuprofile, 0o755); err != nil {
			return err
		}
	}

	// Backend, floor, the gateways (and Redis if a target needs it); all stay up for the
	// whole run and take turns.
	backendAddr := freeAddr()
	if h.backend, err = h.start("backend", h.loadCPU, nil, self, "backend", "-addr", backendAddr); err != nil {
		return err
	}
	var redisProc *proc.Process
	var redisAddr string
	if slices.ContainsFunc(o.targets, func(t targetSpec) bool { return slices.Contains(t.features, featRedisLimit) }) {
		if redisProc, redisAddr, err = h.startRedis(); err != nil {
			return err
		}
	}
	var consulAddr string
	if slices.ContainsFunc(o.targets, func(t targetSpec) bool { return slices.Contains(t.features, featMesh) }) {
		if consulAddr, err = h.startMesh(backendAddr); err != nil {
			return err
		}
	}
	var otlpAddr string
	if slices.ContainsFunc(o.targets, func(t targetSpec) bool { return tracing(t.features) }) {
		// The exporter's endpoint: a receiver of its own, pinned with wrk and the backend
		// (it stands for the collector's machine), so its CPU is not the gateway's.
		otlpAddr = freeAddr()
		if h.otlp, err = h.start("otlp-receiver", h.loadCPU, nil, self, "otlp", "-addr", otlpAddr); err != nil {
			return err
		}
		if err := h.poll("OTLP receiver", func() error { _, err := otlpSpans(otlpAddr); return err }); err != nil {
			return fmt.Errorf("%w (log: %s)", err, h.otlp.LogPath)
		}
	}
	var jwtSecret, token string
	if slices.ContainsFunc(o.targets, func(t targetSpec) bool { return slices.Contains(t.features, featJWT) }) {
		if jwtSecret, token, err = benchToken(); err != nil {
			return err
		}
	}
	h.accessOut = o.accessLog
	if h.accessOut == "" {
		h.accessOut = filepath.Join(dir, "access.log")
	}
	logFile, err := os.OpenFile(h.accessOut, os.O_WRONLY|os.O_CREATE|os.O_APPEND|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()

	for _, spec := range o.targets {
		t := &target{targetSpec: spec}
		switch spec.kind {
		case kindDirect:
			t.url = "http://" + backendAddr + "/bench"
		case kindFloor:
			addr := freeAddr()
			argv := []string{self, "floor", "-addr", addr, "-upstream", backendAddr}
			if o.cpuprofile != "" {
				argv = append(argv, "-cpuprofile", filepath.Join(o.cpuprofile, "floor.cpu.pprof"),
					"-memprofile", filepath.Join(o.cpuprofile, "floor.allocs.pprof"))
			}
			if t.proxy, err = h.start("floor", h.proxyCPU, nil, argv...); err != nil {
				return err
			}
			t.url = "http://" + addr + "/bench"
		case kindGateway:
			addr := freeAddr()
			t.admin = freeAddr()
			conf := filepath.Join(dir, spec.key+".hcl")
			text := gatewayConfig(gwParams{addr: addr, admin: t.admin, backend: backendAddr, logBlock: spec.logBlock,
				features: spec.features, jwtSecret: jwtSecret, redisAddr: redisAddr, consulAddr: consulAddr,
				otlpEndpoint: "http://" + otlpAddr, serviceName: spec.key})
			if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
				return err
			}
			argv := []string{gw, "run", "-config", conf}
			if o.cpuprofile != "" {
				argv = []string{self, "gateway", "-config", conf,
					"-cpuprofile", filepath.Join(o.cpuprofile, spec.key+".cpu.pprof"),
					"-memprofile", filepath.Join(o.cpuprofile, spec.key+".allocs.pprof")}
			}
			var stdout *os.File
			if strings.Contains(spec.logBlock, "access_log = true") {
				stdout = logFile
			}
			if t.proxy, err = h.startEnv(spec.key, h.proxyCPU, stdout, spec.env, argv...); err != nil {
				return err
			}
			t.url = "http://" + addr + "/bench"
			if slices.Contains(spec.features, featJWT) {
				t.headers = []string{"Authorization: Bearer " + token}
			}
			if slices.Contains(spec.features, featRedisLimit) {
				t.redis = redisProc
			}
		}
		h.targets = append(h.targets, t)
	}
	for _, t := range h.targets {
		p := t.proxy
		if p == nil {
			p = h.backend
		}
		if err := h.waitReady(p, t.url, t.headers); err != nil {
			return err
		}
	}

	fmt.Fprintf(os.Stderr, "e2e: %s\n", h.pinNote)
	if o.warmup > 0 {
		for _, t := range h.targets {
			fmt.Fprintf(os.Stderr, "e2e: warm-up %-21s %ds\n", t.key, o.warmup)
			res, err := h.wrk(t, o.warmup)
			if err != nil {
				return fmt.Errorf("warm-up %s: %w", t.key, err)
			}
			if res.Non2xx > 0 || res.SockErrs > 0 {
				return fmt.Errorf("warm-up %s: %d non-2xx responses, %d socket errors", t.key, res.Non2xx, res.SockErrs)
			}
		}
	}
	for round := 1; round <= o.rounds; round++ {
		// Rotate the order each round, so no target always runs first or after the same one.
		n := len(h.targets)
		for i := range n {
			t := h.targets[(i+round-1)%n]
			r, err := h.measure(t, round)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", round, t.key, err)
			}
			t.rounds = append(t.rounds, r)
			proxy, other := "     —", "  —"
			if t.proxy != nil {
				proxy = fmt.Sprintf("%6.1f", r.proxyUS)
				if h.pinned {
					other = fmt.Sprintf("%3.0f%%", r.otherPct)
				}
			}
			redis := ""
			if t.redis != nil {
				redis = fmt.Sprintf("  redis %5.1f µs/req", r.redisUS)
			}
			fmt.Fprintf(os.Stderr, "e2e: round %d/%d %-21s %9.0f req/s  p50 %-8s p99 %-8s proxy %s µs/req  backend %5.1f µs/req%s  other load on proxy CPU %s\n",
				round, o.rounds, t.key, r.wrk.ReqPerSec, fmtDur(r.wrk.P50), fmtDur(r.wrk.P99), proxy, r.backendUS, redis, other)
		}
	}
	h.env.loadAfter = readLoadavg()
	for _, t := range h.targets {
		if len(t.features) == 0 {
			continue
		}
		m, err := scrapeMetrics(t.admin)
		if err != nil {
			t.check = fmt.Sprintf("metrics not read: %v", err)
			continue
		}
		t.check = featureCheck(t.features, m)
		if tracing(t.features) {
			t.check += "; " + h.tracingCheck(otlpAddr, t.key)
		}
	}

	lines := int64(-1)
	if h.accessOut != os.DevNull {
		_ = logFile.Sync()
		lines = countLines(h.accessOut)
	}
	report := h.report(args, lines)
	fmt.Print(report)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(report), 0o644); err != nil {
			return err
		}
	}
	for _, t := range h.targets {
		for _, r := range t.rounds {
			if r.wrk.Non2xx > 0 || r.wrk.SockErrs > 0 {
				return fmt.Errorf("%s had non-2xx responses or socket errors: the numbers are not valid", t.key)
			}
		}
	}
	return nil
}

// measure runs wrk once against t and reads the CPU time its proxy and the backend spent.
func (h *harness) measure(t *target, round int) (roundResult, error) {
	r := roundResult{round: round}
	var p0, b0 int64
	var err error
	if t.proxy != nil {
		if p0, err = cpuTicks(t.proxy.PID()); err != nil {
			return r, err
		}
	}
	if b0, err = cpuTicks(h.backend.PID()); err != nil {
		return r, err
	}
	var r0 int64
	if t.redis != nil {
		if r0, err = cpuTicks(t.redis.PID()); err != nil {
			return r, err
		}
	}
	c0, _ := cpuBusy(h.proxyCPU)
	res, err := h.wrk(t, h.opts.duration)
	if err != nil {
		return r, err
	}
	c1, _ := cpuBusy(h.proxyCPU)
	b1, err := cpuTicks(h.backend.PID())
	if err != nil {
		return r, err
	}
	r.wrk = res
	if res.Requests == 0 {
		return r, errors.New("wrk completed no requests")
	}
	perReq := func(ticks int64) float64 {
		return float64(ticks) / float64(h.clk) * 1e6 / float64(res.Requests)
	}
	r.backendUS = perReq(b1 - b0)
	if t.redis != nil {
		r1, err := cpuTicks(t.redis.PID())
		if err != nil {
			return r, err
		}
		r.redisUS = perReq(r1 - r0)
	}
	var proxyTicks int64
	if t.proxy != nil {
		p1, err := cpuTicks(t.proxy.PID())
		if err != nil {
			return r, err
		}
		proxyTicks = p1 - p0
		r.proxyUS = perReq(proxyTicks)
	}
	if t.proxy != nil && h.pinned && c1.total > c0.total {
		other := float64(c1.busy-c0.busy-proxyTicks) / float64(c1.total-c0.total) * 100
		r.otherPct = max(other, 0)
	}
	return r, nil
}

// wrk runs wrk for secs seconds against t, pinned to the load CPU.
func (h *harness) wrk(t *target, secs int) (wrkResult, error) {
	argv := h.wrkArgv(t.url, secs, t.headers)
	cmd := exec.CommandContext(h.ctx, argv[0], argv[1:]...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return wrkResult{}, fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, errb.String())
	}
	return parseWrk(out.String())
}

func (h *harness) wrkArgv(url string, secs int, headers []string) []string {
	argv := []string{"wrk", "-t", fmt.Sprint(h.opts.threads), "-c", fmt.Sprint(h.opts.conns),
		"-d", fmt.Sprintf("%ds", secs), "--latency"}
	for _, hd := range headers {
		argv = append(argv, "-H", hd)
	}
	return pinArgv(h.loadCPU, append(argv, url))
}

// pin decides the CPUs: the proxy under test on the first allowed CPU, wrk and the
// backend on the second.
func (h *harness) pin() {
	cpus := allowedCPUs()
	_, err := exec.LookPath("taskset")
	switch {
	case len(cpus) < 2:
		h.pinNote = fmt.Sprintf("only %d CPU allowed: everything runs unpinned, so proxy, backend and wrk share it", len(cpus))
	case err != nil:
		h.pinNote = "taskset not found (Debian util-linux): everything runs unpinned"
	default:
		h.pinned = true
		h.proxyCPU, h.loadCPU = cpus[0], cpus[1]
		h.pinNote = fmt.Sprintf("pinned with taskset: proxy under test on CPU %s; wrk and backend on CPU %s", h.proxyCPU, h.loadCPU)
	}
}

func pinArgv(cpu string, argv []string) []string {
	if cpu == "" {
		return argv
	}
	return append([]string{"taskset", "-c", cpu}, argv...)
}

// waitReady polls url (with the target's headers) until it answers 200 with the
// backend's body.
func (h *harness) waitReady(p *proc.Process, url string, headers []string) error {
	c := &http.Client{Timeout: time.Second}
	req, err := http.NewRequestWithContext(h.ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	for _, hd := range headers {
		k, v, _ := strings.Cut(hd, ":")
		req.Header.Set(k, strings.TrimSpace(v))
	}
	var exited error
	err = h.pollFor(p.Name+" at "+url, 15*time.Second, 50*time.Millisecond, func() error {
		if !p.Running() {
			exited = fmt.Errorf("%s exited before it answered (log: %s)", p.Name, p.LogPath)
			return nil
		}
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(b) != backendBody {
			return fmt.Errorf("status %d, body %q", resp.StatusCode, b)
		}
		return nil
	})
	if exited != nil {
		return exited
	}
	return err
}

// benchToken makes a random HS256 secret and a token for the JWT target: subject
// "bench", role "r", valid for a day.
func benchToken() (secret, token string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", err
	}
	secret = hex.EncodeToString(b[:])
	token, err = jwtauth.Mint([]byte(secret), jwtauth.MintOptions{Subject: "bench", Roles: []string{"r"}, TTL: 24 * time.Hour})
	return secret, token, err
}

// buildGateway builds ./cmd/gateway of the module this harness runs in.
func buildGateway(ctx context.Context, out string) error {
	mod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(mod)))
	if root == "." || root == "" {
		return errors.New("run the harness inside the gateway module (go run ./bench/e2e)")
	}
	fmt.Fprintf(os.Stderr, "e2e: go build -o %s ./cmd/gateway\n", out)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/gateway")
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd.Run()
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func countLines(path string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return -1
	}
	defer f.Close()
	var n int64
	buf := make([]byte, 1<<20)
	for {
		k, err := f.Read(buf)
		for _, c := range buf[:k] {
			if c == '\n' {
				n++
			}
		}
		if err != nil {
			return n
		}
	}
}
