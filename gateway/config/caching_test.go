package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestCachingConfig(t *testing.T) {
	cfg := mustParse(t, `
redis {
  address = "127.0.0.1:6379"
}
compression {
  min_bytes     = 512
  content_types = ["Text/*", "application/json"]
  encodings     = ["br", "GZIP"]
}
cache "api" {
  max_object_bytes = 2048
  default_ttl      = "10s"
  stale_if_error   = "1m"
}
cache "local" {
  store     = "memory"
  max_bytes = 1048576
}
route "c" {
  path     = "/c"
  service  = "base"
  compress = true
  cache    = "api"
}
`+tail, nil)
	equal(t, "compression", *cfg.Compression, Compression{Pos: Pos{"t.hcl", 5, 1}, MinBytes: 512,
		ContentTypes: []string{"text/*", "application/json"}, Encodings: []string{"br", "gzip"}})
	equal(t, "caches", cfg.Caches, []Cache{
		{Pos: Pos{"t.hcl", 10, 1}, Name: "api", Store: "redis", MaxObjectBytes: 2048, MaxBytes: 64 << 20, DefaultTTL: 10 * time.Second, StaleIfError: time.Minute},
		{Pos: Pos{"t.hcl", 15, 1}, Name: "local", Store: "memory", MaxObjectBytes: 1 << 20, MaxBytes: 1 << 20},
	})
	r := cfg.Route("c")
	if !r.Compress || r.Cache != "api" {
		t.Fatalf("route: compress %v cache %q", r.Compress, r.Cache)
	}

	// compress = true without a compression block gets the defaults; a cache without
	// a redis block is a memory cache.
	cfg = mustParse(t, "cache \"m\" {\n}\nroute \"c\" {\n  path = \"/c\"\n  service = \"base\"\n  compress = true\n}\n"+tail, nil)
	if cfg.Compression == nil || cfg.Compression.MinBytes != 1024 || !slices.Equal(cfg.Compression.Encodings, []string{"zstd", "br", "gzip"}) {
		t.Fatalf("default compression: %+v", cfg.Compression)
	}
	if cfg.Caches[0].Store != "memory" {
		t.Fatalf("default store %q", cfg.Caches[0].Store)
	}
}

func TestCachingBadConfigs(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  string
		want []string
	}{
		{"encodings", "compression {\n  encodings = [\"gzip\", \"deflate\", \"gzip\"]\n  min_bytes = -1\n  content_types = [\"json\"]\n}\n", []string{
			`t.hcl:2:24: compression: encodings: "deflate" is not one of zstd, br, gzip`,
			`t.hcl:2:35: compression: encodings: "gzip" is listed twice`,
			`t.hcl:3:3: compression: min_bytes must be at least 0, not -1`,
			`t.hcl:4:20: compression: content_types: "json" is not a media type such as "text/*" or "application/json"`}},
		{"redis store without redis", "cache \"a\" {\n  store = \"redis\"\n}\n", []string{
			`t.hcl:2:3: cache "a": store = "redis" needs a redis block`}},
		{"unknown store", "cache \"a\" {\n  store = \"disk\"\n}\n", []string{
			`t.hcl:2:3: cache "a": store "disk" is not one of redis, memory`}},
		{"sizes", "cache \"a\" {\n  max_object_bytes = 0\n  max_bytes = 10\n}\n", []string{
			`t.hcl:2:3: cache "a": max_object_bytes must be positive`}},
		{"object above the store", "cache \"a\" {\n  max_object_bytes = 100\n  max_bytes = 10\n}\n", []string{
			`t.hcl:2:3: cache "a": max_object_bytes (100) is larger than max_bytes (10)`}},
		{"duplicate", "cache \"a\" {\n}\ncache \"a\" {\n}\n", []string{
			`t.hcl:3:1: duplicate cache "a"; the first is at t.hcl:1:1`}},
		{"undefined cache", "cache \"api\" {\n}\nroute \"r\" {\n  path = \"/r\"\n  service = \"base\"\n  cache = \"apj\"\n}\n", []string{
			`t.hcl:6:3: route "r": cache "apj" is not defined; did you mean "api"?`}},
	} {
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
