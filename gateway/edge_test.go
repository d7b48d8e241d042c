package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"github.com/coder/websocket"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Exchanges that outlive the route's timeout, clients that read slowly or not at all,
// upstreams that go silent mid-body: a real gateway between a real client and a real
// backend. The route timeout ends at the response headers; the body is bounded by the
// upstream's silence (idle_timeout) and by the client's reading (client_write_timeout),
// and only the upstream's own faults count against its breaker.

// edgeConfig is one service behind a least_conn balancer with a breaker that opens on two
// failures and a 300 ms timeout.
const edgeConfig = `
gateway {
  address = "127.0.0.1:0"
  client_write_timeout = "%s"
}
log { format = "json" }
service "s" {
  instance { address = env("A") }
  load_balancer = "least_conn"
  timeout       = "300ms"
  idle_timeout  = "%s"
  circuit_breaker {
    failure_threshold = 2
    open_timeout      = "1m"
  }
}
route "s" {
  path    = "/*"
  service = "s"
}
`

func startEdgeGateway(t *testing.T, b string, clientWrite, idle string) *testGateway {
	t.Helper()
	return startGateway(t, fmt.Sprintf(edgeConfig, clientWrite, idle), map[string]string{"A": b})
}

// instanceOf returns the single instance of the single service.
func instanceOf(g *testGateway) InstanceInfo { return g.serviceInfo()[0].Instances[0] }

// sseBackend streams n events, one every gap.
func sseBackend(t *testing.T, n int, gap time.Duration) string {
	s := backend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/events" {
			w.WriteHeader(200)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		for i := 0; i < n; i++ {
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
			select {
			case <-time.After(gap):
			case <-r.Context().Done():
				return
			}
		}
	})
	return hostOf(s)
}

func TestSSELongerThanTimeout(t *testing.T) {
	checkGoroutines(t)
	g := startEdgeGateway(t, sseBackend(t, 10, 100*time.Millisecond), "5s", "5s")
	for i := 0; i < 2; i++ {
		resp, body := get(t, g.URL+"/events")
		if resp.StatusCode != 200 || strings.Count(body, "data: ") != 10 || !strings.HasSuffix(body, "data: 9\n\n") {
			t.Fatalf("stream %d: %d, %d events: %q", i, resp.StatusCode, strings.Count(body, "data: "), body)
		}
	}
	eventually(t, 5*time.Second, "in_flight back to 0", func() bool { return instanceOf(g).InFlight == 0 })
	if in := instanceOf(g); in.Breaker != "closed" {
		t.Fatalf("after two long streams: breaker %s", in.Breaker)
	}
	if resp, _ := get(t, g.URL+"/plain"); resp.StatusCode != 200 {
		t.Fatalf("plain request after the streams: %d", resp.StatusCode)
	}
	g.Front.CloseClientConnections()
}

// A client that reads an SSE stream slowly still gets every event.
func TestSlowReaderSSE(t *testing.T) {
	checkGoroutines(t)
	g := startEdgeGateway(t, sseBackend(t, 6, 50*time.Millisecond), "5s", "5s")
	resp, err := http.Get(g.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	events := 0
	for {
		line, err := br.ReadString('\n')
		if strings.HasPrefix(line, "data: ") {
			events++
			time.Sleep(150 * time.Millisecond) // a slow consumer: the stream outlives the timeout
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d events: %v", events, err)
		}
	}
	if events != 6 {
		t.Fatalf("%d events", events)
	}
	if in := instanceOf(g); in.Breaker != "closed" {
		t.Fatalf("breaker %s", in.Breaker)
	}
	g.Front.CloseClientConnections()
}

// A client that pauses reading a 48 MiB download for a second gets all of it.
func TestSlowReaderLargeDownload(t *testing.T) {
	checkGoroutines(t)
	const size = 48 << 20
	chunk := make([]byte, 1<<20)
	b := backend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(size))
		for i := 0; i < size/len(chunk); i++ {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	g := startEdgeGateway(t, hostOf(b), "5s", "5s")
	for i := 0; i < 2; i++ {
		resp, err := http.Get(g.URL + "/big")
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.CopyN(io.Discard, resp.Body, 1<<20)
		if err != nil {
			t.Fatalf("first MiB: %d %v", n, err)
		}
		time.Sleep(time.Second) // the reader pauses; the route timeout passes meanwhile
		m, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || n+m != size {
			t.Fatalf("download %d: %d of %d bytes: %v", i, n+m, size, err)
		}
	}
	// The handler gives its count back just after the client read the last byte.
	eventually(t, 5*time.Second, "in_flight back to 0", func() bool { return instanceOf(g).InFlight == 0 })
	if in := instanceOf(g); in.Breaker != "closed" {
		t.Fatalf("breaker %s", in.Breaker)
	}
	g.Front.CloseClientConnections()
}

// An upstream that goes silent mid-body for longer than idle_timeout is cut off, and
// that counts against it; the route timeout (longer here) plays no part.
func TestUpstreamStallsMidBody(t *testing.T) {
	checkGoroutines(t)
	b := backend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10")
		_, _ = io.WriteString(w, "hello")
		w.(http.Flusher).Flush()
		select { // silent for longer than idle_timeout, then the rest
		case <-time.After(1500 * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "world")
	})
	g := startGateway(t, strings.Replace(fmt.Sprintf(edgeConfig, "5s", "200ms"), `timeout       = "300ms"`, `timeout       = "10s"`, 1),
		map[string]string{"A": hostOf(b)})
	for i := 0; i < 2; i++ {
		resp, err := http.Get(g.URL + "/x")
		if err != nil {
			continue // cut before the buffered head was flushed: as good
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil || string(got) == "helloworld" {
			t.Fatalf("body %q, err %v: want a cut connection", got, err)
		}
	}
	eventually(t, 5*time.Second, "in_flight back to 0", func() bool { return instanceOf(g).InFlight == 0 })
	if in := instanceOf(g); in.Breaker != "open" {
		t.Fatalf("after two stalls past idle_timeout: breaker %s", in.Breaker)
	}
	mustContain(t, g.AccessLog.String(), `"error":"upstream_idle"`)
}

// A client that never reads is cut off after client_write_timeout: the handler, the
// least_conn count and the breaker ticket are all given back, and the breaker stays
// closed.
func TestClientStopsReading(t *testing.T) {
	checkGoroutines(t)
	done := make(chan struct{})
	chunk := make([]byte, 64<<10)
	b := backend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/endless" {
			return
		}
		for {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			select {
			case <-done:
				return
			default:
			}
		}
	})
	defer close(done)
	g := startEdgeGateway(t, hostOf(b), "300ms", "5s")
	c, err := net.Dial("tcp", g.Front.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.(*net.TCPConn).SetReadBuffer(4 << 10)
	if _, err := io.WriteString(c, "GET /endless HTTP/1.1\r\nHost: gw\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the stream to start", func() bool { return instanceOf(g).InFlight == 1 })
	// The client reads nothing. Within client_write_timeout of the last write that
	// could not complete, the gateway gives up.
	eventually(t, 15*time.Second, "in_flight back to 0", func() bool { return instanceOf(g).InFlight == 0 })
	if in := instanceOf(g); in.Breaker != "closed" {
		t.Fatalf("breaker %s after a client that stopped reading", in.Breaker)
	}
	// The handler gave up on the client, saying why; checkGoroutines proves the
	// gateway holds nothing more for that connection.
	eventually(t, 5*time.Second, "the access-log line", func() bool {
		return strings.Contains(g.AccessLog.String(), `"error":"client_write_timeout"`)
	})
	if resp, _ := get(t, g.URL+"/plain"); resp.StatusCode != 200 {
		t.Fatalf("plain request afterwards: %d", resp.StatusCode)
	}
	g.Front.CloseClientConnections()
}

var _ = context.Background

// 200 uploads that stall, cut off by a 30 ms timeout while other requests reuse the
// pooled exchanges: the cut-off must only ever touch its own connection (run with -race).
func TestStalledUploadsRace(t *testing.T) {
	checkGoroutines(t)
	b := newCueBackend(t, "a", 200)
	cfg := `
log { format = "json" }
service "s" {
  instance { address = env("A") }
  timeout = "30ms"
}
route "s" {
  path    = "/up/*"
  service = "s"
}
service "plain" {
  instance { address = env("A") }
  timeout = "10s"
}
route "plain" {
  path    = "/plain"
  service = "plain"
}`
	g := startGateway(t, cfg, map[string]string{"A": hostOf(b.Server)})
	addr := g.Front.Listener.Addr().String()
	errc := make(chan error, 2*stalledUploads)
	for i := 0; i < stalledUploads; i++ {
		go func() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				errc <- err
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			_, _ = io.WriteString(c, "PUT /up HTTP/1.1\r\nHost: gw\r\nContent-Length: 100\r\n\r\nx")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				errc <- err
				return
			}
			resp.Body.Close()
			if resp.StatusCode != 504 || !resp.Close {
				errc <- fmt.Errorf("stalled upload: %d, close %v", resp.StatusCode, resp.Close)
				return
			}
			errc <- nil
		}()
		go func() { // plain requests reuse the exchanges the stalled ones give back
			resp, err := http.Get(g.URL + "/plain")
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					err = fmt.Errorf("plain request: %d", resp.StatusCode)
				}
			}
			errc <- err
		}()
	}
	for i := 0; i < 2*stalledUploads; i++ {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
	if t.Failed() {
		t.Logf("access log:\n%s", g.AccessLog.String())
	}
	eventually(t, 10*time.Second, "in_flight back to 0", func() bool { return instanceOf(g).InFlight == 0 })
	g.Front.CloseClientConnections()
}

var stalledUploads = 200

// dropBackend answers GETs with keep-alive and counts every POST it receives, then drops
// the connection without an answer: the transport sees a reused connection die.
type dropBackend struct {
	ln    net.Listener
	posts chan string
}

func newDropBackend(t *testing.T) *dropBackend {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &dropBackend{ln: ln, posts: make(chan string, 16)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go d.serve(c)
		}
	}()
	return d
}

func (d *dropBackend) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		if req.Method == "POST" {
			d.posts <- req.URL.Path
			return // dropped without an answer
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	}
}

// Only the gateway decides replays: a POST that its policy does not retry reaches the
// upstream once, even with an Idempotency-Key (or an empty X-Idempotency-Key) over a
// kept-alive connection that the upstream drops — cases Go's transport would replay.
func TestNoReplayBehindTheGatewaysBack(t *testing.T) {
	checkGoroutines(t)
	d := newDropBackend(t)
	g := startGateway(t, `
log { format = "json" }
service "s" {
  instance { address = env("A") }
  retry {
    attempts        = 3
    idempotency_key = false
  }
}
route "s" {
  path    = "/*"
  service = "s"
}`, map[string]string{"A": d.ln.Addr().String()})
	for _, tc := range []struct {
		name, body string
		hdr        []string
	}{
		{"Idempotency-Key with a body", "payload", []string{"Idempotency-Key", "k1"}},
		{"Idempotency-Key without a body", "", []string{"Idempotency-Key", "k2"}},
		{"empty X-Idempotency-Key without a body", "", []string{"X-Idempotency-Key", ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if resp, _ := get(t, g.URL+"/warm"); resp.StatusCode != 200 { // leaves a kept-alive connection
				t.Fatalf("warm-up %d", resp.StatusCode)
			}
			resp, _ := do(t, "POST", g.URL+"/pay", tc.body, tc.hdr...)
			if resp.StatusCode != 502 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			<-d.posts
			select {
			case p := <-d.posts:
				t.Fatalf("the POST reached the upstream twice (%s)", p)
			case <-time.After(300 * time.Millisecond):
			}
		})
	}
	g.Front.CloseClientConnections()
	g.Service("s").transport.CloseIdleConnections()
}

// The key the transport must not see still reaches the upstream, value intact.
func TestIdempotencyKeyStillForwarded(t *testing.T) {
	echo := echoBackend(t, "e")
	g := startGateway(t, basicConfig, map[string]string{"A": hostOf(echo.Server)})
	resp, body := do(t, "POST", g.URL+"/files/x", "x", "Idempotency-Key", "k1", "X-Idempotency-Key", "k2")
	if resp.Close {
		t.Fatal("an upload read to its end closed the connection")
	}
	h := decodeSeen(t, body).Header
	if h.Get("Idempotency-Key") != "k1" || h.Get("X-Idempotency-Key") != "k2" {
		t.Fatalf("upstream saw %v", h)
	}
}

// A token taken from the query string leaves the URL whatever the outcome: it reaches
// neither the access log (on 401 and 403 too) nor the upstream (also when the client sent
// a non-Bearer Authorization header).
func TestQueryTokenLeavesTheURL(t *testing.T) {
	b := echoBackend(t, "a")
	src := strings.Replace(authConfig, `forward_claims = { sub = "X-User-Id" }`, `forward_claims = { sub = "X-User-Id" }
  token_query    = "access_token"`, 1)
	g := startGateway(t, src, map[string]string{"A": hostOf(b.Server), "SECRET": testSecret})
	claims := func(roles ...string) map[string]any {
		return map[string]any{"sub": "alice", "iss": "infinity-x-one", "aud": "api", "exp": time.Now().Unix() + 600, "roles": roles}
	}
	reader := hs256(t, testSecret, map[string]any{"alg": "HS256"}, claims("reader"))
	admin := hs256(t, testSecret, map[string]any{"alg": "HS256"}, claims("admin"))
	expired := hs256(t, testSecret, map[string]any{"alg": "HS256"}, map[string]any{"sub": "alice", "iss": "infinity-x-one", "aud": "api", "exp": 1000})

	for _, tc := range []struct {
		name, tok string
		status    int
	}{{"403", reader, 403}, {"401", expired, 401}} {
		t.Run(tc.name, func(t *testing.T) {
			if resp, _ := get(t, g.URL+"/admin?x=1&access_token="+tc.tok); resp.StatusCode != tc.status {
				t.Fatalf("status %d", resp.StatusCode)
			}
			g.accessLog.Flush()
			if strings.Contains(g.AccessLog.String(), tc.tok) {
				t.Fatal("the token is in the access log")
			}
		})
	}
	t.Run("non-Bearer Authorization", func(t *testing.T) {
		resp, body := get(t, g.URL+"/admin?x=1&access_token="+admin, "Authorization", "Basic dXNlcjpwYXNz")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if s := decodeSeen(t, body); strings.Contains(s.URI, admin) || !strings.Contains(s.URI, "x=1") {
			t.Fatalf("upstream saw %q", s.URI)
		}
		g.accessLog.Flush()
		if strings.Contains(g.AccessLog.String(), admin) {
			t.Fatal("the token is in the access log")
		}
	})
}

// A 431 closes the connection: a request pipelined behind it is not served.
func TestHeadersTooLargeClosesTheConnection(t *testing.T) {
	checkGoroutines(t)
	echo := echoBackend(t, "a")
	cfg := strings.Replace(basicConfig, "max_body_bytes = 1024", "max_body_bytes = 1024\n  max_header_bytes = 4096", 1)
	g := startGateway(t, cfg, map[string]string{"A": hostOf(echo.Server)})
	c, err := net.Dial("tcp", g.Front.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	big := "GET /hello HTTP/1.1\r\nHost: gw\r\nX-Big: " + strings.Repeat("a", 5000) + "\r\n\r\n"
	_, _ = io.WriteString(c, big+"GET /hello HTTP/1.1\r\nHost: gw\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 431 || !resp.Close {
		t.Fatalf("status %d, close %v", resp.StatusCode, resp.Close)
	}
	if resp, err := http.ReadResponse(br, nil); err == nil {
		t.Fatalf("the pipelined request was served: %d", resp.StatusCode)
	}
	if n := echo.hits.Load(); n != 0 {
		t.Fatalf("upstream hit %d times", n)
	}
}

// Upgrade requests: h2c anywhere in the list is refused (the request goes on as plain
// HTTP); a 101 must switch to the protocol asked for, and carries the gateway's headers.
func TestUpgradeChecks(t *testing.T) {
	checkGoroutines(t)
	var answer atomic.Pointer[string]
	up := backend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "" {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(seen{Header: r.Header})
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + *answer.Load() + "\r\n\r\n")
		_ = brw.Flush()
		_, _ = io.Copy(io.Discard, brw) // until the gateway closes
	})
	src := `
log { format = "json" }
rate_limit "rl" {
  requests = 100
  period   = "1m"
  store    = "memory"
}
service "a" {
  instance { address = env("A") }
}
route "ws" {
  path       = "/ws"
  service    = "a"
  rate_limit = "rl"
  cors {
    allowed_origins = ["https://app.example.com"]
  }
}`
	g := startGateway(t, src, map[string]string{"A": hostOf(up)})
	addr := g.Front.Listener.Addr().String()
	upgrade := func(proto string) (*http.Response, net.Conn) {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: gw\r\nOrigin: https://app.example.com\r\nConnection: Upgrade\r\nUpgrade: "+proto+"\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		return resp, c
	}

	t.Run("h2c anywhere in Upgrade is refused", func(t *testing.T) {
		for _, proto := range []string{"h2c", "websocket, h2c", "foo,H2C"} {
			resp, c := upgrade(proto)
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
			c.Close()
			if resp.StatusCode != 200 || strings.Contains(string(body), "Upgrade") {
				t.Fatalf("Upgrade: %s: %d, upstream saw %s", proto, resp.StatusCode, body)
			}
		}
	})
	t.Run("a 101 to another protocol is 502", func(t *testing.T) {
		other := "h2c"
		answer.Store(&other)
		resp, c := upgrade("websocket")
		c.Close()
		if resp.StatusCode != 502 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
	t.Run("a 101 carries the gateway's headers", func(t *testing.T) {
		same := "websocket"
		answer.Store(&same)
		resp, c := upgrade("websocket")
		c.Close()
		if resp.StatusCode != 101 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
			resp.Header.Get("Ratelimit-Limit") == "" || resp.Header.Get("X-Request-Id") == "" {
			t.Fatalf("status %d, headers %v", resp.StatusCode, resp.Header)
		}
	})
	g.Front.CloseClientConnections()
}

// SIGTERM with WebSockets open: after the HTTP drain each tunnel gets a close frame 1001
// (going away) in both directions, its access-log line is written, and Run returns
// within shutdown_timeout.
func TestShutdownClosesWebSockets(t *testing.T) {
	checkGoroutines(t)
	upstreamClose := make(chan websocket.StatusCode, 4)
	echo := backend(t, func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		for {
			typ, msg, err := c.Read(context.Background())
			if err != nil {
				upstreamClose <- websocket.CloseStatus(err)
				return
			}
			if err := c.Write(context.Background(), typ, msg); err != nil {
				return
			}
		}
	})
	src := `
gateway {
  address          = "127.0.0.1:0"
  shutdown_timeout = "5s"
}
admin { address = "127.0.0.1:0" }
log { format = "json" }
service "a" {
  instance { address = env("A") }
}
route "ws" {
  path    = "/ws/*"
  service = "a"
}`
	g, acc, stop, done := runGateway(t, src, map[string]string{"A": hostOf(echo)})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const n = 3
	conns := make([]*websocket.Conn, n)
	for i := range conns {
		c, _, err := websocket.Dial(ctx, fmt.Sprintf("ws://%s/ws/%d", g.Addr(), i), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		// A big message in flight: the close frame must not cut into it.
		msg := strings.Repeat("x", 200<<10)
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		if _, got, err := c.Read(ctx); err != nil || string(got) != msg {
			t.Fatalf("echo: %d bytes, %v", len(got), err)
		}
		conns[i] = c
	}
	start := time.Now()
	stop() // what SIGTERM does in main
	for i, c := range conns {
		_, _, err := c.Read(ctx)
		if s := websocket.CloseStatus(err); s != websocket.StatusGoingAway {
			t.Errorf("client %d: %v (status %d), want close 1001", i, err, s)
		}
	}
	for i := 0; i < n; i++ {
		select {
		case s := <-upstreamClose:
			if s != websocket.StatusGoingAway {
				t.Errorf("upstream saw close %d, want 1001", s)
			}
		case <-ctx.Done():
			t.Fatal("the upstream did not see its connections close")
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		done <- nil // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	if took := time.Since(start); took > 5*time.Second+2*time.Second {
		t.Errorf("shutdown took %v with shutdown_timeout 5s", took)
	}
	for i := 0; i < n; i++ {
		if !strings.Contains(acc.String(), fmt.Sprintf(`"/ws/%d"`, i)) {
			t.Errorf("no access-log line for tunnel %d:\n%s", i, acc.String())
		}
	}
}
