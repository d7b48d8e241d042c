package router

import (
	"errors"
	"slices"
	"testing"
)

type req struct {
	host, method, path string
	want               Result
}

func found(r int) Result { return Result{Route: r, Status: Found} }

var notFound = Result{Route: -1, Status: NotFound}

func notAllowed(allow string) Result {
	return Result{Route: -1, Status: MethodNotAllowed, Allow: allow}
}

func mustNew(t *testing.T, routes []Route) *Table {
	t.Helper()
	tb, err := New(routes)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if tb.Len() != len(routes) {
		t.Fatalf("Len = %d, want %d", tb.Len(), len(routes))
	}
	return tb
}

func runReqs(t *testing.T, tb *Table, reqs []req) {
	t.Helper()
	for _, r := range reqs {
		method := r.method
		if method == "" {
			method = "GET"
		}
		if got := tb.Match(r.host, method, r.path); got != r.want {
			t.Errorf("Match(%q, %q, %q) = %+v, want %+v", r.host, method, r.path, got, r.want)
		}
	}
}

func TestPrecedenceAndBacktracking(t *testing.T) {
	tb := mustNew(t, []Route{
		0:  {Path: "/api/users/me"},
		1:  {Path: "/api/users/:id"},
		2:  {Path: "/api/users/:id/profile"},
		3:  {Path: "/api/*"},
		4:  {Path: "/api/users/:id/posts/:post"},
		5:  {Path: "/api/users/admin/posts/latest"},
		6:  {Path: "/"},
		7:  {Path: "/a/b/*rest"},
		8:  {Path: "/a/:x/c"},
		9:  {Path: "/a/:x/:y/d"},
		10: {Path: "/v1/things:batchGet"},
		11: {Path: "/slash/"},
		12: {Path: "/slash/:id/"},
	})
	runReqs(t, tb, []req{
		{path: "/api/users/me", want: found(0)},         // static beats :param
		{path: "/api/users/42", want: found(1)},         // :param
		{path: "/api/users/me/profile", want: found(2)}, // "me" static has no child: backtrack to :id
		{path: "/api/users/me/orders", want: found(3)},  // backtrack all the way to /api/*
		{path: "/api/users/42/orders", want: found(3)},
		{path: "/api/users/7/posts/9", want: found(4)},
		{path: "/api/users/admin/posts/latest", want: found(5)},
		{path: "/api/users/admin/posts/other", want: found(4)}, // static prefix dead-ends, param route takes it
		{path: "/api/users", want: found(3)},
		{path: "/api", want: found(3)},
		{path: "/api/", want: found(3)},
		{path: "/", want: found(6)},
		{path: "/other", want: notFound},
		{path: "/a/b/c", want: found(7)}, // static "b" is tried before ":x"
		{path: "/a/z/c", want: found(8)},
		{path: "/a/b/q/d", want: found(7)},
		{path: "/a/z/q/d", want: found(9)},
		{path: "/a/z/q/e", want: notFound},
		{path: "/a/z", want: notFound},
		{path: "/v1/things:batchGet", want: found(10)},
		{path: "/slash", want: notFound}, // a trailing slash is significant
		{path: "/slash/", want: found(11)},
		{path: "/slash/1/", want: found(12)},
		{path: "/slash/1", want: notFound},
		{path: "", want: notFound},
		{path: "api", want: notFound},
	})
}

func TestWildcard(t *testing.T) {
	tb := mustNew(t, []Route{
		0: {Path: "/files/*"},
		1: {Path: "/files/special"},
		2: {Path: "/files/:name/meta"},
		3: {Path: "/static/*path"},
		4: {Path: "/static/"},
	})
	runReqs(t, tb, []req{
		{path: "/files", want: found(0)},
		{path: "/files/", want: found(0)},
		{path: "/files/a", want: found(0)},
		{path: "/files/a/b/c", want: found(0)},
		{path: "/files/special", want: found(1)},
		{path: "/files/special/x", want: found(0)},
		{path: "/files/x/meta", want: found(2)},
		{path: "/files/x/meta/y", want: found(0)},
		{path: "/filesx", want: notFound},
		{path: "/file", want: notFound},
		{path: "/static", want: found(3)},
		{path: "/static/", want: found(4)}, // the static pattern "/static/" beats the wildcard
		{path: "/static/css/a.css", want: found(3)},
	})

	root := mustNew(t, []Route{{Path: "/*"}, {Path: "/health"}})
	runReqs(t, root, []req{
		{path: "/", want: found(0)},
		{path: "/x/y", want: found(0)},
		{path: "/health", want: found(1)},
		{path: "/health/x", want: found(0)},
	})
}

func TestParams(t *testing.T) {
	tb := mustNew(t, []Route{
		0: {Path: "/users/:id/posts/:post"},
		1: {Path: "/users/:uid"},
		2: {Path: "/files/*"},
		3: {Path: "/static/:kind/*path"},
		4: {Path: "/users/:id/profile"},
		5: {Path: "/plain"},
	})
	cases := []struct {
		path  string
		route int
		want  []Param
	}{
		{"/users/7/posts/9", 0, []Param{{"id", "7"}, {"post", "9"}}},
		{"/users/a%2Fb", 1, []Param{{"uid", "a%2Fb"}}},
		{"/users/7/profile", 4, []Param{{"id", "7"}}},
		{"/files", 2, []Param{{"*", ""}}},
		{"/files/", 2, []Param{{"*", ""}}},
		{"/files/a/b", 2, []Param{{"*", "a/b"}}},
		{"/static/css/x/y.css", 3, []Param{{"kind", "css"}, {"path", "x/y.css"}}},
		{"/plain", 5, nil},
	}
	buf := make([]Param, 0, 8)
	for _, c := range cases {
		res, ps := tb.MatchParams("", "GET", c.path, buf[:0])
		if res != found(c.route) {
			t.Errorf("MatchParams(%q) = %+v, want route %d", c.path, res, c.route)
			continue
		}
		if !slices.Equal(ps, c.want) && !(len(ps) == 0 && len(c.want) == 0) {
			t.Errorf("MatchParams(%q) params = %v, want %v", c.path, ps, c.want)
		}
	}
	// A prefix in dst is kept; nothing is appended when nothing matched.
	dst := []Param{{"pre", "x"}}
	res, ps := tb.MatchParams("", "GET", "/nope", dst)
	if res.Status != NotFound || len(ps) != 1 {
		t.Errorf("MatchParams(/nope) = %+v, %v", res, ps)
	}
	_, ps = tb.MatchParams("", "GET", "/users/5", dst)
	if want := []Param{{"pre", "x"}, {"uid", "5"}}; !slices.Equal(ps, want) {
		t.Errorf("MatchParams with prefix = %v, want %v", ps, want)
	}
}

func TestMethods(t *testing.T) {
	tb := mustNew(t, []Route{
		0:  {Methods: []string{"GET"}, Path: "/items"},
		1:  {Methods: []string{"post", "PUT"}, Path: "/items"}, // lower case is upper-cased
		2:  {Methods: []string{"GET"}, Path: "/items/:id"},
		3:  {Methods: []string{"DELETE"}, Path: "/items/:id"},
		4:  {Path: "/any"},
		5:  {Methods: []string{"GET"}, Path: "/mixed"},
		6:  {Path: "/mixed"},
		7:  {Methods: []string{"GET"}, Path: "/head"},
		8:  {Methods: []string{"HEAD"}, Path: "/head"},
		9:  {Methods: []string{"GET"}, Path: "/u/me"},
		10: {Methods: []string{"DELETE"}, Path: "/u/:id"},
		11: {Methods: []string{"PATCH"}, Path: "/u/*"},
		12: {Methods: []string{"PURGE"}, Path: "/cache/*"},
	})
	runReqs(t, tb, []req{
		{method: "GET", path: "/items", want: found(0)},
		{method: "HEAD", path: "/items", want: found(0)}, // HEAD is served by the GET route
		{method: "POST", path: "/items", want: found(1)},
		{method: "PUT", path: "/items", want: found(1)},
		{method: "DELETE", path: "/items", want: notAllowed("GET, HEAD, POST, PUT")},
		{method: "post", path: "/items", want: notAllowed("GET, HEAD, POST, PUT")}, // methods are case-sensitive
		{method: "GET", path: "/items/3", want: found(2)},
		{method: "DELETE", path: "/items/3", want: found(3)},
		{method: "PUT", path: "/items/3", want: notAllowed("DELETE, GET, HEAD")},
		{method: "BREW", path: "/any", want: found(4)}, // no methods: anything, never 405
		{method: "GET", path: "/mixed", want: found(5)},
		{method: "HEAD", path: "/mixed", want: found(5)},
		{method: "POST", path: "/mixed", want: found(6)},
		{method: "GET", path: "/head", want: found(7)},
		{method: "HEAD", path: "/head", want: found(8)}, // an explicit HEAD route wins
		// The walk goes on past a path match whose methods do not fit.
		{method: "GET", path: "/u/me", want: found(9)},
		{method: "DELETE", path: "/u/me", want: found(10)},
		{method: "PATCH", path: "/u/me", want: found(11)},
		{method: "PUT", path: "/u/me", want: notAllowed("DELETE, GET, HEAD, PATCH")}, // union of all three
		{method: "PUT", path: "/u/7", want: notAllowed("DELETE, PATCH")},
		{method: "PUT", path: "/u/7/x", want: notAllowed("PATCH")},
		{method: "PURGE", path: "/cache/x", want: found(12)}, // extension methods
		{method: "GET", path: "/cache/x", want: notAllowed("PURGE")},
		{method: "GET", path: "/nothing", want: notFound},
	})
}

func TestHosts(t *testing.T) {
	tb := mustNew(t, []Route{
		0: {Hosts: []string{"API.example.com"}, Path: "/users/:id"},
		1: {Path: "/users/:id"},
		2: {Hosts: []string{"*.example.com"}, Path: "/users/:id"},
		3: {Hosts: []string{"*.eu.example.com"}, Path: "/users/:id"},
		4: {Hosts: []string{"api.example.com"}, Path: "/*"},
		5: {Path: "/health"},
		6: {Hosts: []string{"admin.example.com"}, Methods: []string{"GET"}, Path: "/users/:id"},
		7: {Hosts: []string{"[::1]", "127.0.0.1"}, Path: "/local"},
		8: {Hosts: []string{"*"}, Path: "/star"},
		9: {Hosts: []string{"other.test."}, Methods: []string{"POST"}, Path: "/form"},
	})
	runReqs(t, tb, []req{
		{host: "api.example.com", path: "/users/1", want: found(0)},
		{host: "API.Example.COM:8443", path: "/users/1", want: found(0)}, // case and port ignored
		{host: "api.example.com.", path: "/users/1", want: found(0)},     // trailing dot ignored
		{host: "www.example.com", path: "/users/1", want: found(2)},
		{host: "a.b.example.com", path: "/users/1", want: found(2)},
		{host: "x.eu.example.com", path: "/users/1", want: found(3)}, // the longest wildcard suffix
		{host: "example.com", path: "/users/1", want: found(1)},      // "*.example.com" needs a label
		{host: "elsewhere.test", path: "/users/1", want: found(1)},
		{host: "", path: "/users/1", want: found(1)},
		// Host routes come first, even a wildcard path over a host-less static one.
		{host: "api.example.com", path: "/health", want: found(4)},
		{host: "www.example.com", path: "/health", want: found(5)},
		// A host's route that does not allow the method lets a host-less route serve it.
		{host: "admin.example.com", method: "GET", path: "/users/1", want: found(6)},
		{host: "admin.example.com", method: "POST", path: "/users/1", want: found(2)},
		{host: "[::1]:8080", path: "/local", want: found(7)},
		{host: "[::1]", path: "/local", want: found(7)},
		{host: "127.0.0.1:80", path: "/local", want: found(7)},
		{host: "localhost", path: "/local", want: notFound},
		{host: "anything", path: "/star", want: found(8)},
		{host: "other.test", method: "GET", path: "/form", want: notAllowed("POST")},
		{host: "OTHER.TEST.:1", method: "POST", path: "/form", want: found(9)},
		{host: "elsewhere.test", method: "POST", path: "/form", want: notFound},
		{host: string(make([]byte, 300)), path: "/users/1", want: found(1)}, // too long for any host route
	})

	// 405 collects the methods of every group that matched the path.
	t2 := mustNew(t, []Route{
		0: {Hosts: []string{"a.test"}, Methods: []string{"GET"}, Path: "/x"},
		1: {Methods: []string{"POST"}, Path: "/x"},
	})
	runReqs(t, t2, []req{
		{host: "a.test", method: "PUT", path: "/x", want: notAllowed("GET, HEAD, POST")},
		{host: "b.test", method: "PUT", path: "/x", want: notAllowed("POST")},
		{host: "b.test", method: "GET", path: "/x", want: notAllowed("POST")},
	})
}

func TestNewErrors(t *testing.T) {
	cases := []struct {
		name   string
		routes []Route
		want   error
	}{
		{"bad pattern", []Route{{Path: "users"}}, ErrBadPattern},
		{"bad host port", []Route{{Hosts: []string{"a.test:80"}, Path: "/"}}, ErrBadHost},
		{"bad host char", []Route{{Hosts: []string{"a b"}, Path: "/"}}, ErrBadHost},
		{"bad host empty", []Route{{Hosts: []string{""}, Path: "/"}}, ErrBadHost},
		{"bad host empty label", []Route{{Hosts: []string{"a..b"}, Path: "/"}}, ErrBadHost},
		{"bad host mid star", []Route{{Hosts: []string{"a.*.b"}, Path: "/"}}, ErrBadHost},
		{"bad host ipv6", []Route{{Hosts: []string{"[zz]"}, Path: "/"}}, ErrBadHost},
		{"bad method", []Route{{Methods: []string{"GE T"}, Path: "/"}}, ErrBadMethod},
		{"empty method", []Route{{Methods: []string{""}, Path: "/"}}, ErrBadMethod},
		{"dup static", []Route{{Path: "/a"}, {Path: "/a"}}, ErrDuplicateRoute},
		{"dup static canonical", []Route{{Path: "/caf%c3%a9"}, {Path: "/café"}}, ErrDuplicateRoute},
		{"dup unreserved escape", []Route{{Path: "/%41"}, {Path: "/A"}}, ErrDuplicateRoute},
		{"dup param names differ", []Route{{Path: "/u/:id"}, {Path: "/u/:uid"}}, ErrDuplicateRoute},
		{"dup wildcard", []Route{{Path: "/f/*"}, {Path: "/f/*rest"}}, ErrDuplicateRoute},
		{"dup method", []Route{{Methods: []string{"GET", "POST"}, Path: "/a"}, {Methods: []string{"post"}, Path: "/a"}}, ErrDuplicateRoute},
		{"dup host", []Route{{Hosts: []string{"a.test"}, Path: "/a"}, {Hosts: []string{"b.test", "A.TEST"}, Path: "/a"}}, ErrDuplicateRoute},
		{"dup star host is no host", []Route{{Hosts: []string{"*"}, Path: "/a"}, {Path: "/a"}}, ErrDuplicateRoute},
		{"dup wildcard host", []Route{{Hosts: []string{"*.a.test"}, Path: "/a"}, {Hosts: []string{"*.A.test"}, Path: "/a"}}, ErrDuplicateRoute},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := New(c.routes)
			if !errors.Is(err, c.want) {
				t.Fatalf("New = %v, want %v", err, c.want)
			}
		})
	}

	// Not duplicates: same pattern on other hosts or methods, or with and without methods.
	ok := [][]Route{
		{{Hosts: []string{"a.test"}, Path: "/a"}, {Hosts: []string{"b.test"}, Path: "/a"}, {Path: "/a"}},
		{{Methods: []string{"GET"}, Path: "/a"}, {Methods: []string{"POST"}, Path: "/a"}, {Path: "/a"}},
		{{Path: "/a"}, {Path: "/a/"}, {Path: "/a/*"}, {Path: "/:x"}},
		{{Methods: []string{"GET", "get"}, Hosts: []string{"a.test", "A.test"}, Path: "/a"}}, // repeats within a route
	}
	for i, routes := range ok {
		if _, err := New(routes); err != nil {
			t.Errorf("set %d: New = %v, want no error", i, err)
		}
	}

	var many []string
	for i := range 65 {
		many = append(many, "M"+string(rune('A'+i/26))+string(rune('A'+i%26)))
	}
	if _, err := New([]Route{{Methods: many, Path: "/"}}); !errors.Is(err, ErrTooManyMethods) {
		t.Errorf("65 methods: New = %v, want ErrTooManyMethods", err)
	}
}

func TestValidatePattern(t *testing.T) {
	good := []string{
		"/", "/a", "/a/", "/a/:id", "/a/:id/b", "/a/*", "/a/*rest", "/*", "/:a/:b/*c",
		"/v1/things:batchGet", "/caf%C3%A9", "/café", "/a%2Fb", "/a/:id/", "/~user/@x!$&'()+,;=",
	}
	for _, p := range good {
		if err := ValidatePattern(p); err != nil {
			t.Errorf("ValidatePattern(%q) = %v, want nil", p, err)
		}
	}
	bad := []string{
		"", "a", "*", "//", "/a//b", "/a/./b", "/a/..", "/%2e", "/a/%2E%2e/b",
		"/:", "/:1a", "/:a-b", "/:id/:id", "/*/a", "/a/*/", "/a/*x/*y", "/*1", "/a*", "/a/b*c",
		"/%zz", "/%4", "/a%", "/:x/*x", "/a/..%2Fb", "/a/b%2f..", "/a/..;x", "/a/.%3Bx/b", "/a/..%5Cb",
	}
	for _, p := range bad {
		err := ValidatePattern(p)
		if !errors.Is(err, ErrBadPattern) {
			t.Errorf("ValidatePattern(%q) = %v, want ErrBadPattern", p, err)
		}
	}
}

func TestPatternCanonicalStatic(t *testing.T) {
	tb := mustNew(t, []Route{
		0: {Path: "/café"},
		1: {Path: "/a%2fb"},
		2: {Path: "/%7Euser/:id"},
	})
	runReqs(t, tb, []req{
		{path: mustNormalize(t, "/caf%c3%a9"), want: found(0)},
		{path: mustNormalize(t, "/a%2Fb"), want: found(1)},
		{path: mustNormalize(t, "/a/b"), want: notFound},
		{path: mustNormalize(t, "/~user/1"), want: found(2)},
	})
}

func mustNormalize(t *testing.T, p string) string {
	t.Helper()
	c, ok := Normalize(p)
	if !ok {
		t.Fatalf("Normalize(%q) not ok", p)
	}
	return c
}

func TestStatusString(t *testing.T) {
	for s, want := range map[Status]string{Found: "found", NotFound: "not_found", MethodNotAllowed: "method_not_allowed", 9: "Status(9)"} {
		if s.String() != want {
			t.Errorf("%d.String() = %q, want %q", s, s.String(), want)
		}
	}
}

func TestNilAndEmptyTable(t *testing.T) {
	var nilT *Table
	if got := nilT.Match("h", "GET", "/"); got != notFound {
		t.Errorf("nil table: %+v", got)
	}
	empty := mustNew(t, nil)
	if got := empty.Match("h", "GET", "/"); got != notFound {
		t.Errorf("empty table: %+v", got)
	}
}

func TestConcurrentMatch(t *testing.T) {
	tb := mustNew(t, []Route{{Path: "/a/:id"}, {Hosts: []string{"x.test"}, Path: "/b/*"}})
	done := make(chan struct{})
	for range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			buf := make([]Param, 0, 2)
			for range 1000 {
				if r := tb.Match("X.test", "GET", "/b/c"); r != found(1) {
					t.Errorf("got %+v", r)
					return
				}
				if _, ps := tb.MatchParams("", "GET", "/a/7", buf[:0]); len(ps) != 1 || ps[0].Value != "7" {
					t.Errorf("params %v", ps)
					return
				}
			}
		}()
	}
	for range 4 {
		<-done
	}
}
