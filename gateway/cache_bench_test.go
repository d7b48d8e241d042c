package gateway

import (
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/infinityxone/gateway/gateway/config"
	"github.com/infinityxone/gateway/internal/testenv"
)

// cacheBenchConfig has a plain proxied route and two cached ones (memory and Redis)
// in front of the same backend; default_ttl makes its answer storable.
const cacheBenchConfig = `
log {
  access_log = false
}
redis {
  address = "%[2]s"
}
cache "mem" {
  store       = "memory"
  default_ttl = "1h"
}
cache "red" {
  store       = "redis"
  default_ttl = "1h"
}
service "plain" {
  instance {
    address = "%[1]s"
  }
}
route "plain" {
  methods = ["GET"]
  path    = "/plain"
  service = "plain"
}
route "hit-memory" {
  methods = ["GET"]
  path    = "/hit-memory"
  service = "plain"
  cache   = "mem"
}
route "hit-redis" {
  methods = ["GET"]
  path    = "/hit-redis"
  service = "plain"
  cache   = "red"
}
`

// BenchmarkCache: CPU and allocations per request for a proxied request and for cache
// hits from memory and from a real redis-server (the first request fills the cache).
//
//	go test -run='^$' -bench=Cache -benchmem ./gateway/
func BenchmarkCache(b *testing.B) {
	addr := startRawBackend(b)
	r := testenv.StartRedis(b)
	cfg := parseConfig(b, fmt.Sprintf(cacheBenchConfig, addr, r.Addr), nil)
	g, err := New(cfg, Options{Logger: hclog.NewNullLogger(), AccessLog: io.Discard})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(g.closeLogs)
	client := http.Header{"User-Agent": {"wrk"}, "Accept": {"*/*"}}
	for _, path := range []string{"/plain", "/hit-memory", "/hit-redis"} {
		b.Run(path[1:], func(b *testing.B) { benchServe(b, g, path, client) })
	}
}

// BenchmarkCompression: CPU per KiB of a JSON body through the compression writer at
// the default levels (ns/op is per 64 KiB body; see the ns/KiB column).
//
//	go test -run='^$' -bench=Compression -benchmem ./gateway/
func BenchmarkCompression(b *testing.B) {
	body := bigJSON(1200)[:64<<10]
	c := newCompressor(&config.Compression{MinBytes: 1024, ContentTypes: config.DefaultCompressTypes(), Encodings: []string{"zstd", "br", "gzip"}})
	for _, enc := range []string{"gzip", "br", "zstd"} {
		b.Run(enc, func(b *testing.B) {
			w := &benchWriter{h: make(http.Header, 4)}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				w.code, w.n = 0, 0
				w.h["Content-Type"] = []string{"application/json"}
				cw := &compressWriter{c: c, w: w, enc: enc}
				cw.WriteHeader(http.StatusOK)
				for i := 0; i < len(body); i += 32 << 10 {
					cw.Write(body[i:min(i+32<<10, len(body))])
				}
				cw.finish()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/64, "ns/KiB")
		})
	}
}
