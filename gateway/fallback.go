package gateway

import (
	"net/http"
	"strconv"

	"github.com/infinityxone/gateway/gateway/config"
)

// fallback is a route's canned answer for when its service has no instance to try.
type fallback struct {
	status      int
	contentType string
	body        []byte
}

func newFallback(f *config.Fallback) *fallback {
	if f == nil {
		return nil
	}
	ct := f.ContentType
	if ct == "" {
		ct = "text/plain; charset=utf-8"
	}
	return &fallback{status: f.Status, contentType: ct, body: []byte(f.Body)}
}

func (f *fallback) serve(x *Exchange) {
	h := x.W.Header()
	h.Set("Content-Type", f.contentType)
	h.Set("Content-Length", strconv.Itoa(len(f.body)))
	h.Set("X-Gateway-Fallback", "true")
	if f.status == http.StatusServiceUnavailable || f.status == http.StatusTooManyRequests {
		h.Set("Retry-After", "1")
	}
	x.ErrorCode = "fallback"
	x.W.WriteHeader(f.status)
	if x.R.Method != http.MethodHead {
		_, _ = x.W.Write(f.body)
	}
}
