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
	fmt.Fprintf(&b, "| target | req/s (median) | p50 | p99 | proxy CPU/req µs (min–max) | req/s ÷ floor | CPU/req ÷ floor | target (issue 2) |\n")
	fmt.Fprintf(&b, "|---|---:|---:|---:|---:|---:|---:|---|\n")
	for _, t := range h.targets {
		s := sums[t.key]
		cpu, cpuRatio, goal := "—", "—", ""
		if t.proxy != nil {
			cpu = fmt.Sprintf("%.1f (%.1f–%.1f)", s.proxyUS, s.minUS, s.maxUS)
			cpuRatio = fmt.Sprintf("%.2f×", ratio(s.proxyUS, floor.proxyUS))
		}
		if t.limit > 0 {
			verdict := "met"
			if ratio(s.proxyUS, floor.proxyUS) > t.limit {
				verdict = "**missed**"
			}
			goal = fmt.Sprintf("≤ %.2f×: %s", t.limit, verdict)
		}
		fmt.Fprintf(&b, "| %s | %.0f | %s | %s | %s | %.2f× | %s | %s |\n",
			t.label, s.rps, fmtDur(s.p50), fmtDur(s.p99), cpu, ratio(s.rps, floor.rps), cpuRatio, goal)
	}

	cmd := "go run ./bench/e2e"
	if len(args) > 0 {
		cmd += " " + strings.Join(args, " ")
	}
	fmt.Fprintf(&b, "\nCommand: `%s` (wrk: `%s`).\n", cmd, strings.Join(h.wrkArgv("URL", o.duration), " "))
	fmt.Fprintf(&b, "%d rounds × %d s per target, targets alternating (order rotated each round) after %d s of warm-up each; ", o.rounds, o.duration, o.warmup)
	fmt.Fprintf(&b, "medians over rounds. CPU/req is the proxy process's utime+stime from /proc/PID/stat (CLK_TCK %d) over the requests wrk completed.\n", h.clk)
	fmt.Fprintf(&b, "%s. GOMAXPROCS follows the affinity mask (1 per pinned process).\n", capitalize(h.pinNote))
	fmt.Fprintf(&b, "Machine: %s, %d CPUs, Linux %s, %s, %s. Load average before %s, after %s",
		h.env.cpuModel, h.env.ncpu, h.env.kernel, h.env.goVersion, h.env.wrkVersion, h.env.loadBefore, h.env.loadAfter)
	fmt.Fprintf(&b, " (other processes share the machine: the \"other load\" column below is the share of the proxy's CPU that went to work not ours while that proxy was measured).\n")
	fmt.Fprintf(&b, "Floor: httputil.ReverseProxy with Rewrite+SetURL, http.Transport{MaxIdleConnsPerHost: 1024, DisableCompression: true}, a sync.Pool BufferPool of 32 KiB buffers. ")
	fmt.Fprintf(&b, "Gateway: one static route `GET /bench`, one static instance, access log `json`")
	switch {
	case h.accessOut == "/dev/null":
		fmt.Fprintf(&b, " to /dev/null.\n")
	case accessLines >= 0:
		fmt.Fprintf(&b, " to a file (%d lines written).\n", accessLines)
	default:
		fmt.Fprintf(&b, " to %s.\n", h.accessOut)
	}
	if o.cpuprofile != "" {
		fmt.Fprintf(&b, "Profiling run: floor and gateway (served in-process by `e2e gateway`) wrote CPU and allocation profiles to %s; numbers include the profiler's overhead.\n", o.cpuprofile)
	}

	fmt.Fprintf(&b, "\n<details><summary>Per round</summary>\n\n")
	fmt.Fprintf(&b, "| round | target | req/s | p50 | p99 | proxy µs/req | backend µs/req | requests | other load on proxy CPU |\n")
	fmt.Fprintf(&b, "|---:|---|---:|---:|---:|---:|---:|---:|---:|\n")
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
				fmt.Fprintf(&b, "| %d | %s | %.0f | %s | %s | %s | %.1f | %d | %s |\n",
					round, t.key, r.wrk.ReqPerSec, fmtDur(r.wrk.P50), fmtDur(r.wrk.P99), proxy, r.backendUS, r.wrk.Requests, other)
			}
		}
	}
	fmt.Fprintf(&b, "\n</details>\n")
	return b.String()
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
