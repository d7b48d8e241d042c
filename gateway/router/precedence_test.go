package router

import (
	"errors"
	"testing"
)

// TestHostPrecedence: for the same method and pattern, a route naming the request's
// host wins over a wildcard host, which wins over a route without hosts; a route of
// a more specific host group that does not allow the method lets the next group serve
// it; 405 lists what every group the host reaches allows.
func TestHostPrecedence(t *testing.T) {
	tb := mustNew(t, []Route{
		0: {Hosts: []string{"a.example.test"}, Methods: []string{"GET"}, Path: "/p"},
		1: {Hosts: []string{"*.example.test"}, Methods: []string{"GET"}, Path: "/p"},
		2: {Methods: []string{"GET"}, Path: "/p"},

		3: {Hosts: []string{"a.example.test"}, Methods: []string{"POST"}, Path: "/m"},
		4: {Hosts: []string{"*.example.test"}, Methods: []string{"PUT"}, Path: "/m"},
		5: {Methods: []string{"DELETE"}, Path: "/m"},

		// No methods on the host-specific routes: they take every method of their host.
		6: {Hosts: []string{"a.example.test"}, Path: "/any"},
		7: {Hosts: []string{"*.example.test"}, Path: "/any"},
		8: {Path: "/any"},

		// A host's wildcard path beats a host-less static path: hosts come first.
		9:  {Hosts: []string{"a.example.test"}, Path: "/files/*"},
		10: {Path: "/files/readme"},

		// Nested wildcards: the longest suffix first.
		11: {Hosts: []string{"*.eu.example.test"}, Methods: []string{"GET"}, Path: "/p"},

		// A host-specific route with methods over a host-less route without methods.
		12: {Hosts: []string{"a.example.test"}, Methods: []string{"GET"}, Path: "/mixed"},
		13: {Path: "/mixed"},
	})
	const a, b, deep, other = "a.example.test", "b.example.test", "x.eu.example.test", "other.test"
	runReqs(t, tb, []req{
		// Same method and path: exact > wildcard > none.
		{host: a, path: "/p", want: found(0)},
		{host: "A.Example.Test:8080", path: "/p", want: found(0)},
		{host: b, path: "/p", want: found(1)},
		{host: deep, path: "/p", want: found(11)},
		{host: "example.test", path: "/p", want: found(2)}, // "*.example.test" needs a label
		{host: other, path: "/p", want: found(2)},
		{host: "", path: "/p", want: found(2)},
		{host: a, method: "HEAD", path: "/p", want: found(0)},
		{host: a, method: "POST", path: "/p", want: notAllowed("GET, HEAD")},
		{host: other, method: "POST", path: "/p", want: notAllowed("GET, HEAD")},

		// Method differences: each group serves its own methods; the rest fall through.
		{host: a, method: "POST", path: "/m", want: found(3)},
		{host: a, method: "PUT", path: "/m", want: found(4)},
		{host: a, method: "DELETE", path: "/m", want: found(5)},
		{host: a, method: "PATCH", path: "/m", want: notAllowed("DELETE, POST, PUT")},
		{host: b, method: "POST", path: "/m", want: notAllowed("DELETE, PUT")},
		{host: b, method: "PUT", path: "/m", want: found(4)},
		{host: b, method: "DELETE", path: "/m", want: found(5)},
		{host: other, method: "PUT", path: "/m", want: notAllowed("DELETE")},
		{host: other, method: "DELETE", path: "/m", want: found(5)},

		{host: a, method: "PATCH", path: "/any", want: found(6)},
		{host: b, method: "PATCH", path: "/any", want: found(7)},
		{host: other, method: "PATCH", path: "/any", want: found(8)},

		{host: a, path: "/files/readme", want: found(9)},
		{host: b, path: "/files/readme", want: found(10)},
		{host: b, path: "/files/other", want: notFound},

		{host: a, method: "GET", path: "/mixed", want: found(12)},
		{host: a, method: "POST", path: "/mixed", want: found(13)},
		{host: other, method: "GET", path: "/mixed", want: found(13)},
	})
}

func TestCheck(t *testing.T) {
	// A default route plus host-specific overrides is not a conflict.
	if errs := Check([]Route{
		{Hosts: []string{"a.example.test"}, Path: "/p"},
		{Hosts: []string{"*.example.test"}, Path: "/p"},
		{Path: "/p"},
		{Hosts: []string{"a.example.test"}, Methods: []string{"GET"}, Path: "/q"},
		{Path: "/q"},
	}); len(errs) != 0 {
		t.Fatalf("Check = %v, want none", errs)
	}

	errs := Check([]Route{
		0: {Hosts: []string{"a.test", "a..b"}, Methods: []string{"GET", "G T"}, Path: "/a/:1bad"},
		1: {Path: "/a/b*c"},
		2: {Hosts: []string{"[::1]", "a.test:80"}, Path: "/ok"},
		3: {Hosts: []string{"A.test"}, Methods: []string{"post", "GET"}, Path: "/u/:id"},
		4: {Hosts: []string{"b.test", "a.test"}, Methods: []string{"GET"}, Path: "/u/:name"},
		5: {Path: "/x/*"},
		6: {Path: "/x/*rest"},
	})
	want := []error{
		&RouteError{Route: 0, Field: "path", Index: 0, Err: ErrBadPattern},
		&RouteError{Route: 0, Field: "methods", Index: 1, Err: ErrBadMethod},
		&RouteError{Route: 0, Field: "hosts", Index: 1, Err: ErrBadHost},
		&RouteError{Route: 1, Field: "path", Index: 0, Err: ErrBadPattern},
		&RouteError{Route: 2, Field: "hosts", Index: 1, Err: ErrBadHost},
		&ConflictError{First: 3, Second: 4, Method: "GET", Pattern: "/u/:", Host: "a.test"},
		&ConflictError{First: 5, Second: 6, Pattern: "/x/*"},
	}
	if len(errs) != len(want) {
		t.Fatalf("Check = %d errors %v, want %d", len(errs), errs, len(want))
	}
	for i, err := range errs {
		switch w := want[i].(type) {
		case *RouteError:
			var re *RouteError
			if !errors.As(err, &re) || re.Route != w.Route || re.Field != w.Field || re.Index != w.Index || !errors.Is(err, w.Err) {
				t.Errorf("error %d = %v, want a RouteError %+v", i, err, w)
			}
		case *ConflictError:
			var ce *ConflictError
			if !errors.As(err, &ce) || *ce != *w || !errors.Is(err, ErrDuplicateRoute) {
				t.Errorf("error %d = %#v, want %#v", i, err, w)
			}
		}
	}
	if got, want := errs[6].Error(), "duplicate route: routes 5 and 6 both serve any method /x/* on any host"; got != want {
		t.Errorf("message %q, want %q", got, want)
	}

	// New returns the first of them.
	if _, err := New([]Route{{Path: "/a"}, {Path: "/a"}, {Path: "bad"}}); !errors.Is(err, ErrBadPattern) {
		t.Errorf("New = %v, want the malformed path first", err)
	}
}

func TestValidateHostAndMethod(t *testing.T) {
	for _, h := range []string{"a.example.com", "API.Example.com", "a.test.", "*.example.com", "*", "[::1]", "[2001:db8::1]", "10.0.0.1", "under_score.test"} {
		if err := ValidateHost(h); err != nil {
			t.Errorf("ValidateHost(%q) = %v", h, err)
		}
	}
	for _, h := range []string{"", "a..b", "a.test:80", "[::1]:80", "::1", "[10.0.0.1]", "a.*.b", "*a.b", "a b", "https://x", "*.."} {
		if err := ValidateHost(h); !errors.Is(err, ErrBadHost) {
			t.Errorf("ValidateHost(%q) = %v, want ErrBadHost", h, err)
		}
	}
	for _, m := range []string{"GET", "get", "PURGE", "M-SEARCH"} {
		if err := ValidateMethod(m); err != nil {
			t.Errorf("ValidateMethod(%q) = %v", m, err)
		}
	}
	for _, m := range []string{"", "G T", "GET\n", "(GET)"} {
		if err := ValidateMethod(m); !errors.Is(err, ErrBadMethod) {
			t.Errorf("ValidateMethod(%q) = %v, want ErrBadMethod", m, err)
		}
	}
}
