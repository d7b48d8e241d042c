package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"
)

// otlpSpans asks the harness's OTLP receiver (e2e otlp) what it has received.
func otlpSpans(addr string) (otlpCounts, error) {
	var c otlpCounts
	hc := &http.Client{Timeout: 2 * time.Second}
	resp, err := hc.Get("http://" + addr + "/counts")
	if err != nil {
		return c, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return c, fmt.Errorf("GET /counts: status %d", resp.StatusCode)
	}
	err = json.NewDecoder(resp.Body).Decode(&c)
	return c, err
}

// tracingCheck says how many spans of the tracing row service (its service_name) the
// receiver got against the requests the gateway sent upstream. With sample_ratio = 1
// it waits (at most 10 s: the batch timeout is 5 s) for the last batch to arrive.
func (h *harness) tracingCheck(otlpAddr, service string) string {
	t := slices.IndexFunc(h.targets, func(t *target) bool { return t.key == service })
	sampled := t >= 0 && slices.Contains(h.targets[t].features, featTrace1)
	upstream := -1.0
	if t >= 0 {
		if m, err := scrapeMetrics(h.targets[t].admin); err == nil {
			upstream = m.sum("gateway_upstream_requests_total")
		}
	}
	var got int
	var readErr error
	// A timeout is not an error here: the line reports what arrived by then.
	if err := h.pollFor("spans at the OTLP receiver", 10*time.Second, 200*time.Millisecond, func() error {
		c, err := otlpSpans(otlpAddr)
		if err != nil {
			readErr = err
			return nil
		}
		got = c.Spans[service]
		if sampled && float64(got) < 2*upstream {
			return fmt.Errorf("%d spans for %.0f upstream requests", got, upstream)
		}
		return nil
	}); err != nil && h.ctx.Err() != nil {
		return "OTLP receiver not read: interrupted"
	}
	if readErr != nil {
		return fmt.Sprintf("OTLP receiver not read: %v", readErr)
	}
	line := fmt.Sprintf("spans received by the OTLP receiver %d for %.0f upstream requests (a server and a client span each when sampled)", got, upstream)
	if c, err := otlpSpans(otlpAddr); err == nil && h.otlp != nil {
		var all int
		for _, n := range c.Spans {
			all += n
		}
		if ticks, err := cpuTicks(h.otlp.PID()); err == nil && all > 0 {
			line += fmt.Sprintf("; the receiver (on the load CPU) used %.1f µs of CPU per span received, all rows together", float64(ticks)/float64(h.clk)*1e6/float64(all))
		}
	}
	return line
}
