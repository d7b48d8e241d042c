package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/infinityxone/gateway/gateway"
	"github.com/infinityxone/gateway/gateway/config"
	"github.com/infinityxone/gateway/gateway/tracing/otlprecv"
)

// backendBody is what the backend answers to every request.
const backendBody = "hello from the bench backend\n"

// runBackend serves a short fixed body with keep-alive until SIGTERM or SIGINT.
func runBackend(args []string) error {
	fs := flag.NewFlagSet("backend", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	body := []byte(backendBody)
	length := strconv.Itoa(len(body))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd["Content-Type"] = []string{"text/plain; charset=utf-8"}
		hd["Content-Length"] = []string{length}
		_, _ = w.Write(body)
	})
	return serveUntilSignal(&http.Server{Addr: *addr, Handler: h, ReadHeaderTimeout: 10 * time.Second}, nil)
}

// runOTLP serves an OTLP/HTTP trace receiver (otlprecv.NewCounter: every export parsed
// at the protobuf wire level, spans counted by service.name, not kept) until SIGTERM or
// SIGINT.
// GET /counts answers the counts as JSON: {"requests": N, "spans": {"service": N}}.
func runOTLP(args []string) error {
	fs := flag.NewFlagSet("otlp", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rc := otlprecv.NewCounter()
	mux := http.NewServeMux()
	mux.Handle("/v1/traces", rc)
	mux.HandleFunc("GET /counts", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(otlpCounts{Requests: rc.Requests(), Spans: rc.Counts()})
	})
	return serveUntilSignal(&http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}, nil)
}

// otlpCounts is what the receiver's GET /counts answers.
type otlpCounts struct {
	Requests int            `json:"requests"` // export requests
	Spans    map[string]int `json:"spans"`    // spans by resource service.name
}

// runFloor serves the floor: the minimal reverse proxy every gateway is measured against.
func runFloor(args []string) error {
	fs := flag.NewFlagSet("floor", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	upstream := fs.String("upstream", "", "backend host:port")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile here on exit")
	memprofile := fs.String("memprofile", "", "write an allocation profile here on exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *upstream == "" {
		return errors.New("-upstream is required")
	}
	target := &url.URL{Scheme: "http", Host: *upstream}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 1024,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
		BufferPool: newBufferPool(32 << 10),
	}
	stop, err := startProfiles(*cpuprofile, *memprofile)
	if err != nil {
		return err
	}
	return serveUntilSignal(&http.Server{Addr: *addr, Handler: rp, ReadHeaderTimeout: 10 * time.Second}, stop)
}

// bufferPool is httputil.BufferPool over a sync.Pool of fixed-size buffers.
type bufferPool struct{ p sync.Pool }

func newBufferPool(size int) *bufferPool {
	bp := &bufferPool{}
	bp.p.New = func() any { b := make([]byte, size); return &b }
	return bp
}

func (bp *bufferPool) Get() []byte  { return *bp.p.Get().(*[]byte) }
func (bp *bufferPool) Put(b []byte) { bp.p.Put(&b) }

// runGateway serves the gateway package in-process, wired as `gateway run` wires it, so
// that it can write profiles without a change to the gateway's own code.
func runGateway(args []string) error {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	path := fs.String("config", "", "config file")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile here on exit")
	memprofile := fs.String("memprofile", "", "write an allocation profile here on exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, ds := config.Load(*path)
	if len(ds) > 0 {
		return ds
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "gateway", Level: hclog.LevelFromString(cfg.Log.Level), Output: os.Stderr})
	g, err := gateway.New(cfg, gateway.Options{Logger: logger, AccessLog: os.Stdout, Version: "bench",
		UpstreamNetHTTP: os.Getenv(upstreamNetHTTPEnv) == "1"})
	if err != nil {
		return err
	}
	stop, err := startProfiles(*cpuprofile, *memprofile)
	if err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	err = g.Run(ctx)
	if perr := stop(); err == nil {
		err = perr
	}
	return err
}

// serveUntilSignal serves srv until SIGTERM or SIGINT, then shuts it down and calls
// stop (if set).
func serveUntilSignal(srv *http.Server, stop func() error) error {
	ln, err := net.Listen("tcp", srv.Addr)
	if err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err = <-errc:
	case <-ctx.Done():
		sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = srv.Shutdown(sctx)
		scancel()
		err = nil
	}
	if stop != nil {
		if perr := stop(); err == nil {
			err = perr
		}
	}
	return err
}

// startProfiles starts a CPU profile (if cpu is set) and returns the function that stops
// it and writes the allocation profile (if mem is set).
func startProfiles(cpu, mem string) (func() error, error) {
	var cf *os.File
	if cpu != "" {
		f, err := os.Create(cpu)
		if err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, err
		}
		cf = f
	}
	return func() error {
		if cf != nil {
			pprof.StopCPUProfile()
			if err := cf.Close(); err != nil {
				return err
			}
		}
		if mem == "" {
			return nil
		}
		f, err := os.Create(mem)
		if err != nil {
			return err
		}
		runtime.GC()
		if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
			f.Close()
			return fmt.Errorf("allocs profile: %w", err)
		}
		return f.Close()
	}, nil
}
