package stack_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/infinityxone/gateway/gateway/config"
)

// meshOverride is the part of docker-compose.mesh.yml the check below reads.
type meshOverride struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Command     []string          `yaml:"command"`
		NetworkMode string            `yaml:"network_mode"`
		Environment map[string]string `yaml:"environment"`
		Volumes     []string          `yaml:"volumes"`
		Deploy      struct {
			Replicas int `yaml:"replicas"`
		} `yaml:"deploy"`
	} `yaml:"services"`
}

// TestComposeMesh checks the mesh variant: each example service listens on loopback
// and has a sidecar in its network namespace for its own Consul ID, and the gateways
// mount deploy/gateway-mesh.hcl, a valid config that reaches both services through
// Connect. With docker-compose installed, the merged files must also pass its check.
func TestComposeMesh(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(repoRoot, "docker-compose.mesh.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var f meshOverride
	if err := yaml.Unmarshal([]byte(interpolate(string(src))), &f); err != nil {
		t.Fatalf("docker-compose.mesh.yml: %v", err)
	}
	for _, name := range []string{"users", "orders"} {
		app, ok := f.Services[name]
		if !ok {
			t.Fatalf("no %s override", name)
		}
		id := app.Environment["ECHO_ID"]
		if !strings.HasPrefix(app.Environment["ECHO_LISTEN"], "127.0.0.1:") || app.Environment["ECHO_SIDECAR_PORT"] == "" ||
			app.Environment["ECHO_HEALTH_LISTEN"] == "" || id == "" || app.Deploy.Replicas != 1 {
			t.Errorf("%s: %+v; want a loopback listener, a sidecar port, a health listener, a fixed ID, one replica", name, app)
		}
		sc, ok := f.Services[name+"-sidecar"]
		if !ok {
			t.Fatalf("no %s-sidecar", name)
		}
		if sc.NetworkMode != "service:"+name || !strings.HasPrefix(sc.Image, "hashicorp/consul:") ||
			!slices.Equal(sc.Command[:4], []string{"connect", "proxy", "-sidecar-for", id}) {
			t.Errorf("%s-sidecar: %+v", name, sc)
		}
	}
	if v := f.Services["gateway"].Volumes; len(v) != 1 || !strings.HasPrefix(v[0], "./deploy/gateway-mesh.hcl:/etc/gateway/gateway.hcl") {
		t.Errorf("gateway volumes %v", v)
	}
	env := map[string]string{"JWT_SECRET": strings.Repeat("x", 32)}
	cfg, ds := config.LoadWithEnv(filepath.Join(repoRoot, "deploy", "gateway-mesh.hcl"), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if len(ds) > 0 {
		t.Fatalf("deploy/gateway-mesh.hcl:\n%v", ds)
	}
	if cfg.Connect == nil || cfg.Connect.ServiceName != "gateway" {
		t.Errorf("connect %+v", cfg.Connect)
	}
	for _, s := range cfg.Services {
		if s.Consul == nil || !s.Consul.Connect {
			t.Errorf("service %s is not reached through Connect", s.Name)
		}
	}

	bin, err := exec.LookPath("docker-compose")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("docker-compose missing (make tools installs it)")
		}
		t.Log("docker-compose missing: the merged files were not checked with it")
		return
	}
	cmd := exec.Command(bin, "-f", "docker-compose.yml", "-f", "docker-compose.mesh.yml", "config", "-q")
	cmd.Dir = repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, out)
	}
}
