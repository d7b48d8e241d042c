package retry

import (
	"errors"
	"io"
	"sync"
)

// DefaultBufferBytes is the replay buffer's default cap: 64 KiB.
const DefaultBufferBytes = 64 << 10

// Errors returned by the readers of a [Body].
var (
	// ErrRewound is returned by a reader that was superseded by a later Rewind.
	ErrRewound = errors.New("retry: request body was rewound for another attempt")
	// ErrNotReplayable is returned where bytes past the replay buffer's cap would have to
	// be read again.
	ErrNotReplayable = errors.New("retry: request body is larger than the replay buffer")
)

// Body wraps a request body so it can be sent again. It keeps the bytes it hands out, up
// to a cap; as long as no more than the cap has been read from the source, [Body.Rewind]
// returns a reader that replays the kept bytes and then continues with the unread rest of
// the source. Once byte cap+1 has been read the buffer is dropped and the body is no
// longer replayable; the attempt reading it goes on streaming.
//
// It streams: nothing is read ahead. Bytes are taken from the source only when an
// attempt's reader asks for them, so the first attempt starts at once, an
// `Expect: 100-continue` upload is not forced, and memory stays at most the cap (grown
// as needed, allocated once when the Content-Length is known). The price is that a large
// body is known to be unreplayable only after the transport has read past the cap, not
// before the first attempt — by which time the upstream has that data and a retry would
// be ruled out anyway for a non-idempotent request. (The alternative, reading up to cap+1
// bytes before the first attempt, delays every request with a body and buffers slow
// uploads.)
//
// A Transport may go on reading an attempt's body after RoundTrip returned (net/http
// documents this). So each Rewind retires the previous reader — its later reads return
// [ErrRewound] — and a read of the source already in flight when Rewind is called is not
// lost: its bytes are kept, and the new reader waits for it, then replays them.
//
// Body never closes the source: the reader's Close is a no-op, because a Transport closes
// the body of a failed attempt, and the server owns the client's request body. Body is
// safe for concurrent use.
type Body struct {
	mu      sync.Mutex
	cond    sync.Cond // signalled when a source read ends; uses mu
	src     io.Reader
	keep    int64 // bytes kept for replay at most; 0: none
	buf     []byte
	read    int64 // bytes taken from src so far
	srcErr  error // sticky: io.EOF or the source's error
	reading bool  // a reader is inside src.Read
	over    bool  // more than keep bytes were read: buf dropped, not replayable
	started bool  // some attempt got at least one byte
	length  int64 // the declared Content-Length, -1 if unknown
	epoch   uint64
}

// NewBody wraps src (nil: an empty body). limit is the replay buffer's cap: 0 means
// [DefaultBufferBytes], negative means nothing is kept (the body is replayable only
// until its first byte is read). contentLength is the request's declared length, -1 if
// unknown: a known length within the cap sizes the buffer in one allocation, and a known
// length above it means nothing is kept at all, since the body could never be replayed.
func NewBody(src io.Reader, contentLength, limit int64) *Body {
	if limit == 0 {
		limit = DefaultBufferBytes
	}
	b := &Body{src: src, keep: max(limit, 0), length: contentLength}
	b.cond.L = &b.mu
	switch {
	case src == nil:
		b.srcErr = io.EOF
	case contentLength > b.keep:
		b.keep = 0
	case contentLength > 0:
		b.buf = make([]byte, 0, contentLength)
	}
	return b
}

// Rewind returns a reader for the next attempt, which reads the body from its first byte,
// and retires every earlier reader. It returns false when the body is no longer
// replayable; the first call always succeeds.
func (b *Body) Rewind() (io.ReadCloser, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.over {
		return nil, false
	}
	b.epoch++
	return &bodyReader{b: b, epoch: b.epoch}, true
}

// GetBody is [Body.Rewind] in the shape of http.Request.GetBody, so a Transport may
// replay the body itself (HTTP/2 does, after a GOAWAY). It fails with [ErrNotReplayable].
func (b *Body) GetBody() (io.ReadCloser, error) {
	rc, ok := b.Rewind()
	if !ok {
		return nil, ErrNotReplayable
	}
	return rc, nil
}

// Replayable reports whether [Body.Rewind] would succeed: no more than the cap has been
// read from the source.
func (b *Body) Replayable() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.over
}

// Started reports whether any attempt's reader has returned at least one byte. From then
// on the upstream may have seen part of the request, so a non-idempotent request must
// not be sent again. False does not prove the upstream saw nothing — the headers go
// first — so it only backs up a caller's own "the connection was never made" check.
func (b *Body) Started() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.started
}

// SourceErr returns the error reading the client's body failed with, if any (io.EOF is
// not an error). Such a failure is the client's, not the upstream's: the caller must not
// blame the instance, nor retry.
func (b *Body) SourceErr() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.srcErr == io.EOF {
		return nil
	}
	return b.srcErr
}

// Drained reports whether the source was read to its end: io.EOF, or as many bytes as
// the declared Content-Length (the EOF that follows may not have been asked for yet).
func (b *Body) Drained() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.srcErr == io.EOF || b.length >= 0 && b.read >= b.length && b.srcErr == nil
}

// Waiting reports whether an attempt is blocked reading the source right now: the
// upload is waiting for the client, not for the upstream to take bytes. A timeout that
// passes while it is true is the client's stalled upload, not the instance's fault.
func (b *Body) Waiting() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.reading
}

// Buffered returns how many bytes are kept for replay.
func (b *Body) Buffered() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.buf)
}

// bodyReader is one attempt's view of a Body.
type bodyReader struct {
	b     *Body
	epoch uint64
	pos   int64 // offset of the next byte this reader returns
}

// Read implements io.Reader.
func (r *bodyReader) Read(p []byte) (int, error) {
	b := r.b
	b.mu.Lock()
	for {
		if r.epoch != b.epoch {
			b.mu.Unlock()
			return 0, ErrRewound
		}
		if len(p) == 0 {
			b.mu.Unlock()
			return 0, nil
		}
		if r.pos < b.read { // replay
			if b.over {
				b.mu.Unlock()
				return 0, ErrNotReplayable
			}
			n := copy(p, b.buf[r.pos:])
			r.pos += int64(n)
			b.started = true
			b.mu.Unlock()
			return n, nil
		}
		if b.srcErr != nil {
			err := b.srcErr
			b.mu.Unlock()
			return 0, err
		}
		if !b.reading {
			break
		}
		b.cond.Wait() // a retired reader is in src.Read; its bytes will be kept
	}
	b.reading = true
	b.mu.Unlock()

	n, err := b.src.Read(p)

	b.mu.Lock()
	defer b.mu.Unlock()
	b.reading = false
	b.cond.Broadcast()
	if n > 0 {
		b.take(p[:n])
	}
	if err != nil {
		b.srcErr = err
	}
	if r.epoch != b.epoch {
		return 0, ErrRewound // the bytes are kept for the current reader
	}
	r.pos += int64(n)
	if n > 0 {
		b.started = true
	}
	return n, err
}

// take records bytes just read from the source, keeping them while the total stays
// within the cap. b.mu must be held.
func (b *Body) take(p []byte) {
	n := int64(len(p))
	b.read += n
	if b.over {
		return
	}
	if b.read > b.keep {
		b.over, b.buf = true, nil
		return
	}
	if int64(cap(b.buf)-len(b.buf)) < n {
		// Grow by doubling, but never past the cap.
		c := min(max(2*int64(cap(b.buf)), b.read, 512), b.keep)
		nb := make([]byte, len(b.buf), c)
		copy(nb, b.buf)
		b.buf = nb
	}
	b.buf = append(b.buf, p...)
}

// Close does not close the source; see [Body].
func (r *bodyReader) Close() error { return nil }
