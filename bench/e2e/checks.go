package main

import (
	"bufio"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// metricSeries is a Prometheus text exposition: series ("name{labels}") to value.
type metricSeries map[string]float64

// scrapeMetrics reads a gateway's admin /metrics.
func scrapeMetrics(adminAddr string) (metricSeries, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: status %d", resp.StatusCode)
	}
	return parseMetrics(bufio.NewScanner(resp.Body))
}

func parseMetrics(sc *bufio.Scanner) (metricSeries, error) {
	m := metricSeries{}
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		m[line[:i]] = v
	}
	return m, sc.Err()
}

// sum adds the series of metric name whose labels contain every one of labels
// (each written as `key="value"`).
func (m metricSeries) sum(name string, labels ...string) float64 {
	var s float64
	for k, v := range m {
		n, rest, _ := strings.Cut(k, "{")
		if n != name {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(rest, l) {
				ok = false
				break
			}
		}
		if ok {
			s += v
		}
	}
	return s
}

// featureCheck says, from a gateway's own metrics, whether the feature under test really
// ran on every request (and nothing failed): a line for the report.
func featureCheck(features []string, m metricSeries) string {
	var parts []string
	for _, f := range features {
		switch f {
		case featJWT:
			ok := m.sum("gateway_jwt_validations_total", `result="ok"`)
			all := m.sum("gateway_jwt_validations_total")
			parts = append(parts, fmt.Sprintf("JWT validations ok %.0f, other %.0f", ok, all-ok))
		case featResilience:
			parts = append(parts, fmt.Sprintf("retries %.0f, breaker transitions %.0f, breakers open or half-open %.0f",
				m.sum("gateway_upstream_retries_total"), m.sum("gateway_circuit_breaker_transitions_total"),
				m.sum("gateway_circuit_breaker_state")))
		case featMesh:
			parts = append(parts, fmt.Sprintf("mutual-TLS connections opened to the sidecar %.0f for %.0f upstream requests (warm-up and every round; wrk's connections are kept alive, so handshakes are rare)",
				m.sum("gateway_connect_upstream_connections_total"), m.sum("gateway_upstream_requests_total")))
		case featTrace0, featTrace1:
			parts = append(parts, fmt.Sprintf("spans dropped %.0f (queue full %.0f, export failed %.0f)",
				m.sum("gateway_tracing_spans_dropped_total"),
				m.sum("gateway_tracing_spans_dropped_total", `reason="queue_full"`),
				m.sum("gateway_tracing_spans_dropped_total", `reason="export_failed"`)))
		case featRedisLimit:
			errs := m.sum("gateway_ratelimit_decisions_total", `result="error"`)
			line := fmt.Sprintf("rate-limit decisions allowed %.0f, limited %.0f, error %.0f",
				m.sum("gateway_ratelimit_decisions_total", `result="allowed"`),
				m.sum("gateway_ratelimit_decisions_total", `result="limited"`), errs)
			if errs > 0 {
				// Seen in every run: ratelimit.Limiter counts a decision whose caller went
				// away as a store error, and wrk closes its connections with requests in
				// flight when its time is up. A real failure would be a 503 that wrk counts.
				line += " (errors: decisions cut short when wrk closed its connections at the end of a run; the limiter counts a caller that left as an error)"
			}
			parts = append(parts, line)
		}
	}
	return strings.Join(parts, "; ")
}
