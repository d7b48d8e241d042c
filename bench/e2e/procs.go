package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a helper process the harness started and will stop by its PID.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// start runs argv pinned to cpu (taskset execs the program, so the PID is the program's),
// stderr to a log file in the work directory, stdout to stdout (nil: the log file too).
func (h *harness) start(name, cpu string, stdout *os.File, argv ...string) (*proc, error) {
	return h.startEnv(name, cpu, stdout, nil, argv...)
}

// startEnv is start with env ("K=V") added to the harness's own environment.
func (h *harness) startEnv(name, cpu string, stdout *os.File, env []string, argv ...string) (*proc, error) {
	argv = pinArgv(cpu, argv)
	logPath := filepath.Join(h.dir, name+".log")
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer lf.Close() // the child holds its own descriptor
	cmd := exec.Command(argv[0], argv[1:]...)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stderr = lf
	cmd.Stdout = lf
	if stdout != nil {
		cmd.Stdout = stdout
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	h.procs = append(h.procs, p)
	fmt.Fprintf(os.Stderr, "e2e: started %-21s pid %-7d %s\n", name, p.pid(), strings.Join(append(slices.Clip(env), argv...), " "))
	return p, nil
}

// stop sends SIGTERM to the process's PID, and SIGKILL if it has not exited in 5 s.
func (p *proc) stop() {
	if p.exited() {
		return
	}
	_ = syscall.Kill(p.pid(), syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(p.pid(), syscall.SIGKILL)
		<-p.done
	}
}

// cleanup stops every process (proxies first, then the backend) and removes the work
// directory unless -keep.
func (h *harness) cleanup() {
	for i := len(h.procs) - 1; i >= 0; i-- {
		h.procs[i].stop()
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
		b, err := os.ReadFile(p.logPath)
		if err != nil || len(b) == 0 {
			continue
		}
		if len(b) > 4096 {
			b = b[len(b)-4096:]
		}
		fmt.Fprintf(os.Stderr, "--- %s log (%s) ---\n%s\n", p.name, p.logPath, b)
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
