package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestUpstreamFaults(t *testing.T) {
	checkGoroutines(t)

	t.Run("backend down is 502", func(t *testing.T) {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := ln.Addr().String()
		ln.Close() // nothing listens there now
		g := startGateway(t, basicConfig, map[string]string{"A": addr})
		resp, body := get(t, g.URL+"/hello")
		if resp.StatusCode != 502 || !strings.Contains(body, `"bad_gateway"`) {
			t.Fatalf("status %d body %s", resp.StatusCode, body)
		}
	})

	t.Run("slow backend is 504 within the timeout and the upstream request is cancelled", func(t *testing.T) {
		cancelled := make(chan struct{}, 1)
		slow := backend(t, func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
				cancelled <- struct{}{}
			case <-time.After(10 * time.Second):
			}
		})
		cfg := strings.Replace(basicConfig, `timeout = "2s"`, `timeout = "300ms"`, 1)
		g := startGateway(t, cfg, map[string]string{"A": hostOf(slow)})
		start := time.Now()
		resp, body := get(t, g.URL+"/hello")
		took := time.Since(start)
		if resp.StatusCode != 504 || !strings.Contains(body, `"gateway_timeout"`) {
			t.Fatalf("status %d body %s", resp.StatusCode, body)
		}
		if took < 300*time.Millisecond || took > 300*time.Millisecond+2*time.Second {
			t.Fatalf("504 after %v, want the 300ms timeout plus slack", took)
		}
		select {
		case <-cancelled:
		case <-time.After(5 * time.Second):
			t.Fatal("the upstream request was not cancelled")
		}
	})

	t.Run("backend resets mid-response", func(t *testing.T) {
		reset := backend(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "100000")
			w.WriteHeader(200)
			_, _ = w.Write([]byte(strings.Repeat("x", 1000)))
			w.(http.Flusher).Flush()
			c, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				if tc, ok := c.(*net.TCPConn); ok {
					_ = tc.SetLinger(0) // RST
				}
				c.Close()
			}
		})
		g := startGateway(t, basicConfig, map[string]string{"A": hostOf(reset)})
		req, _ := http.NewRequest("GET", g.URL+"/hello", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if err == nil {
			t.Fatal("the client read a truncated body as complete")
		}
		// The gateway lives on.
		ok := echoBackend(t, "ok")
		g2 := startGateway(t, basicConfig, map[string]string{"A": hostOf(ok.Server)})
		if resp, _ := get(t, g2.URL+"/hello"); resp.StatusCode != 200 {
			t.Fatalf("after a reset: %d", resp.StatusCode)
		}
	})

	t.Run("backend sends garbage is 502", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				_, _ = c.Read(make([]byte, 4096))
				_, _ = c.Write([]byte("NOT HTTP AT ALL\r\n\r\n"))
				c.Close()
			}
		}()
		g := startGateway(t, basicConfig, map[string]string{"A": ln.Addr().String()})
		if resp, _ := get(t, g.URL+"/hello"); resp.StatusCode != 502 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
}

func TestPanicBecomes500(t *testing.T) {
	b := echoBackend(t, "a")
	g := startGateway(t, basicConfig, map[string]string{"A": hostOf(b.Server)})
	g.cur.Load().routes[0].handler = HandlerFunc(func(x *Exchange) { panic("boom") })
	resp, body := get(t, g.URL+"/hello")
	if resp.StatusCode != 500 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	var e struct {
		Error struct {
			Code      string `json:"code"`
			RequestID string `json:"request_id"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.Code != "internal_error" || e.Error.RequestID == "" {
		t.Fatalf("body %s", body)
	}
	eventually(t, 2*time.Second, "panic log line", func() bool { return strings.Contains(g.AppLog.String(), "boom") })
	// The same connection keeps working.
	if resp, _ := get(t, g.URL+"/api/users/1"); resp.StatusCode != 200 {
		t.Fatalf("after panic: %d", resp.StatusCode)
	}
}

func TestClientGoneCancelsUpstream(t *testing.T) {
	cancelled := make(chan struct{}, 1)
	slow := backend(t, func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
		cancelled <- struct{}{}
	})
	g := startGateway(t, basicConfig, map[string]string{"A": hostOf(slow)})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", g.URL+"/hello", nil)
	_, err := http.DefaultClient.Do(req)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v", err)
	}
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("upstream request not cancelled when the client left")
	}
}
