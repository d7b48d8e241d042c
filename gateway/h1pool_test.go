package gateway

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infinityxone/gateway/gateway/config"
)

// The tests of this file run against both upstream transports: the gateway's HTTP/1.1
// pool (h1Pool, the default for plain-HTTP instances) and net/http's Transport
// (Options.UpstreamNetHTTP). Both must frame, reuse and give up connections alike.
var upstreamKinds = []struct {
	name    string
	netHTTP bool
}{{"h1pool", false}, {"nethttp", true}}

// poolConfig is one service on instance A (plus the service block's extra lines in
// %s) behind a catch-all route.
const poolConfig = `
log { format = "json" }
service "s" {
  timeout = "5s"
  instance { address = env("A") }
%s}
route "s" {
  path    = "/*"
  service = "s"
}`

// okAnswer is the raw upstream's plain answer: 200 with the body "ok".
const okAnswer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

// answerOK answers every request with okAnswer.
func answerOK(*http.Request) string { return okAnswer }

// rawUpstream is an HTTP/1.1 upstream written by hand, so a test decides every byte of
// its answers and sees what the gateway does with its connections.
type rawUpstream struct {
	addr  string
	conns atomic.Int32 // connections accepted
	reqs  atomic.Int32 // requests read
	gone  chan int     // numbers of connections the gateway closed, as the upstream saw it
}

// newRawUpstream serves each accepted connection with serve(n, conn, reader), n counting
// from 1. It stops (listener and connections closed, goroutines ended) with the test.
func newRawUpstream(t *testing.T, serve func(u *rawUpstream, n int, c net.Conn, br *bufio.Reader)) *rawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{addr: ln.Addr().String(), gone: make(chan int, 64)}
	var (
		mu    sync.Mutex
		conns = map[net.Conn]bool{}
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := int(u.conns.Add(1))
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				serve(u, n, c, bufio.NewReader(c))
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return u
}

// next reads the next request on connection n (its body discarded). When the gateway
// closed the connection instead, n goes to u.gone and ok is false.
func (u *rawUpstream) next(n int, br *bufio.Reader) (*http.Request, bool) {
	req, err := http.ReadRequest(br)
	if err != nil {
		if err == io.EOF || strings.Contains(err.Error(), "connection reset") {
			u.gone <- n
		}
		return nil, false
	}
	_, _ = io.Copy(io.Discard, req.Body)
	u.reqs.Add(1)
	return req, true
}

// loop answers every request on a connection with answer(req) until the gateway
// closes it.
func loop(answer func(req *http.Request) string) func(u *rawUpstream, n int, c net.Conn, br *bufio.Reader) {
	return func(u *rawUpstream, n int, c net.Conn, br *bufio.Reader) {
		for {
			req, ok := u.next(n, br)
			if !ok {
				return
			}
			if _, err := io.WriteString(c, answer(req)); err != nil {
				return
			}
		}
	}
}

// fetch sends one request through the gateway and reads the whole answer.
func fetch(t *testing.T, method, url string) (*http.Response, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: body: %v", method, url, err)
	}
	return resp, string(b)
}

func expect(t *testing.T, resp *http.Response, body string, status int, want string) {
	t.Helper()
	if resp.StatusCode != status || body != want {
		t.Fatalf("got %d %q, want %d %q", resp.StatusCode, body, status, want)
	}
}

// The upstream's framing reaches the client intact, and a connection is reused exactly
// when its answer ended cleanly on a kept-alive connection.
func TestUpstreamFramingBothTransports(t *testing.T) {
	long := strings.Repeat("0123456789", 5000) // more than a pooled connection's read buffer
	for _, k := range upstreamKinds {
		t.Run(k.name, func(t *testing.T) {
			start := func(t *testing.T, serve func(u *rawUpstream, n int, c net.Conn, br *bufio.Reader)) (*rawUpstream, *testGateway) {
				u := newRawUpstream(t, serve)
				g := startGatewayWith(t, fmt.Sprintf(poolConfig, ""), map[string]string{"A": u.addr}, Options{UpstreamNetHTTP: k.netHTTP})
				return u, g
			}

			t.Run("no Content-Length: the body ends when the upstream closes", func(t *testing.T) {
				u, g := start(t, func(u *rawUpstream, n int, c net.Conn, br *bufio.Reader) {
					if _, ok := u.next(n, br); ok {
						_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"+long)
					}
				})
				for range 3 {
					resp, body := fetch(t, "GET", g.URL+"/x")
					expect(t, resp, body, 200, long)
				}
				if n := u.conns.Load(); n != 3 {
					t.Fatalf("%d upstream connections for 3 close-delimited answers, want 3", n)
				}
			})

			t.Run("chunked with trailers, then the connection is reused", func(t *testing.T) {
				u, g := start(t, loop(func(*http.Request) string {
					return "HTTP/1.1 200 OK\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n" +
						"5\r\npart1\r\n5\r\npart2\r\n0\r\nX-Sum: abc\r\n\r\n"
				}))
				for range 3 {
					resp, body := fetch(t, "GET", g.URL+"/x")
					expect(t, resp, body, 200, "part1part2")
					if got := resp.Trailer.Get("X-Sum"); got != "abc" {
						t.Fatalf("trailer X-Sum %q, want abc (trailers %v)", got, resp.Trailer)
					}
				}
				if n := u.conns.Load(); n != 1 {
					t.Fatalf("%d upstream connections, want 1 (reused)", n)
				}
			})

			t.Run("Connection: close from the upstream is honoured", func(t *testing.T) {
				// The upstream says close but keeps the connection open: reusing it would
				// still work, so only the count tells whether the gateway listened.
				u, g := start(t, loop(func(*http.Request) string {
					return "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
				}))
				for range 3 {
					resp, body := fetch(t, "GET", g.URL+"/x")
					expect(t, resp, body, 200, "ok")
				}
				if n, r := u.conns.Load(), u.reqs.Load(); n != 3 || r != 3 {
					t.Fatalf("%d connections for %d requests, want one each", n, r)
				}
			})

			t.Run("HEAD, 204 and 304 have no body", func(t *testing.T) {
				u, g := start(t, loop(func(req *http.Request) string {
					switch {
					case req.Method == "HEAD":
						return "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
					case req.URL.Path == "/204":
						return "HTTP/1.1 204 No Content\r\n\r\n"
					case req.URL.Path == "/304":
						return "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n"
					}
					return okAnswer
				}))
				resp, body := fetch(t, "HEAD", g.URL+"/x")
				expect(t, resp, body, 200, "")
				if resp.ContentLength != 1000 {
					t.Fatalf("HEAD Content-Length %d, want the upstream's 1000", resp.ContentLength)
				}
				resp, body = fetch(t, "GET", g.URL+"/204")
				expect(t, resp, body, 204, "")
				resp, body = fetch(t, "GET", g.URL+"/304")
				expect(t, resp, body, 304, "")
				if resp.Header.Get("ETag") != `"v1"` {
					t.Fatalf("304 headers %v", resp.Header)
				}
				resp, body = fetch(t, "GET", g.URL+"/x")
				expect(t, resp, body, 200, "ok")
				if n := u.conns.Load(); n != 1 {
					t.Fatalf("%d upstream connections, want 1 (bodyless answers leave it clean)", n)
				}
			})

			t.Run("1xx interim answers are skipped", func(t *testing.T) {
				u, g := start(t, loop(func(*http.Request) string {
					return "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" +
						"HTTP/1.1 100 Continue\r\n\r\n" +
						okAnswer
				}))
				for range 2 {
					resp, body := fetch(t, "GET", g.URL+"/x")
					expect(t, resp, body, 200, "ok")
				}
				if n := u.conns.Load(); n != 1 {
					t.Fatalf("%d upstream connections, want 1", n)
				}
			})

			t.Run("a 101 nobody asked for is refused", func(t *testing.T) {
				_, g := start(t, loop(func(*http.Request) string {
					return "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
				}))
				resp, _ := fetch(t, "GET", g.URL+"/x")
				if resp.StatusCode != 502 {
					t.Fatalf("status %d, want 502", resp.StatusCode)
				}
			})
		})
	}
}

// A pooled connection the upstream closed is no client's problem: the GET goes again on
// a new connection.
func TestUpstreamClosesIdleConnectionBothTransports(t *testing.T) {
	for _, k := range upstreamKinds {
		t.Run(k.name, func(t *testing.T) {
			t.Run("closed while idle", func(t *testing.T) {
				closed := make(chan int, 8)
				u := newRawUpstream(t, func(u *rawUpstream, n int, c net.Conn, br *bufio.Reader) {
					if _, ok := u.next(n, br); ok {
						_, _ = io.WriteString(c, okAnswer)
					}
					c.Close() // keep-alive was promised
					closed <- n
				})
				g := startGatewayWith(t, fmt.Sprintf(poolConfig, ""), map[string]string{"A": u.addr}, Options{UpstreamNetHTTP: k.netHTTP})
				for i := range 4 {
					resp, body := fetch(t, "GET", g.URL+"/x")
					expect(t, resp, body, 200, "ok")
					if n := <-closed; n != i+1 {
						t.Fatalf("request %d answered on connection %d", i+1, n)
					}
				}
			})

			t.Run("every pooled connection dead (the upstream restarted)", func(t *testing.T) {
				// Connections 1–3 each answer one request once all three are in (so the
				// gateway holds three), then close; later ones keep answering.
				var arrived sync.WaitGroup
				arrived.Add(3)
				u := newRawUpstream(t, func(u *rawUpstream, n int, c net.Conn, br *bufio.Reader) {
					if n > 3 {
						loop(answerOK)(u, n, c, br)
						return
					}
					if _, ok := u.next(n, br); !ok {
						return
					}
					arrived.Done()
					arrived.Wait()
					_, _ = io.WriteString(c, okAnswer)
				})
				g := startGatewayWith(t, fmt.Sprintf(poolConfig, ""), map[string]string{"A": u.addr}, Options{UpstreamNetHTTP: k.netHTTP})
				var wg sync.WaitGroup
				for range 3 {
					wg.Go(func() {
						if resp, err := http.Get(g.URL + "/x"); err == nil {
							_, _ = io.Copy(io.Discard, resp.Body)
							resp.Body.Close()
						}
					})
				}
				wg.Wait()
				for range 4 {
					resp, body := fetch(t, "GET", g.URL+"/x")
					expect(t, resp, body, 200, "ok")
				}
			})

			t.Run("bytes nobody asked for on an idle connection are never an answer", func(t *testing.T) {
				idle, sent := make(chan struct{}), make(chan struct{})
				u := newRawUpstream(t, func(u *rawUpstream, n int, c net.Conn, br *bufio.Reader) {
					if n > 1 {
						loop(answerOK)(u, n, c, br)
						return
					}
					if _, ok := u.next(n, br); !ok {
						return
					}
					_, _ = io.WriteString(c, okAnswer)
					// Once the client has the answer (the connection is back in the pool), a
					// second, unasked-for answer, as a confused or hostile upstream might send.
					<-idle
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nbogus")
					close(sent)
					u.next(n, br) // until the gateway closes it
				})
				g := startGatewayWith(t, fmt.Sprintf(poolConfig, ""), map[string]string{"A": u.addr}, Options{UpstreamNetHTTP: k.netHTTP})
				resp, body := fetch(t, "GET", g.URL+"/x")
				expect(t, resp, body, 200, "ok")
				close(idle)
				<-sent
				if k.netHTTP {
					// The Transport's read loop sees the bytes at once and closes the
					// connection; the pool sees them when it next takes the connection.
					<-u.gone
				}
				for range 2 {
					resp, body = fetch(t, "GET", g.URL+"/x")
					expect(t, resp, body, 200, "ok")
				}
			})

			t.Run("closed as the request arrives", func(t *testing.T) {
				// Connection 1 answers one request, reads the next and closes without a
				// word: the race of a reused connection the upstream just timed out.
				u := newRawUpstream(t, func(u *rawUpstream, n int, c net.Conn, br *bufio.Reader) {
					for i := 0; ; i++ {
						if _, ok := u.next(n, br); !ok {
							return
						}
						if n == 1 && i == 1 {
							return
						}
						if _, err := io.WriteString(c, okAnswer); err != nil {
							return
						}
					}
				})
				g := startGatewayWith(t, fmt.Sprintf(poolConfig, ""), map[string]string{"A": u.addr}, Options{UpstreamNetHTTP: k.netHTTP})
				for range 3 {
					resp, body := fetch(t, "GET", g.URL+"/x")
					expect(t, resp, body, 200, "ok")
				}
				if n, r := u.conns.Load(), u.reqs.Load(); n != 2 || r != 4 {
					t.Fatalf("%d connections, %d requests; want 2 and 4 (the dropped GET sent again)", n, r)
				}
			})
		})
	}
}

// A body not read to its end closes its connection (the client left mid-stream), and an
// idle connection is closed after idle_conn_timeout and by CloseIdleConnections.
func TestUpstreamConnectionsGiveUpBothTransports(t *testing.T) {
	for _, k := range upstreamKinds {
		t.Run(k.name, func(t *testing.T) {
			t.Run("body not read to its end", func(t *testing.T) {
				u := newRawUpstream(t, func(u *rawUpstream, n int, c net.Conn, br *bufio.Reader) {
					if _, ok := u.next(n, br); !ok {
						return
					}
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
					for range 1000 {
						if _, err := io.WriteString(c, "400\r\n"+strings.Repeat("x", 1024)+"\r\n"); err != nil {
							u.gone <- n
							return
						}
						time.Sleep(10 * time.Millisecond)
					}
				})
				g := startGatewayWith(t, fmt.Sprintf(poolConfig, ""), map[string]string{"A": u.addr}, Options{UpstreamNetHTTP: k.netHTTP})
				ctx, cancel := context.WithCancel(context.Background())
				req, _ := http.NewRequestWithContext(ctx, "GET", g.URL+"/x", nil)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(resp.Body, make([]byte, 100)); err != nil {
					t.Fatal(err)
				}
				cancel() // the client leaves mid-body
				resp.Body.Close()
				select {
				case n := <-u.gone:
					if n != 1 {
						t.Fatalf("connection %d closed", n)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("the upstream connection of an abandoned body stayed open")
				}
			})

			t.Run("idle_conn_timeout", func(t *testing.T) {
				u := newRawUpstream(t, loop(answerOK))
				g := startGatewayWith(t, fmt.Sprintf(poolConfig, "  transport {\n    idle_conn_timeout = \"100ms\"\n  }\n"),
					map[string]string{"A": u.addr}, Options{UpstreamNetHTTP: k.netHTTP})
				for i := range 2 {
					resp, body := fetch(t, "GET", g.URL+"/x")
					expect(t, resp, body, 200, "ok")
					select {
					case n := <-u.gone:
						if n != i+1 {
							t.Fatalf("connection %d closed, want %d", n, i+1)
						}
					case <-time.After(10 * time.Second):
						t.Fatal("an idle connection outlived idle_conn_timeout")
					}
				}
			})

			t.Run("CloseIdleConnections", func(t *testing.T) {
				u := newRawUpstream(t, loop(answerOK))
				g := startGatewayWith(t, fmt.Sprintf(poolConfig, ""), map[string]string{"A": u.addr}, Options{UpstreamNetHTTP: k.netHTTP})
				resp, body := fetch(t, "GET", g.URL+"/x")
				expect(t, resp, body, 200, "ok")
				g.Service("s").transport.CloseIdleConnections()
				select {
				case <-u.gone:
				case <-time.After(10 * time.Second):
					t.Fatal("CloseIdleConnections left the idle connection open")
				}
				resp, body = fetch(t, "GET", g.URL+"/x")
				expect(t, resp, body, 200, "ok")
			})
		})
	}
}

// Both transports send the upstream the same request: method, URI (escapes and query
// kept), Host, and header fields (the empty User-Agent the proxy sets stays unsent).
func TestUpstreamRequestSameBothTransports(t *testing.T) {
	echo := echoBackend(t, "e")
	var got [2]seen
	for i, k := range upstreamKinds {
		g := startGatewayWith(t, basicConfig, map[string]string{"A": hostOf(echo.Server)}, Options{UpstreamNetHTTP: k.netHTTP})
		raw := "GET /files/a%2Fb/c%20d?q=1&r=%41 HTTP/1.1\r\nHost: api.example.test\r\nAccept: a\r\nX-Multi: 1\r\nX-Multi: 2\r\n" +
			"X-Space:  padded \r\nConnection: close\r\n\r\n"
		resp, body := rawRequest(t, strings.TrimPrefix(g.URL, "http://"), raw)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d %s", k.name, resp.StatusCode, body)
		}
		got[i] = decodeSeen(t, body)
		delete(got[i].Header, "X-Request-Id")
		delete(got[i].Header, "X-Forwarded-For") // the client's port differs
	}
	if !reflect.DeepEqual(got[0], got[1]) {
		t.Fatalf("the upstream saw different requests:\nh1pool  %+v\nnethttp %+v", got[0], got[1])
	}
	if got[0].Header.Get("User-Agent") != "" || len(got[0].Header["X-Multi"]) != 2 || got[0].URI != "/files/a%2Fb/c%20d?q=1&r=%41" {
		t.Fatalf("upstream saw %+v", got[0])
	}
}

// The pool serves bodyless GET, HEAD and OPTIONS requests to plain-HTTP instances; the
// rest goes to the service's Transport. max_conns_per_host and Options.UpstreamNetHTTP
// leave the Transport alone.
func TestH1PoolServesWhatItShould(t *testing.T) {
	echo := echoBackend(t, "e")
	g := startGatewayWith(t, fmt.Sprintf(poolConfig, ""), map[string]string{"A": hostOf(echo.Server)}, Options{})
	p, ok := g.Service("s").transport.(*h1Pool)
	if !ok {
		t.Fatalf("transport %T, want *h1Pool", g.Service("s").transport)
	}
	idle := func() int {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.idle[hostOf(echo.Server)])
	}
	for _, m := range []string{"GET", "HEAD", "OPTIONS"} {
		if resp, _ := fetch(t, m, g.URL+"/x"); resp.StatusCode != 200 {
			t.Fatalf("%s: %d", m, resp.StatusCode)
		}
	}
	if n := idle(); n != 1 {
		t.Fatalf("%d idle pooled connections after GET, HEAD, OPTIONS; want 1", n)
	}
	p.CloseIdleConnections()
	for _, m := range []string{"POST", "DELETE", "PUT"} {
		if resp, _ := do(t, m, g.URL+"/x", "body"); resp.StatusCode != 200 {
			t.Fatalf("%s: %d", m, resp.StatusCode)
		}
	}
	if resp, _ := do(t, "DELETE", g.URL+"/x", ""); resp.StatusCode != 200 {
		t.Fatalf("DELETE: %d", resp.StatusCode)
	}
	if n := idle(); n != 0 {
		t.Fatalf("%d idle pooled connections after requests the pool does not serve", n)
	}

	capped := startGatewayWith(t, fmt.Sprintf(poolConfig, "  transport {\n    max_conns_per_host = 4\n  }\n"), map[string]string{"A": hostOf(echo.Server)}, Options{})
	if tr := capped.Service("s").transport; reflect.TypeOf(tr) != reflect.TypeFor[*http.Transport]() {
		t.Fatalf("max_conns_per_host: transport %T, want *http.Transport", tr)
	}
	off := startGatewayWith(t, fmt.Sprintf(poolConfig, ""), map[string]string{"A": hostOf(echo.Server)}, Options{UpstreamNetHTTP: true})
	if tr := off.Service("s").transport; reflect.TypeOf(tr) != reflect.TypeFor[*http.Transport]() {
		t.Fatalf("UpstreamNetHTTP: transport %T, want *http.Transport", tr)
	}
}

// A request the pool could not write as the Transport would (a header value with a line
// break) is left to the Transport, which refuses it with its own error.
func TestH1PoolLeavesInvalidRequestsToTheTransport(t *testing.T) {
	p := newH1Pool(newTransport(config.Transport{MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second, DialTimeout: 5 * time.Second}))
	defer p.CloseIdleConnections()
	req, _ := http.NewRequest("GET", "http://127.0.0.1:1/x", nil)
	req.Header.Set("X-Bad", "a\r\nInjected: yes")
	if validRequest(req) {
		t.Fatal("a header value with CRLF passed validRequest")
	}
	_, err := p.RoundTrip(req)
	if err == nil || !strings.Contains(err.Error(), "invalid header field value") {
		t.Fatalf("err %v, want the Transport's invalid header error", err)
	}
	req.Header = http.Header{"Bad Name": {"x"}}
	if validRequest(req) {
		t.Fatal("a header name with a space passed validRequest")
	}
}

// A pool whose idle connections were closed (a retired service's) does not fill again
// with the connections of the requests still running: each is closed when its answer
// ends, until a new request comes, as with the Transport.
func TestH1PoolClosesWhatEndsAfterCloseIdle(t *testing.T) {
	u := newRawUpstream(t, loop(answerOK))
	p := newH1Pool(newTransport(config.Transport{MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second, DialTimeout: 5 * time.Second}))
	defer p.CloseIdleConnections()
	idle := func() int {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.idle[u.addr])
	}
	get := func() *http.Response {
		req, _ := http.NewRequest("GET", "http://"+u.addr+"/x", nil)
		resp, err := p.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := get()
	p.CloseIdleConnections()
	if b, err := io.ReadAll(resp.Body); err != nil || string(b) != "ok" {
		t.Fatalf("body %q, %v", b, err)
	}
	if n, err := resp.Body.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("read after the end: %d, %v; want 0, EOF (as net/http)", n, err)
	}
	resp.Body.Close()
	if n, err := resp.Body.Read(make([]byte, 1)); n != 0 || err != http.ErrBodyReadAfterClose {
		t.Fatalf("read after Close: %d, %v; want ErrBodyReadAfterClose", n, err)
	}
	if n := idle(); n != 0 {
		t.Fatalf("%d idle connections after CloseIdleConnections and an answer that ended later; want 0", n)
	}
	select {
	case <-u.gone:
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream did not see the connection closed")
	}
	resp = get() // in use again: connections are kept
	_, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if n := idle(); n != 1 {
		t.Fatalf("%d idle connections after a new request, want 1", n)
	}
}

// A connection the pool cannot look at while it rests (not a socket) is never reused:
// bytes sent unasked for could otherwise pass for the next answer.
func TestH1PoolReusesOnlyWhatItCanCheck(t *testing.T) {
	u := newRawUpstream(t, loop(func(*http.Request) string { return "HTTP/1.1 204 No Content\r\n\r\n" }))
	p := newH1Pool(newTransport(config.Transport{MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second, DialTimeout: 5 * time.Second}))
	defer p.CloseIdleConnections()
	dial := p.dial
	p.dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		return struct{ net.Conn }{c}, err // hides syscall.Conn
	}
	for range 2 {
		req, _ := http.NewRequest("GET", "http://"+u.addr+"/x", nil)
		resp, err := p.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if n := u.conns.Load(); n != 2 {
		t.Fatalf("%d upstream connections for two requests, want 2 (none reused)", n)
	}
	if plainHost("[fe80::1%25eth0]:80") {
		t.Error("a Host with an IPv6 zone is left to the pool; the Transport strips the zone")
	}
}
