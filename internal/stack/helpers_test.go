package stack

import (
	"slices"
	"testing"
)

func TestChildEnv(t *testing.T) {
	in := []string{
		"PATH=/usr/bin", "HOME=/root", "CONSUL_HTTP_ADDR=10.0.0.1:8500", "CONSUL_HTTP_TOKEN=secret",
		"JWT_SECRET=prod", "REDIS_ADDR=redis:6379", "GATEWAY_ADDR=0.0.0.0:80", "ECHO_SERVICE=x",
		"CONSUL_BIN=/opt/consul", "ORDERS_RATE_LIMIT=5",
	}
	want := []string{"PATH=/usr/bin", "HOME=/root", "CONSUL_BIN=/opt/consul", "ORDERS_RATE_LIMIT=5"}
	if got := childEnv(in); !slices.Equal(got, want) {
		t.Fatalf("childEnv = %q, want %q", got, want)
	}
}

func TestModLine(t *testing.T) {
	for _, tc := range []struct{ gomod, want string }{
		{"module github.com/infinityxone/gateway\n\ngo 1.26\n", modulePath},
		{"// comment\nmodule \"github.com/infinityxone/gateway\"\n", modulePath},
		{"  module example.com/other  \n", "example.com/other"},
		{"go 1.26\n", ""},
	} {
		if got := modLine(tc.gomod); got != tc.want {
			t.Errorf("modLine(%q) = %q, want %q", tc.gomod, got, tc.want)
		}
	}
}

func TestWriteConfigRejectsBadNames(t *testing.T) {
	for _, name := range []string{"../x.hcl", "sub/x.hcl", "x.txt", "gateway.hcl"} {
		s := &Stack{Dir: t.TempDir(), opts: Options{Config: "../../deploy/gateway.hcl", ExtraConfig: map[string]string{name: ""}}}
		if err := mkdirs(s.Dir); err != nil {
			t.Fatal(err)
		}
		if err := s.writeConfig(); err == nil {
			t.Errorf("extra config %q accepted", name)
		}
	}
}
