package gateway

import (
	"encoding/json"
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// AdminHandler serves /healthz, /readyz, /metrics, /admin/routes, /admin/services,
// /admin/ratelimits and the dashboard at /ui/.
func (g *Gateway) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if ok, why := g.Ready(); !ok {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": why})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(g.metrics.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /admin/routes", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, g.routeInfo())
	})
	mux.HandleFunc("GET /admin/services", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, g.serviceInfo())
	})
	mux.HandleFunc("GET /admin/ratelimits", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, g.rateLimitInfo())
	})
	mux.Handle("GET /ui/", dashboardHandler())
	mux.Handle("GET /ui", http.RedirectHandler("/ui/", http.StatusMovedPermanently))
	return mux
}

// RouteInfo is one row of /admin/routes.
type RouteInfo struct {
	Name    string   `json:"name"`
	Hosts   []string `json:"hosts"`
	Methods []string `json:"methods"`
	Path    string   `json:"path"`
	Service string   `json:"service"`
	// Compress and Cache show the route's compression and cache (its cache block's
	// name, "" for none).
	Compress bool   `json:"compress"`
	Cache    string `json:"cache"`
	// Metadata is the route's free-form metadata map ({} for none).
	Metadata map[string]string `json:"metadata"`
}

// ServiceInfo is one row of /admin/services.
type ServiceInfo struct {
	Name      string         `json:"name"`
	Source    string         `json:"source"`
	Instances []InstanceInfo `json:"instances"`
	// WatchAgeSeconds is the time since Consul's last good answer (Consul services only;
	// -1 before the first).
	WatchAgeSeconds *float64 `json:"watch_age_seconds,omitempty"`
}

// InstanceInfo describes one instance in /admin/services.
type InstanceInfo struct {
	ID       string            `json:"id"`
	Address  string            `json:"address"`
	Healthy  bool              `json:"healthy"`
	Weight   int               `json:"weight"`
	InFlight int64             `json:"in_flight"`
	Breaker  string            `json:"breaker"`
	Mesh     bool              `json:"mesh,omitempty"` // reached through Consul Connect
	Tags     []string          `json:"tags,omitempty"`
	Meta     map[string]string `json:"meta,omitempty"`
}

func (g *Gateway) routeInfo() []RouteInfo {
	routes := g.cur.Load().routes
	out := make([]RouteInfo, 0, len(routes))
	for _, rt := range routes {
		c := rt.Config
		md := c.Metadata
		if md == nil {
			md = map[string]string{}
		}
		out = append(out, RouteInfo{Name: c.Name, Hosts: nonNil(c.Hosts), Methods: nonNil(c.Methods), Path: c.Path, Service: c.Service,
			Compress: c.Compress, Cache: c.Cache, Metadata: md})
	}
	return out
}

func (g *Gateway) serviceInfo() []ServiceInfo {
	svcs := g.cur.Load().svcOrder
	out := make([]ServiceInfo, 0, len(svcs))
	for _, s := range svcs {
		si := ServiceInfo{Name: s.Name, Source: s.Source, Instances: []InstanceInfo{}, WatchAgeSeconds: watchAge(s)}
		for _, e := range s.Set.Endpoints() {
			state := "none"
			if b := breakerOf(e); b != nil {
				state = b.State().String()
			}
			si.Instances = append(si.Instances, InstanceInfo{
				ID: e.ID, Address: e.Address, Healthy: true, Weight: e.Weight,
				InFlight: e.InFlight(), Breaker: state, Tags: e.Tags, Meta: e.Meta, Mesh: s.mesh,
			})
		}
		out = append(out, si)
	}
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
