package gateway

import (
	"embed"
	"io/fs"
	"net/http"
	"time"
)

// uiFiles is the dashboard: one page, its script and its style sheet, embedded so the
// admin listener serves them with nothing fetched from elsewhere.
//
//go:embed ui
var uiFiles embed.FS

// dashboardHandler serves the embedded dashboard under /ui/.
func dashboardHandler() http.Handler {
	sub, err := fs.Sub(uiFiles, "ui")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.StripPrefix("/ui/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("Content-Security-Policy", "default-src 'self'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		files.ServeHTTP(w, r)
	})
}

// RateLimitInfo is one row of /admin/ratelimits.
type RateLimitInfo struct {
	Name         string `json:"name"`
	Algorithm    string `json:"algorithm"`
	Requests     int    `json:"requests"`
	Period       string `json:"period"`
	Burst        int    `json:"burst"`
	Key          string `json:"key"`
	Store        string `json:"store"`
	OnStoreError string `json:"on_store_error"`
}

func (g *Gateway) rateLimitInfo() []RateLimitInfo {
	rls := g.cur.Load().cfg.RateLimits
	out := make([]RateLimitInfo, 0, len(rls))
	for _, p := range rls {
		out = append(out, RateLimitInfo{
			Name: p.Name, Algorithm: p.Algorithm, Requests: p.Requests, Period: p.Period.String(),
			Burst: p.Burst, Key: p.Key, Store: p.Store, OnStoreError: p.OnStoreError,
		})
	}
	return out
}

// watchAge is the seconds since the last good Consul answer for s: nil for a static
// service, -1 before the first answer.
func watchAge(s *Service) *float64 {
	if s.watcher == nil {
		return nil
	}
	age := -1.0
	if t := s.watcher.LastSuccess(); !t.IsZero() {
		age = time.Since(t).Seconds()
	}
	return &age
}
