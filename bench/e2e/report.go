package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// summary is one target's medians over its rounds.
type summary struct {
	rps, proxyUS, minUS, maxUS float64
	p50, p99                   time.Duration
}

func summarize(rs []roundResult) summary {
	var s summary
	pick := func(f func(roundResult) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		return median(v)
	}
	s.rps = pick(func(r roundResult) float64 { return r.wrk.ReqPerSec })
	s.proxyUS = pick(func(r roundResult) float64 { return r.proxyUS })
	s.p50 = time.Duration(pick(func(r roundResult) float64 { return float64(r.wrk.P50) }))
	s.p99 = time.Duration(pick(func(r roundResult) float64 { return float64(r.wrk.P99) }))
	for i, r := range rs {
		if i == 0 || r.proxyUS < s.minUS {
			s.minUS = r.proxyUS
		}
		if i == 0 || r.proxyUS > s.maxUS {
			s.maxUS = r.proxyUS
		}
	}
	return s
}

// median of v (the mean of the middle two for an even count).
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// report renders the Markdown report: the table, then how it was made.
func (h *harness) report(args []string, accessLines int64) string {
	o := h.opts
	var b strings.Builder
	sums := make(map[string]summary, len(h.targets))
	for _, t := range h.targets {
		sums[t.key] = summarize(t.rounds)
	}
	floor := sums["floor"]

	fmt.Fprintf(&b, "\n## End-to-end load: wrk → proxy → Go backend on loopback\n\n")
	var floorRounds []roundResult
	for _, t := range h.targets {
		if t.key == "floor" {
			floorRounds = t.rounds
		}
	}
	fmt.Fprintf(&b, "| target | req/s (median) | p50 | p99 | proxy CPU/req µs (min–max) | req/s ÷ floor | CPU/req ÷ floor | CPU/req ÷ floor per round: median (range) | CPU/req target |\n")
	fmt.Fprintf(&b, "|---|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, t := range h.targets {
		s := sums[t.key]
		cpu, cpuRatio, perRound, goal := "—", "—", "—", ""
		if t.proxy != nil {
			cpu = fmt.Sprintf("%.1f (%.1f–%.1f)", s.proxyUS, s.minUS, s.maxUS)
			cpuRatio = fmt.Sprintf("%.2f×", ratio(s.proxyUS, floor.proxyUS))
			if med, lo, hi := roundCPURatios(t.rounds, floorRounds); med > 0 {
				perRound = fmt.Sprintf("%.2f× (%.2f–%.2f)", med, lo, hi)
			}
		}
		if t.cpuLimit > 0 {
			verdict := "met"
			if ratio(s.proxyUS, floor.proxyUS) > t.cpuLimit {
				verdict = "**missed**"
			}
			goal = fmt.Sprintf("≤ %.2f× (issue %s): %s", t.cpuLimit, t.cpuIssue, verdict)
		}
		fmt.Fprintf(&b, "| %s | %.0f | %s | %s | %s | %.2f× | %s | %s | %s |\n",
			t.label, s.rps, fmtDur(s.p50), fmtDur(s.p99), cpu, ratio(s.rps, floor.rps), cpuRatio, perRound, goal)
	}

	h.featureTable(&b, sums)

	cmd := "go run ./bench/e2e"
	if len(args) > 0 {
		cmd += " " + strings.Join(args, " ")
	}
	fmt.Fprintf(&b, "\nCommand: `%s` (wrk: `%s`).\n", cmd, strings.Join(h.wrkArgv("URL", o.duration, nil), " "))
	fmt.Fprintf(&b, "%d rounds × %d s per target, targets alternating (order rotated each round) after %d s of warm-up each; ", o.rounds, o.duration, o.warmup)
	fmt.Fprintf(&b, "medians over rounds. CPU/req is the proxy process's utime+stime from /proc/PID/stat (CLK_TCK %d) over the requests wrk completed.\n", h.clk)
	fmt.Fprintf(&b, "%s. GOMAXPROCS follows the affinity mask (1 per pinned process).\n", capitalize(h.pinNote))
	fmt.Fprintf(&b, "Machine: %s, %d CPUs, Linux %s, %s, %s. Load average before %s, after %s",
		h.env.cpuModel, h.env.ncpu, h.env.kernel, h.env.goVersion, h.env.wrkVersion, h.env.loadBefore, h.env.loadAfter)
	fmt.Fprintf(&b, " (other processes share the machine: the \"other load\" column below is the share of the proxy's CPU that went to work not ours while that proxy was measured).\n")
	fmt.Fprintf(&b, "Floor: httputil.ReverseProxy with Rewrite+SetURL, http.Transport{MaxIdleConnsPerHost: 1024, DisableCompression: true}, a sync.Pool BufferPool of 32 KiB buffers. ")
	fmt.Fprintf(&b, "Gateway: one static route `GET /bench`, one static instance, upstream requests through the gateway's HTTP/1.1 pool")
	if slices.ContainsFunc(h.targets, func(t *target) bool { return len(t.env) > 0 }) {
		fmt.Fprintf(&b, " (gateway-nethttp: the same with %s=1, every upstream request through net/http's Transport)", upstreamNetHTTPEnv)
	}
	logOn := slices.ContainsFunc(h.targets, func(t *target) bool { return strings.Contains(t.logBlock, "access_log = true") })
	switch {
	case !logOn:
		fmt.Fprintf(&b, ", access log off.\n")
	case h.accessOut == "/dev/null":
		fmt.Fprintf(&b, "; access log `json` to /dev/null.\n")
	case accessLines >= 0:
		fmt.Fprintf(&b, "; access log `json` to a file (%d lines written).\n", accessLines)
	default:
		fmt.Fprintf(&b, "; access log `json` to %s.\n", h.accessOut)
	}
	var feats []*target
	for _, t := range h.targets {
		if t.feature() {
			feats = append(feats, t)
		}
	}
	if len(feats) > 0 {
		fmt.Fprintf(&b, "Feature rows: the same gateway, route and backend, access log off, each in its own process, plus:\n")
		for _, t := range feats {
			fmt.Fprintf(&b, "- %s: %s.", t.key, t.what)
			if t.check != "" {
				fmt.Fprintf(&b, " After the run, its metrics: %s.", t.check)
			}
			fmt.Fprintf(&b, "\n")
		}
		if slices.ContainsFunc(feats, func(t *target) bool { return t.redis != nil }) {
			fmt.Fprintf(&b, "redis-server (%s) runs with wrk and the backend%s, standing for another machine; its CPU per request is the Redis column.\n",
				h.env.redisVersion, pinnedWhere(h.loadCPU))
		}
	}
	if o.cpuprofile != "" {
		fmt.Fprintf(&b, "Profiling run: floor and gateway (served in-process by `e2e gateway`) wrote CPU and allocation profiles to %s; numbers include the profiler's overhead.\n", o.cpuprofile)
	}

	fmt.Fprintf(&b, "\n<details><summary>Per round</summary>\n\n")
	fmt.Fprintf(&b, "| round | target | req/s | p50 | p99 | proxy µs/req | backend µs/req | redis µs/req | requests | other load on proxy CPU |\n")
	fmt.Fprintf(&b, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for round := 1; round <= o.rounds; round++ {
		for _, t := range h.targets {
			for _, r := range t.rounds {
				if r.round != round {
					continue
				}
				proxy := "—"
				if t.proxy != nil {
					proxy = fmt.Sprintf("%.1f", r.proxyUS)
				}
				other := "—"
				if h.pinned && t.proxy != nil {
					other = fmt.Sprintf("%.0f%%", r.otherPct)
				}
				redis := "—"
				if t.redis != nil {
					redis = fmt.Sprintf("%.1f", r.redisUS)
				}
				fmt.Fprintf(&b, "| %d | %s | %.0f | %s | %s | %s | %.1f | %s | %d | %s |\n",
					round, t.key, r.wrk.ReqPerSec, fmtDur(r.wrk.P50), fmtDur(r.wrk.P99), proxy, r.backendUS, redis, r.wrk.Requests, other)
			}
		}
	}
	fmt.Fprintf(&b, "\n</details>\n")
	return b.String()
}

// featureTable renders the feature rows as ratios to the plain gateway (access log off)
// measured in the same run: the issues' throughput targets.
func (h *harness) featureTable(b *strings.Builder, sums map[string]summary) {
	var base *target
	for _, t := range h.targets {
		if t.key == baseGateway {
			base = t
		}
	}
	if base == nil {
		return
	}
	bs := sums[baseGateway]
	rows := 0
	for _, t := range h.targets {
		if !t.feature() {
			continue
		}
		if rows == 0 {
			fmt.Fprintf(b, "\n### Features, as ratios to the plain gateway (same run)\n\n")
			fmt.Fprintf(b, "| target | req/s (median) | p99 | proxy CPU/req µs (min–max) | req/s ÷ gateway (per round) | CPU/req ÷ gateway | CPU/req ÷ gateway per round: median (range) | capacity ÷ gateway | Redis CPU/req µs | issue target (req/s) | met? |\n")
			fmt.Fprintf(b, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n")
			fmt.Fprintf(b, "| %s | %.0f | %s | %.1f (%.1f–%.1f) | 1.00× | 1.00× | 1.00× | 1.00× | — |  |  |\n",
				base.label, bs.rps, fmtDur(bs.p99), bs.proxyUS, bs.minUS, bs.maxUS)
		}
		rows++
		s := sums[t.key]
		lo, hi := roundRatios(t.rounds, base.rounds)
		cmed, clo, chi := roundCPURatios(t.rounds, base.rounds)
		redis := "—"
		if t.redis != nil {
			redis = fmt.Sprintf("%.1f", median(redisUS(t.rounds)))
		}
		rps, capacity := ratio(s.rps, bs.rps), ratio(bs.proxyUS, s.proxyUS)
		verdict := func(q float64) string {
			if q < t.rpsGoal {
				return "**missed**"
			}
			return "met"
		}
		goal, met := fmt.Sprintf("≥ %.2f× (issue %s)", t.rpsGoal, t.issue), "req/s "+verdict(rps)+"; capacity "+verdict(capacity)
		if t.rpsGoal == 0 {
			goal, met = "none set (issue "+t.issue+")", "—"
		}
		fmt.Fprintf(b, "| %s | %.0f | %s | %.1f (%.1f–%.1f) | %.2f× (%.2f–%.2f) | %.2f× | %.2f× (%.2f–%.2f) | %.2f× | %s | %s | %s |\n",
			t.label, s.rps, fmtDur(s.p99), s.proxyUS, s.minUS, s.maxUS,
			rps, lo, hi, ratio(s.proxyUS, bs.proxyUS), cmed, clo, chi, capacity, redis, goal, met)
	}
	if rows > 0 {
		fmt.Fprintf(b, "\nCapacity is the plain gateway's CPU per request over this row's: the req/s ratio when the proxy's CPU is the bottleneck and nothing else runs on it. ")
		fmt.Fprintf(b, "On a shared machine it is the steadier of the two; req/s also moves with other processes' load on the proxy's CPU (the per-round table's last column). ")
		fmt.Fprintf(b, "The per-round CPU ratio pairs each round's row with the plain gateway's run of the same round, which takes out part of the drift in other load between rounds.\n")
	}
}

// roundCPURatios is the median, lowest and highest ratio of a target's proxy CPU per
// request to base's within a round.
func roundCPURatios(rs, base []roundResult) (med, lo, hi float64) {
	var qs []float64
	for _, r := range rs {
		for _, br := range base {
			if br.round == r.round && br.proxyUS > 0 {
				qs = append(qs, r.proxyUS/br.proxyUS)
			}
		}
	}
	if len(qs) == 0 {
		return 0, 0, 0
	}
	return median(qs), slices.Min(qs), slices.Max(qs)
}

// roundRatios is the lowest and highest req/s ratio of a target to base within a round.
func roundRatios(rs, base []roundResult) (lo, hi float64) {
	first := true
	for _, r := range rs {
		for _, br := range base {
			if br.round != r.round {
				continue
			}
			q := ratio(r.wrk.ReqPerSec, br.wrk.ReqPerSec)
			if first || q < lo {
				lo = q
			}
			if first || q > hi {
				hi = q
			}
			first = false
		}
	}
	return lo, hi
}

func redisUS(rs []roundResult) []float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = r.redisUS
	}
	return v
}

func pinnedWhere(cpu string) string {
	if cpu == "" {
		return " (unpinned)"
	}
	return " on CPU " + cpu
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// fmtDur prints a latency the way wrk does: µs below 1 ms, else ms with two decimals.
func fmtDur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.0f µs", float64(d)/1e3)
	case d < time.Second:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}
