package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/infinityxone/gateway/internal/proc"
)

// startTimeout bounds how long a helper with a readiness probe may take to be ready.
const startTimeout = 15 * time.Second

// stopGrace is how long a helper may take to exit after SIGTERM before it is killed.
const stopGrace = 5 * time.Second

// newProc describes a helper: argv pinned to cpu (taskset execs the program, so the
// PID is the program's), stderr to a log file in the work directory, stdout to
// stdout (nil: the log file too).
func (h *harness) newProc(name, cpu string, stdout *os.File, argv ...string) *proc.Process {
	argv = pinArgv(cpu, argv)
	p := &proc.Process{Name: name, Path: argv[0], Args: argv[1:], LogPath: filepath.Join(h.dir, name+".log")}
	if stdout != nil {
		p.Stdout = stdout
	}
	return p
}

// launch starts p, waiting at most startTimeout for its readiness probe if it has
// one; the harness stops it with the others at the end.
func (h *harness) launch(p *proc.Process) error {
	h.procs = append(h.procs, p)
	ctx, cancel := context.WithTimeout(h.ctx, startTimeout)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "e2e: started %-21s pid %-7d %s %s\n", p.Name, p.PID(), p.Path, strings.Join(p.Args, " "))
	return nil
}

// start starts a helper without a readiness probe (see newProc and launch).
func (h *harness) start(name, cpu string, stdout *os.File, argv ...string) (*proc.Process, error) {
	p := h.newProc(name, cpu, stdout, argv...)
	return p, h.launch(p)
}

// startEnv is start with env ("K=V") added to the harness's own environment.
func (h *harness) startEnv(name, cpu string, stdout *os.File, env []string, argv ...string) (*proc.Process, error) {
	p := h.newProc(name, cpu, stdout, argv...)
	if len(env) > 0 {
		p.Env = append(os.Environ(), env...)
		fmt.Fprintf(os.Stderr, "e2e: %s runs with %s\n", name, strings.Join(env, " "))
	}
	return p, h.launch(p)
}

// cleanup stops every process (proxies first, then the backend: SIGTERM, and
// SIGKILL after stopGrace) and removes the work directory unless -keep.
func (h *harness) cleanup() {
	for i := len(h.procs) - 1; i >= 0; i-- {
		_ = h.procs[i].Stop(stopGrace) // an error says it was killed or failed; it is down either way
	}
	if h.dir == "" {
		return
	}
	if h.opts.keep {
		fmt.Fprintf(os.Stderr, "e2e: work directory kept: %s\n", h.dir)
		return
	}
	_ = os.RemoveAll(h.dir)
}

// showLogs prints the tail of each helper's log after a failure.
func (h *harness) showLogs() {
	for _, p := range h.procs {
		if b := p.Tail(4096); b != "" {
			fmt.Fprintf(os.Stderr, "--- %s log (%s) ---\n%s\n", p.Name, p.LogPath, b)
		}
	}
}

// allowedCPUs lists the CPUs this process may run on, from /proc/self/status.
func allowedCPUs() []string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			return expandCPUList(strings.TrimSpace(v))
		}
	}
	return nil
}

// expandCPUList turns "0-2,4" into ["0" "1" "2" "4"].
func expandCPUList(s string) []string {
	var cpus []string
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			continue
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				continue
			}
		}
		for c := a; c <= b; c++ {
			cpus = append(cpus, strconv.Itoa(c))
		}
	}
	return cpus
}

// cpuTimes are one CPU's busy and total ticks from /proc/stat.
type cpuTimes struct{ busy, total int64 }

// cpuBusy reads /proc/stat for CPU cpu ("" = all CPUs).
func cpuBusy(cpu string) (cpuTimes, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}, err
	}
	return parseProcStat(string(b), cpu)
}

func parseProcStat(stat, cpu string) (cpuTimes, error) {
	want := "cpu" + cpu
	for line := range strings.SplitSeq(stat, "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || f[0] != want {
			continue
		}
		var t cpuTimes
		for i, s := range f[1:] {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return cpuTimes{}, err
			}
			if i >= 8 { // guest and guest_nice are already counted in user and nice
				break
			}
			t.total += n
			if i != 3 && i != 4 { // idle, iowait
				t.busy += n
			}
		}
		return t, nil
	}
	return cpuTimes{}, fmt.Errorf("/proc/stat: no %s line", want)
}

// envInfo describes the machine for the report.
type envInfo struct {
	cpuModel     string
	ncpu         int
	kernel       string
	goVersion    string
	wrkVersion   string
	redisVersion string
	loadBefore   string
	loadAfter    string
}

func gatherEnv() envInfo {
	e := envInfo{ncpu: runtime.NumCPU(), goVersion: runtime.Version(), loadBefore: readLoadavg()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				e.cpuModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		e.kernel = strings.TrimSpace(string(b))
	}
	out, _ := exec.Command("wrk", "-v").CombinedOutput() // exits 1 after printing its version
	first, _, _ := strings.Cut(string(out), "\n")
	first, _, _ = strings.Cut(first, " Copyright")
	e.wrkVersion = strings.TrimSpace(first)
	if out, err := exec.Command("redis-server", "--version").Output(); err == nil {
		e.redisVersion = strings.TrimSpace(string(out))
		for f := range strings.FieldsSeq(e.redisVersion) {
			if v, ok := strings.CutPrefix(f, "v="); ok {
				e.redisVersion = "Redis " + v
			}
		}
	}
	return e
}

func readLoadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
