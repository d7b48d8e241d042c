//go:build composetest

package composetest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// engine is a podman system service of the test's own: its storage, network
// configs, runtime state and unix socket all live under dir, so it shares nothing
// with another podman on the machine, and removing dir removes everything.
type engine struct {
	dir  string
	sock string
	env  []string // CONTAINERS_CONF etc., for podman commands and the image script
	svc  *exec.Cmd
	done chan struct{} // closed when svc has exited
	http *http.Client  // over sock
}

// containersConf is podman's containers.conf for the test. Debian's podman 4.3 as
// root on this kind of machine needs: no default ulimits (runc fails setting
// RLIMIT_NPROC otherwise), runc (crun refuses hybrid cgroups), cgroupfs and file
// events (no systemd).
const containersConf = `[containers]
default_ulimits = []
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{{dir}}/events.log"
tmp_dir = "{{dir}}/tmp"
volume_path = "{{dir}}/volumes"

[network]
network_backend = "netavark"
network_config_dir = "{{dir}}/networks"
`

// storageConf keeps images and containers under dir, on vfs (no overlay mounts).
const storageConf = `[storage]
driver = "vfs"
runroot = "{{dir}}/run"
graphroot = "{{dir}}/root"
`

// registriesConf names no registry to search: nothing is ever pulled.
const registriesConf = `unqualified-search-registries = []
short-name-mode = "disabled"
`

// startEngine starts the podman service and registers its teardown.
func startEngine(t *testing.T) *engine {
	t.Helper()
	podman, err := exec.LookPath("podman")
	if err != nil {
		t.Fatalf("podman not found: run scripts/install-tools.sh (make tools): %v", err)
	}
	dir, err := os.MkdirTemp("", "composetest")
	if err != nil {
		t.Fatal(err)
	}
	e := &engine{dir: dir, sock: filepath.Join(dir, "podman.sock"), done: make(chan struct{})}
	t.Cleanup(e.removeDir)
	for name, text := range map[string]string{
		"containers.conf": containersConf,
		"storage.conf":    storageConf,
		"registries.conf": registriesConf,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(strings.ReplaceAll(text, "{{dir}}", dir)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e.env = append(os.Environ(),
		"CONTAINERS_CONF="+filepath.Join(dir, "containers.conf"),
		"CONTAINERS_STORAGE_CONF="+filepath.Join(dir, "storage.conf"),
		"CONTAINERS_REGISTRIES_CONF="+filepath.Join(dir, "registries.conf"),
	)
	e.http = &http.Client{
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", e.sock)
			},
		},
		Timeout: 90 * time.Second, // a stop waits for the grace period (40s)
	}

	log, err := os.Create(filepath.Join(dir, "service.log"))
	if err != nil {
		t.Fatal(err)
	}
	e.svc = exec.Command(podman, "system", "service", "--time=0", "unix://"+e.sock)
	e.svc.Env = e.env
	e.svc.Stdout, e.svc.Stderr = log, log
	e.svc.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := e.svc.Start(); err != nil {
		log.Close()
		t.Fatalf("podman system service: %v", err)
	}
	go func() {
		_ = e.svc.Wait()
		log.Close()
		close(e.done)
	}()
	t.Cleanup(func() { e.stop(t) })

	deadline := time.Now().Add(60 * time.Second)
	for {
		var ping string
		err := e.call(context.Background(), "GET", "/_ping", nil, &ping)
		if err == nil {
			break
		}
		select {
		case <-e.done:
			t.Fatalf("podman system service exited: %s", e.tail("service.log"))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("podman service not answering on %s: %v\n%s", e.sock, err, e.tail("service.log"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("podman service on %s (state in %s)", e.sock, dir)
	return e
}

// call sends one request to the engine's Docker-compatible API (paths starting
// with /libpod go to podman's own API) and decodes a JSON answer into out.
func (e *engine) call(ctx context.Context, method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	prefix := "/v1.41"
	if strings.HasPrefix(path, "/libpod/") {
		prefix = "/v4.3.0"
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://podman"+prefix+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))
	}
	switch o := out.(type) {
	case nil:
		return nil
	case *string:
		*o = string(b)
		return nil
	default:
		return json.Unmarshal(b, out)
	}
}

// container is the part of the compat API's container list the test reads.
type container struct {
	ID              string            `json:"Id"`
	Names           []string          `json:"Names"`
	State           string            `json:"State"`
	Labels          map[string]string `json:"Labels"`
	NetworkSettings struct {
		Networks map[string]struct {
			IPAddress string `json:"IPAddress"`
		} `json:"Networks"`
	} `json:"NetworkSettings"`
}

// IP is the container's address on its (only) network.
func (c container) IP() string {
	for _, n := range c.NetworkSettings.Networks {
		if n.IPAddress != "" {
			return n.IPAddress
		}
	}
	return ""
}

// Name is the container's name without the leading slash.
func (c container) Name() string {
	if len(c.Names) == 0 {
		return c.ID[:12]
	}
	return strings.TrimPrefix(c.Names[0], "/")
}

// containers lists containers (all states when all) whose labels include every
// "key=value" of labels.
func (e *engine) containers(ctx context.Context, all bool, labels ...string) ([]container, error) {
	f, _ := json.Marshal(map[string][]string{"label": labels})
	var out []container
	err := e.call(ctx, "GET", "/containers/json?all="+strconv.FormatBool(all)+"&filters="+url.QueryEscape(string(f)), nil, &out)
	return out, err
}

// inspect is the part of a container's inspection the test reads.
type inspect struct {
	State struct {
		Status     string `json:"Status"`
		Running    bool   `json:"Running"`
		ExitCode   int    `json:"ExitCode"`
		StartedAt  string `json:"StartedAt"`
		FinishedAt string `json:"FinishedAt"`
		Health     *struct {
			Status string `json:"Status"`
		} `json:"Health"`
	} `json:"State"`
	Config struct {
		Healthcheck *struct {
			Test     []string      `json:"Test"`
			Interval time.Duration `json:"Interval"`
		} `json:"Healthcheck"`
	} `json:"Config"`
}

func (e *engine) inspect(ctx context.Context, id string) (inspect, error) {
	var out inspect
	err := e.call(ctx, "GET", "/containers/"+id+"/json", nil, &out)
	return out, err
}

// runHealthchecks runs, every container's health check on its interval until ctx
// ends. On Docker the engine schedules health checks itself; podman 4.3 leaves
// that to systemd timers, and there is no systemd here, so without this
// nothing would ever become healthy and compose's `condition: service_healthy`
// would wait forever. Each run goes through podman's own healthcheck endpoint,
// which records the result the way a timer would.
func (e *engine) runHealthchecks(ctx context.Context, t *testing.T, project string) (wait func()) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		last := map[string]time.Time{}
		interval := map[string]time.Duration{}
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			cs, err := e.containers(ctx, false, "com.docker.compose.project="+project)
			if err != nil {
				continue
			}
			for _, c := range cs {
				iv, seen := interval[c.ID]
				if !seen {
					in, err := e.inspect(ctx, c.ID)
					if err != nil {
						continue
					}
					iv = -1 // no health check
					if hc := in.Config.Healthcheck; hc != nil && len(hc.Test) > 0 && hc.Test[0] != "NONE" {
						iv = max(hc.Interval, time.Second)
					}
					interval[c.ID] = iv
				}
				if iv < 0 || time.Since(last[c.ID]) < iv {
					continue
				}
				last[c.ID] = time.Now()
				cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
				_ = e.call(cctx, "GET", "/libpod/containers/"+c.ID+"/healthcheck", nil, nil)
				cancel()
			}
		}
	}()
	return wg.Wait
}

// podman runs the podman command line against the test's storage.
func (e *engine) podman(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "podman", args...)
	cmd.Env = e.env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// stop removes whatever containers, networks and volumes are left, stops the
// service, and ends any process still running from the test's directory (conmon,
// aardvark-dns) by PID.
func (e *engine) stop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if cs, err := e.containers(ctx, true); err == nil {
		for _, c := range cs {
			if err := e.call(ctx, "DELETE", "/containers/"+c.ID+"?force=true&v=true", nil, nil); err != nil {
				t.Logf("cleanup: remove container %s: %v", c.Name(), err)
			}
		}
	}
	var nets []struct {
		Name string `json:"Name"`
	}
	if err := e.call(ctx, "GET", "/networks", nil, &nets); err == nil {
		for _, n := range nets {
			if n.Name != "podman" {
				_ = e.call(ctx, "DELETE", "/networks/"+url.PathEscape(n.Name), nil, nil)
			}
		}
	}
	_ = e.call(ctx, "POST", "/volumes/prune", nil, nil)

	_ = e.svc.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.done:
	case <-time.After(20 * time.Second):
		_ = e.svc.Process.Kill()
		<-e.done
	}
	killUnder(t, e.dir)
}

// killUnder kills every process whose command line names dir (conmon and
// aardvark-dns of the test's containers and networks are started with paths under
// it), so nothing the test started survives it.
func killUnder(t *testing.T, dir string) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	self := os.Getpid()
	for _, ent := range entries {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil || pid == self {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmdline, []byte(dir)) {
			continue
		}
		t.Logf("cleanup: killing leftover pid %d: %s", pid, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// removeDir unmounts anything left mounted under the directory, then removes it.
func (e *engine) removeDir() {
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		lines := strings.Split(string(b), "\n")
		for i := len(lines) - 1; i >= 0; i-- { // deepest (latest) first
			f := strings.Fields(lines[i])
			if len(f) > 4 && strings.HasPrefix(f[4], e.dir+"/") {
				_ = syscall.Unmount(f[4], syscall.MNT_DETACH)
			}
		}
	}
	_ = os.RemoveAll(e.dir)
}

// tail returns the end of a log file under the engine's directory.
func (e *engine) tail(name string) string {
	b, _ := os.ReadFile(filepath.Join(e.dir, name))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// buildImages runs scripts/compose-images.sh against the engine's storage.
func (e *engine) buildImages(t *testing.T, root string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute) // a first static consul build takes minutes
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "scripts", "compose-images.sh"))
	cmd.Dir = root
	cmd.Env = e.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/compose-images.sh: %v\n%s", err, out)
	}
	t.Logf("images built in %v", time.Since(start).Round(time.Second))
}
