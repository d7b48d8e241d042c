package gateway

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/redis/go-redis/v9"

	"github.com/infinityxone/gateway/internal/testenv"
	"github.com/infinityxone/gateway/internal/tools"
)

// The tests of this file run the gateway on real clusters started by
// internal/testenv: a six-node Redis Cluster, a Sentinel-managed Redis and a
// three-server Consul datacenter with a client agent. Each kills a leader or a
// master under load and checks what clients see.

// clusterRateConfig is the config of the Redis cluster tests: "shared" (20 a
// minute per X-Client, the exactness checks), "deny" and "allow" (limits never
// reached; their answers while Redis is failing over are on_store_error's).
// The timeout is generous because a decision that times out after Redis made
// it would spend a token unseen and spoil the exactness checks on a slow
// machine; a dead master answers "connection refused" at once anyway.
func clusterRateConfig(addrs []string, masterName string) string {
	quoted := make([]string, len(addrs))
	for i, a := range addrs {
		quoted[i] = strconv.Quote(a)
	}
	mn := ""
	if masterName != "" {
		mn = "master_name = " + strconv.Quote(masterName)
	}
	return fmt.Sprintf(`
redis {
  addresses = [%s]
  %s
  timeout   = "2s"
}
rate_limit "shared" {
  requests       = 20
  period         = "1m"
  key            = "header:X-Client"
  on_store_error = "deny"
}
rate_limit "deny" {
  requests       = 1000000
  period         = "1m"
  key            = "header:X-Client"
  on_store_error = "deny"
}
rate_limit "allow" {
  requests       = 1000000
  period         = "1m"
  key            = "header:X-Client"
  on_store_error = "allow"
}
service "a" {
  instance { address = env("A") }
}
route "shared" {
  path       = "/shared"
  service    = "a"
  rate_limit = "shared"
}
route "deny" {
  path       = "/deny"
  service    = "a"
  rate_limit = "deny"
}
route "allow" {
  path       = "/allow"
  service    = "a"
  rate_limit = "allow"
}`, strings.Join(quoted, ", "), mn)
}

// bucketKey is the Redis key of the policy's token bucket for client (header key), as
// the store names it.
func bucketKey(policy, client string) string {
	return "ratelimit:{" + strconv.Itoa(len(policy)) + ":" + policy + ":h:" + client + "}:tb"
}

// clusterClient is a client that gives up on a hung request after a while (a
// hang is a failure, not a wait).
var clusterClient = &http.Client{Timeout: 10 * time.Second}

// status sends GET url with X-Client: client and returns the status and the
// RateLimit-Remaining header, or an error (transport failure or timeout).
func status(url, client string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("X-Client", client)
	resp, err := clusterClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var body [512]byte
	n, _ := resp.Body.Read(body[:])
	if resp.StatusCode == http.StatusServiceUnavailable && !strings.Contains(string(body[:n]), "service_unavailable") {
		return resp.StatusCode, "", fmt.Errorf("503 without the JSON error: %q", body[:n])
	}
	return resp.StatusCode, resp.Header.Get("Ratelimit-Remaining"), nil
}

// blastShared sends n requests for each client to /shared, spread over the
// replicas by 12 concurrent workers, and returns how many each client got
// through. Any answer but 200 or 429 fails the test.
func blastShared(t *testing.T, replicas []*testGateway, clients []string, n int) map[string]int {
	t.Helper()
	type job struct {
		i      int
		client string
	}
	allowed := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	work := make(chan job)
	for w := 0; w < 12; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range work {
				code, _, err := status(replicas[j.i%len(replicas)].URL+"/shared", j.client)
				switch {
				case err != nil:
					t.Errorf("%s: %v", j.client, err)
				case code == 200:
					mu.Lock()
					allowed[j.client]++
					mu.Unlock()
				case code != 429:
					t.Errorf("%s: status %d", j.client, code)
				}
			}
		}()
	}
	i := 0
	for k := 0; k < n; k++ {
		for _, c := range clients {
			work <- job{i, c}
			i++
		}
	}
	close(work)
	wg.Wait()
	return allowed
}

// checkExact fails the test unless every client got exactly want requests through.
func checkExact(t *testing.T, allowed map[string]int, clients []string, want int) {
	t.Helper()
	for _, c := range clients {
		if allowed[c] != want {
			t.Errorf("client %s: %d requests allowed over the replicas, want exactly %d", c, allowed[c], want)
		}
	}
}

// storeLoad sends requests for many clients to /deny and /allow on every replica
// until stopped, and counts the answers. On /deny a 200 is a Redis decision and
// a 503 is on_store_error = "deny"; on /allow every answer must be 200. Anything
// else (a 500, a 429 from a limit never reached, a transport error or a request
// hung past the client's timeout) is a failure.
type storeLoad struct {
	ok, denied, failed atomic.Int64
	held               atomic.Int64 // answers that took heldFor or longer
	mu                 sync.Mutex
	errs               []string
	stop               chan struct{}
	wg                 sync.WaitGroup
}

// heldFor is how long a decision takes only when it waited on a failed Redis
// node (each takes milliseconds otherwise).
const heldFor = 250 * time.Millisecond

func startStoreLoad(replicas []*testGateway, clients []string, workers int) *storeLoad {
	l := &storeLoad{stop: make(chan struct{})}
	for w := 0; w < workers; w++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := w; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				path := "/deny"
				if i%2 == 1 {
					path = "/allow"
				}
				client := clients[i%len(clients)]
				start := time.Now()
				code, _, err := status(replicas[i%len(replicas)].URL+path, client)
				if time.Since(start) >= heldFor {
					l.held.Add(1)
				}
				switch {
				case err == nil && code == 200:
					l.ok.Add(1)
				case err == nil && code == 503 && path == "/deny":
					l.denied.Add(1)
				default:
					l.failed.Add(1)
					l.mu.Lock()
					l.errs = append(l.errs, fmt.Sprintf("%s %s: %d %v", path, client, code, err))
					l.mu.Unlock()
				}
				time.Sleep(2 * time.Millisecond) // steady, bounded load
			}
		}()
	}
	return l
}

// finish stops the load and fails the test if any answer was not a decision or
// on_store_error's.
func (l *storeLoad) finish(t *testing.T) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	t.Logf("load: %d answered by Redis decisions or allow, %d denied by on_store_error, %d failed, %d held %v or longer",
		l.ok.Load(), l.denied.Load(), l.failed.Load(), l.held.Load(), heldFor)
	if l.failed.Load() > 0 {
		t.Fatalf("%d requests got neither a decision nor on_store_error's answer: %v", l.failed.Load(), l.errs[:min(len(l.errs), 5)])
	}
	if l.ok.Load() == 0 {
		t.Fatal("no request succeeded")
	}
}

// waitDecisions waits until every replica answers /deny for client with a
// decision from Redis (200 with RateLimit-Remaining), not on_store_error's 503.
func waitDecisions(t *testing.T, replicas []*testGateway, client string) {
	t.Helper()
	for _, g := range replicas {
		eventually(t, 60*time.Second, "decisions from Redis again for "+client, func() bool {
			code, rem, err := status(g.URL+"/deny", client)
			return err == nil && code == 200 && rem != ""
		})
	}
}

// pickClients returns names (prefix-N) whose "shared" buckets land on each of
// the given masters, perMaster of them each, as the cluster maps slots now.
func pickClients(t *testing.T, c *testenv.RedisCluster, prefix string, perMaster int) []string {
	t.Helper()
	nodes := c.Nodes()
	count := map[string]int{}
	var out []string
	for i := 0; len(out) < perMaster*testenv.RedisClusterMasters; i++ {
		if i > 10000 {
			t.Fatalf("no keys found for every master: %v", count)
		}
		name := prefix + "-" + strconv.Itoa(i)
		m := masterOfSlot(nodes, testenv.RedisSlot(bucketKey("shared", name)))
		if m == "" || count[m] == perMaster {
			continue
		}
		count[m]++
		out = append(out, name)
	}
	return out
}

// masterOfSlot is the address of the healthy master serving slot, or "".
func masterOfSlot(nodes []tools.ClusterNode, slot int) string {
	for _, n := range nodes {
		if n.Master && !n.Failing && n.Serves(slot) {
			return n.Addr
		}
	}
	return ""
}

// keysOn returns how many of the given keys are stored on the node at addr.
func keysOn(t *testing.T, addr string, keys []string) int {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	n := 0
	for _, k := range keys {
		// A master answers EXISTS for its own slots only (others are MOVED).
		if v, err := c.Exists(context.Background(), k).Result(); err == nil && v == 1 {
			n++
		}
	}
	return n
}

func TestRedisClusterSharedLimitsAndFailover(t *testing.T) {
	c := testenv.StartRedisCluster(t)
	b := echoBackend(t, "a")
	src := clusterRateConfig(c.Addrs, "")
	var replicas []*testGateway
	for i := 0; i < 3; i++ {
		replicas = append(replicas, startGateway(t, src, map[string]string{"A": hostOf(b.Server)}))
	}

	// Three replicas share each limit exactly, with the buckets spread over all
	// three masters. (The first decisions of a cluster client wait for it to
	// learn the slots and the command table: wait for them first.)
	clients := pickClients(t, c, "before", 3)
	waitDecisions(t, replicas, "warm-up")
	checkExact(t, blastShared(t, replicas, clients, 30), clients, 20)
	var keys []string
	for _, cl := range clients {
		keys = append(keys, bucketKey("shared", cl))
	}
	masters := c.Masters()
	for _, m := range masters {
		if n := keysOn(t, m, keys); n != 3 {
			t.Errorf("master %s holds %d of the buckets, want 3", m, n)
		}
	}

	// Kill a master under load: answers are decisions or on_store_error's until
	// its replica is promoted, then decisions again on every replica.
	victim := c.MasterOf(bucketKey("deny", clients[0]))
	promoted := c.ReplicaOf(victim)
	if victim == "" || promoted == "" {
		t.Fatalf("master %q, replica %q", victim, promoted)
	}
	var loadClients []string
	for i := 0; i < 30; i++ {
		loadClients = append(loadClients, "load-"+strconv.Itoa(i))
	}
	l := startStoreLoad(replicas, loadClients, 6)
	eventually(t, 30*time.Second, "load running", func() bool { return l.ok.Load() > 50 })
	c.Kill(victim)
	killed := time.Now()
	c.WaitHealthy()
	t.Logf("master %s killed; its replica %s promoted after %v", victim, promoted, time.Since(killed).Round(time.Millisecond))
	if got := c.MasterOf(bucketKey("deny", clients[0])); got != promoted {
		t.Fatalf("the failed master's slots are served by %q, want its replica %s", got, promoted)
	}
	waitDecisions(t, replicas, clients[0])
	t.Logf("decisions on every replica again %v after the kill", time.Since(killed).Round(time.Millisecond))
	before := l.ok.Load()
	eventually(t, 30*time.Second, "load served after the failover", func() bool { return l.ok.Load() > before+50 })
	l.finish(t)
	// A decision sent to the failed master either waits for its replacement and
	// is answered (held), or reaches redis.timeout first and gets
	// on_store_error's answer (denied); which one is a matter of timing.
	if l.denied.Load() == 0 && l.held.Load() == 0 {
		t.Error("no request was held or answered by on_store_error: the failover went unseen")
	}

	// After the failover limits are exact again, on every master (the promoted
	// one included).
	after := pickClients(t, c, "after", 2)
	checkExact(t, blastShared(t, replicas, after, 30), after, 20)
	keys = keys[:0]
	for _, cl := range after {
		keys = append(keys, bucketKey("shared", cl))
	}
	if n := keysOn(t, promoted, keys); n != 2 {
		t.Errorf("the promoted master holds %d of the new buckets, want 2", n)
	}
}

func TestRedisSentinelFailover(t *testing.T) {
	s := testenv.StartRedisSentinel(t)
	b := echoBackend(t, "a")
	src := clusterRateConfig(s.Sentinels, s.MasterName)
	var replicas []*testGateway
	for i := 0; i < 3; i++ {
		replicas = append(replicas, startGateway(t, src, map[string]string{"A": hostOf(b.Server)}))
	}
	clients := []string{"alice", "bob", "carol"}
	waitDecisions(t, replicas, "warm-up")
	checkExact(t, blastShared(t, replicas, clients, 30), clients, 20)

	var loadClients []string
	for i := 0; i < 30; i++ {
		loadClients = append(loadClients, "load-"+strconv.Itoa(i))
	}
	l := startStoreLoad(replicas, loadClients, 6)
	eventually(t, 30*time.Second, "load running", func() bool { return l.ok.Load() > 50 })
	old := s.Master()
	s.Kill(old)
	promoted := s.WaitMaster(old)
	if promoted != s.Servers[1] {
		t.Fatalf("new master %s, want the replica %s", promoted, s.Servers[1])
	}
	// The replicas follow the promotion without a restart.
	waitDecisions(t, replicas, "after-failover")
	before := l.ok.Load()
	eventually(t, 30*time.Second, "load served after the failover", func() bool { return l.ok.Load() > before+50 })
	l.finish(t)
	// A decision sent to the failed master either waits for its replacement and
	// is answered (held), or reaches redis.timeout first and gets
	// on_store_error's answer (denied); which one is a matter of timing.
	if l.denied.Load() == 0 && l.held.Load() == 0 {
		t.Error("no request was held or answered by on_store_error: the failover went unseen")
	}

	after := []string{"dave", "erin", "frank"}
	checkExact(t, blastShared(t, replicas, after, 30), after, 20)
	if n := keysOn(t, promoted, []string{bucketKey("shared", "dave")}); n != 1 {
		t.Error("the new buckets are not on the promoted master")
	}
}

// metricValue returns the value of the series (name with labels, as printed) in
// the gateway's /metrics, or -1 when absent.
func adminMetric(t *testing.T, adminAddr, series string) float64 {
	t.Helper()
	_, body := get(t, "http://"+adminAddr+"/metrics")
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatalf("%s: %v", series, err)
	}
	return v
}

func TestConsulServerClusterLeaderLoss(t *testing.T) {
	cl := testenv.StartConsulCluster(t)
	c := consulClient(t, cl.Addr)
	a, b, d := echoBackend(t, "a"), echoBackend(t, "b"), echoBackend(t, "d")
	ida := registerTTL(t, c, "echo", a.Server, api.HealthPassing)
	registerTTL(t, c, "echo", b.Server, api.HealthPassing)

	var gws []*Gateway
	for i := 0; i < 2; i++ {
		g, _, _, _ := runGateway(t, consulConfig, map[string]string{"CONSUL": cl.Addr})
		gws = append(gws, g)
	}
	instances := func(n int) func() bool {
		return func() bool {
			for _, g := range gws {
				if g.Service("echo").Set.Len() != n {
					return false
				}
			}
			return true
		}
	}
	eventually(t, 20*time.Second, "both instances on both gateways", instances(2))

	// Kill the Raft leader under load: no client request fails.
	var loads []*load
	for _, g := range gws {
		loads = append(loads, startLoad("http://"+g.Addr()+"/x", 3))
	}
	old := cl.Leader()
	cl.KillServer(old)
	leader := cl.WaitNewLeader(old)
	t.Logf("leader %s killed, %s elected", old, leader)

	// Health changes made after the election reach the gateways.
	setTTL(t, c, ida, api.HealthCritical)
	eventually(t, 30*time.Second, "a failed instance leaves both gateways", instances(1))
	registerTTL(t, c, "echo", d.Server, api.HealthPassing)
	eventually(t, 30*time.Second, "a new instance reaches both gateways", instances(2))
	for _, g := range gws {
		for _, e := range g.Service("echo").Set.Endpoints() {
			if e.Address == hostOf(a.Server) {
				t.Fatalf("the failed instance is still in rotation: %v", g.Service("echo").Set.Endpoints())
			}
		}
	}
	for _, l := range loads {
		l.finish(t)
	}

	// The client agent goes away: the last known good instances keep serving,
	// the gateways stay ready and the staleness metric grows.
	loads = loads[:0]
	for _, g := range gws {
		loads = append(loads, startLoad("http://"+g.Addr()+"/x", 3))
	}
	cl.StopClient()
	const age = `gateway_consul_last_success_age_seconds{service="echo"}`
	for _, g := range gws {
		eventually(t, 30*time.Second, "staleness past 3 s", func() bool { return adminMetric(t, g.AdminAddr(), age) > 3 })
		first := adminMetric(t, g.AdminAddr(), age)
		eventually(t, 30*time.Second, "staleness growing", func() bool { return adminMetric(t, g.AdminAddr(), age) > first+1 })
		if resp, body := get(t, "http://"+g.AdminAddr()+"/readyz"); resp.StatusCode != 200 {
			t.Fatalf("/readyz with the agent gone: %d %s", resp.StatusCode, body)
		}
		if n := g.Service("echo").Set.Len(); n != 2 {
			t.Fatalf("%d instances kept, want the last known 2", n)
		}
	}
	for _, l := range loads {
		l.finish(t)
	}
}
