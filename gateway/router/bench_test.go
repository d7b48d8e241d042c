package router

import (
	"fmt"
	"testing"
)

// benchTable has 1,000 routes over 50 services: 350 static, 650 with parameters or a
// wildcard, 100 of them on hosts.
func benchTable(b *testing.B) *Table {
	b.Helper()
	var routes []Route
	for svc := range 50 {
		for i := range 6 {
			routes = append(routes, Route{Methods: []string{"GET"}, Path: fmt.Sprintf("/svc%d/v1/resource%d/list", svc, i)})
		}
		for i := range 3 {
			routes = append(routes,
				Route{Methods: []string{"GET"}, Path: fmt.Sprintf("/svc%d/v1/items%d/:id", svc, i)},
				Route{Methods: []string{"PUT", "DELETE"}, Path: fmt.Sprintf("/svc%d/v1/items%d/:id", svc, i)},
				Route{Path: fmt.Sprintf("/svc%d/v1/items%d/:id/sub/:sub", svc, i)},
			)
		}
		routes = append(routes,
			Route{Hosts: []string{fmt.Sprintf("svc%d.example.com", svc)}, Path: fmt.Sprintf("/svc%d/users/:id/orders/:order", svc)},
			Route{Hosts: []string{"*.example.com"}, Path: fmt.Sprintf("/svc%d/static/*path", svc)},
			Route{Methods: []string{"GET"}, Path: fmt.Sprintf("/svc%d/*", svc)},
			Route{Methods: []string{"POST"}, Path: fmt.Sprintf("/svc%d/v1/resource0/list", svc)},
			Route{Path: fmt.Sprintf("/svc%d/:tenant/report", svc)},
		)
	}
	if len(routes) != 1000 {
		b.Fatalf("%d routes", len(routes))
	}
	t, err := New(routes)
	if err != nil {
		b.Fatal(err)
	}
	return t
}

func benchMatch(b *testing.B, host, method, path string, want Status) {
	t := benchTable(b)
	if r := t.Match(host, method, path); r.Status != want {
		b.Fatalf("Match(%q, %q, %q) = %+v", host, method, path, r)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		t.Match(host, method, path)
	}
}

func BenchmarkMatchStatic(b *testing.B) {
	benchMatch(b, "gw.example.org", "GET", "/svc37/v1/resource5/list", Found)
}

func BenchmarkMatchParam(b *testing.B) {
	benchMatch(b, "gw.example.org", "DELETE", "/svc37/v1/items2/12345", Found)
}

func BenchmarkMatchParamDeep(b *testing.B) {
	benchMatch(b, "gw.example.org", "GET", "/svc37/v1/items2/12345/sub/678", Found)
}

func BenchmarkMatchHostParam(b *testing.B) {
	benchMatch(b, "SVC37.Example.com:8443", "GET", "/svc37/users/42/orders/7", Found)
}

func BenchmarkMatchBacktrackWildcard(b *testing.B) {
	benchMatch(b, "gw.example.org", "GET", "/svc37/v1/items2/12345/other/x", Found)
}

func BenchmarkMatchMethodNotAllowed(b *testing.B) {
	benchMatch(b, "gw.example.org", "PATCH", "/svc37/v1/items2/12345", MethodNotAllowed)
}

func BenchmarkMatchNotFound(b *testing.B) {
	benchMatch(b, "gw.example.org", "GET", "/nothing/here", NotFound)
}

func BenchmarkMatchParamsInto(b *testing.B) {
	t := benchTable(b)
	buf := make([]Param, 0, 4)
	b.ReportAllocs()
	for b.Loop() {
		_, ps := t.MatchParams("gw.example.org", "GET", "/svc37/v1/items2/12345/sub/678", buf[:0])
		if len(ps) != 2 {
			b.Fatal(ps)
		}
	}
}

func BenchmarkNormalizeClean(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		Normalize("/svc37/v1/items2/12345/sub/678")
	}
}

func BenchmarkNormalizeDirty(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		Normalize("/svc37/./v1//items2/%2e%2e/items2/12345")
	}
}

// TestMatchDoesNotAllocate holds the 0-alloc promise in the ordinary test run too.
func TestMatchDoesNotAllocate(t *testing.T) {
	tb, err := New([]Route{
		{Path: "/static/a/b"},
		{Methods: []string{"GET"}, Path: "/u/:id/x/:y"},
		{Hosts: []string{"*.example.com"}, Path: "/h/*"},
		{Methods: []string{"POST"}, Path: "/p/:id"},
	})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]Param, 0, 4)
	for _, c := range []struct{ host, method, path string }{
		{"x", "GET", "/static/a/b"},
		{"x", "GET", "/u/1/x/2"},
		{"A.Example.COM:443", "GET", "/h/a/b"},
		{"x", "GET", "/p/1"}, // 405, Allow precomputed
		{"x", "GET", "/none"},
	} {
		if n := testing.AllocsPerRun(100, func() { tb.Match(c.host, c.method, c.path) }); n != 0 {
			t.Errorf("Match(%q, %q, %q): %v allocs", c.host, c.method, c.path, n)
		}
		if n := testing.AllocsPerRun(100, func() { tb.MatchParams(c.host, c.method, c.path, buf[:0]) }); n != 0 {
			t.Errorf("MatchParams(%q, %q, %q): %v allocs", c.host, c.method, c.path, n)
		}
	}
}
