package gateway

// Response compression for routes with compress = true. The stage wraps the exchange's
// writer: it negotiates an encoding from Accept-Encoding at the start, then decides at
// WriteHeader whether this answer may be encoded (never HEAD, 206, an answer already
// encoded or marked no-transform, a media type outside content_types, or a body under
// min_bytes) and streams the encoded body, passing flushes through, so SSE events reach
// the client one by one.

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzhttp/writer"
	"github.com/klauspost/compress/gzhttp/writer/gzkp"
	"github.com/klauspost/compress/gzhttp/writer/zstdkp"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/infinityxone/gateway/gateway/config"
)

// Compression levels: gzip's default (level 5 in klauspost/compress), zstd's fastest
// (gzhttp's default) and brotli 4, which compresses better than gzip -5 at a similar
// CPU cost; brotli's own default (6) costs several times more per byte.
const (
	gzipLevel   = gzip.DefaultCompression
	zstdLevel   = int(zstd.SpeedFastest)
	brotliLevel = 4
)

// encoder is an encoding stream: flushable, closed at the end of the body.
type encoder interface {
	io.Writer
	Flush() error
	Close() error
}

// compressor is the runtime form of the compression block, shared by every route.
type compressor struct {
	minBytes  int
	types     []string // exact media types, or "text/" prefixes for "text/*"; "*/*" matches all
	encodings []string // the gateway's preference
	gzip      writer.GzipWriterFactory
	zstd      writer.ZstdWriterFactory
	brotli    sync.Pool // *brotli.Writer
	writers   sync.Pool // *compressWriter
}

func newCompressor(c *config.Compression) *compressor {
	cp := &compressor{
		minBytes:  c.MinBytes,
		encodings: c.Encodings,
		gzip:      writer.GzipWriterFactory{Levels: gzkp.Levels, New: gzkp.NewWriter},
		zstd:      writer.ZstdWriterFactory{Levels: zstdkp.Levels, New: zstdkp.NewWriter},
	}
	for _, t := range c.ContentTypes {
		if strings.HasSuffix(t, "/*") && t != "*/*" {
			t = strings.TrimSuffix(t, "*")
		}
		cp.types = append(cp.types, t)
	}
	cp.brotli.New = func() any { return brotli.NewWriterLevel(nil, brotliLevel) }
	cp.writers.New = func() any { return &compressWriter{} }
	return cp
}

// compressStage wraps the rest of a route with compress = true.
func (g *Gateway) compressStage(rt *Route, next Handler) Handler {
	if !rt.Config.Compress || g.compress == nil {
		return next
	}
	c := g.compress
	return HandlerFunc(func(x *Exchange) {
		if x.upgrade != "" {
			next.Serve(x) // a switched protocol is not an HTTP body
			return
		}
		enc := c.negotiate(x.R.Header["Accept-Encoding"])
		cw := c.writers.Get().(*compressWriter)
		*cw = compressWriter{c: c, w: x.W.w, enc: enc, head: x.R.Method == http.MethodHead, buf: cw.buf[:0]}
		x.W.w = cw
		completed := false
		defer func() {
			x.W.w = cw.w
			if completed {
				cw.finish()
			} else {
				cw.abandon() // a panic (upstream aborted mid-body): the connection is dropped
			}
			cw.w = nil
			c.writers.Put(cw)
		}()
		next.Serve(x)
		completed = true
	})
}

// negotiate picks the encoding for an Accept-Encoding list: the highest q-value among
// the encodings the gateway has, ties broken by the configured preference; "*" stands
// for any encoding not named. "" means identity.
func (c *compressor) negotiate(values []string) string {
	best, bestQ, bestRank := "", 0.0, len(c.encodings)
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			name, q := parseCoding(part)
			if q <= 0 || name == "" {
				continue
			}
			if name == "*" {
				for rank, e := range c.encodings {
					if !codingNamed(values, e) && (q > bestQ || q == bestQ && rank < bestRank) {
						best, bestQ, bestRank = e, q, rank
					}
				}
				continue
			}
			rank := indexOf(c.encodings, name)
			if rank < 0 {
				continue
			}
			if q > bestQ || q == bestQ && rank < bestRank {
				best, bestQ, bestRank = name, q, rank
			}
		}
	}
	return best
}

// parseCoding reads "gzip;q=0.5" into its lower-cased name and q-value (1 if absent,
// 0 if malformed).
func parseCoding(s string) (string, float64) {
	name, params, _ := strings.Cut(s, ";")
	name = strings.ToLower(strings.TrimSpace(name))
	q := 1.0
	for p := range strings.SplitSeq(params, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if ok && strings.EqualFold(strings.TrimSpace(k), "q") {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil || f < 0 || f > 1 {
				return name, 0
			}
			q = f
		}
	}
	return name, q
}

// codingNamed reports whether the Accept-Encoding lists name explicitly (then "*" does
// not speak for it).
func codingNamed(values []string, name string) bool {
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			if n, _ := parseCoding(part); n == name {
				return true
			}
		}
	}
	return false
}

func indexOf(ss []string, s string) int {
	for i, x := range ss {
		if x == s {
			return i
		}
	}
	return -1
}

// typeAllowed reports whether a Content-Type is in content_types.
func (c *compressor) typeAllowed(ct string) bool {
	if ct == "" {
		return false
	}
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	for _, t := range c.types {
		switch {
		case t == "*/*", t == mt:
			return true
		case strings.HasSuffix(t, "/") && strings.HasPrefix(mt, t):
			return true
		}
	}
	return false
}

// newEncoder starts an encoding stream of enc onto w.
func (c *compressor) newEncoder(enc string, w io.Writer) encoder {
	switch enc {
	case "gzip":
		return c.gzip.New(w, gzipLevel)
	case "zstd":
		return c.zstd.New(w, zstdLevel)
	case "br":
		bw := c.brotli.Get().(*brotli.Writer)
		bw.Reset(w)
		return &pooledBrotli{Writer: bw, pool: &c.brotli}
	}
	return nil
}

// pooledBrotli returns its writer to the pool on Close.
type pooledBrotli struct {
	*brotli.Writer
	pool *sync.Pool
}

func (p *pooledBrotli) Close() error {
	err := p.Writer.Close()
	p.Writer.Reset(nil)
	p.pool.Put(p.Writer)
	p.Writer = nil
	return err
}

// compressWriter states.
const (
	cwUndecided = iota // header held back: the body is still under min_bytes
	cwPlain            // passing through unencoded
	cwEncoding         // encoding into enc
)

// compressWriter sits between the exchange's responseWriter and the client's writer.
type compressWriter struct {
	c     *compressor
	w     http.ResponseWriter
	enc   string // negotiated encoding; "" = the client takes none of ours
	head  bool
	state int
	code  int
	buf   []byte // held body while undecided (at most min_bytes)
	ew    encoder
	err   error
}

func (cw *compressWriter) Header() http.Header { return cw.w.Header() }

// WriteHeader decides whether this answer may be encoded. With a Content-Length at or
// above min_bytes it starts encoding at once; without one it holds the header back until
// min_bytes of body, a flush, or the end of the body decides.
func (cw *compressWriter) WriteHeader(code int) {
	if code >= 100 && code < 200 {
		cw.w.WriteHeader(code)
		return
	}
	if cw.code != 0 {
		return
	}
	cw.code = code
	h := cw.w.Header()
	if cw.cacheable(code, h) {
		addVary(h, "Accept-Encoding")
	}
	if !cw.eligible(code, h) {
		cw.startPlain()
		return
	}
	if cl := h.Get("Content-Length"); cl != "" {
		n, err := strconv.ParseInt(cl, 10, 64)
		if err != nil || n < int64(cw.c.minBytes) {
			cw.startPlain()
			return
		}
		cw.startEncoding()
		return
	}
	cw.state = cwUndecided
}

// cacheable reports whether the answer's form depends on Accept-Encoding, so caches
// downstream must key on it: any answer that could be encoded for some client.
func (cw *compressWriter) cacheable(code int, h http.Header) bool {
	return code != http.StatusPartialContent && bodyAllowed(code) && !noTransform(h) &&
		(h.Get("Content-Encoding") == "" || strings.EqualFold(h.Get("Content-Encoding"), "identity")) &&
		cw.c.typeAllowed(h.Get("Content-Type"))
}

// eligible reports whether this answer to this client may be encoded.
func (cw *compressWriter) eligible(code int, h http.Header) bool {
	return cw.enc != "" && !cw.head && cw.cacheable(code, h) && h.Get("Content-Range") == ""
}

func bodyAllowed(code int) bool {
	return code >= 200 && code != http.StatusNoContent && code != http.StatusNotModified
}

func noTransform(h http.Header) bool {
	for _, v := range h["Cache-Control"] {
		for d := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(d), "no-transform") {
				return true
			}
		}
	}
	return false
}

// addVary adds name to Vary unless it is listed already (or Vary is "*").
func addVary(h http.Header, name string) {
	for _, v := range h["Vary"] {
		for f := range strings.SplitSeq(v, ",") {
			f = strings.TrimSpace(f)
			if f == "*" || strings.EqualFold(f, name) {
				return
			}
		}
	}
	h["Vary"] = append(h["Vary"][:len(h["Vary"]):len(h["Vary"])], name)
}

func (cw *compressWriter) startPlain() {
	cw.state = cwPlain
	cw.w.WriteHeader(cw.code)
	if len(cw.buf) > 0 {
		_, cw.err = cw.w.Write(cw.buf)
		cw.buf = cw.buf[:0]
	}
}

func (cw *compressWriter) startEncoding() {
	cw.state = cwEncoding
	h := cw.w.Header()
	h.Set("Content-Encoding", cw.enc)
	h.Del("Content-Length")
	h.Del("Accept-Ranges")
	// The encoded body is a different representation: a strong validator of the
	// identity body no longer matches it byte for byte.
	if et := h.Get("Etag"); et != "" && !strings.HasPrefix(et, "W/") {
		h.Set("Etag", "W/"+et)
	}
	cw.w.WriteHeader(cw.code)
	cw.ew = cw.c.newEncoder(cw.enc, cw.w)
	if len(cw.buf) > 0 {
		_, cw.err = cw.ew.Write(cw.buf)
		cw.buf = cw.buf[:0]
	}
}

func (cw *compressWriter) Write(p []byte) (int, error) {
	if cw.code == 0 {
		cw.WriteHeader(http.StatusOK)
	}
	if cw.err != nil {
		return 0, cw.err
	}
	switch cw.state {
	case cwPlain:
		return cw.w.Write(p)
	case cwEncoding:
		n, err := cw.ew.Write(p)
		if err != nil {
			cw.err = err
		}
		return n, err
	}
	if len(cw.buf)+len(p) < cw.c.minBytes {
		cw.buf = append(cw.buf, p...)
		return len(p), nil
	}
	cw.buf = append(cw.buf, p...)
	cw.startEncoding()
	if cw.err != nil {
		return 0, cw.err
	}
	return len(p), nil
}

// Flush sends what is encoded so far. An undecided body of unknown length that is
// flushed is a stream: it is encoded from here on.
func (cw *compressWriter) Flush() { _ = cw.FlushError() }

// FlushError is Flush reporting a client that cannot take the bytes (a write deadline
// passed), so the proxy blames the client's slowness as it does without compression.
func (cw *compressWriter) FlushError() error {
	if cw.code == 0 {
		cw.WriteHeader(http.StatusOK)
	}
	if cw.state == cwUndecided {
		cw.startEncoding()
	}
	if cw.ew != nil && cw.err == nil {
		if err := cw.ew.Flush(); err != nil {
			cw.err = err
			return err
		}
	}
	if cw.err != nil {
		return cw.err
	}
	if err := http.NewResponseController(cw.w).Flush(); err != nil {
		cw.err = err
		return err
	}
	return nil
}

// finish ends the body: a body still undecided is short, so it goes out as it is, with
// its length; an encoding stream is closed.
func (cw *compressWriter) finish() {
	switch cw.state {
	case cwUndecided:
		if cw.code != 0 {
			cw.w.Header().Set("Content-Length", strconv.Itoa(len(cw.buf)))
			cw.startPlain()
		}
	case cwEncoding:
		if err := cw.ew.Close(); err != nil && cw.err == nil {
			cw.err = err
		}
		cw.ew = nil
	}
}

// abandon releases the encoder without finishing the body.
func (cw *compressWriter) abandon() {
	if cw.ew != nil {
		_ = cw.ew.Close() // back to its pool; the output goes to a connection being dropped
		cw.ew = nil
	}
}

func (cw *compressWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(cw.w).Hijack()
}

func (cw *compressWriter) Unwrap() http.ResponseWriter { return cw.w }
