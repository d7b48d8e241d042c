package config

import (
	"slices"
	"testing"
)

func TestConnectConfig(t *testing.T) {
	const svc = `
service "users" {
  consul {
    connect = true
  }
}
route "users" {
  path    = "/users"
  service = "users"
}
`
	t.Run("defaults to the registered name", func(t *testing.T) {
		cfg := mustParse(t, "consul {\n  register {\n    service = \"edge\"\n  }\n}\nconnect {}\n"+svc, nil)
		if cfg.Connect == nil || cfg.Connect.ServiceName != "edge" {
			t.Fatalf("connect %+v", cfg.Connect)
		}
		if sc := cfg.Services[0].Consul; sc == nil || !sc.Connect || sc.Name != "users" {
			t.Fatalf("service consul %+v", sc)
		}
	})
	t.Run("defaults to gateway", func(t *testing.T) {
		cfg := mustParse(t, "consul {}\nconnect {}\n"+svc, nil)
		if cfg.Connect.ServiceName != "gateway" {
			t.Fatalf("service_name %q", cfg.Connect.ServiceName)
		}
	})
	t.Run("explicit", func(t *testing.T) {
		cfg := mustParse(t, "consul {}\nconnect {\n  service_name = \"edge-1\"\n}\n"+tail, nil)
		if cfg.Connect.ServiceName != "edge-1" || cfg.Services[0].Consul != nil {
			t.Fatalf("connect %+v", cfg.Connect)
		}
	})
	for _, tc := range []struct {
		name, src string
		want      []string
	}{
		{"connect = true without a connect block", "consul {}\n" + svc, []string{
			`t.hcl:5:5: service "users" consul: connect = true needs a top-level connect block, the gateway's mesh identity (connect { service_name = "gateway" })`}},
		{"connect block without consul", "connect {}\n" + tail, []string{
			`t.hcl:1:1: connect: the connect block needs a top-level consul block: the leaf certificate and CA roots come from the Consul agent (consul {} takes the defaults)`}},
		{"bad service name", "consul {}\nconnect {\n  service_name = \"a/b\"\n}\n" + tail, []string{
			`t.hcl:3:3: connect: service_name "a/b": use letters, digits, '_', '-' and '.' only`}},
		{"two connect blocks", "consul {}\nconnect {}\nconnect {}\n" + tail, []string{
			`t.hcl:3:1: duplicate connect block; the first is at t.hcl:2:1`}},
		{"connect is a bool", "consul {}\nconnect {}\nservice \"s\" {\n  consul {\n    connect = \"yes\"\n  }\n}\n" + tail, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ds := ParseWithEnv(map[string][]byte{"t.hcl": []byte(tc.src)}, envOf(nil))
			got := diagStrings(ds)
			if tc.want == nil {
				if len(got) == 0 {
					t.Fatal("accepted")
				}
				return
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("diagnostics\n got: %q\nwant: %q", got, tc.want)
			}
		})
	}
}
