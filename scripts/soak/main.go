// Command soak runs the local stack (internal/stack) under steady load for a
// bounded time while instances churn and Redis restarts, and checks that the
// gateways neither leak nor fail requests:
//
//	go run ./scripts/soak [-duration 10m] [-report 30s] [-churn 20s] [-redis-restart 2m] [-workers 8] [-cluster]
//
// Every -churn one echo instance (round robin) is stopped with SIGTERM (it
// deregisters from Consul, then exits) and started again on the same port; every
// -redis-restart Redis is stopped with SIGTERM and started again (empty). With
// -cluster the stack runs on a Redis Cluster and a three-server Consul, and the
// Redis restart stops one master (its replica takes over) and starts it again
// (it rejoins as a replica).
//
// Every -report it prints a table row: the replicas' largest resident memory,
// open file descriptors and goroutines (from each replica's /metrics), and the
// statuses the load got in that interval. It exits 1 if any request failed (a
// status other than 200 or 429, or no answer within 10 s) — the stack's config
// lets requests through while Redis is down (on_store_error = "allow") and retries
// an instance that went away, so no failure window is allowed — or if a resource
// of a replica grew without bound over the last half of the run (see grows).
// It is what `make soak` runs; it is not part of `make test`.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/infinityxone/gateway/internal/proc"
	"github.com/infinityxone/gateway/internal/stack"
	"github.com/infinityxone/gateway/internal/tools"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// options are the command line.
type options struct {
	duration, report, sample, churn, redisRestart time.Duration
	workers                                       int
	pause                                         time.Duration
	cluster                                       bool
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.DurationVar(&o.duration, "duration", 10*time.Minute, "how long the load runs")
	fs.DurationVar(&o.report, "report", 30*time.Second, "how often a table row is printed")
	fs.DurationVar(&o.sample, "sample", 5*time.Second, "how often the replicas' resources are sampled for the growth check")
	fs.DurationVar(&o.churn, "churn", 20*time.Second, "how often an echo instance is restarted (0: never)")
	fs.DurationVar(&o.redisRestart, "redis-restart", 2*time.Minute, "how often Redis is restarted (0: never)")
	fs.IntVar(&o.workers, "workers", 8, "concurrent clients")
	fs.DurationVar(&o.pause, "pause", 5*time.Millisecond, "each client's pause between requests (bounds the load)")
	fs.BoolVar(&o.cluster, "cluster", false, "run on a Redis Cluster and a three-server Consul")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "soak: unexpected arguments %v\n", fs.Args())
		return 2
	}
	if o.duration <= 0 || o.report <= 0 || o.sample <= 0 || o.workers <= 0 || o.churn < 0 || o.redisRestart < 0 {
		fmt.Fprintln(stderr, "soak: -duration, -report, -sample and -workers must be positive; -churn and -redis-restart not negative")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	logger := hclog.New(&hclog.LoggerOptions{Name: "soak", Output: stderr, Level: hclog.Info})
	if err := soak(ctx, o, stdout, logger); err != nil {
		fmt.Fprintln(stderr, "soak:", err)
		return 1
	}
	return 0
}

// soak starts the stack, runs the load and the faults, prints the table and
// judges the run.
func soak(ctx context.Context, o options, out io.Writer, log hclog.Logger) (err error) {
	startCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	s, err := stack.Start(startCtx, stack.Options{
		Logger:  log,
		Cluster: o.cluster,
		Env:     []string{"ORDERS_RATE_LIMIT=1000000", "ORDERS_RATE_PERIOD=1m", "GATEWAY_DEREGISTER_DELAY=1s"},
	})
	cancel()
	if err != nil {
		return err
	}
	defer func() {
		log.Info("stopping the stack")
		if serr := s.Stop(); serr != nil && err == nil {
			err = fmt.Errorf("stop: %w", serr)
		}
	}()
	tokens := make([]string, o.workers)
	for i := range tokens {
		if tokens[i], err = s.Token(ctx, "soak-"+strconv.Itoa(i)); err != nil {
			return err
		}
	}

	runCtx, cancelRun := context.WithTimeout(ctx, o.duration)
	defer cancelRun()
	l := &load{}
	var wg sync.WaitGroup
	for i := 0; i < o.workers; i++ {
		wg.Go(func() { l.worker(runCtx, s, i, tokens[i], o.pause) })
	}
	events := &eventLog{}
	faultErr := make(chan error, 1)
	wg.Go(func() { faultErr <- faults(runCtx, s, o, events, log) })

	began := time.Now()
	fmt.Fprintf(out, "soak: %d gateways, %d instances, %d clients, %v; instance restart every %v, Redis restart every %v\n\n",
		len(s.Gateways), len(s.Instances), o.workers, o.duration, o.churn, o.redisRestart)
	fmt.Fprintln(out, "| time | RSS MiB (max) | open fds (max) | goroutines (max) | 200 | 429 | 5xx | other | no answer | events |")
	fmt.Fprintln(out, "|---|---|---|---|---|---|---|---|---|---|")
	var samples []sample
	var last counts
	sampleT := time.NewTicker(o.sample)
	defer sampleT.Stop()
	nextReport := began.Add(o.report)
	client := &http.Client{Timeout: 5 * time.Second}
	row := func(sm sample) {
		c := l.snapshot()
		fmt.Fprintf(out, "| %s | %.1f | %d | %d | %d | %d | %d | %d | %d | %s |\n",
			sm.at.Round(time.Second), maxOf(sm.rss)/(1<<20), int(maxOf(sm.fds)), int(maxOf(sm.goroutines)),
			c.ok-last.ok, c.limited-last.limited, c.s5xx-last.s5xx, c.other-last.other, c.noAnswer-last.noAnswer, events.take())
		last = c
	}
loop:
	for {
		select {
		case <-runCtx.Done():
			break loop
		case now := <-sampleT.C:
			sm, err := sampleGateways(ctx, client, s, now.Sub(began))
			if err != nil {
				log.Warn("sample failed", "error", err)
				continue
			}
			samples = append(samples, sm)
			if !now.Before(nextReport) {
				nextReport = nextReport.Add(o.report)
				row(sm)
			}
		}
	}
	wg.Wait()
	if ctx.Err() == nil {
		// The interval the run ended in.
		if sm, err := sampleGateways(ctx, client, s, time.Since(began)); err == nil {
			samples = append(samples, sm)
			row(sm)
		}
	}
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}
	var problems []string
	if err := <-faultErr; err != nil {
		problems = append(problems, "faults: "+err.Error())
	}
	c := l.snapshot()
	fmt.Fprintf(out, "\ntotal: %d requests: %d 200, %d 429, %d 5xx, %d other, %d without an answer\n",
		c.total(), c.ok, c.limited, c.s5xx, c.other, c.noAnswer)
	if f := c.s5xx + c.other + c.noAnswer; f > 0 {
		problems = append(problems, fmt.Sprintf("%d requests failed; first: %s", f, l.firstFailure()))
	}
	if c.ok == 0 {
		problems = append(problems, "no request succeeded")
	}
	problems = append(problems, growth(samples, len(s.Gateways))...)
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(out, "FAIL:", p)
		}
		return errors.New(strings.Join(problems, "; "))
	}
	fmt.Fprintln(out, "PASS: no failed request; no resource grew over the last half of the run")
	return nil
}

// faults restarts an echo instance every o.churn and Redis every o.redisRestart
// until ctx ends.
func faults(ctx context.Context, s *stack.Stack, o options, events *eventLog, log hclog.Logger) error {
	churn, redis := tick(o.churn), tick(o.redisRestart)
	defer churn.Stop()
	defer redis.Stop()
	next, master := 0, 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-churn.C:
			in := s.Instances[next%len(s.Instances)]
			next++
			if err := restart(ctx, in.Process, 15*time.Second); err != nil {
				return fmt.Errorf("restart %s: %w", in.Name, err)
			}
			events.add("restart " + in.Name)
			log.Info("instance restarted", "instance", in.Name)
		case <-redis.C:
			if len(s.RedisNodes) == 0 {
				if err := restart(ctx, s.Redis, 10*time.Second); err != nil {
					return fmt.Errorf("restart redis: %w", err)
				}
				events.add("restart redis")
				log.Info("redis restarted")
				continue
			}
			name, err := restartMaster(ctx, s, master)
			master++
			if err != nil {
				return err
			}
			events.add("restart master " + name)
			log.Info("redis master restarted", "node", name)
		}
	}
}

// tick returns a ticker for every d, or one that never fires for 0.
func tick(d time.Duration) *time.Ticker {
	if d == 0 {
		t := time.NewTicker(time.Hour)
		t.Stop()
		return t
	}
	return time.NewTicker(d)
}

// restart stops p with SIGTERM (killing it after grace) and starts it again.
func restart(ctx context.Context, p *proc.Process, grace time.Duration) error {
	_ = p.Stop(grace) // an error says it had to be killed; it is down either way
	if ctx.Err() != nil {
		return nil
	}
	startCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := p.Start(startCtx); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

// restartMaster stops one master of the Redis Cluster, waits until its replica
// has taken over, starts it again and waits until the cluster has three masters
// with a replica each again. It returns the node's name.
func restartMaster(ctx context.Context, s *stack.Stack, n int) (string, error) {
	nodes, err := tools.RedisClusterNodes(ctx, s.RedisAddrs()[0])
	if err != nil {
		return "", err
	}
	var masters []string
	for _, nd := range nodes {
		if nd.Master && !nd.Failing && nd.Slots > 0 {
			masters = append(masters, nd.Addr)
		}
	}
	if len(masters) == 0 {
		return "", errors.New("no master")
	}
	addr := masters[n%len(masters)]
	var p *proc.Process
	for _, q := range s.RedisNodes {
		if q.Addr == addr {
			p = q
		}
	}
	if p == nil {
		return "", fmt.Errorf("no node at %s", addr)
	}
	_ = p.Stop(10 * time.Second)
	wait, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	err = tools.Poll(wait, 100*time.Millisecond, func(ctx context.Context) error {
		return tools.RedisClusterReady(ctx, s.RedisAddrs(), 3, false, addr)
	})
	if err != nil {
		return p.Name, fmt.Errorf("no failover after %s stopped: %w", p.Name, err)
	}
	if err := p.Start(wait); err != nil {
		return p.Name, err
	}
	err = tools.Poll(wait, 100*time.Millisecond, func(ctx context.Context) error {
		return tools.RedisClusterReady(ctx, s.RedisAddrs(), 3, true)
	})
	if err != nil {
		return p.Name, fmt.Errorf("%s did not rejoin: %w", p.Name, err)
	}
	return p.Name, nil
}

// eventLog collects what happened between two table rows.
type eventLog struct {
	mu     sync.Mutex
	events []string
}

func (e *eventLog) add(s string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.events = append(e.events, s)
}

// take returns the events since the last take, comma separated.
func (e *eventLog) take() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := strings.Join(e.events, ", ")
	e.events = nil
	return s
}

// counts are the load's answers by kind.
type counts struct {
	ok, limited, s5xx, other, noAnswer int64
}

func (c counts) total() int64 { return c.ok + c.limited + c.s5xx + c.other + c.noAnswer }

// load sends requests and counts the answers.
type load struct {
	ok, limited, s5xx, other, noAnswer atomic.Int64
	mu                                 sync.Mutex
	first                              string
}

func (l *load) snapshot() counts {
	return counts{l.ok.Load(), l.limited.Load(), l.s5xx.Load(), l.other.Load(), l.noAnswer.Load()}
}

func (l *load) fail(msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.first == "" {
		l.first = time.Now().UTC().Format(time.TimeOnly) + " " + msg
	}
}

func (l *load) firstFailure() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.first
}

// worker sends requests until ctx ends: /api/users/N without a token and
// /api/orders/N with its own, over the replicas in turn.
func (l *load) worker(ctx context.Context, s *stack.Stack, id int, token string, pause time.Duration) {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	defer client.CloseIdleConnections()
	for i := id; ctx.Err() == nil; i++ {
		g := s.Gateways[i%len(s.Gateways)]
		path := "/api/users/" + strconv.Itoa(i)
		if i%2 == 1 {
			path = "/api/orders/" + strconv.Itoa(i)
		}
		req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodGet, g.URL(path), nil)
		if err != nil {
			panic(err) // a well-formed URL
		}
		if i%2 == 1 {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		switch {
		case err != nil:
			l.noAnswer.Add(1)
			l.fail(fmt.Sprintf("%s %s: %v", g.Name, path, err))
		default:
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			switch {
			case resp.StatusCode == http.StatusOK:
				l.ok.Add(1)
			case resp.StatusCode == http.StatusTooManyRequests:
				l.limited.Add(1)
			case resp.StatusCode >= 500:
				l.s5xx.Add(1)
				l.fail(fmt.Sprintf("%s %s: %s", g.Name, path, resp.Status))
			default:
				l.other.Add(1)
				l.fail(fmt.Sprintf("%s %s: %s", g.Name, path, resp.Status))
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
	}
}

// sample is one reading of every replica's resources.
type sample struct {
	at                   time.Duration
	rss, fds, goroutines []float64 // by replica
}

// sampleGateways reads process_resident_memory_bytes, process_open_fds and
// go_goroutines from every replica's /metrics.
func sampleGateways(ctx context.Context, client *http.Client, s *stack.Stack, at time.Duration) (sample, error) {
	sm := sample{at: at}
	for _, g := range s.Gateways {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.AdminURL("/metrics"), nil)
		if err != nil {
			return sm, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return sm, fmt.Errorf("%s: %w", g.Name, err)
		}
		vals := map[string]float64{}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			for _, name := range []string{"process_resident_memory_bytes", "process_open_fds", "go_goroutines"} {
				if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
					f, err := strconv.ParseFloat(v, 64)
					if err == nil {
						vals[name] = f
					}
				}
			}
		}
		resp.Body.Close()
		if len(vals) != 3 {
			return sm, fmt.Errorf("%s: /metrics lacks process or Go metrics", g.Name)
		}
		sm.rss = append(sm.rss, vals["process_resident_memory_bytes"])
		sm.fds = append(sm.fds, vals["process_open_fds"])
		sm.goroutines = append(sm.goroutines, vals["go_goroutines"])
	}
	return sm, nil
}

func maxOf(v []float64) float64 {
	m := math.Inf(-1)
	for _, x := range v {
		m = max(m, x)
	}
	return m
}

// growth judges the samples of the last half of the run: a resource of a replica
// grows without bound when the least-squares line through its samples rises
// over that half by more than the resource's slack, and its last quarter's mean
// is above its third quarter's by more than half that slack (a rise that goes
// on, not a step at one restart). Slack: RSS 16 MiB + 25 % of its mean, 20
// file descriptors + 25 %, 50 goroutines + 25 %. It returns one line per
// resource that grew.
func growth(samples []sample, replicas int) []string {
	if len(samples) < 4 {
		return []string{fmt.Sprintf("only %d resource samples: run longer than 4 × -sample", len(samples))}
	}
	half := samples[len(samples)/2:]
	var out []string
	for r := 0; r < replicas; r++ {
		for _, res := range []struct {
			name  string
			get   func(sample) float64
			slack float64
			unit  float64
		}{
			{"RSS (MiB)", func(s sample) float64 { return s.rss[r] }, 16 << 20, 1 << 20},
			{"open fds", func(s sample) float64 { return s.fds[r] }, 20, 1},
			{"goroutines", func(s sample) float64 { return s.goroutines[r] }, 50, 1},
		} {
			xs, ys := make([]float64, len(half)), make([]float64, len(half))
			for i, s := range half {
				xs[i], ys[i] = s.at.Seconds(), res.get(s)
			}
			slope, mean := fit(xs, ys)
			rise := slope * (xs[len(xs)-1] - xs[0])
			slack := res.slack + 0.25*mean
			q := len(ys) / 2
			late := avg(ys[q:]) - avg(ys[:q])
			if rise > slack && late > slack/2 {
				out = append(out, fmt.Sprintf("gateway-%d %s grew by %.1f over the last half (from %.1f to %.1f; slack %.1f)",
					r+1, res.name, rise/res.unit, ys[0]/res.unit, ys[len(ys)-1]/res.unit, slack/res.unit))
			}
		}
	}
	return out
}

// fit returns the least-squares slope of ys over xs and the mean of ys.
func fit(xs, ys []float64) (slope, mean float64) {
	mx, my := avg(xs), avg(ys)
	var num, den float64
	for i := range xs {
		num += (xs[i] - mx) * (ys[i] - my)
		den += (xs[i] - mx) * (xs[i] - mx)
	}
	if den == 0 {
		return 0, my
	}
	return num / den, my
}

func avg(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	var s float64
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}
