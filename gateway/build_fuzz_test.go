package gateway

import (
	"fmt"
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

// fuzzConfig renders two routes and a service from the fuzzed values; "" leaves an
// optional attribute out.
func fuzzConfig(lb, path0, hosts0, methods0, strip0, path1, hosts1, methods1 string) (string, bool) {
	var b strings.Builder
	b.WriteString("gateway {\n  address = \"127.0.0.1:0\"\n}\nlog {\n  access_log = false\n}\n")
	q, ok := hclString(lb)
	if !ok {
		return "", false
	}
	fmt.Fprintf(&b, "service \"s\" {\n  load_balancer = %s\n  instance {\n    address = \"127.0.0.1:1\"\n  }\n}\n", q)
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
		f.Add(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7])
	}
	f.Fuzz(func(t *testing.T, lb, path0, hosts0, methods0, strip0, path1, hosts1, methods1 string) {
		src, ok := fuzzConfig(lb, path0, hosts0, methods0, strip0, path1, hosts1, methods1)
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
		if g.table.Len() != 2 {
			t.Fatalf("table has %d routes", g.table.Len())
		}
	})
}
