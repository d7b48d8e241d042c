package gateway

import (
	"context"
	"time"

	"github.com/infinityxone/gateway/gateway/tracing"
)

// The tracing hooks, kept to a few marked lines elsewhere: ServeHTTP starts the server
// span (x.Trace), each upstream attempt in the proxy starts and ends a client span
// around its RoundTrip, and finish ends the server span through endTrace.

// newTracer builds the tracer of a tracing block; nil without one.
func (g *Gateway) newTracer(version string) (*tracing.Tracer, error) {
	tc := g.cfg.Tracing
	if tc == nil {
		return nil, nil
	}
	return tracing.New(tracing.Config{
		Endpoint:       tc.Endpoint,
		SampleRatio:    tc.SampleRatio,
		ServiceName:    tc.ServiceName,
		ServiceVersion: version,
		Logger:         g.log.Named("tracing"),
		Registerer:     g.metrics.Registry,
	})
}

// endTrace names the server span after the route and records the request's outcome.
func (g *Gateway) endTrace(x *Exchange) {
	e := tracing.Ended{
		Method: x.R.Method, Path: x.Path, Host: x.R.Host,
		Instance: x.Upstream, RequestID: x.RequestID, Status: x.W.Status(),
	}
	if e.Path == "" {
		e.Path = x.R.URL.Path
	}
	if rt := x.Route; rt != nil {
		e.Route, e.RoutePath, e.Service = rt.Name, rt.Config.Path, rt.Config.Service
	}
	x.Trace.End(e)
}

// stopTracer exports what is left, waiting at most five seconds for the receiver.
func (g *Gateway) stopTracer() {
	if g.tracer == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.tracer.Shutdown(ctx); err != nil {
		g.log.Warn("tracing: spans left unexported at shutdown", "error", err)
	}
}
