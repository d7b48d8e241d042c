// Command e2e is the gateway's end-to-end load harness: wrk against a small Go backend,
// directly, through the floor (a minimal httputil.ReverseProxy with a tuned Transport and a
// pooled copy buffer) and through the gateway with one static route, access log off and
// on (JSON). It prints a Markdown table with the median req/s, p50, p99 and the proxy's
// CPU time per request, with ratios to the floor.
//
//	go run ./bench/e2e                  3 rounds × 5 s per target
//	go run ./bench/e2e -quick           a short run (2 rounds × 2 s)
//	go run ./bench/e2e -cpuprofile DIR  floor and gateway write CPU and alloc profiles to DIR
//
// On a machine with two or more CPUs the proxy under test is pinned to the first CPU and
// wrk plus the backend to the second (taskset), so each proxy gets one core to itself and
// its CPU time per request is comparable. With one CPU everything runs unpinned.
//
// The same binary carries the helper processes as subcommands:
//
//	e2e backend -addr A                          the backend: a short fixed body, keep-alive
//	e2e floor -addr A -upstream HOST:PORT        the floor proxy
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
