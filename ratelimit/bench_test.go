package ratelimit

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infinityxone/gateway/internal/testenv"
	"github.com/redis/go-redis/v9"
)

// BenchmarkMemoryStore: ns and allocations per decision on the hot path
// (the key exists), one caller on one key, and parallel callers over 1024
// keys.
func BenchmarkMemoryStore(b *testing.B) {
	keys := benchKeys(1024)
	for _, alg := range []Algorithm{TokenBucket, SlidingWindow} {
		p := Policy{Name: "bench", Algorithm: alg, Requests: 1 << 20, Period: time.Hour}
		b.Run(string(alg)+"/serial", func(b *testing.B) {
			s := NewMemoryStore(MemoryStoreOptions{})
			defer s.Close()
			ctx := context.Background()
			_, _ = s.Allow(ctx, p, "k")
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				_, _ = s.Allow(ctx, p, "k")
			}
		})
		b.Run(string(alg)+"/parallel", func(b *testing.B) {
			s := NewMemoryStore(MemoryStoreOptions{})
			defer s.Close()
			ctx := context.Background()
			for _, k := range keys {
				_, _ = s.Allow(ctx, p, k)
			}
			var seq atomic.Uint64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := seq.Add(1) * 7919
				for pb.Next() {
					i++
					_, _ = s.Allow(ctx, p, keys[i%uint64(len(keys))])
				}
			})
		})
	}
}

// BenchmarkLimiterMemory is what the gateway stage calls: Limiter over a
// MemoryStore with an Observer.
func BenchmarkLimiterMemory(b *testing.B) {
	s := NewMemoryStore(MemoryStoreOptions{})
	defer s.Close()
	var n atomic.Int64
	l, err := NewLimiter(Policy{Name: "bench", Requests: 1 << 20, Period: time.Hour}, s,
		LimiterOptions{Observer: ObserverFunc(func(string, Outcome) { n.Add(1) })})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	_, _ = l.Allow(ctx, "10.0.0.1")
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		_, _ = l.Allow(ctx, "10.0.0.1")
	}
}

// BenchmarkRedis compares one EVALSHA per decision (direct) with the
// coalescer, against one real redis-server, at 1 and 64 concurrent callers,
// in one run. Reported: decisions/s, p99 latency of a decision, round trips
// per decision (EVALSHAs sent alone plus pipelines), and Redis's own CPU
// time per decision (INFO cpu). Both clients get a pool of 64 connections,
// so the direct path never waits for a connection.
func BenchmarkRedis(b *testing.B) {
	r := testenv.StartRedis(b)
	admin := newClient(b, r.Addr, nil)
	keys := benchKeys(4096)
	p := Policy{Name: "bench", Requests: 1 << 20, Period: time.Hour}
	for _, conc := range []int{1, 32, 64} {
		for _, m := range modes {
			b.Run(fmt.Sprintf("%s/c%d", m.name, conc), func(b *testing.B) {
				hook := &countHook{}
				opts := (RedisConfig{Address: r.Addr, PoolSize: 64}).UniversalOptions()
				client := redis.NewClient(opts.Simple())
				client.AddHook(hook)
				defer client.Close()
				s := NewRedisStore(client, RedisStoreOptions{Direct: m.direct, Timeout: 5 * time.Second})
				defer s.Close()
				ctx := context.Background()
				// Warm up: script loaded, connections open.
				var wg sync.WaitGroup
				for range conc {
					wg.Add(1)
					go func() {
						defer wg.Done()
						if _, err := s.Allow(ctx, p, "warm"); err != nil {
							b.Error(err)
						}
					}()
				}
				wg.Wait()

				trips0 := hook.roundTrips()
				cpu0 := redisCPU(b, admin)
				self0 := testenv.ProcessCPU(b)
				lat := make([][]time.Duration, conc)
				var next atomic.Int64
				b.ReportAllocs()
				b.ResetTimer()
				start := time.Now()
				for g := range conc {
					wg.Add(1)
					go func() {
						defer wg.Done()
						l := make([]time.Duration, 0, b.N/conc+1)
						for {
							i := next.Add(1)
							if i > int64(b.N) {
								break
							}
							t0 := time.Now()
							_, err := s.Allow(ctx, p, keys[i%int64(len(keys))])
							l = append(l, time.Since(t0))
							if err != nil {
								b.Error(err)
								return
							}
						}
						lat[g] = l
					}()
				}
				wg.Wait()
				elapsed := time.Since(start)
				b.StopTimer()
				cpu := redisCPU(b, admin) - cpu0
				self := testenv.ProcessCPU(b) - self0

				all := slices.Concat(lat...)
				slices.Sort(all)
				p99 := all[min(len(all)-1, len(all)*99/100)]
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "decisions/s")
				b.ReportMetric(float64(p99)/float64(time.Microsecond), "p99-µs")
				b.ReportMetric(float64(hook.roundTrips()-trips0)/float64(b.N), "trips/decision")
				b.ReportMetric(cpu.Seconds()*1e6/float64(b.N), "redis-cpu-µs/decision")
				b.ReportMetric(self.Seconds()*1e6/float64(b.N), "client-cpu-µs/decision")
			})
		}
	}
}

// redisCPU is the server's user+system CPU time so far (INFO cpu).
func redisCPU(tb testing.TB, c *redis.Client) time.Duration {
	info, err := c.Info(context.Background(), "cpu").Result()
	if err != nil {
		tb.Fatal(err)
	}
	var total float64
	for _, line := range strings.Split(info, "\r\n") {
		for _, f := range []string{"used_cpu_user:", "used_cpu_sys:"} {
			if v, ok := strings.CutPrefix(line, f); ok {
				x, err := strconv.ParseFloat(v, 64)
				if err != nil {
					tb.Fatal(err)
				}
				total += x
			}
		}
	}
	return time.Duration(total * float64(time.Second))
}

func benchKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "10.0." + strconv.Itoa(i/256) + "." + strconv.Itoa(i%256)
	}
	return keys
}
