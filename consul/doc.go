// Package consul discovers service instances through Consul's health API and
// registers services with the local Consul agent.
//
// A Watcher follows one service (name, tags, datacenter) with blocking queries on
// /v1/health/service/:name?passing, following Consul's documented rules: the index
// is reset when it goes backwards, an answer's index 0 is never sent back (1 is),
// errors back off exponentially with jitter (capped, reset by the next good
// answer), and consecutive calls are at least a small gap apart so that a
// flapping index cannot make a hot loop. Every answer that changes the instance
// list is handed to the owner's Sink as a fresh, sorted, immutable []Instance.
// While Consul is unreachable the Sink is not called, so the owner keeps serving
// the last known list.
//
// A Registrar registers one service instance (with an HTTP health check) through
// the agent API and deregisters it on demand.
//
// Certs holds the Connect leaf certificate of one identity and the CA roots, both
// followed with blocking queries on the local agent and swapped atomically; its
// ClientTLS and Dialer give mutual-TLS connections to a Connect service's sidecars or
// native instances (chain to a current root, SPIFFE ID of the service dialled), its
// ServerTLS serves a Connect-native service (intentions asked per connection), and
// ClassifyMeshError tells a destination's refusal (ErrMeshDenied) from other errors.
// A Watcher with WatchOptions.Connect follows /v1/health/connect/:name instead.
//
// NewClient builds a *api.Client that honours the Consul CLI's environment
// variables (CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, CONSUL_CACERT, …); explicit
// configuration overrides them.
//
// The package is a leaf: it never imports the gateway. The gateway adapts its own
// instance sets and metrics to the small Sink and Observer interfaces here.
package consul
