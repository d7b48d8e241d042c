package consul

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/infinityxone/gateway/internal/testenv"
)

// BenchmarkPropagation measures, against a real agent, the time from a health
// check flip (a TTL check turned critical or passing) to the watcher's Sink
// receiving the changed list. Each flip happens while the watcher is blocked in
// its query, as in production where changes are rare; ns/op is the mean, p50-ms
// and p99-ms the percentiles.
func BenchmarkPropagation(b *testing.B) {
	agent := testenv.StartConsul(b)
	c := agentClient(b, agent.Addr)
	proxy := newCountingProxy(b, agent.Addr) // only to see when the watcher is blocked
	pc := agentClient(b, proxy.addr())
	registerTTL(b, c, &api.AgentServiceRegistration{ID: "flip-1", Name: "flip", Port: 9001})
	registerTTL(b, c, &api.AgentServiceRegistration{ID: "flip-2", Name: "flip", Port: 9002})

	lengths := make(chan int, 16)
	w, err := NewWatcher(pc.Health(), WatchOptions{Service: "flip", Sink: SinkFunc(func(_ string, in []Instance) {
		lengths <- len(in)
	})})
	if err != nil {
		b.Fatal(err)
	}
	runWatcher(b, w)
	waitLen := func(n int) {
		for {
			select {
			case got := <-lengths:
				if got == n {
					return
				}
			case <-time.After(waitLong):
				b.Fatalf("no update with %d instances within %v", n, waitLong)
			}
		}
	}
	waitLen(2)

	durations := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		n := proxy.count("flip")
		eventually(b, waitLong, "the watcher blocking", func() bool { return proxy.inFlight.Load() >= 1 })
		status, want := api.HealthCritical, 1
		if i%2 == 1 {
			status, want = api.HealthPassing, 2
		}
		b.StartTimer()
		start := time.Now()
		setTTL(b, c, "flip-1", status)
		waitLen(want)
		durations = append(durations, time.Since(start))
		b.StopTimer()
		// The next flip waits for the next blocking query: count must move past n.
		eventually(b, waitLong, "the next query", func() bool { return proxy.count("flip") > n })
		b.StartTimer()
	}
	b.StopTimer()
	slices.Sort(durations)
	pct := func(p float64) float64 {
		return float64(durations[int(p*float64(len(durations)-1))]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(durations[len(durations)-1])/float64(time.Millisecond), "max-ms")
}

// BenchmarkBuildInstances is the cost of turning one answer into a sorted list,
// paid once per changed answer (never per request).
func BenchmarkBuildInstances(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			entries := make([]*api.ServiceEntry, n)
			for i := range entries {
				e := entry(fmt.Sprintf("web-%05d", n-i), "node", "10.0.0.1", "", 8000+i)
				e.Service.Tags = []string{"v1"}
				entries[i] = e
			}
			b.ReportAllocs()
			for b.Loop() {
				in, _ := buildInstances(entries, false)
				if len(in) != n {
					b.Fatal(len(in))
				}
			}
		})
	}
}
