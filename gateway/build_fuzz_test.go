package gateway

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"

	"github.com/infinityxone/gateway/gateway/config"
)

// hclString quotes s as an HCL string literal, or reports false for text this fuzz
// target does not try to express (invalid UTF-8, control characters).
func hclString(s string) (string, bool) {
	if !utf8.ValidString(s) {
		return "", false
	}
	var b strings.Builder
	b.WriteByte('"')
	for i, r := range s {
		switch {
		case r < 0x20 || r == 0x7f:
			return "", false
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case (r == '$' || r == '%') && strings.HasPrefix(s[i+1:], "{"):
			b.WriteRune(r) // "$${" is a literal "${", "%%{" a literal "%{"
			b.WriteRune(r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String(), true
}

// hclList quotes a comma-separated list as an HCL list of strings.
func hclList(csv string) (string, bool) {
	var items []string
	for _, s := range strings.Split(csv, ",") {
		q, ok := hclString(s)
		if !ok {
			return "", false
		}
		items = append(items, q)
	}
	return "[" + strings.Join(items, ", ") + "]", true
}

// serviceKnobs are the fuzzed numbers of the service's circuit_breaker and retry
// blocks; a block is written only when one of its numbers is not zero.
type serviceKnobs struct {
	threshold, halfOpen, minRequests, attempts, budgetMin int64
	ratio, budgetRatio                                    float64
}

// fuzzConfig renders two routes and a service from the fuzzed values; "" leaves an
// optional attribute out.
func fuzzConfig(lb, path0, hosts0, methods0, strip0, path1, hosts1, methods1 string, k serviceKnobs) (string, bool) {
	var b strings.Builder
	b.WriteString("gateway {\n  address = \"127.0.0.1:0\"\n}\nlog {\n  access_log = false\n}\n")
	q, ok := hclString(lb)
	if !ok {
		return "", false
	}
	fmt.Fprintf(&b, "service \"s\" {\n  load_balancer = %s\n  instance {\n    address = \"127.0.0.1:1\"\n  }\n", q)
	if k.threshold != 0 || k.halfOpen != 0 || k.minRequests != 0 || k.ratio != 0 {
		fmt.Fprintf(&b, "  circuit_breaker {\n    failure_threshold = %d\n    half_open_requests = %d\n    failure_ratio = %s\n    min_requests = %d\n  }\n",
			k.threshold, k.halfOpen, strconv.FormatFloat(k.ratio, 'f', -1, 64), max(k.minRequests, 1))
	}
	if k.attempts != 0 || k.budgetRatio != 0 || k.budgetMin != 0 {
		fmt.Fprintf(&b, "  retry {\n    attempts = %d\n    budget_ratio = %s\n    budget_min = %d\n  }\n",
			k.attempts, strconv.FormatFloat(k.budgetRatio, 'f', -1, 64), k.budgetMin)
	}
	b.WriteString("}\n")
	route := func(name, path, hosts, methods, strip string) bool {
		fmt.Fprintf(&b, "route %q {\n  service = \"s\"\n", name)
		q, ok := hclString(path)
		if !ok {
			return false
		}
		fmt.Fprintf(&b, "  path = %s\n", q)
		for _, a := range [][2]string{{"hosts", hosts}, {"methods", methods}} {
			if a[1] == "" {
				continue
			}
			l, ok := hclList(a[1])
			if !ok {
				return false
			}
			fmt.Fprintf(&b, "  %s = %s\n", a[0], l)
		}
		if strip != "" {
			q, ok := hclString(strip)
			if !ok {
				return false
			}
			fmt.Fprintf(&b, "  strip_prefix = %s\n", q)
		}
		b.WriteString("}\n")
		return true
	}
	if !route("r0", path0, hosts0, methods0, strip0) || !route("r1", path1, hosts1, methods1, "") {
		return "", false
	}
	return b.String(), true
}

// FuzzValidateThenBuild: whatever config validation accepts, New (what `gateway run`
// builds from a loaded config) builds; the route and service rules are the router's
// and the balancer's own, so the two never disagree.
func FuzzValidateThenBuild(f *testing.F) {
	for _, s := range [][8]string{
		{"round_robin", "/api/users/:id", "", "GET", "/api", "/api/*", "", ""},
		{"weighted", "/a/:1bad", "", "", "", "/a/b*c", "", ""},
		{"least_conn", "/r", "a..b", "", "", "/s", "[::1]", ""},
		{"ip_hash", "/p", "a.example.test", "GET", "", "/p", "", "GET"},
		{"random", "/p", "*.example.test", "", "", "/p", "a.example.test,*", "POST,get"},
		{"fastest", "/p", "", "", "", "/q", "", ""},
		{"", "/café/x", "", "", "/café", "/caf%C3%A9/y", "", ""},
		{"round_robin", "/x/*", "b.example", "", "", "/x/*rest", "B.example.", "DELETE"},
		{"round_robin", "/a/..%2Fb", "", "", "", "/a/..;x", "", ""},
		{"round_robin", "/a/b", "a.test:80", "G T", "/a/", "/a/b/", "", "M-SEARCH"},
		{"round_robin", "/${x}", "", "", "", "/%{y}", "", ""},
	} {
		f.Add(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], int64(0), int64(0), int64(0), 0.0, int64(0), 0.0, int64(0))
	}
	for _, k := range []serviceKnobs{
		{threshold: 5, halfOpen: 1, minRequests: 10, ratio: 0.5, attempts: 3, budgetRatio: 0.2, budgetMin: 10},
		{threshold: 1, halfOpen: 2000000000, minRequests: 1, attempts: 1},
		{threshold: 1 << 40, halfOpen: 1 << 40, minRequests: 1 << 40, ratio: 1, attempts: 1 << 40, budgetRatio: 1, budgetMin: 1 << 40},
		{threshold: -1, ratio: 0.5, halfOpen: 1},
	} {
		f.Add("round_robin", "/p", "", "", "", "/q", "", "", k.threshold, k.halfOpen, k.minRequests, k.ratio, k.attempts, k.budgetRatio, k.budgetMin)
	}
	f.Fuzz(func(t *testing.T, lb, path0, hosts0, methods0, strip0, path1, hosts1, methods1 string,
		threshold, halfOpen, minRequests int64, ratio float64, attempts int64, budgetRatio float64, budgetMin int64) {
		k := serviceKnobs{threshold: threshold, halfOpen: halfOpen, minRequests: minRequests, ratio: ratio,
			attempts: attempts, budgetRatio: budgetRatio, budgetMin: budgetMin}
		src, ok := fuzzConfig(lb, path0, hosts0, methods0, strip0, path1, hosts1, methods1, k)
		if !ok {
			return
		}
		cfg, ds := config.ParseWithEnv(map[string][]byte{"fuzz.hcl": []byte(src)}, func(string) (string, bool) { return "", false })
		if len(ds) > 0 {
			return // refused by validate: fine, as long as run would not build it either
		}
		if got := cfg.Routes[0].Path; got != path0 {
			t.Fatalf("the fuzz config does not say what it means: path %q decoded as %q\n%s", path0, got, src)
		}
		g, err := New(cfg, Options{Logger: hclog.NewNullLogger()})
		if err != nil {
			t.Fatalf("validate accepted, run refused: %v\n%s", err, src)
		}
		if table := g.cur.Load().table; table.Len() != 2 {
			t.Fatalf("table has %d routes", table.Len())
		}
		// A breaker the config asked for exists on every instance (a breaker that its
		// own settings refuse would be silently missing).
		if cfg.Services[0].CircuitBreaker != nil {
			for _, e := range g.Service("s").Set.Endpoints() {
				if breakerOf(e) == nil {
					t.Fatalf("validate accepted the circuit_breaker, but instance %s has none\n%s", e.Address, src)
				}
			}
		}
	})
}
