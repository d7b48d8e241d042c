package config

import (
	"strings"
	"testing"
)

func TestTracingAndAppFormat(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		cfg := mustParse(t, "tracing {}\n"+tail, nil)
		want := Tracing{Pos: cfg.Tracing.Pos, Endpoint: DefaultTracingEndpoint, SampleRatio: 1, ServiceName: "gateway"}
		equal(t, "tracing", *cfg.Tracing, want)
		if cfg.Log.AppFormat != "text" {
			t.Errorf("app_format default %q, want text", cfg.Log.AppFormat)
		}
		if cfg := mustParse(t, tail, nil); cfg.Tracing != nil {
			t.Errorf("no tracing block: Tracing = %+v, want nil", cfg.Tracing)
		}
	})
	t.Run("environment endpoint", func(t *testing.T) {
		cfg := mustParse(t, "tracing {}\n"+tail, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
		if cfg.Tracing.Endpoint != "http://collector:4318" {
			t.Errorf("endpoint %q", cfg.Tracing.Endpoint)
		}
	})
	t.Run("written", func(t *testing.T) {
		cfg := mustParse(t, `
tracing {
  endpoint     = "https://otel.example:4318"
  sample_ratio = 0.25
  service_name = "edge"
}
log {
  app_format = "json"
}
`+tail, nil)
		if c := cfg.Tracing; c.Endpoint != "https://otel.example:4318" || c.SampleRatio != 0.25 || c.ServiceName != "edge" {
			t.Errorf("tracing %+v", c)
		}
		if cfg.Log.AppFormat != "json" {
			t.Errorf("app_format %q", cfg.Log.AppFormat)
		}
	})
	for _, tc := range []struct{ name, src, want string }{
		{"ratio above one", "tracing {\n  sample_ratio = 1.5\n}\n", "t.hcl:2:3: tracing: sample_ratio must be between 0 and 1"},
		{"ratio negative", "tracing {\n  sample_ratio = -0.1\n}\n", "t.hcl:2:3: tracing: sample_ratio must be between 0 and 1"},
		{"endpoint not a URL", "tracing {\n  endpoint = \"127.0.0.1:4318\"\n}\n", "t.hcl:2:3: tracing: endpoint \"127.0.0.1:4318\": want an http:// or https:// URL"},
		{"empty service name", "tracing {\n  service_name = \"\"\n}\n", "t.hcl:2:3: tracing: service_name must not be empty"},
		{"unknown attribute", "tracing {\n  ratio = 1\n}\n", "t.hcl:2:3:"},
		{"app format", "log {\n  app_format = \"xml\"\n}\n", `t.hcl:2:3: log: app_format "xml" is not one of text, json`},
		{"duplicate", "tracing {}\ntracing {}\n", "t.hcl:2:1: duplicate tracing block"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ds := ParseWithEnv(map[string][]byte{"t.hcl": []byte(tc.src + tail)}, envOf(nil))
			got := strings.Join(diagStrings(ds), "\n")
			if !strings.Contains(got, tc.want) {
				t.Errorf("diagnostics:\n%s\nwant one containing %q", got, tc.want)
			}
		})
	}
}
