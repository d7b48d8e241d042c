package config

import (
	"slices"
	"strings"
	"testing"
)

// The route checks are the router's own (router.Check), so validate accepts exactly
// what the gateway builds; these cases pin the diagnostics and their positions.
func TestRouteRulesFromRouter(t *testing.T) {
	cases := []struct {
		name, src string
		want      []string
	}{
		{"param name starts with a digit", "route \"r\" {\n  path = \"/a/:1bad\"\n  service = \"base\"\n}\n", []string{
			`t.hcl:2:3: route "r": malformed path pattern "/a/:1bad": parameter ":1bad": name must match [A-Za-z_][A-Za-z0-9_]*`}},
		{"star inside a segment", "route \"r\" {\n  path = \"/a/b*c\"\n  service = \"base\"\n}\n", []string{
			`t.hcl:2:3: route "r": malformed path pattern "/a/b*c": '*' is allowed only as a whole last segment ("*" or "*name")`}},
		{"hidden dot segment", "route \"r\" {\n  path = \"/a/%2e%2E/b\"\n  service = \"base\"\n}\n", []string{
			`t.hcl:2:3: route "r": malformed path pattern "/a/%2e%2E/b": segment "%2e%2E": dot segments never survive normalisation`}},
		{"empty host label", "route \"r\" {\n  path = \"/r\"\n  service = \"base\"\n  hosts = [\"ok.test\", \"a..b\"]\n}\n", []string{
			`t.hcl:4:23: route "r": malformed host "a..b": empty label`}},
		{"host with a port", "route \"r\" {\n  path = \"/r\"\n  service = \"base\"\n  hosts = [\"a.test:8080\"]\n}\n", []string{
			`t.hcl:4:12: route "r": malformed host "a.test:8080": must not carry a port (the port of a request's Host is ignored); write IPv6 as [addr]`}},
		{"star in the middle of a host", "route \"r\" {\n  path = \"/r\"\n  service = \"base\"\n  hosts = [\"a.*.test\"]\n}\n", []string{
			`t.hcl:4:12: route "r": malformed host "a.*.test": '*' is allowed only as a whole first label ("*.example.com")`}},
		{"two exact hosts", "route \"a\" {\n  hosts = [\"x.test\"]\n  path = \"/base\"\n  service = \"base\"\n}\nroute \"b\" {\n  hosts = [\"y.test\", \"X.test.\"]\n  path = \"/base\"\n  service = \"base\"\n}\n", []string{
			`t.hcl:6:1: route "b" conflicts with route "a" at t.hcl:1:1: both match every method /base on host x.test`}},
		{"two wildcard hosts", "route \"a\" {\n  hosts = [\"*.x.test\"]\n  methods = [\"GET\"]\n  path = \"/u/:id\"\n  service = \"base\"\n}\nroute \"b\" {\n  hosts = [\"*.X.test\"]\n  methods = [\"get\"]\n  path = \"/u/:name\"\n  service = \"base\"\n}\n", []string{
			`t.hcl:7:1: route "b" conflicts with route "a" at t.hcl:1:1: both match GET /u/:name on host *.x.test`}},
		{"two host-less routes", "route \"a\" {\n  path = \"/caf%C3%A9\"\n  service = \"base\"\n}\nroute \"b\" {\n  path = \"/café\"\n  service = \"base\"\n}\n", []string{
			`t.hcl:5:1: route "b" conflicts with route "a" at t.hcl:1:1: both match every method /café`}},
		{"strip prefix of a hidden dot", "route \"r\" {\n  path = \"/api/users\"\n  service = \"base\"\n  strip_prefix = \"/api/%2e\"\n}\n", []string{
			`t.hcl:4:3: route "r": malformed strip prefix "/api/%2e": is not a leading part of path "/api/users"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, ds := ParseWithEnv(map[string][]byte{"t.hcl": []byte(tc.src + tail)}, envOf(nil))
			if cfg != nil {
				t.Errorf("got a config along with diagnostics")
			}
			if got := diagStrings(ds); !slices.Equal(got, tc.want) {
				t.Errorf("diagnostics:\n got: %s\nwant: %s", strings.Join(got, "\n      "), strings.Join(tc.want, "\n      "))
			}
		})
	}
}

// A host-less default route next to host-specific overrides of the same method and
// path is precedence, not a conflict; so is a route with methods next to one without.
func TestHostPrecedenceIsNotAConflict(t *testing.T) {
	src := `
route "default" {
  path    = "/p"
  service = "base"
}
route "exact" {
  hosts   = ["a.example.test"]
  path    = "/p"
  service = "base"
}
route "wildcard" {
  hosts   = ["*.example.test"]
  path    = "/p"
  service = "base"
}
route "ipv6" {
  hosts   = ["[::1]", "127.0.0.1", "Local.Test."]
  path    = "/p"
  service = "base"
}
route "exact-get" {
  hosts   = ["a.example.test"]
  methods = ["GET"]
  path    = "/q/*"
  service = "base"
}
route "any-method" {
  hosts   = ["a.example.test", "b.example.test"]
  path    = "/q/*rest"
  service = "base"
}
`
	cfg := mustParse(t, src+tail, nil)
	if len(cfg.Routes) != 7 {
		t.Fatalf("got %d routes", len(cfg.Routes))
	}
}

// strip_prefix is kept in the form normalised request paths start with, so the proxy
// strips "/café" from "/caf%C3%A9/x".
func TestStripPrefixCanonical(t *testing.T) {
	cases := map[string]string{"/café": "/caf%C3%A9", "/%41pi/": "/Api/", "/": "/", "/caf%c3%a9": "/caf%C3%A9"}
	for prefix, want := range cases {
		path := "/Api/x"
		if strings.Contains(want, "caf") {
			path = "/café/x"
		}
		src := "route \"r\" {\n  path = \"" + path + "\"\n  service = \"base\"\n  strip_prefix = \"" + prefix + "\"\n}\n"
		cfg := mustParse(t, src+tail, nil)
		if got := cfg.Routes[0].StripPrefix; got != want {
			t.Errorf("strip_prefix %q = %q, want %q", prefix, got, want)
		}
	}
}

// The breaker's own settings check runs at validation: the gateway builds a breaker per
// instance from them, and one it refused would be silently missing.
func TestBreakerSettingsFromBreaker(t *testing.T) {
	src := "service \"s\" {\n  instance {\n    address = \"127.0.0.1:1\"\n  }\n  circuit_breaker {\n    half_open_requests = 2000000000\n  }\n}\n"
	_, ds := ParseWithEnv(map[string][]byte{"t.hcl": []byte(src + tail)}, envOf(nil))
	want := []string{`t.hcl:5:3: service "s" circuit_breaker: breaker: half-open requests 2000000000 is too large`}
	if got := diagStrings(ds); !slices.Equal(got, want) {
		t.Errorf("diagnostics:\n got: %s\nwant: %s", strings.Join(got, "\n      "), strings.Join(want, "\n      "))
	}
}
