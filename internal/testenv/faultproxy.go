package testenv

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// FaultProxy is a TCP proxy on a loopback port in front of a real server (a
// redis-server, a Consul agent, an identity provider's HTTP server) that adds
// faults on command: a delay on everything the server sends back, a stall
// (connections are accepted and requests delivered, but no answer comes back),
// and a reset of every open connection. Point the client at Addr instead of the
// server. It is safe for concurrent use; it is closed when the test ends.
//
// Faults act on the server-to-client direction, so a request always reaches
// the server (a Redis script runs, an HTTP request is logged) and only its
// answer is held back: that is what a slow or hung network path looks like to
// the client.
type FaultProxy struct {
	t      testing.TB
	target string
	ln     net.Listener

	delay    atomic.Int64 // time.Duration added to every chunk the server sends
	accepted atomic.Int64

	mu      sync.Mutex
	stalled bool
	resume  chan struct{} // closed by Resume; replaced by Stall
	pairs   map[*pair]struct{}
	closed  bool
	wg      sync.WaitGroup // the accept loop and every pipe goroutine
}

// NewFaultProxy listens on 127.0.0.1:0 and forwards every connection to
// target ("host:port"). It starts with no fault. A listen failure fails the
// test.
func NewFaultProxy(t testing.TB, target string) *FaultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: fault proxy: %v", err)
	}
	p := &FaultProxy{
		t:      t,
		target: target,
		ln:     ln,
		resume: make(chan struct{}),
		pairs:  make(map[*pair]struct{}),
	}
	close(p.resume)
	p.wg.Add(1)
	go p.acceptLoop()
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's "127.0.0.1:PORT".
func (p *FaultProxy) Addr() string { return p.ln.Addr().String() }

// URL is "http://" + Addr, for HTTP targets.
func (p *FaultProxy) URL() string { return "http://" + p.Addr() }

// Accepted is how many client connections the proxy has accepted so far.
func (p *FaultProxy) Accepted() int { return int(p.accepted.Load()) }

// SetDelay holds every chunk the server sends back for d before passing it
// on, so each round trip takes d longer. Chunks keep their order and do not
// queue behind each other's delay: pipelined answers all arrive d late, not
// n×d. It applies to chunks read from the server from now on; 0 removes it.
func (p *FaultProxy) SetDelay(d time.Duration) { p.delay.Store(int64(d)) }

// Stall stops passing the server's answers on, on every connection, open or
// new, until Resume. Connections are still accepted and requests still reach
// the server: the client sees a peer that accepts and never answers.
func (p *FaultProxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.stalled {
		p.stalled = true
		p.resume = make(chan struct{})
	}
}

// Resume ends a Stall: held answers go on, in order.
func (p *FaultProxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stalled {
		p.stalled = false
		close(p.resume)
	}
}

// Reset closes every open connection abruptly (TCP RST to the client, the
// server's side closed). New connections are accepted as usual.
func (p *FaultProxy) Reset() {
	p.mu.Lock()
	pairs := make([]*pair, 0, len(p.pairs))
	for pr := range p.pairs {
		pairs = append(pairs, pr)
	}
	p.mu.Unlock()
	for _, pr := range pairs {
		pr.abort()
	}
}

// pair is one proxied connection: the client's and the proxy's to the server.
type pair struct {
	client net.Conn
	once   sync.Once
	dead   chan struct{} // closed by abort

	mu     sync.Mutex
	server net.Conn // nil until dialled
}

// abort resets both connections and wakes the pair's waiting writer.
func (pr *pair) abort() {
	pr.once.Do(func() {
		close(pr.dead)
		abort(pr.client)
		pr.mu.Lock()
		if pr.server != nil {
			abort(pr.server)
		}
		pr.mu.Unlock()
	})
}

// Close stops listening, closes every connection and waits for the proxy's
// goroutines. It is idempotent; the test's cleanup calls it.
func (p *FaultProxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	_ = p.ln.Close()
	p.Reset()
	p.wg.Wait()
}

// abort closes c with SO_LINGER 0, so the peer sees a reset, not an EOF.
func abort(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// track registers pr; it reports false (and closes the client) once the
// proxy closed.
func (p *FaultProxy) track(pr *pair) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = pr.client.Close()
		return false
	}
	p.pairs[pr] = struct{}{}
	return true
}

func (p *FaultProxy) untrack(pr *pair) {
	p.mu.Lock()
	delete(p.pairs, pr)
	p.mu.Unlock()
}

func (p *FaultProxy) acceptLoop() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.accepted.Add(1)
		p.wg.Add(1)
		go p.serve(client)
	}
}

// serve connects client to the target and runs the two directions until
// either side ends; then it closes both.
func (p *FaultProxy) serve(client net.Conn) {
	defer p.wg.Done()
	pr := &pair{client: client, dead: make(chan struct{})}
	if !p.track(pr) {
		return
	}
	defer p.untrack(pr)
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		pr.abort() // the target is down: the client sees a reset
		return
	}
	pr.mu.Lock()
	pr.server = server
	pr.mu.Unlock()
	select {
	case <-pr.dead: // reset while dialling
		abort(server)
		return
	default:
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // client -> server: untouched
		defer wg.Done()
		_, _ = io.Copy(server, client)
		closeWrite(server)
	}()
	go func() { // server -> client: delayed, stallable
		defer wg.Done()
		p.pipeBack(pr, server, client)
		closeWrite(client)
	}()
	wg.Wait()
	_ = client.Close()
	_ = server.Close()
}

// closeWrite half-closes c so the peer sees EOF, keeping the other direction.
func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
		return
	}
	_ = c.Close()
}

// chunk is bytes read from the server and the time they may be passed on.
type chunk struct {
	b   []byte
	due time.Time
}

// pipeBack copies server to client: a reader stamps each chunk with its due
// time, a writer waits for that time (and for any stall to end) and writes.
func (p *FaultProxy) pipeBack(pr *pair, server, client net.Conn) {
	chunks := make(chan chunk, 256)
	go func() { // owned by pipeBack: it ends when server's read ends
		defer close(chunks)
		for {
			buf := make([]byte, 32<<10)
			n, err := server.Read(buf)
			if n > 0 {
				due := time.Now().Add(time.Duration(p.delay.Load()))
				select {
				case chunks <- chunk{b: buf[:n], due: due}:
				case <-pr.dead:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	broken := false
	for c := range chunks {
		if broken {
			continue // drain, so the reader can end
		}
		if !p.wait(pr, c.due) {
			broken = true
			_ = server.Close()
			continue
		}
		if _, err := client.Write(c.b); err != nil {
			broken = true
			_ = server.Close() // ends the reader
		}
	}
}

// wait blocks until due has passed and no stall is on; false if the pair
// was reset (or the proxy closed) meanwhile.
func (p *FaultProxy) wait(pr *pair, due time.Time) bool {
	if d := time.Until(due); d > 0 {
		timer := time.NewTimer(d)
		select {
		case <-timer.C:
		case <-pr.dead:
			timer.Stop()
			return false
		}
	}
	for {
		p.mu.Lock()
		stalled, resume := p.stalled, p.resume
		p.mu.Unlock()
		if !stalled {
			return true
		}
		select {
		case <-resume:
		case <-pr.dead:
			return false
		}
	}
}
