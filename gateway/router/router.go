// Package router is the gateway's route table: it maps a request's host, method and
// normalised path to the index of the route that serves it.
//
// A Table is built whole by New and never changes afterwards, so any number of
// goroutines may call Match at once without locks; to change routes, build a new Table
// and swap it (an atomic.Pointer in the caller). Match does not allocate.
//
// Matching rules, in order:
//
//   - Hosts. A route with hosts matches only requests whose Host (port stripped,
//     case-insensitive) is one of them; "*.example.com" matches any name ending in
//     ".example.com" (not "example.com" itself); "*" means any host. Routes are grouped
//     by host: the exact host's routes are tried first, then wildcard hosts from the
//     longest suffix down, then routes without hosts. The first group with a route for
//     the path and the method wins, so routes with hosts take precedence over host-less
//     ones, and a path a host's routes do not cover falls through to host-less routes.
//   - Path. Within a group a fully static pattern is a map lookup and wins outright.
//     Otherwise a segment tree is walked depth-first, preferring at each segment a
//     static child, then a ":param", then a trailing "*"; when a branch dead-ends the
//     walk backtracks, so "/api/users/me/orders" reaches "/api/*" even though
//     "/api/users/:id/profile" exists.
//   - Method. A route with no methods allows every method. A route that allows GET
//     also serves HEAD unless another route of the same pattern names HEAD (as Go's
//     net/http.ServeMux does); a route naming the method beats one with no methods.
//     The walk goes on past a path match whose routes do not allow the method, so the
//     next candidate in precedence order that allows it is chosen. If some route
//     matched the path but none allowed the method, the answer is MethodNotAllowed
//     with Allow listing, sorted, every method those routes allow (HEAD included where
//     GET is).
package router

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// Route is one entry of the table, as the config describes it.
type Route struct {
	// Hosts the route serves; empty means any host. Compared case-insensitively and
	// without port; "*.example.com" matches every name under example.com; "*" is any
	// host; IPv6 literals are written "[::1]" and compared as written.
	Hosts []string
	// Methods the route serves; empty means any. Upper-cased by New; a request's
	// method is compared case-sensitively (RFC 9110 §9.1), so "get" is not GET.
	Methods []string
	// Path is the pattern; see ValidatePattern.
	Path string
}

// Status is the outcome of Match.
type Status uint8

const (
	// NotFound: no route matches the host and path (404).
	NotFound Status = iota
	// Found: Result.Route serves the request.
	Found
	// MethodNotAllowed: some route matches the path but none the method; Result.Allow
	// holds the value of the Allow header (405).
	MethodNotAllowed
)

// String returns "found", "not_found" or "method_not_allowed".
func (s Status) String() string {
	switch s {
	case Found:
		return "found"
	case NotFound:
		return "not_found"
	case MethodNotAllowed:
		return "method_not_allowed"
	}
	return fmt.Sprintf("Status(%d)", uint8(s))
}

// Result is the answer of Match.
type Result struct {
	// Route is the index, in the slice given to New, of the route that matched, or -1.
	Route int
	// Status says whether a route was found.
	Status Status
	// Allow is set when Status is MethodNotAllowed: "GET, HEAD, POST".
	Allow string
}

// Param is one path parameter of a match: Key is the name from the pattern (":id"
// gives "id", an unnamed wildcard gives "*"), Value the segment(s) it matched, still
// percent-escaped as in the normalised path ("a%2Fb"); a wildcard's value has no
// leading slash and is "" for "/files" and "/files/".
type Param struct {
	Key, Value string
}

// Table is an immutable route table. The zero value matches nothing; build one with New.
type Table struct {
	exact    map[string]*group // by lower-case host
	wild     map[string]*group // by suffix: "*.example.com" is ".example.com"
	any      *group            // routes without hosts; nil when there are none
	hosts    bool              // some route has hosts
	methods  []string          // distinct methods, sorted; bit i of a mask is methods[i]
	allow    map[uint64]string // Allow header for each leaf's method mask
	names    [][]string        // parameter names of each route, in pattern order
	numRoute int
}

// group holds the routes of one host (or of no host).
type group struct {
	static map[string]*leaf // fully static patterns, by normalised path
	root   *node            // patterns with parameters or a wildcard; nil if none
}

// node is one segment position of the tree.
type node struct {
	static map[string]*node // next segment, literal; "" for a trailing slash
	param  *node            // next segment is ":name"
	leaf   *leaf            // a pattern ends here
	wild   *leaf            // a trailing "*" hangs here
}

// leaf holds the routes that share one pattern (in one group), by method.
type leaf struct {
	methods []methodRoute
	anyM    int    // route with no methods, or -1
	mask    uint64 // methods the routes with methods allow, HEAD included with GET
}

type methodRoute struct {
	method string
	route  int
}

// find returns the route of l that serves method, or -1.
func (l *leaf) find(method string) int {
	for i := range l.methods {
		if l.methods[i].method == method {
			return l.methods[i].route
		}
	}
	if method == http.MethodHead {
		for i := range l.methods {
			if l.methods[i].method == http.MethodGet {
				return l.methods[i].route
			}
		}
	}
	return l.anyM
}

// New builds a table from routes; Match returns indexes into routes. It fails when a
// route is malformed (a *RouteError wrapping ErrBadPattern, ErrBadHost, ErrBadMethod or
// ErrTooManyMethods) or when two routes share a host, a method and a pattern (a
// *ConflictError wrapping ErrDuplicateRoute); Check lists every such problem, New
// returns the first. Parameter names do not count: "/u/:id" and "/u/:uid" are the same
// pattern. Two routes without methods on the same host and pattern are duplicates too;
// a route with methods and one without may share a pattern (the first takes its
// methods, the second the rest), and so may a route with hosts and one without (the
// first takes its hosts, the second every other host).
func New(routes []Route) (*Table, error) {
	t, errs := build(routes)
	if len(errs) > 0 {
		return nil, errs[0]
	}
	return t, nil
}

// Check returns every problem New would refuse in routes, in route order: a
// *RouteError for each malformed path, host or method, and a *ConflictError for each
// route that serves a host, method and pattern an earlier route already serves (one per
// route, the first found). Config validation calls it, so that what it accepts is
// exactly what New builds.
func Check(routes []Route) []error {
	_, errs := build(routes)
	return errs
}

// build is New, collecting every error. Malformed routes are left out of the table so
// that conflicts between the others are still found; the table is meaningless when
// errs is not empty.
func build(routes []Route) (*Table, []error) {
	type hostRef struct {
		kind hostKind
		key  string
	}
	type parsed struct {
		segs    []segment
		static  bool
		path    string // normalised path, for static patterns
		methods []string
		hosts   []hostRef
		bad     bool
	}
	var errs []error
	ps := make([]parsed, len(routes))
	var methodList []string // distinct methods, in order of appearance
	addMethod := func(m string) bool {
		if slices.Contains(methodList, m) {
			return true
		}
		if len(methodList) == maxMethods {
			return false
		}
		methodList = append(methodList, m)
		return true
	}
	for i, r := range routes {
		p := &ps[i]
		fail := func(field string, elem int, err error) {
			errs = append(errs, &RouteError{Route: i, Field: field, Index: elem, Err: err})
			p.bad = true
		}
		var err error
		if p.segs, p.static, err = parsePattern(r.Path); err != nil {
			fail("path", 0, err)
		} else if p.static {
			p.path = staticPath(p.segs)
		}
		for j, m := range r.Methods {
			if err := ValidateMethod(m); err != nil {
				fail("methods", j, err)
				continue
			}
			m = strings.ToUpper(m)
			if slices.Contains(p.methods, m) {
				continue
			}
			ok := addMethod(m)
			if ok && m == http.MethodGet {
				ok = addMethod(http.MethodHead)
			}
			if !ok {
				fail("methods", j, fmt.Errorf("%w: %q would be the %dth, at most %d", ErrTooManyMethods, m, maxMethods+1, maxMethods))
				continue
			}
			p.methods = append(p.methods, m)
		}
		for j, h := range r.Hosts {
			kind, key, err := parseHost(h)
			if err != nil {
				fail("hosts", j, err)
				continue
			}
			if ref := (hostRef{kind, key}); !slices.Contains(p.hosts, ref) {
				p.hosts = append(p.hosts, ref)
			}
		}
		if len(p.hosts) == 0 {
			p.hosts = []hostRef{{kind: hostAny}}
		}
	}

	t := &Table{
		exact:    make(map[string]*group),
		wild:     make(map[string]*group),
		allow:    make(map[uint64]string),
		names:    make([][]string, len(routes)),
		numRoute: len(routes),
		methods:  slices.Sorted(slices.Values(methodList)),
	}
	bit := func(m string) uint64 { return 1 << uint(slices.Index(t.methods, m)) }

	var leaves []*leaf
	for i := range ps {
		p := &ps[i]
		if p.bad {
			continue
		}
		for _, s := range p.segs {
			if s.kind != segStatic {
				t.names[i] = append(t.names[i], s.text)
			}
		}
		conflict := false
		for _, h := range p.hosts {
			var g *group
			switch h.kind {
			case hostAny:
				if t.any == nil {
					t.any = &group{}
				}
				g = t.any
			case hostExact:
				if g = t.exact[h.key]; g == nil {
					g = &group{}
					t.exact[h.key] = g
				}
			case hostWild:
				if g = t.wild[h.key]; g == nil {
					g = &group{}
					t.wild[h.key] = g
				}
			}
			l, created := g.leafFor(p.segs, p.static, p.path)
			if created {
				leaves = append(leaves, l)
			}
			dup := func(prev int, method string) {
				if conflict {
					return // one conflict per route is enough to report
				}
				conflict = true
				host := ""
				switch h.kind {
				case hostExact:
					host = h.key
				case hostWild:
					host = "*" + h.key
				}
				errs = append(errs, &ConflictError{First: prev, Second: i, Method: method, Pattern: patternKey(p.segs), Host: host})
			}
			if len(p.methods) == 0 {
				if l.anyM >= 0 {
					dup(l.anyM, "")
				} else {
					l.anyM = i
				}
				continue
			}
			for _, m := range p.methods {
				if k := slices.IndexFunc(l.methods, func(mr methodRoute) bool { return mr.method == m }); k >= 0 {
					dup(l.methods[k].route, m)
					continue
				}
				l.methods = append(l.methods, methodRoute{m, i})
				l.mask |= bit(m)
				if m == http.MethodGet {
					l.mask |= bit(http.MethodHead)
				}
			}
		}
	}
	t.hosts = len(t.exact) > 0 || len(t.wild) > 0
	for _, l := range leaves {
		if _, ok := t.allow[l.mask]; !ok {
			t.allow[l.mask] = t.allowString(l.mask)
		}
	}
	return t, errs
}

// leafFor returns the leaf of pattern segs in g, creating it (and created=true) if new.
func (g *group) leafFor(segs []segment, static bool, path string) (l *leaf, created bool) {
	if static {
		if g.static == nil {
			g.static = make(map[string]*leaf)
		}
		if l = g.static[path]; l == nil {
			l = &leaf{anyM: -1}
			g.static[path] = l
			created = true
		}
		return l, created
	}
	if g.root == nil {
		g.root = &node{}
	}
	n := g.root
	for _, s := range segs {
		switch s.kind {
		case segStatic:
			if n.static == nil {
				n.static = make(map[string]*node)
			}
			c := n.static[s.text]
			if c == nil {
				c = &node{}
				n.static[s.text] = c
			}
			n = c
		case segParam:
			if n.param == nil {
				n.param = &node{}
			}
			n = n.param
		case segWild: // always the last segment
			if n.wild == nil {
				n.wild = &leaf{anyM: -1}
				created = true
			}
			return n.wild, created
		}
	}
	if n.leaf == nil {
		n.leaf = &leaf{anyM: -1}
		created = true
	}
	return n.leaf, created
}

// allowString renders a method mask as an Allow header value.
func (t *Table) allowString(mask uint64) string {
	var b strings.Builder
	for i, m := range t.methods {
		if mask&(1<<uint(i)) != 0 {
			if b.Len() > 0 {
				b.WriteString(", ")
			}
			b.WriteString(m)
		}
	}
	return b.String()
}

// Len returns the number of routes the table was built from.
func (t *Table) Len() int { return t.numRoute }

// Match finds the route for a request. host is the request's Host, in any case and
// possibly with a port; path must already be normalised (see Normalize), and a path
// that does not start with '/' matches nothing. Match does not allocate, except to
// build Allow for a 405 whose path matched several patterns with different methods.
func (t *Table) Match(host, method, path string) Result {
	m := matcher{method: method, path: path}
	return t.match(host, &m)
}

// MatchParams is Match that also appends the matched route's path parameters to dst,
// in pattern order, and returns the extended slice (dst unchanged unless Found). It
// does not allocate when dst has room for them.
func (t *Table) MatchParams(host, method, path string, dst []Param) (Result, []Param) {
	m := matcher{method: method, path: path, params: dst, collect: true}
	res := t.match(host, &m)
	if res.Status != Found {
		return res, dst
	}
	ps := m.params[len(dst):]
	for i, name := range t.names[res.Route] {
		ps[i].Key = name
	}
	return res, m.params
}

// matcher is the state of one Match.
type matcher struct {
	method  string
	path    string
	params  []Param // values so far, when collect
	collect bool
	matched bool   // some leaf matched the path (whatever the method)
	mask    uint64 // union of the masks of the leaves that matched the path
}

func (t *Table) match(host string, m *matcher) Result {
	if t == nil || m.path == "" || m.path[0] != '/' {
		return Result{Route: -1}
	}
	if t.hosts {
		var buf [maxHostLen]byte
		if h, ok := requestHost(host, &buf); ok {
			if g := t.exact[string(h)]; g != nil {
				if r := g.match(m); r >= 0 {
					return Result{Route: r, Status: Found}
				}
			}
			if len(t.wild) > 0 {
				for i := 1; i < len(h); i++ {
					if h[i] != '.' {
						continue
					}
					if g := t.wild[string(h[i:])]; g != nil {
						if r := g.match(m); r >= 0 {
							return Result{Route: r, Status: Found}
						}
					}
				}
			}
		}
	}
	if t.any != nil {
		if r := t.any.match(m); r >= 0 {
			return Result{Route: r, Status: Found}
		}
	}
	if m.matched {
		allow, ok := t.allow[m.mask]
		if !ok {
			allow = t.allowString(m.mask)
		}
		return Result{Route: -1, Status: MethodNotAllowed, Allow: allow}
	}
	return Result{Route: -1}
}

// match returns the route of g for m, or -1.
func (g *group) match(m *matcher) int {
	if l := g.static[m.path]; l != nil {
		if r := m.try(l); r >= 0 {
			return r
		}
	}
	if g.root != nil {
		return g.root.match(m, 0)
	}
	return -1
}

// try returns the route of l that serves m's method, or -1 after noting that the
// path matched.
func (m *matcher) try(l *leaf) int {
	r := l.find(m.method)
	if r < 0 {
		m.matched = true
		m.mask |= l.mask
	}
	return r
}

// match walks the tree below n. pos is the index in m.path just after the segments n
// stands for: len(m.path), or the index of the '/' before the next segment.
func (n *node) match(m *matcher, pos int) int {
	path := m.path
	if pos == len(path) {
		if n.leaf != nil {
			if r := m.try(n.leaf); r >= 0 {
				return r
			}
		}
		if n.wild != nil {
			return m.tryWild(n.wild, "")
		}
		return -1
	}
	start := pos + 1
	end := strings.IndexByte(path[start:], '/')
	if end < 0 {
		end = len(path)
	} else {
		end += start
	}
	seg := path[start:end]
	if c := n.static[seg]; c != nil {
		if r := c.match(m, end); r >= 0 {
			return r
		}
	}
	if n.param != nil && seg != "" {
		saved := len(m.params)
		if m.collect {
			m.params = append(m.params, Param{Value: seg})
		}
		if r := n.param.match(m, end); r >= 0 {
			return r
		}
		m.params = m.params[:saved]
	}
	if n.wild != nil {
		return m.tryWild(n.wild, path[start:])
	}
	return -1
}

// tryWild is try for a wildcard leaf whose value is rest.
func (m *matcher) tryWild(l *leaf, rest string) int {
	r := m.try(l)
	if r >= 0 && m.collect {
		m.params = append(m.params, Param{Value: rest})
	}
	return r
}
