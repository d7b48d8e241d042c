package retry

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"
)

// payload returns n deterministic bytes.
func payload(n int) []byte {
	p := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(n), 9))
	for i := range p {
		p[i] = byte('a' + r.IntN(26))
	}
	return p
}

// countingReader counts the bytes taken from it and whether it was closed.
type countingReader struct {
	r      io.Reader
	mu     sync.Mutex
	n      int
	closed bool
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.mu.Lock()
	c.n += n
	c.mu.Unlock()
	return n, err
}

func (c *countingReader) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return nil
}

func (c *countingReader) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func mustRewind(t *testing.T, b *Body) io.ReadCloser {
	t.Helper()
	rc, ok := b.Rewind()
	if !ok {
		t.Fatal("Rewind: not replayable")
	}
	return rc
}

// readN reads exactly n bytes from r.
func readN(t *testing.T, r io.Reader, n int) []byte {
	t.Helper()
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		t.Fatalf("reading %d bytes: %v", n, err)
	}
	return p
}

func TestBodyReplay(t *testing.T) {
	tests := []struct {
		name          string
		size          int
		limit         int64
		contentLength int64 // -2: the real size
		firstReads    int   // bytes the first attempt reads before failing; -1: all
		wantReplay    bool
	}{
		{"small, read whole", 100, 0, -1, -1, true},
		{"small, known length", 100, 0, -2, -1, true},
		{"read partly, then rewound", 100, 0, -1, 10, true},
		{"not read at all (connect refused)", 100, 0, -1, 0, true},
		{"exactly the cap", 1000, 1000, -1, -1, true},
		{"exactly the cap, known length", 1000, 1000, -2, -1, true},
		{"one past the cap", 1001, 1000, -1, -1, false},
		{"past the cap but only the cap read", 5000, 1000, -1, 1000, true},
		{"past the cap, one more byte read", 5000, 1000, -1, 1001, false},
		{"known length past the cap, unread", 5000, 1000, -2, 0, true},
		{"known length past the cap, one byte read", 5000, 1000, -2, 1, false},
		{"default cap, 64 KiB", DefaultBufferBytes, 0, -1, -1, true},
		{"default cap, 64 KiB + 1", DefaultBufferBytes + 1, 0, -1, -1, false},
		{"1 MiB streams through", 1 << 20, 0, -1, -1, false},
		{"no buffer, unread", 10, -1, -1, 0, true},
		{"no buffer, one byte read", 10, -1, -1, 1, false},
		{"empty", 0, 0, 0, -1, true},
	}
	sources := map[string]func(io.Reader) io.Reader{
		"plain":   func(r io.Reader) io.Reader { return r },
		"onebyte": iotest.OneByteReader,
		"half":    iotest.HalfReader,
		"eof":     iotest.DataErrReader,
	}
	for _, tt := range tests {
		for sname, wrap := range sources {
			if sname == "onebyte" && tt.size > 1<<16 {
				continue // slow, and nothing new
			}
			t.Run(tt.name+"/"+sname, func(t *testing.T) {
				data := payload(tt.size)
				cl := tt.contentLength
				if cl == -2 {
					cl = int64(tt.size)
				}
				src := &countingReader{r: wrap(bytes.NewReader(data))}
				b := NewBody(src, cl, tt.limit)
				if src.count() != 0 {
					t.Fatal("NewBody read ahead")
				}
				first := mustRewind(t, b)
				if b.Started() {
					t.Fatal("Started before any read")
				}
				var got []byte
				if tt.firstReads < 0 {
					var err error
					if got, err = io.ReadAll(first); err != nil {
						t.Fatalf("first attempt: %v", err)
					}
					if !bytes.Equal(got, data) {
						t.Fatalf("first attempt read %d bytes, not the body (%d)", len(got), len(data))
					}
				} else {
					got = readN(t, first, tt.firstReads)
					if src.count() > tt.firstReads {
						// An io.ReadFull of n reads at most n: nothing more is taken from the source.
						t.Fatalf("source gave %d bytes for a %d-byte read: read ahead", src.count(), tt.firstReads)
					}
				}
				if want := len(got) > 0; b.Started() != want {
					t.Fatalf("Started = %v after reading %d bytes", b.Started(), len(got))
				}
				if err := first.Close(); err != nil || src.closed {
					t.Fatalf("Close: %v, source closed %v: the source must stay open", err, src.closed)
				}
				if b.Replayable() != tt.wantReplay {
					t.Fatalf("Replayable = %v, want %v", b.Replayable(), tt.wantReplay)
				}
				second, ok := b.Rewind()
				if ok != tt.wantReplay {
					t.Fatalf("Rewind ok = %v, want %v", ok, tt.wantReplay)
				}
				if !ok {
					if second != nil {
						t.Fatal("Rewind returned a reader with false")
					}
					if n := b.Buffered(); n != 0 {
						t.Fatalf("an unreplayable body still holds %d bytes", n)
					}
					if _, err := b.GetBody(); !errors.Is(err, ErrNotReplayable) {
						t.Fatalf("GetBody = %v, want ErrNotReplayable", err)
					}
					return
				}
				if err := iotest.TestReader(second, data); err != nil {
					t.Fatalf("second attempt: %v", err)
				}
				keep := tt.limit
				switch {
				case keep == 0:
					keep = DefaultBufferBytes
				case keep < 0, cl > keep:
					keep = 0
				}
				if int64(tt.size) > keep {
					// The second attempt read the whole body, past the cap.
					if _, err := b.GetBody(); !errors.Is(err, ErrNotReplayable) {
						t.Fatalf("after reading %d bytes past a %d-byte cap: GetBody = %v, want ErrNotReplayable", tt.size, keep, err)
					}
					return
				}
				third, err := b.GetBody()
				if err != nil {
					t.Fatal(err)
				}
				if all, err := io.ReadAll(third); err != nil || !bytes.Equal(all, data) {
					t.Fatalf("third attempt: %d bytes, %v", len(all), err)
				}
				if n, _ := second.Read(make([]byte, 1)); n != 0 {
					t.Fatal("a retired reader still reads")
				}
				if src.count() != tt.size {
					t.Fatalf("source gave %d bytes in all, want %d: each byte read once", src.count(), tt.size)
				}
			})
		}
	}
}

func TestBodyBufferStaysWithinCap(t *testing.T) {
	tests := []struct {
		name          string
		size          int
		contentLength int64
		limit         int64
		wantCap       int // capacity after the whole body was read; -1: no more than limit
	}{
		{"known length allocates once", 3000, 3000, 1 << 16, 3000},
		{"unknown length grows but not past the cap", 60000, -1, 50000, 0}, // over the cap: dropped
		{"unknown length within the cap", 40000, -1, 50000, -1},
		{"known length past the cap keeps nothing", 60000, 60000, 50000, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBody(bytes.NewReader(payload(tt.size)), tt.contentLength, tt.limit)
			rc := mustRewind(t, b)
			p := make([]byte, 777)
			for {
				_, err := rc.Read(p)
				b.mu.Lock()
				c := cap(b.buf)
				b.mu.Unlock()
				if int64(c) > tt.limit {
					t.Fatalf("buffer capacity %d above the cap %d", c, tt.limit)
				}
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			b.mu.Lock()
			c := cap(b.buf)
			b.mu.Unlock()
			if tt.wantCap >= 0 && c != tt.wantCap {
				t.Fatalf("final capacity %d, want %d", c, tt.wantCap)
			}
		})
	}
}

// TestBodyStreams: bytes reach the attempt as the client sends them, before the client
// has sent the rest, on a body larger than the cap.
func TestBodyStreams(t *testing.T) {
	pr, pw := io.Pipe()
	b := NewBody(pr, -1, 8)
	rc := mustRewind(t, b)
	chunks := []string{"hello ", "streaming ", "world"}
	go func() {
		for _, c := range chunks {
			pw.Write([]byte(c))
		}
		pw.Close()
	}()
	for i, c := range chunks {
		if got := string(readN(t, rc, len(c))); got != c {
			t.Fatalf("chunk %d: %q, want %q", i, got, c)
		}
	}
	if n, err := rc.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("end: %d, %v", n, err)
	}
	if b.Replayable() {
		t.Fatal("21 bytes through an 8-byte buffer: still replayable")
	}
}

// TestBodyRewindDuringSourceRead: the transport of a failed attempt is still blocked
// reading the client's body when the next attempt starts. The bytes that read returns
// are not lost: the new attempt gets them.
func TestBodyRewindDuringSourceRead(t *testing.T) {
	pr, pw := io.Pipe()
	b := NewBody(pr, -1, 0)
	old := mustRewind(t, b)
	oldDone := make(chan error, 1)
	go func() {
		_, err := old.Read(make([]byte, 64)) // blocks: nothing written yet
		oldDone <- err
	}()
	waitUntil(t, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.reading
	})
	cur := mustRewind(t, b)
	curDone := make(chan []byte, 1)
	go func() {
		all, err := io.ReadAll(cur)
		if err != nil {
			t.Errorf("current attempt: %v", err)
		}
		curDone <- all
	}()
	pw.Write([]byte("abc"))
	if err := <-oldDone; !errors.Is(err, ErrRewound) {
		t.Fatalf("retired reader: %v, want ErrRewound", err)
	}
	pw.Write([]byte("def"))
	pw.Close()
	if got := string(<-curDone); got != "abcdef" {
		t.Fatalf("current attempt read %q, want %q", got, "abcdef")
	}
	if _, err := old.Read(make([]byte, 1)); !errors.Is(err, ErrRewound) {
		t.Fatalf("retired reader later: %v, want ErrRewound", err)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestBodySourceErrorIsSticky(t *testing.T) {
	boom := errors.New("client went away")
	src := io.MultiReader(strings.NewReader("partial"), iotest.ErrReader(boom))
	b := NewBody(src, -1, 0)
	first := mustRewind(t, b)
	got, err := io.ReadAll(first)
	if string(got) != "partial" || !errors.Is(err, boom) {
		t.Fatalf("first attempt: %q, %v", got, err)
	}
	second := mustRewind(t, b)
	got, err = io.ReadAll(second)
	if string(got) != "partial" || !errors.Is(err, boom) {
		t.Fatalf("replay: %q, %v; want the bytes, then the same error", got, err)
	}
}

func TestBodyNilSource(t *testing.T) {
	b := NewBody(nil, -1, 0)
	for range 3 {
		rc := mustRewind(t, b)
		if n, err := rc.Read(make([]byte, 8)); n != 0 || err != io.EOF {
			t.Fatalf("nil body: %d, %v", n, err)
		}
	}
	if b.Started() {
		t.Fatal("empty body Started")
	}
}

// TestBodyConcurrentAttempts: attempts start before the retired ones' transports stop
// reading; the last attempt still reads the whole body.
func TestBodyConcurrentAttempts(t *testing.T) {
	for _, size := range []int{0, 1, 100, 4096, 20000} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			data := payload(size)
			pr, pw := io.Pipe()
			go func() {
				r := rand.New(rand.NewPCG(3, uint64(size)))
				for rest := data; len(rest) > 0; {
					n := min(len(rest), 1+r.IntN(700))
					pw.Write(rest[:n])
					rest = rest[n:]
				}
				pw.Close()
			}()
			b := NewBody(pr, -1, 1<<15)
			var wg sync.WaitGroup
			for i := range 8 {
				rc := mustRewind(t, b)
				wg.Go(func() {
					p := make([]byte, 1+i*97)
					for {
						if _, err := rc.Read(p); err != nil {
							if err != io.EOF && !errors.Is(err, ErrRewound) {
								t.Errorf("retired attempt %d: %v", i, err)
							}
							return
						}
					}
				})
				time.Sleep(time.Duration(i) * 100 * time.Microsecond)
			}
			last := mustRewind(t, b)
			got, err := io.ReadAll(last)
			wg.Wait()
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("last attempt: %d bytes (want %d), %v", len(got), len(data), err)
			}
		})
	}
}

// TestBodyThroughTransport: a real Transport sends the body, the first upstream refuses
// the connection, the second answers 503 after reading half, the third gets it whole.
func TestBodyThroughTransport(t *testing.T) {
	data := payload(30000)
	var mu sync.Mutex
	var seen []int
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		var got []byte
		if n == 0 {
			got = make([]byte, 15000)
			io.ReadFull(r.Body, got)
		} else {
			got, _ = io.ReadAll(r.Body)
		}
		mu.Lock()
		seen = append(seen, len(got))
		mu.Unlock()
		if n == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if !bytes.Equal(got, data) {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer upstream.Close()
	refused := httptest.NewServer(http.NotFoundHandler())
	refusedURL := refused.URL
	refused.Close()

	b := NewBody(bytes.NewReader(data), int64(len(data)), 0)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	urls := []string{refusedURL, upstream.URL, upstream.URL}
	var statuses []int
	for i, u := range urls {
		rc, ok := b.Rewind()
		if !ok {
			t.Fatalf("attempt %d: not replayable", i+1)
		}
		req, _ := http.NewRequest(http.MethodPost, u, rc)
		req.ContentLength = int64(len(data))
		req.GetBody = b.GetBody
		resp, err := tr.RoundTrip(req)
		if err != nil {
			statuses = append(statuses, 0)
			if i == 0 && b.Started() {
				t.Fatal("connection refused, yet the body was read")
			}
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		statuses = append(statuses, resp.StatusCode)
	}
	if want := []int{0, 503, 200}; fmt.Sprint(statuses) != fmt.Sprint(want) {
		t.Fatalf("statuses %v, want %v (upstream saw %v bytes)", statuses, want, seen)
	}
}

func BenchmarkBodySmallReplay(b *testing.B) {
	data := payload(2048)
	p := make([]byte, 4096)
	b.ReportAllocs()
	for b.Loop() {
		body := NewBody(bytes.NewReader(data), int64(len(data)), 0)
		for range 2 {
			rc, _ := body.Rewind()
			for {
				if _, err := rc.Read(p); err != nil {
					break
				}
			}
		}
	}
}

func TestBodyWaiting(t *testing.T) {
	pr, pw := io.Pipe()
	b := NewBody(pr, -1, 0)
	rd, _ := b.Rewind()
	if b.Waiting() {
		t.Fatal("waiting before any read")
	}
	got := make(chan error, 1)
	go func() { _, err := rd.Read(make([]byte, 4)); got <- err }()
	for !b.Waiting() {
		runtime.Gosched()
	}
	_, _ = pw.Write([]byte("ab"))
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if b.Waiting() {
		t.Fatal("still waiting after the read returned")
	}
}

func TestBodyDrained(t *testing.T) {
	b := NewBody(strings.NewReader("abcd"), 4, 0)
	rd, _ := b.Rewind()
	if b.Drained() {
		t.Fatal("drained before any read")
	}
	if _, err := io.ReadFull(rd, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	if !b.Drained() {
		t.Fatal("not drained after Content-Length bytes")
	}
	u := NewBody(strings.NewReader("ab"), -1, 0)
	rd, _ = u.Rewind()
	_, _ = io.ReadFull(rd, make([]byte, 2))
	if u.Drained() {
		t.Fatal("unknown length: drained before EOF")
	}
	_, _ = io.ReadAll(rd)
	if !u.Drained() {
		t.Fatal("not drained after EOF")
	}
}
