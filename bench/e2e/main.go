// Command e2e is the gateway's end-to-end load harness: wrk against a small Go backend,
// directly, through the floor (a minimal httputil.ReverseProxy with a tuned Transport and a
// pooled copy buffer) and through the gateway with one static route, access log off and
// on (JSON); then through the same gateway with a feature added to the route: JWT HS256,
// a circuit breaker and retry block with nothing failing, a Redis token-bucket rate
// limit (against a redis-server it starts), and tracing with sample_ratio 0 and 1
// (exporting to an OTLP/HTTP receiver it starts). It prints Markdown tables with the median
// req/s, p50, p99 and the proxy's CPU time per request: ratios to the floor, and for the
// feature rows ratios to the plain gateway, against the issues' targets.
//
//	go run ./bench/e2e                           3 rounds × 5 s per target
//	go run ./bench/e2e -quick                    a short run (2 rounds × 2 s)
//	go run ./bench/e2e -targets features         only the plain gateway, the feature rows (and the floor)
//	go run ./bench/e2e -cpuprofile DIR           floor and gateways write CPU and alloc profiles to DIR
//
// On a machine with two or more CPUs the proxy under test is pinned to the first CPU and
// wrk plus the backend to the second (taskset), so each proxy gets one core to itself and
// its CPU time per request is comparable. With one CPU everything runs unpinned.
//
// The same binary carries the helper processes as subcommands:
//
//	e2e backend -addr A                          the backend: a short fixed body, keep-alive
//	e2e floor -addr A -upstream HOST:PORT        the floor proxy
//	e2e otlp -addr A                             an OTLP/HTTP trace receiver that parses
//	                                             and counts spans (the tracing rows' exporter)
//	e2e gateway -config FILE [-cpuprofile F]     the gateway package served in-process, for
//	                                             profiling (same wiring as `gateway run`)
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) > 1 {
		var err error
		switch os.Args[1] {
		case "backend":
			err = runBackend(os.Args[2:])
		case "floor":
			err = runFloor(os.Args[2:])
		case "otlp":
			err = runOTLP(os.Args[2:])
		case "gateway":
			err = runGateway(os.Args[2:])
		default:
			os.Exit(runHarness(os.Args[1:]))
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "e2e %s: %v\n", os.Args[1], err)
			os.Exit(1)
		}
		return
	}
	os.Exit(runHarness(nil))
}
