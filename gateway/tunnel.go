package gateway

import (
	"context"
	"io"
	"math/rand/v2"
	"net"
	"sync"
)

// tunnels tracks upgraded (hijacked) connections, which http.Server.Shutdown neither
// waits for nor closes. On shutdown each WebSocket tunnel gets a close frame 1001 (going
// away) in both directions at a frame boundary; whatever is still open when the
// shutdown deadline passes is closed. A tunnel counts until its access-log line is
// written, so the process never exits before logging it.
type tunnels struct {
	mu      sync.Mutex
	open    map[*tunnel]struct{}
	closing bool
	drained chan struct{} // closed when the last tunnel is done, once closing
}

// tunnel is one upgraded connection: a pump in each direction.
type tunnel struct {
	mu         sync.Mutex
	attached   bool // the connections are known; before that, requests are remembered
	wantGoAway bool
	wantClose  bool
	client     net.Conn
	upstream   io.ReadWriteCloser
	toClient   pump // upstream -> client
	toUpstream pump // client -> upstream
}

// add registers an upgrade about to happen, before the connection is hijacked: until
// then http.Server.Shutdown still waits for the handler, so no tunnel slips past a
// shutdown. done must be called once the exchange is logged, attach once hijacked.
func (ts *tunnels) add() *tunnel {
	t := &tunnel{}
	ts.mu.Lock()
	if ts.open == nil {
		ts.open = make(map[*tunnel]struct{})
	}
	ts.open[t] = struct{}{}
	t.wantGoAway = ts.closing
	ts.mu.Unlock()
	return t
}

// attach gives the tunnel its connections; a go-away or close asked for earlier is done
// now.
func (t *tunnel) attach(client net.Conn, upstream io.ReadWriteCloser, protocol string) {
	ws := hasToken(protocol, "websocket")
	t.mu.Lock()
	t.client, t.upstream = client, upstream
	t.toClient = pump{dst: client, ws: ws}
	t.toUpstream = pump{dst: upstream, ws: ws, masked: true}
	t.attached = true
	goAway, closeNow := t.wantGoAway, t.wantClose
	t.mu.Unlock()
	switch {
	case closeNow:
		t.close()
	case goAway:
		t.goAway()
	}
}

// done forgets a tunnel whose exchange has been logged.
func (ts *tunnels) done(t *tunnel) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	delete(ts.open, t)
	if len(ts.open) == 0 && ts.drained != nil {
		close(ts.drained)
		ts.drained = nil
	}
}

// shutdown asks every tunnel to go away and waits for all of them to be logged; when ctx
// ends first, it closes their connections and waits for that. It returns how many
// tunnels it found and how many had to be closed.
func (ts *tunnels) shutdown(ctx context.Context) (found, forced int) {
	ts.mu.Lock()
	ts.closing = true
	if len(ts.open) == 0 {
		ts.mu.Unlock()
		return 0, 0
	}
	ts.drained = make(chan struct{})
	drained := ts.drained
	list := make([]*tunnel, 0, len(ts.open))
	for t := range ts.open {
		list = append(list, t)
	}
	ts.mu.Unlock()

	var wg sync.WaitGroup
	for _, t := range list {
		wg.Add(1)
		go func() { // a write to a stuck peer may block; close() below ends it
			defer wg.Done()
			t.goAway()
		}()
	}
	select {
	case <-drained:
	case <-ctx.Done():
		ts.mu.Lock()
		for t := range ts.open {
			forced++
			t.close()
		}
		ts.mu.Unlock()
		<-drained
	}
	wg.Wait()
	return len(list), forced
}

// goAway sends the close frames, each at its direction's next frame boundary.
func (t *tunnel) goAway() {
	t.mu.Lock()
	if !t.attached {
		t.wantGoAway = true
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	if !t.toClient.ws {
		t.close() // not a protocol the gateway can end politely
		return
	}
	_ = t.toClient.goAway()
	_ = t.toUpstream.goAway()
}

func (t *tunnel) close() {
	t.mu.Lock()
	if !t.attached {
		t.wantClose = true
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	_ = t.client.Close()
	_ = t.upstream.Close()
}

// pump copies one direction of a tunnel. For WebSocket it follows the frame boundaries,
// so that a close frame can be put between two frames without cutting into one; once
// it has sent its close frame it drops what follows (the peer's answering close, which
// the other side's close frame already covers), still reading until the end.
type pump struct {
	mu     sync.Mutex
	dst    io.Writer
	ws     bool
	masked bool // frames towards a server must be masked (RFC 6455 §5.3)
	frames wsFramer
	going  bool // asked to send a close frame at the next boundary
	sent   bool // the close frame was sent
}

// run copies src into the pump until src ends or a write fails.
func (p *pump) run(src io.Reader, buf []byte) error {
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if werr := p.forward(buf[:n]); werr != nil {
				return werr
			}
		}
		if err != nil {
			return err
		}
	}
}

func (p *pump) forward(b []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.ws {
		_, err := p.dst.Write(b)
		return err
	}
	for len(b) > 0 {
		if p.sent {
			return nil
		}
		n, boundary := p.frames.scan(b)
		if _, err := p.dst.Write(b[:n]); err != nil {
			return err
		}
		b = b[n:]
		if boundary && p.going {
			if err := p.sendClose(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (p *pump) goAway() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.going = true
	if p.frames.atBoundary() && !p.sent {
		return p.sendClose()
	}
	return nil
}

// sendClose writes a close frame with status 1001 (going away). p.mu must be held.
func (p *pump) sendClose() error {
	p.sent = true
	payload := [2]byte{0x03, 0xe9} // 1001
	if !p.masked {
		_, err := p.dst.Write([]byte{0x88, 2, payload[0], payload[1]})
		return err
	}
	var m [4]byte
	k := rand.Uint32()
	m[0], m[1], m[2], m[3] = byte(k), byte(k>>8), byte(k>>16), byte(k>>24)
	_, err := p.dst.Write([]byte{0x88, 0x80 | 2, m[0], m[1], m[2], m[3], payload[0] ^ m[0], payload[1] ^ m[1]})
	return err
}

// wsFramer follows WebSocket frame boundaries in a byte stream (RFC 6455 §5.2) without
// looking at payloads.
type wsFramer struct {
	hdr    [14]byte
	hn     int    // header bytes of the current frame seen so far
	remain uint64 // payload bytes left in the current frame
	inBody bool
}

func (f *wsFramer) atBoundary() bool { return f.hn == 0 && !f.inBody }

// scan consumes b up to the end of the current frame: it returns how many bytes that is
// and true, or len(b) and false when the frame goes on past b.
func (f *wsFramer) scan(b []byte) (int, bool) {
	i := 0
	for i < len(b) {
		if !f.inBody {
			f.hdr[f.hn] = b[i]
			f.hn++
			i++
			if f.hn < 2 || f.hn < wsHeaderLen(f.hdr[1]) {
				continue
			}
			f.remain = wsPayloadLen(f.hdr[:f.hn])
			f.hn = 0
			f.inBody = true
		}
		k := min(uint64(len(b)-i), f.remain)
		i += int(k)
		f.remain -= k
		if f.remain == 0 {
			f.inBody = false
			return i, true
		}
	}
	return i, false
}

// wsHeaderLen is a frame header's length given its second byte.
func wsHeaderLen(b1 byte) int {
	n := 2
	switch b1 & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&0x80 != 0 {
		n += 4
	}
	return n
}

// wsPayloadLen reads the payload length of a complete frame header.
func wsPayloadLen(h []byte) uint64 {
	switch l := h[1] & 0x7f; l {
	case 126:
		return uint64(h[2])<<8 | uint64(h[3])
	case 127:
		var n uint64
		for _, c := range h[2:10] {
			n = n<<8 | uint64(c)
		}
		return n
	default:
		return uint64(l)
	}
}
