package router

import (
	"fmt"
	"strings"
)

// maxMethods is the number of distinct methods a table can hold (one bit each in a
// uint64 mask; GET brings HEAD with it).
const maxMethods = 64

// RouteError is a malformed route, as New and Check report it.
type RouteError struct {
	// Route is the index of the route in the slice given to New or Check.
	Route int
	// Field is "path", "hosts" or "methods".
	Field string
	// Index is the position of the bad element in Hosts or Methods (0 for path).
	Index int
	// Err wraps ErrBadPattern, ErrBadHost, ErrBadMethod or ErrTooManyMethods and says
	// what is wrong.
	Err error
}

// Error returns "route 3: malformed host ...".
func (e *RouteError) Error() string { return fmt.Sprintf("route %d: %v", e.Route, e.Err) }

// Unwrap returns Err.
func (e *RouteError) Unwrap() error { return e.Err }

// ConflictError is a route that serves a host, a method and a pattern that an earlier
// route already serves. It wraps ErrDuplicateRoute.
type ConflictError struct {
	// First and Second are the indexes of the two routes; First < Second.
	First, Second int
	// Method is the method both serve, or "" when neither names methods.
	Method string
	// Pattern is the shared pattern with parameter names dropped: "/users/:/*".
	Pattern string
	// Host is the shared host ("api.example.com", "*.example.com"), or "" when neither
	// route names hosts.
	Host string
}

// Error returns "duplicate route: routes 1 and 4 both serve GET /users/: on any host".
func (e *ConflictError) Error() string {
	method, host := e.Method, "any host"
	if method == "" {
		method = "any method"
	}
	if e.Host != "" {
		host = "host " + e.Host
	}
	return fmt.Sprintf("%v: routes %d and %d both serve %s %s on %s", ErrDuplicateRoute, e.First, e.Second, method, e.Pattern, host)
}

// Unwrap returns ErrDuplicateRoute.
func (e *ConflictError) Unwrap() error { return ErrDuplicateRoute }

// ValidateHost reports whether h may appear in Route.Hosts, with an error wrapping
// ErrBadHost that says what is wrong. Accepted: a host name of letters, digits, '-'
// and '_' in non-empty dot-separated labels (any case, one trailing dot allowed), an
// IPv4 address, an IPv6 address in brackets ("[::1]"), "*.suffix" for every name under
// suffix, and "*" for any host. A port is refused: the port of a request's Host is
// never compared.
func ValidateHost(h string) error {
	_, _, err := parseHost(h)
	return err
}

// ValidateMethod reports whether m may appear in Route.Methods: an RFC 9110 token
// (letters, digits and !#$%&'*+-.^_`|~). The error wraps ErrBadMethod.
func ValidateMethod(m string) error {
	if !isToken(m) {
		return fmt.Errorf("%w %q: not an HTTP token", ErrBadMethod, m)
	}
	return nil
}

// isToken reports whether s is an RFC 9110 token (what a method must be).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			continue
		}
		if strings.IndexByte("!#$%&'*+-.^_`|~", c) < 0 {
			return false
		}
	}
	return true
}
