package main

import (
	"context"
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
	"strings"
	"syscall"
	"time"
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
	if err := fs.Parse(args); err != nil {
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
	key    string
	label  string
	url    string
	proxy  *proc   // the proxy under test; nil for direct
	limit  float64 // the CPU/request target as a multiple of the floor; 0 none
	rounds []roundResult
}

// roundResult is one measured wrk run.
type roundResult struct {
	round     int
	wrk       wrkResult
	proxyUS   float64 // proxy CPU per request, µs (0 for direct)
	backendUS float64 // backend CPU per request, µs
	otherPct  float64 // busy time on the proxy's CPU not spent by the proxy, % of the run
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
	procs []*proc

	clk       int64
	pinned    bool
	proxyCPU  string // taskset CPU list for the proxy under test
	loadCPU   string // for wrk and the backend
	pinNote   string
	backend   *proc
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
	if o.cpuprofile == "" && gw == "" {
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

	// Backend, floor, and the two gateways; all stay up for the whole run and take turns.
	backendAddr := freeAddr()
	if h.backend, err = h.start("backend", h.loadCPU, nil, self, "backend", "-addr", backendAddr); err != nil {
		return err
	}
	floorAddr := freeAddr()
	floorArgs := []string{self, "floor", "-addr", floorAddr, "-upstream", backendAddr}
	if o.cpuprofile != "" {
		floorArgs = append(floorArgs, "-cpuprofile", filepath.Join(o.cpuprofile, "floor.cpu.pprof"),
			"-memprofile", filepath.Join(o.cpuprofile, "floor.allocs.pprof"))
	}
	floor, err := h.start("floor", h.proxyCPU, nil, floorArgs...)
	if err != nil {
		return err
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

	startGateway := func(key string, logBlock string, stdout *os.File) (*proc, string, error) {
		addr := freeAddr()
		conf := filepath.Join(dir, key+".hcl")
		if err := os.WriteFile(conf, []byte(gatewayConfig(addr, freeAddr(), backendAddr, logBlock)), 0o644); err != nil {
			return nil, "", err
		}
		argv := []string{gw, "run", "-config", conf}
		if o.cpuprofile != "" {
			argv = []string{self, "gateway", "-config", conf,
				"-cpuprofile", filepath.Join(o.cpuprofile, key+".cpu.pprof"),
				"-memprofile", filepath.Join(o.cpuprofile, key+".allocs.pprof")}
		}
		p, err := h.start(key, h.proxyCPU, stdout, argv...)
		return p, addr, err
	}
	gwOff, gwOffAddr, err := startGateway("gateway-log-off", "  access_log = false\n", nil)
	if err != nil {
		return err
	}
	gwOn, gwOnAddr, err := startGateway("gateway-log-on", "  access_log = true\n  format     = \"json\"\n", logFile)
	if err != nil {
		return err
	}

	h.targets = []*target{
		{key: "direct", label: "direct (wrk → backend)", url: "http://" + backendAddr + "/bench"},
		{key: "floor", label: "floor (httputil.ReverseProxy)", url: "http://" + floorAddr + "/bench", proxy: floor},
		{key: "gateway-log-off", label: "gateway, access log off", url: "http://" + gwOffAddr + "/bench", proxy: gwOff, limit: 1.05},
		{key: "gateway-log-on", label: "gateway, access log on (json)", url: "http://" + gwOnAddr + "/bench", proxy: gwOn, limit: 1.20},
	}
	for _, t := range h.targets {
		p := t.proxy
		if p == nil {
			p = h.backend
		}
		if err := h.waitReady(p, t.url); err != nil {
			return err
		}
	}

	fmt.Fprintf(os.Stderr, "e2e: %s\n", h.pinNote)
	if o.warmup > 0 {
		for _, t := range h.targets {
			fmt.Fprintf(os.Stderr, "e2e: warm-up %-16s %ds\n", t.key, o.warmup)
			if _, err := h.wrk(t.url, o.warmup); err != nil {
				return fmt.Errorf("warm-up %s: %w", t.key, err)
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
			fmt.Fprintf(os.Stderr, "e2e: round %d/%d %-16s %9.0f req/s  p50 %-8s p99 %-8s proxy %s µs/req  backend %5.1f µs/req  other load on proxy CPU %s\n",
				round, o.rounds, t.key, r.wrk.ReqPerSec, fmtDur(r.wrk.P50), fmtDur(r.wrk.P99), proxy, r.backendUS, other)
		}
	}
	h.env.loadAfter = readLoadavg()

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
		if p0, err = cpuTicks(t.proxy.pid()); err != nil {
			return r, err
		}
	}
	if b0, err = cpuTicks(h.backend.pid()); err != nil {
		return r, err
	}
	c0, _ := cpuBusy(h.proxyCPU)
	res, err := h.wrk(t.url, h.opts.duration)
	if err != nil {
		return r, err
	}
	c1, _ := cpuBusy(h.proxyCPU)
	b1, err := cpuTicks(h.backend.pid())
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
	var proxyTicks int64
	if t.proxy != nil {
		p1, err := cpuTicks(t.proxy.pid())
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

// wrk runs wrk for secs seconds against url, pinned to the load CPU.
func (h *harness) wrk(url string, secs int) (wrkResult, error) {
	argv := h.wrkArgv(url, secs)
	cmd := exec.CommandContext(h.ctx, argv[0], argv[1:]...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return wrkResult{}, fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, errb.String())
	}
	return parseWrk(out.String())
}

func (h *harness) wrkArgv(url string, secs int) []string {
	argv := []string{"wrk", "-t", fmt.Sprint(h.opts.threads), "-c", fmt.Sprint(h.opts.conns),
		"-d", fmt.Sprintf("%ds", secs), "--latency", url}
	return pinArgv(h.loadCPU, argv)
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

// waitReady polls url until it answers 200 with the backend's body.
func (h *harness) waitReady(p *proc, url string) error {
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(15 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("%s exited before it answered (log: %s)", p.name, p.logPath)
		}
		resp, err := c.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && string(b) == backendBody {
				return nil
			}
			err = fmt.Errorf("status %d, body %q", resp.StatusCode, b)
		}
		last = err
		select {
		case <-h.ctx.Done():
			return h.ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not ready at %s: %v", p.name, url, last)
}

// gatewayConfig is the gateway's config: one static route to the backend.
func gatewayConfig(addr, adminAddr, backend, logBlock string) string {
	return fmt.Sprintf(`gateway {
  address          = %q
  shutdown_timeout = "2s"
}

admin {
  address = %q
}

log {
  level = "info"
%s}

service "backend" {
  instance {
    address = %q
  }
}

route "bench" {
  methods = ["GET"]
  path    = "/bench"
  service = "backend"
}
`, addr, adminAddr, logBlock, backend)
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
