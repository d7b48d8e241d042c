package stack_test

import (
	"bufio"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/infinityxone/gateway/gateway/config"
)

// repoRoot is the module root, seen from this package's directory.
const repoRoot = "../.."

// composeFile is the part of docker-compose.yml the checks below read.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Networks map[string]struct {
		IPAM struct {
			Config []struct {
				Subnet string `yaml:"subnet"`
			} `yaml:"config"`
		} `yaml:"ipam"`
	} `yaml:"networks"`
}

type composeService struct {
	Image string `yaml:"image"`
	Build *struct {
		Context string `yaml:"context"`
		Target  string `yaml:"target"`
	} `yaml:"build"`
	Command       []string          `yaml:"command"`
	Ports         []string          `yaml:"ports"`
	Expose        []string          `yaml:"expose"`
	Volumes       []string          `yaml:"volumes"`
	Environment   map[string]string `yaml:"environment"`
	Restart       string            `yaml:"restart"`
	ContainerName string            `yaml:"container_name"`
	Healthcheck   *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
	DependsOn map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Deploy struct {
		Replicas int `yaml:"replicas"`
	} `yaml:"deploy"`
}

// interpolate expands ${NAME:-default}, ${NAME-default} and ${NAME} the way compose
// does with every variable unset, so the checks see the file's defaults.
func interpolate(s string) string {
	re := regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:?-([^}]*))?\}`)
	s = re.ReplaceAllString(s, "$3")
	return strings.ReplaceAll(s, "$$", "$")
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(repoRoot, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var f composeFile
	if err := yaml.Unmarshal([]byte(interpolate(string(src))), &f); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return f
}

// TestComposeTopology checks what `docker-compose config -q` (run by make test)
// cannot: that docker-compose.yml describes the deployment of docs/operations.md — Consul,
// Redis, two example services registering through the agent, a scalable gateway
// built from the Dockerfile and configured by deploy/gateway.hcl, a front load
// balancer — with health checks and restart policies everywhere.
func TestComposeTopology(t *testing.T) {
	f := loadCompose(t)
	for _, name := range []string{"consul", "redis", "users", "orders", "gateway", "lb"} {
		if _, ok := f.Services[name]; !ok {
			t.Fatalf("service %q missing; have %v", name, slices.Sorted(maps.Keys(f.Services)))
		}
	}
	for name, s := range f.Services {
		if s.Restart != "unless-stopped" && s.Restart != "always" {
			t.Errorf("%s: restart %q, want unless-stopped or always", name, s.Restart)
		}
		if s.Healthcheck == nil || len(s.Healthcheck.Test) < 2 {
			t.Errorf("%s: no healthcheck", name)
		}
		if s.Build == nil {
			if !pinned(s.Image) {
				t.Errorf("%s: image %q is not pinned to a version", name, s.Image)
			}
		} else if s.Build.Context != "." {
			t.Errorf("%s: build context %q, want the repository (.)", name, s.Build.Context)
		}
	}

	if img := f.Services["consul"].Image; !strings.HasPrefix(img, "hashicorp/consul:1.14.") {
		t.Errorf("consul image %q: want the official hashicorp/consul, 1.14.x like the tests", img)
	}
	if img := f.Services["redis"].Image; !strings.HasPrefix(img, "redis:") {
		t.Errorf("redis image %q: want the official redis image", img)
	}
	if cmd := f.Services["consul"].Command; !slices.Contains(cmd, "-client") || !slices.Contains(cmd, "0.0.0.0") {
		t.Errorf("consul command %q: the agent must listen beyond loopback for the other containers", cmd)
	}

	gw := f.Services["gateway"]
	t.Run("gateway scales", func(t *testing.T) {
		if len(gw.Ports) > 0 {
			t.Errorf("gateway publishes %v: fixed host ports prevent --scale gateway=N; the lb publishes", gw.Ports)
		}
		if gw.ContainerName != "" {
			t.Errorf("gateway has container_name %q, which prevents scaling", gw.ContainerName)
		}
		if gw.Build == nil || gw.Build.Target != "gateway" {
			t.Errorf("gateway must be built from the Dockerfile's gateway target")
		}
		if gw.Deploy.Replicas < 2 {
			t.Errorf("gateway replicas %d, want several", gw.Deploy.Replicas)
		}
		for _, p := range []string{"8080", "9901"} {
			if !slices.Contains(gw.Expose, p) {
				t.Errorf("gateway does not expose %s", p)
			}
		}
		for _, dep := range []string{"consul", "redis"} {
			if gw.DependsOn[dep].Condition != "service_healthy" {
				t.Errorf("gateway depends_on %s: condition %q, want service_healthy", dep, gw.DependsOn[dep].Condition)
			}
		}
		if !strings.HasPrefix(gw.Environment["GATEWAY_ADMIN_ADDR"], "0.0.0.0:9901") {
			t.Errorf("GATEWAY_ADMIN_ADDR %q: the admin listener must be 0.0.0.0:9901 (lb and Consul check /readyz, the image's HEALTHCHECK /healthz)",
				gw.Environment["GATEWAY_ADMIN_ADDR"])
		}
		mount := "./deploy/gateway.hcl:" + gw.Environment["GATEWAY_CONFIG"]
		if !slices.ContainsFunc(gw.Volumes, func(v string) bool { return strings.HasPrefix(v, mount) }) {
			t.Errorf("gateway volumes %v: want %s mounted (GATEWAY_CONFIG)", gw.Volumes, mount)
		}
		var subnets []string
		for _, n := range f.Networks {
			for _, c := range n.IPAM.Config {
				subnets = append(subnets, c.Subnet)
			}
		}
		if tp := gw.Environment["GATEWAY_TRUSTED_PROXIES"]; !slices.Contains(subnets, tp) {
			t.Errorf("GATEWAY_TRUSTED_PROXIES %q is not the compose network's subnet %v", tp, subnets)
		}
	})

	// deploy/gateway.hcl must load with exactly the environment compose gives it,
	// and route to services that compose runs.
	cfg, ds := config.LoadWithEnv(filepath.Join(repoRoot, "deploy", "gateway.hcl"), func(k string) (string, bool) {
		v, ok := gw.Environment[k]
		return v, ok
	})
	if len(ds) > 0 {
		t.Fatalf("deploy/gateway.hcl with the compose environment:\n%v", ds)
	}
	if cfg.Consul == nil || cfg.Consul.Address != "consul:8500" || cfg.Redis == nil || cfg.Redis.Address != "redis:6379" {
		t.Fatalf("gateway config in compose: consul %+v, redis %+v; want consul:8500 and redis:6379", cfg.Consul, cfg.Redis)
	}
	if cfg.Admin.Address != "0.0.0.0:9901" || cfg.Gateway.Address != "0.0.0.0:8080" {
		t.Errorf("listeners %s and admin %s, want 0.0.0.0:8080 and 0.0.0.0:9901", cfg.Gateway.Address, cfg.Admin.Address)
	}
	echoes := map[string]composeService{}
	for name, s := range f.Services {
		if s.Build != nil && s.Build.Target == "echo" {
			echoes[s.Environment["ECHO_SERVICE"]] = s
			if s.Environment["CONSUL_HTTP_ADDR"] != "consul:8500" {
				t.Errorf("%s: CONSUL_HTTP_ADDR %q, want the consul container's agent", name, s.Environment["CONSUL_HTTP_ADDR"])
			}
			if !strings.HasPrefix(s.Environment["ECHO_LISTEN"], "0.0.0.0:") {
				t.Errorf("%s: ECHO_LISTEN %q: listen on every interface so the container IP is advertised", name, s.Environment["ECHO_LISTEN"])
			}
			if s.Deploy.Replicas < 2 || len(s.Ports) > 0 || s.ContainerName != "" {
				t.Errorf("%s: want several replicas, no host ports, no container_name", name)
			}
			if s.DependsOn["consul"].Condition == "" {
				t.Errorf("%s: does not depend on consul", name)
			}
		}
	}
	for _, svc := range cfg.Services {
		if svc.Consul == nil {
			t.Errorf("service %q is not discovered through Consul", svc.Name)
			continue
		}
		e, ok := echoes[svc.Consul.Name]
		if !ok {
			t.Errorf("service %q: no compose service registers %q", svc.Name, svc.Consul.Name)
			continue
		}
		tags := strings.Split(e.Environment["ECHO_TAGS"], ",")
		for _, tag := range svc.Consul.Tags {
			if !slices.Contains(tags, tag) {
				t.Errorf("service %q wants tag %q; its instances register %v", svc.Name, tag, tags)
			}
		}
	}

	t.Run("front load balancer", func(t *testing.T) {
		lb := f.Services["lb"]
		if len(lb.Ports) == 0 {
			t.Fatal("lb publishes no port: clients need one address")
		}
		if !slices.ContainsFunc(lb.Volumes, func(v string) bool { return strings.HasPrefix(v, "./deploy/haproxy.cfg:") }) {
			t.Fatalf("lb does not mount deploy/haproxy.cfg: %v", lb.Volumes)
		}
		cfg := readLines(t, filepath.Join(repoRoot, "deploy", "haproxy.cfg"))
		for _, want := range []*regexp.Regexp{
			regexp.MustCompile(`^nameserver \S+ "\$\{LB_DNS_SERVER-127\.0\.0\.11\}:53"$`), // Docker's DNS unless overridden
			regexp.MustCompile(`^server-template \S+ \d+ gateway:8080$`),                  // every replica
			regexp.MustCompile(`^option httpchk GET /readyz$`),                            // readiness
			regexp.MustCompile(`^default-server .*check port 9901 .*resolvers docker\b`),  // on the admin port
			regexp.MustCompile(`^bind :8080$`),
		} {
			if !slices.ContainsFunc(cfg, want.MatchString) {
				t.Errorf("deploy/haproxy.cfg has no line matching %s", want)
			}
		}
	})
}

// TestDockerfile checks the image recipe: a Go builder stage, static binaries, an
// unprivileged user, a health check on the admin /healthz, the gateway as the
// default (last) target and an echo target.
func TestDockerfile(t *testing.T) {
	lines := readLines(t, filepath.Join(repoRoot, "Dockerfile"))
	var stages []string
	stageOf := map[string][]string{}
	cur := ""
	for _, l := range lines {
		if strings.HasPrefix(l, "FROM ") {
			f := strings.Fields(l)
			cur = f[len(f)-1]
			if len(f) < 4 || !strings.EqualFold(f[len(f)-2], "AS") {
				t.Fatalf("unnamed stage: %s", l)
			}
			stages = append(stages, cur)
		}
		stageOf[cur] = append(stageOf[cur], l)
	}
	if len(stages) < 3 || stages[len(stages)-1] != "gateway" || !slices.Contains(stages, "echo") {
		t.Fatalf("stages %v: want a builder, an echo target, and gateway last (the default target)", stages)
	}
	if !strings.Contains(stageOf[stages[0]][0], "golang:") {
		t.Errorf("first stage %q does not build with the golang image", stageOf[stages[0]][0])
	}
	all := strings.Join(lines, "\n")
	for _, want := range []string{"CGO_ENABLED=0", "./cmd/gateway", "./examples/services/echo", "deploy/gateway.hcl"} {
		if !strings.Contains(all, want) {
			t.Errorf("Dockerfile does not mention %s", want)
		}
	}
	user := regexp.MustCompile(`^USER (\d+)`)
	users := 0
	for _, l := range lines {
		if m := user.FindStringSubmatch(l); m != nil {
			users++
			if m[1] == "0" {
				t.Errorf("%s: root", l)
			}
		}
	}
	if users == 0 {
		t.Error("no numeric USER: the images would run as root")
	}
	check := strings.Join(stageOf["gateway"], "\n")
	if !strings.Contains(check, "HEALTHCHECK") || !strings.Contains(check, ":9901/healthz") {
		t.Error("the gateway stage has no HEALTHCHECK on the admin /healthz")
	}
	st, err := os.Stat(filepath.Join(repoRoot, "deploy", "docker-entrypoint.sh"))
	if err != nil || st.Mode()&0o111 == 0 {
		t.Errorf("deploy/docker-entrypoint.sh missing or not executable: %v", err)
	}
	ignore := readLines(t, filepath.Join(repoRoot, ".dockerignore"))
	for _, want := range []string{".git", "bin/"} {
		if !slices.Contains(ignore, want) {
			t.Errorf(".dockerignore does not exclude %s", want)
		}
	}
}

// pinned reports whether an image reference names a version (not latest, not bare).
func pinned(image string) bool {
	_, tag, ok := strings.Cut(image, ":")
	return ok && tag != "" && tag != "latest" && strings.ContainsAny(tag, "0123456789")
}

// readLines returns the file's lines, trimmed, without blank and comment lines.
func readLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		out = append(out, l)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
