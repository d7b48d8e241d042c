package gateway

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
)

// compressConfig is a gateway whose /c/* route compresses and /p/* does not.
func compressConfig(upstream string, extra string) string {
	return fmt.Sprintf(`
log {
  access_log = false
}
%s
service "s" {
  instance {
    address = %q
  }
}
route "c" {
  path     = "/c/*"
  service  = "s"
  compress = true
}
route "p" {
  path    = "/p/*"
  service = "s"
}
`, extra, upstream)
}

// bigJSON is a compressible body well over min_bytes.
func bigJSON(n int) []byte {
	var b bytes.Buffer
	b.WriteString("[")
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"id":%d,"name":"item number %d","tags":["a","b","c"]}`, i, i)
	}
	b.WriteString("]")
	return b.Bytes()
}

func decode(t *testing.T, enc string, body []byte) []byte {
	t.Helper()
	var r io.Reader
	switch enc {
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatalf("gzip: %v", err)
		}
		r = zr
	case "br":
		r = brotli.NewReader(bytes.NewReader(body))
	case "zstd":
		zr, err := zstd.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatalf("zstd: %v", err)
		}
		defer zr.Close()
		r = zr
	default:
		return body
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("%s decode: %v", enc, err)
	}
	return out
}

// rawGet sends a request without the client's transparent gzip handling.
func rawGet(t *testing.T, method, url string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	tr := &http.Transport{DisableCompression: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func TestCompressionRoundTrip(t *testing.T) {
	body := bigJSON(500)
	up := backend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("Etag", `"v1"`)
		if strings.HasSuffix(r.URL.Path, "/sized") {
			w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		}
		// Written in small pieces, as a streaming upstream would.
		for i := 0; i < len(body); i += 700 {
			w.Write(body[i:min(i+700, len(body))])
		}
	})
	gw := startGateway(t, compressConfig(hostOf(up), ""), nil)
	for _, path := range []string{"/c/chunked", "/c/sized"} {
		for _, tc := range []struct{ accept, want string }{
			{"gzip", "gzip"},
			{"br", "br"},
			{"zstd", "zstd"},
			{"gzip, br, zstd", "zstd"},       // the gateway's preference among equals
			{"gzip;q=1, br;q=0.5", "gzip"},   // the client's q-values first
			{"identity", ""},                 // nothing of ours
			{"gzip;q=0, deflate", ""},        // refused and unknown
			{"*", "zstd"},                    // anything: our first choice
			{"*, zstd;q=0", "br"},            // anything but zstd
			{"GZIP", "gzip"},                 // case-insensitive
			{"br;q=0.9, gzip;q=0.9", "br"},   // tie: preference
			{"gzip;q=bogus, br;q=0.1", "br"}, // malformed q refuses that coding
		} {
			t.Run(path+" "+tc.accept, func(t *testing.T) {
				resp, raw := rawGet(t, "GET", gw.URL+path, "Accept-Encoding", tc.accept)
				if got := resp.Header.Get("Content-Encoding"); got != tc.want {
					t.Fatalf("Content-Encoding = %q, want %q", got, tc.want)
				}
				if !strings.Contains(strings.Join(resp.Header.Values("Vary"), ","), "Accept-Encoding") {
					t.Errorf("Vary = %q, want Accept-Encoding", resp.Header.Values("Vary"))
				}
				if got := decode(t, tc.want, raw); !bytes.Equal(got, body) {
					t.Fatalf("decoded body differs: %d bytes, want %d", len(got), len(body))
				}
				if tc.want != "" {
					if len(raw) >= len(body)/2 {
						t.Errorf("encoded %d bytes into %d: not compressed", len(body), len(raw))
					}
					if resp.Header.Get("Etag") != `W/"v1"` {
						t.Errorf("Etag = %q, want the weak W/\"v1\"", resp.Header.Get("Etag"))
					}
					if resp.ContentLength != -1 && resp.ContentLength != int64(len(raw)) {
						t.Errorf("Content-Length %d for %d encoded bytes", resp.ContentLength, len(raw))
					}
				}
			})
		}
	}
	t.Run("route without compress", func(t *testing.T) {
		resp, raw := rawGet(t, "GET", gw.URL+"/p/x", "Accept-Encoding", "gzip, br, zstd")
		if resp.Header.Get("Content-Encoding") != "" || !bytes.Equal(raw, body) {
			t.Fatalf("uncompressed route answered encoded: %q", resp.Header.Get("Content-Encoding"))
		}
	})
}

func TestCompressionLeavesAlone(t *testing.T) {
	body := bigJSON(200)
	up := backend(t, func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "application/json")
		code := http.StatusOK
		switch r.URL.Path {
		case "/c/partial":
			h.Set("Content-Range", fmt.Sprintf("bytes 0-%d/%d", len(body)-1, len(body)*2))
			code = http.StatusPartialContent
		case "/c/encoded":
			h.Set("Content-Encoding", "br") // the upstream's own encoding: passed as it is
		case "/c/notransform":
			h.Set("Cache-Control", "public, no-transform")
		case "/c/small":
			w.WriteHeader(code)
			w.Write([]byte(`{"ok":true}`))
			return
		case "/c/png":
			h.Set("Content-Type", "image/png")
		case "/c/notype":
			h["Content-Type"] = nil
		}
		w.WriteHeader(code)
		if r.Method != http.MethodHead {
			w.Write(body)
		}
	})
	gw := startGateway(t, compressConfig(hostOf(up), `compression {
  min_bytes = 100
}`), nil)
	for _, tc := range []struct{ method, path string }{
		{"HEAD", "/c/full"},
		{"GET", "/c/partial"},
		{"GET", "/c/encoded"},
		{"GET", "/c/notransform"},
		{"GET", "/c/small"},
		{"GET", "/c/png"},
		{"GET", "/c/notype"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			resp, raw := rawGet(t, tc.method, gw.URL+tc.path, "Accept-Encoding", "gzip, br, zstd")
			ce := resp.Header.Get("Content-Encoding")
			if tc.path == "/c/encoded" {
				if ce != "br" {
					t.Fatalf("Content-Encoding = %q, want the upstream's br untouched", ce)
				}
			} else if ce != "" {
				t.Fatalf("Content-Encoding = %q, want none", ce)
			}
			want := body
			switch {
			case tc.method == "HEAD":
				want = nil
			case tc.path == "/c/small":
				want = []byte(`{"ok":true}`)
			}
			if !bytes.Equal(raw, want) {
				t.Fatalf("body changed: %d bytes, want %d", len(raw), len(want))
			}
		})
	}
	t.Run("a small body of unknown length keeps a length", func(t *testing.T) {
		resp, raw := rawGet(t, "GET", gw.URL+"/c/small", "Accept-Encoding", "gzip")
		if resp.ContentLength != int64(len(raw)) {
			t.Fatalf("Content-Length %d, body %d", resp.ContentLength, len(raw))
		}
	})
}

// TestCompressionStreamsSSE proves that each event flushed by the upstream reaches the
// client through a compressed route before the next one is written.
func TestCompressionStreamsSSE(t *testing.T) {
	next := make(chan struct{})
	up := backend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		for i := 0; i < 3; i++ {
			if i == 0 {
				fmt.Fprintf(w, "data: event %d\n\n", i)
				w.(http.Flusher).Flush()
				continue
			}
			select {
			case <-next:
			case <-r.Context().Done():
				return
			case <-time.After(30 * time.Second):
				return
			}
			fmt.Fprintf(w, "data: event %d\n\n", i)
			w.(http.Flusher).Flush()
		}
	})
	gw := startGateway(t, compressConfig(hostOf(up), ""), nil)
	for _, enc := range []string{"gzip", "br", "zstd"} {
		t.Run(enc, func(t *testing.T) {
			req, _ := http.NewRequest("GET", gw.URL+"/c/events", nil)
			req.Header.Set("Accept-Encoding", enc)
			tr := &http.Transport{DisableCompression: true}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.Header.Get("Content-Encoding") != enc {
				t.Fatalf("Content-Encoding = %q, want %s", resp.Header.Get("Content-Encoding"), enc)
			}
			var dr io.Reader
			switch enc {
			case "gzip":
				zr, err := gzip.NewReader(resp.Body)
				if err != nil {
					t.Fatal(err)
				}
				dr = zr
			case "br":
				dr = brotli.NewReader(resp.Body)
			case "zstd":
				zr, err := zstd.NewReader(resp.Body)
				if err != nil {
					t.Fatal(err)
				}
				defer zr.Close()
				dr = zr
			}
			br := bufio.NewReader(dr)
			for i := 0; i < 3; i++ {
				if i > 0 {
					next <- struct{}{}
				}
				// The event must arrive while the upstream waits for the next signal.
				line, err := br.ReadString('\n')
				if err != nil {
					t.Fatalf("event %d: %v", i, err)
				}
				if want := fmt.Sprintf("data: event %d\n", i); line != want {
					t.Fatalf("got %q, want %q", line, want)
				}
				if blank, _ := br.ReadString('\n'); blank != "\n" {
					t.Fatalf("event %d not terminated: %q", i, blank)
				}
			}
		})
	}
}

// TestCompressionUpstreamAbort: an upstream that dies mid-body on a compressed route
// aborts the client's connection (it must not take a truncated body for a whole one),
// and the next request is served normally.
func TestCompressionUpstreamAbort(t *testing.T) {
	body := bigJSON(2000)
	up := backend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/c/abort" {
			w.Header().Set("Content-Length", fmt.Sprint(2*len(body)))
			w.Write(body)
			w.(http.Flusher).Flush()
			conn, _, _ := http.NewResponseController(w).Hijack()
			conn.Close()
			return
		}
		w.Write(body)
	})
	gw := startGateway(t, compressConfig(hostOf(up), ""), nil)
	for _, enc := range []string{"gzip", "br", "zstd"} {
		req, _ := http.NewRequest("GET", gw.URL+"/c/abort", nil)
		req.Header.Set("Accept-Encoding", enc)
		tr := &http.Transport{DisableCompression: true}
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err == nil {
			raw, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if rerr == nil {
				t.Fatalf("%s: a truncated answer (%d bytes) ended cleanly", enc, len(raw))
			}
		}
		tr.CloseIdleConnections()
		resp2, raw := rawGet(t, "GET", gw.URL+"/c/ok", "Accept-Encoding", enc)
		if got := decode(t, enc, raw); resp2.StatusCode != 200 || !bytes.Equal(got, body) {
			t.Fatalf("%s: the next request: %d, %d bytes", enc, resp2.StatusCode, len(got))
		}
	}
}
