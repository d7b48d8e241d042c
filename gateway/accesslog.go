package gateway

import (
	"bufio"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// AccessLog writes one line per request to an io.Writer (stdout in production) in one of
// the formats json, combined, common or dev. Lines are built in a pooled buffer and
// written through a bufio.Writer that is flushed at least every FlushInterval, and on Close,
// so a busy gateway does not pay a syscall per request.
type AccessLog struct {
	format string
	redact map[string]bool // canonical header names whose values are logged as "[REDACTED]"

	mu   sync.Mutex
	w    *bufio.Writer
	out  io.Writer
	bufs sync.Pool

	stop chan struct{}
	done chan struct{}
}

// FlushInterval bounds how long a line may sit in the access log's buffer.
const FlushInterval = 200 * time.Millisecond

// NewAccessLog starts an access log in format (json | combined | common | dev).
// Close flushes and stops its flusher goroutine.
func NewAccessLog(out io.Writer, format string, redact []string) *AccessLog {
	l := &AccessLog{
		format: format,
		redact: make(map[string]bool, len(redact)),
		w:      bufio.NewWriterSize(out, 64<<10),
		out:    out,
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	l.bufs.New = func() any { b := make([]byte, 0, 512); return &b }
	for _, h := range redact {
		l.redact[http.CanonicalHeaderKey(h)] = true
	}
	go l.flusher()
	return l
}

func (l *AccessLog) flusher() {
	defer close(l.done)
	t := time.NewTicker(FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.Flush()
		}
	}
}

// Flush writes buffered lines out.
func (l *AccessLog) Flush() {
	l.mu.Lock()
	_ = l.w.Flush()
	l.mu.Unlock()
}

// Close flushes and stops the flusher. Safe to call once.
func (l *AccessLog) Close() {
	close(l.stop)
	<-l.done
	l.Flush()
}

// header returns a request header's value as it may be logged.
func (l *AccessLog) header(r *http.Request, name string) string {
	if l.redact[name] {
		if r.Header.Get(name) == "" {
			return ""
		}
		return "[REDACTED]"
	}
	return r.Header.Get(name)
}

// Log writes the line for one finished exchange.
func (l *AccessLog) Log(x *Exchange, end time.Time) {
	bp := l.bufs.Get().(*[]byte)
	b := (*bp)[:0]
	switch l.format {
	case "combined", "common":
		b = l.apache(b, x, end)
	case "dev":
		b = l.dev(b, x, end)
	default:
		b = l.json(b, x, end)
	}
	b = append(b, '\n')
	l.mu.Lock()
	_, _ = l.w.Write(b)
	l.mu.Unlock()
	*bp = b
	l.bufs.Put(bp)
}

func (l *AccessLog) json(b []byte, x *Exchange, end time.Time) []byte {
	r := x.R
	b = append(b, `{"time":"`...)
	b = x.Start.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	b = append(b, `","request_id":`...)
	b = appendJSONString(b, x.RequestID)
	if x.Trace.Active() {
		b = append(b, `,"trace_id":"`...)
		b = x.Trace.AppendTraceID(b)
		b = append(b, '"')
	}
	b = append(b, `,"client_ip":"`...)
	b = x.ClientIP.AppendTo(b)
	b = append(b, `","method":`...)
	b = appendJSONString(b, r.Method)
	b = append(b, `,"host":`...)
	b = appendJSONString(b, r.Host)
	b = append(b, `,"path":`...)
	b = appendJSONString(b, r.URL.Path)
	if r.URL.RawQuery != "" {
		b = append(b, `,"query":`...)
		b = appendJSONString(b, r.URL.RawQuery)
	}
	b = append(b, `,"proto":`...)
	b = appendJSONString(b, r.Proto)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(x.W.Status()), 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, x.W.written, 10)
	b = append(b, `,"duration_ms":`...)
	b = strconv.AppendFloat(b, float64(end.Sub(x.Start).Microseconds())/1000, 'f', 3, 64)
	if x.Route != nil {
		b = append(b, `,"route":`...)
		b = appendJSONString(b, x.Route.Name)
		b = append(b, `,"service":`...)
		b = appendJSONString(b, x.Route.Service.Name)
	}
	if x.Upstream != "" {
		b = append(b, `,"upstream":`...)
		b = appendJSONString(b, x.Upstream)
	}
	if x.Attempts > 1 {
		b = append(b, `,"attempts":`...)
		b = strconv.AppendInt(b, int64(x.Attempts), 10)
	}
	if x.User != "" {
		b = append(b, `,"user":`...)
		b = appendJSONString(b, x.User)
	}
	if x.ErrorCode != "" {
		b = append(b, `,"error":`...)
		b = appendJSONString(b, x.ErrorCode)
	}
	if v := l.header(r, "Referer"); v != "" {
		b = append(b, `,"referer":`...)
		b = appendJSONString(b, v)
	}
	if v := l.header(r, "User-Agent"); v != "" {
		b = append(b, `,"user_agent":`...)
		b = appendJSONString(b, v)
	}
	return append(b, '}')
}

// apache writes the Common or Combined Log Format line, then duration and request id.
func (l *AccessLog) apache(b []byte, x *Exchange, end time.Time) []byte {
	r := x.R
	b = x.ClientIP.AppendTo(b)
	b = append(b, " - "...)
	if x.User != "" {
		b = appendSafe(b, x.User)
	} else {
		b = append(b, '-')
	}
	b = append(b, " ["...)
	b = x.Start.AppendFormat(b, "02/Jan/2006:15:04:05 -0700")
	b = append(b, `] "`...)
	b = appendSafe(b, r.Method)
	b = append(b, ' ')
	b = appendSafe(b, r.URL.RequestURI())
	b = append(b, ' ')
	b = appendSafe(b, r.Proto)
	b = append(b, `" `...)
	b = strconv.AppendInt(b, int64(x.W.Status()), 10)
	b = append(b, ' ')
	if x.W.written == 0 {
		b = append(b, '-')
	} else {
		b = strconv.AppendInt(b, x.W.written, 10)
	}
	if l.format == "combined" {
		b = append(b, ` "`...)
		b = appendSafe(b, orDash(l.header(r, "Referer")))
		b = append(b, `" "`...)
		b = appendSafe(b, orDash(l.header(r, "User-Agent")))
		b = append(b, '"')
	}
	b = append(b, " duration="...)
	b = strconv.AppendFloat(b, end.Sub(x.Start).Seconds(), 'f', 6, 64)
	b = append(b, " request_id="...)
	b = append(b, x.RequestID...)
	return b
}

// dev writes a short coloured line for a terminal.
func (l *AccessLog) dev(b []byte, x *Exchange, end time.Time) []byte {
	st := x.W.Status()
	color := "\x1b[32m" // 2xx green
	switch {
	case st >= 500:
		color = "\x1b[31m"
	case st >= 400:
		color = "\x1b[33m"
	case st >= 300:
		color = "\x1b[36m"
	}
	b = append(b, color...)
	b = strconv.AppendInt(b, int64(st), 10)
	b = append(b, "\x1b[0m "...)
	b = appendSafe(b, x.R.Method)
	b = append(b, ' ')
	b = appendSafe(b, x.R.URL.RequestURI())
	b = append(b, ' ')
	b = append(b, end.Sub(x.Start).Round(time.Microsecond).String()...)
	if x.Route != nil {
		b = append(b, " route="...)
		b = append(b, x.Route.Name...)
	}
	if x.Upstream != "" {
		b = append(b, " upstream="...)
		b = append(b, x.Upstream...)
	}
	b = append(b, " id="...)
	b = append(b, x.RequestID...)
	return b
}

// appendJSONString appends s as a JSON string: quotes, backslashes and control
// characters escaped, invalid UTF-8 replaced by U+FFFD, so every line stays valid JSON
// whatever a client puts in its path or headers.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// appendSafe appends s with quotes, backslashes and control characters escaped, so a
// client cannot forge extra fields or lines in an Apache-format log.
func appendSafe(b []byte, s string) []byte {
	if !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == '"' || r == '\\' || r == 0x7f }) {
		return append(b, s...)
	}
	q := strconv.Quote(s)
	return append(b, q[1:len(q)-1]...)
}
