package gateway

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"
)

// Run serves until ctx is cancelled (SIGTERM/SIGINT in main), then drains: /readyz turns
// 503, the listener stops accepting, and in-flight requests get shutdown_timeout to
// finish. It returns nil after a clean drain.
func (g *Gateway) Run(ctx context.Context) error {
	gc := g.cfg.Gateway
	ln, err := net.Listen("tcp", gc.Address)
	if err != nil {
		return err
	}
	aln, err := net.Listen("tcp", g.cfg.Admin.Address)
	if err != nil {
		ln.Close()
		return err
	}
	srv := &http.Server{
		Handler:           g,
		ReadHeaderTimeout: gc.ReadHeaderTimeout,
		IdleTimeout:       gc.IdleTimeout,
		MaxHeaderBytes:    g.serverMaxHeaderBytes(),
		TLSConfig:         g.tlsConf,
		ErrorLog:          g.log.Named("http").StandardLogger(nil),
	}
	admin := &http.Server{
		Handler:           g.AdminHandler(),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          g.log.Named("admin").StandardLogger(nil),
	}
	a, aa := ln.Addr().String(), aln.Addr().String()
	g.addr.Store(&a)
	g.admin.Store(&aa)

	if g.disc != nil {
		g.disc.start(context.WithoutCancel(ctx)) // keeps watching while draining; stopped by closeLogs
	}
	errc := make(chan error, 2)
	go func() {
		var err error
		if g.tlsConf != nil {
			err = srv.ServeTLS(ln, "", "")
		} else {
			err = srv.Serve(ln)
		}
		errc <- err
	}()
	go func() { errc <- admin.Serve(aln) }()
	scheme := "http"
	if g.tlsConf != nil {
		scheme = "https"
	}
	g.log.Info("listening", "address", scheme+"://"+a, "admin", "http://"+aa)
	close(g.started)
	if g.path != "" {
		hctx, stopHUP := context.WithCancel(ctx)
		hdone := make(chan struct{})
		go g.reloadOnSIGHUP(hctx, hdone)
		defer func() { stopHUP(); <-hdone }()
	}
	if g.disc != nil {
		if err := g.disc.register(context.WithoutCancel(ctx), a, aa); err != nil {
			g.log.Error("consul registration", "error", err)
		}
	}

	select {
	case err := <-errc:
		// A listener failed on its own: stop the other one and report.
		_ = srv.Close()
		_ = admin.Close()
		g.closeLogs()
		return err
	case <-ctx.Done():
	}

	timeout := g.cfg.Gateway.ShutdownTimeout
	g.draining.Store(true)
	g.events.Publish(ShutdownBegun{Reason: "signal", Timeout: timeout})
	if g.disc != nil {
		// Still serving: other replicas' watchers and load balancers see this one go
		// before its listener closes.
		dctx, dcancel := context.WithTimeout(context.Background(), timeout)
		g.disc.deregister(dctx)
		dcancel()
	}
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err = srv.Shutdown(sctx)
	if err != nil {
		g.log.Warn("shutdown timeout passed with requests in flight; closing them", "error", err)
		_ = srv.Close()
	} else {
		g.log.Info("drained")
	}
	// Shutdown neither waits for nor closes upgraded connections: they get a close
	// frame each way, and whatever is open at the deadline is closed. Each is logged.
	if n, forced := g.tunnels.shutdown(sctx); n > 0 {
		g.log.Info("upgraded connections closed", "count", n, "closed_at_deadline", forced)
	}
	actx, acancel := context.WithTimeout(context.Background(), time.Second)
	defer acancel()
	_ = admin.Shutdown(actx)
	g.closeLogs()
	if errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// serverMaxHeaderBytes is what net/http itself enforces: twice max_header_bytes, so
// that the pipeline sees (and answers with the JSON 431) headers up to that size; only
// beyond it does Go's server answer its own plain-text 431.
func (g *Gateway) serverMaxHeaderBytes() int {
	return 2 * g.cfg.Gateway.MaxHeaderBytes
}

func (g *Gateway) closeLogs() {
	if g.disc != nil {
		g.disc.stop()
	}
	if g.cacheRedis != nil {
		_ = g.cacheRedis.Close()
	}
	if g.accessLog != nil {
		g.accessLog.Close()
	}
	st := g.cur.Load()
	if st == nil {
		g.stopTracer()
		return // New failed before the first snapshot: build released its own parts
	}
	for _, s := range st.svcOrder {
		s.transport.CloseIdleConnections()
	}
	for _, p := range st.auth {
		p.stop()
	}
	st.limits.close()
	g.stopTracer()
}

// Ready reports whether the gateway should receive traffic: listening, not draining, and
// every service has had its first instance list. The reason is set when not ready.
func (g *Gateway) Ready() (bool, string) {
	select {
	case <-g.started:
	default:
		return false, "starting"
	}
	if g.draining.Load() {
		return false, "draining"
	}
	for _, s := range g.cur.Load().svcOrder {
		if !s.ready.Load() {
			if why := watchErr(s); why != "" {
				return false, why
			}
			return false, "waiting for the first instance list of service " + s.Name
		}
	}
	if why := g.meshNotReady(); why != "" {
		return false, why
	}
	return true, ""
}
