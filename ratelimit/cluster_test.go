package ratelimit

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/infinityxone/gateway/internal/testenv"
)

// nodeHook counts, per node of a Cluster client, the pipelines that carried
// EVALSHAs and the EVALSHAs in them.
type nodeHook struct {
	addr string
	mu   *sync.Mutex
	pipe map[string]int
	eval map[string]int
}

func (h nodeHook) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h nodeHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h nodeHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		n := 0
		for _, c := range cmds {
			if c.Name() == "evalsha" {
				n++
			}
		}
		if n > 0 {
			h.mu.Lock()
			h.pipe[h.addr]++
			h.eval[h.addr] += n
			h.mu.Unlock()
		}
		return next(ctx, cmds)
	}
}

// TestRedisClusterCoalescedPipelines: over a Cluster client the coalescer's
// pipeline of waiting decisions goes out as one pipeline per master (go-redis
// splits it by slot owner), each decision a one-key EVALSHA on its own slot;
// every decision is exact.
func TestRedisClusterCoalescedPipelines(t *testing.T) {
	c := testenv.StartRedisCluster(t)
	client := NewRedisClient(RedisConfig{Addresses: c.Addrs}).(*redis.ClusterClient)
	t.Cleanup(func() { _ = client.Close() })
	var mu sync.Mutex
	pipes, evals := map[string]int{}, map[string]int{}
	client.OnNewNode(func(n *redis.Client) {
		n.AddHook(nodeHook{addr: n.Options().Addr, mu: &mu, pipe: pipes, eval: evals})
	})
	hook := &countHook{gate: make(chan struct{}), gated: make(chan struct{})}
	client.AddHook(hook)
	s := NewRedisStore(client, RedisStoreOptions{Timeout: 10 * time.Second})
	t.Cleanup(func() { _ = s.Close() })
	if s.batch {
		t.Fatal("batch scripts over a Cluster client: keys of several slots in one script")
	}
	p := Policy{Name: "p", Requests: 5, Period: time.Hour}
	if err := client.ScriptLoad(context.Background(), gcraScript).Err(); err != nil {
		t.Fatal(err)
	}

	// Hold one decision at the gate; queue decisions for keys on every master.
	results := make(chan error, 64)
	go func() { _, err := s.Allow(context.Background(), p, "first"); results <- err }()
	<-hook.gated
	perMaster := map[string][]string{}
	var keys []string
	for i := 0; len(keys) < 12; i++ {
		k := "k" + strconv.Itoa(i)
		m := c.MasterOf(s.Key(p, k))
		if len(perMaster[m]) < 4 {
			perMaster[m] = append(perMaster[m], k)
			keys = append(keys, k)
		}
	}
	for _, k := range keys {
		go func() { _, err := s.Allow(context.Background(), p, k); results <- err }()
	}
	eventually(t, 10*time.Second, func() error {
		s.co.mu.Lock()
		defer s.co.mu.Unlock()
		if n := len(s.co.pending); n != len(keys) {
			return fmt.Errorf("%d pending", n)
		}
		return nil
	})
	close(hook.gate)
	for range len(keys) + 1 {
		if err := <-results; err != nil {
			t.Fatal(err)
		}
	}
	if got := hook.pipelines.Load(); got != 1 {
		t.Errorf("%d coalesced pipelines, want 1", got)
	}
	mu.Lock()
	for m, ks := range perMaster {
		if pipes[m] != 1 || evals[m] != len(ks) {
			t.Errorf("master %s got %d pipelines with %d EVALSHAs, want 1 with %d", m, pipes[m], evals[m], len(ks))
		}
	}
	if len(perMaster) != testenv.RedisClusterMasters {
		t.Errorf("keys on %d masters", len(perMaster))
	}
	mu.Unlock()

	// Exact under concurrency: 5 allowed per key, whatever the pipelines.
	var wg sync.WaitGroup
	allowed := map[string]int{}
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 30; i++ {
				k := "x" + strconv.Itoa((w+i)%12)
				r, err := s.Allow(context.Background(), p, k)
				if err != nil {
					t.Error(err)
					return
				}
				if r.Allowed {
					mu.Lock()
					allowed[k]++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	for i := 0; i < 12; i++ {
		if n := allowed["x"+strconv.Itoa(i)]; n != 5 {
			t.Errorf("key x%d: %d allowed, want 5", i, n)
		}
	}
}

// TestRedisClusterFailoverReloadsSlots: once a failed master's replica has
// taken over, decisions for its slots succeed again within seconds: the
// client reloads the slot map on its own (a connection refused is no MOVED,
// and go-redis's default reload interval is a minute).
func TestRedisClusterFailoverReloadsSlots(t *testing.T) {
	c := testenv.StartRedisCluster(t)
	client := NewRedisClient(RedisConfig{Addresses: c.Addrs})
	t.Cleanup(func() { _ = client.Close() })
	p := Policy{Name: "p", Requests: 1000, Period: time.Hour}
	stores := map[string]*RedisStore{}
	for _, direct := range []bool{true, false} {
		s := NewRedisStore(client, RedisStoreOptions{Timeout: time.Second, Direct: direct})
		t.Cleanup(func() { _ = s.Close() })
		if _, err := s.Allow(context.Background(), p, "k"); err != nil {
			t.Fatal(err)
		}
		stores[fmt.Sprintf("Direct=%v", direct)] = s
	}
	victim := c.MasterOf(stores["Direct=true"].Key(p, "k"))
	c.Kill(victim)
	c.WaitHealthy()
	// Well under go-redis's default minute.
	deadline := time.Now().Add(20 * time.Second)
	for name, s := range stores {
		for {
			_, err := s.Allow(context.Background(), p, "k")
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: decisions for the failed master's slots still fail 20 s after its replica took over: %v", name, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// BenchmarkRedisCluster compares one Redis with a three-master Redis Cluster
// for both modes at 64 concurrent callers, on 4096 keys. Redis CPU is summed
// over the masters (INFO cpu); client CPU is this process's.
func BenchmarkRedisCluster(b *testing.B) {
	single := testenv.StartRedis(b)
	cluster := testenv.StartRedisCluster(b)
	keys := benchKeys(4096)
	p := Policy{Name: "bench", Requests: 1 << 20, Period: time.Hour}
	const conc = 64
	for _, target := range []string{"single", "cluster"} {
		for _, m := range modes {
			b.Run(fmt.Sprintf("%s/%s/c%d", target, m.name, conc), func(b *testing.B) {
				cfg := RedisConfig{Address: single.Addr, PoolSize: conc}
				servers := []string{single.Addr}
				if target == "cluster" {
					cfg = RedisConfig{Addresses: cluster.Addrs, PoolSize: conc}
					servers = cluster.Masters()
				}
				client := NewRedisClient(cfg)
				defer client.Close()
				s := NewRedisStore(client, RedisStoreOptions{Direct: m.direct, Timeout: 5 * time.Second})
				defer s.Close()
				ctx := context.Background()
				if err := WarmUp(ctx, client); err != nil {
					b.Fatal(err)
				}
				var wg sync.WaitGroup
				for i := range conc {
					wg.Go(func() {
						if _, err := s.Allow(ctx, p, keys[i]); err != nil {
							b.Error(err)
						}
					})
				}
				wg.Wait()
				redisCPUs := func() time.Duration {
					var sum time.Duration
					for _, a := range servers {
						c := redis.NewClient(&redis.Options{Addr: a})
						sum += redisCPU(b, c)
						c.Close()
					}
					return sum
				}
				cpu0, self0 := redisCPUs(), testenv.ProcessCPU(b)
				var next atomic.Int64
				b.ResetTimer()
				start := time.Now()
				for range conc {
					wg.Go(func() {
						for {
							i := next.Add(1)
							if i > int64(b.N) {
								return
							}
							if _, err := s.Allow(ctx, p, keys[i%int64(len(keys))]); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				elapsed := time.Since(start)
				b.StopTimer()
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "decisions/s")
				b.ReportMetric((redisCPUs()-cpu0).Seconds()*1e6/float64(b.N), "redis-cpu-µs/decision")
				b.ReportMetric((testenv.ProcessCPU(b)-self0).Seconds()*1e6/float64(b.N), "client-cpu-µs/decision")
			})
		}
	}
}
