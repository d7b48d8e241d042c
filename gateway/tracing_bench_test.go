package gateway

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/infinityxone/gateway/internal/testenv"
)

// BenchmarkTracing: the plain route with no tracing block, with sample_ratio = 0 (spans
// started but not recorded; trace context still propagated) and with sample_ratio = 1
// (every span recorded and exported to a loopback receiver that accepts and discards).
// cpu-ns/op is the whole process's CPU time per request (gateway, backend, receiver).
func BenchmarkTracing(b *testing.B) {
	addr := startRawBackend(b)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer recv.Close()
	client := http.Header{"User-Agent": {"wrk"}, "Accept": {"*/*"}}
	for _, c := range []struct{ name, block string }{
		{"off", ""},
		{"ratio-0", fmt.Sprintf("tracing {\n  endpoint = %q\n  sample_ratio = 0\n}\n", recv.URL)},
		{"ratio-1", fmt.Sprintf("tracing {\n  endpoint = %q\n  sample_ratio = 1\n}\n", recv.URL)},
	} {
		b.Run(c.name, func(b *testing.B) {
			cfg := parseConfig(b, c.block+fmt.Sprintf(benchConfig, addr), map[string]string{"JWT_SECRET": benchSecret})
			g, err := New(cfg, Options{Logger: hclog.NewNullLogger(), AccessLog: io.Discard})
			if err != nil {
				b.Fatal(err)
			}
			defer g.closeLogs()
			cpu0 := testenv.ProcessCPU(b)
			benchServe(b, g, "/plain", client)
			b.ReportMetric(float64(testenv.ProcessCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}
