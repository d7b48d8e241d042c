package router

import (
	"errors"
	"fmt"
	"strings"
)

// Errors returned by New and ValidatePattern, wrapped with details; match them with
// errors.Is.
var (
	// ErrBadPattern: a route path that is not a valid pattern.
	ErrBadPattern = errors.New("malformed path pattern")
	// ErrBadHost: a route host that is not a host name, "*.suffix" or "[IPv6]".
	ErrBadHost = errors.New("malformed host")
	// ErrBadMethod: a route method that is not an HTTP token.
	ErrBadMethod = errors.New("malformed method")
	// ErrDuplicateRoute: two routes with the same host, method and pattern.
	ErrDuplicateRoute = errors.New("duplicate route")
	// ErrTooManyMethods: more than 64 distinct methods in one table.
	ErrTooManyMethods = errors.New("too many distinct methods")
	// ErrBadPrefix: a strip prefix that is not whole leading static segments of its
	// route's pattern.
	ErrBadPrefix = errors.New("malformed strip prefix")
)

type segKind uint8

const (
	segStatic segKind = iota // text is the canonical segment
	segParam                 // ":name"; text is the name
	segWild                  // "*" or "*name", last segment only; text is the name ("*" if none)
)

type segment struct {
	kind segKind
	text string
}

// ValidatePattern reports whether p is a valid route path pattern, with an error
// wrapping ErrBadPattern that says what is wrong.
//
// A pattern starts with '/' and is made of segments separated by single slashes:
//
//   - a static segment is matched literally after both sides are normalised as
//     Normalize does ("/café" and "/caf%C3%A9" are the same pattern); "." and ".."
//     segments and empty segments are refused, a trailing slash is allowed and
//     significant ("/a/" does not match "/a"); so are segments that normalisation
//     treats as dot segments ("%2e%2e", "..%2Fx", "..;x");
//   - ":name" matches one non-empty segment; name is [A-Za-z_][A-Za-z0-9_]*; a ':'
//     later in a segment is literal ("/v1/things:batchGet");
//   - "*" or "*name", only as the last segment, matches the rest of the path, even
//     nothing: "/files/*" matches "/files", "/files/" and "/files/a/b";
//   - '*' anywhere else is refused; names are unique within a pattern.
func ValidatePattern(p string) error {
	_, _, err := parsePattern(p)
	return err
}

// parsePattern splits p into segments; static is true when every segment is static
// (staticPath then gives the normalised path the pattern matches).
func parsePattern(p string) (segs []segment, static bool, err error) {
	bad := func(reason string) error {
		return fmt.Errorf("%w %q: %s", ErrBadPattern, p, reason)
	}
	if p == "" || p[0] != '/' {
		return nil, false, bad("must start with '/'")
	}
	static = true
	raw := strings.Split(p[1:], "/")
	names := make(map[string]bool)
	for i, s := range raw {
		last := i == len(raw)-1
		switch {
		case s == "":
			if !last {
				return nil, false, bad("empty segment (repeated '/')")
			}
			segs = append(segs, segment{kind: segStatic})
		case s[0] == ':':
			name := s[1:]
			if !isName(name) {
				return nil, false, bad(fmt.Sprintf("parameter %q: name must match [A-Za-z_][A-Za-z0-9_]*", s))
			}
			if names[name] {
				return nil, false, bad(fmt.Sprintf("parameter name %q used twice", name))
			}
			names[name] = true
			segs = append(segs, segment{kind: segParam, text: name})
			static = false
		case s[0] == '*':
			if !last {
				return nil, false, bad("'*' is allowed only as the last segment")
			}
			name := s[1:]
			if name == "" {
				name = "*"
			} else if !isName(name) {
				return nil, false, bad(fmt.Sprintf("wildcard %q: name must match [A-Za-z_][A-Za-z0-9_]*", s))
			}
			if names[name] {
				return nil, false, bad(fmt.Sprintf("parameter name %q used twice", name))
			}
			segs = append(segs, segment{kind: segWild, text: name})
			static = false
		case strings.IndexByte(s, '*') >= 0:
			return nil, false, bad("'*' is allowed only as a whole last segment (\"*\" or \"*name\")")
		default:
			b, ok := appendSegment(nil, s)
			if !ok {
				return nil, false, bad(fmt.Sprintf("segment %q: malformed percent-escape", s))
			}
			if hidesDot(b) {
				return nil, false, bad(fmt.Sprintf("segment %q: dot segments never survive normalisation", s))
			}
			segs = append(segs, segment{kind: segStatic, text: string(b)})
		}
	}
	return segs, static, nil
}

// CanonicalPrefix checks a prefix to strip from the paths a pattern matches, and
// returns it in the normalised form those paths start with ("/caf%C3%A9" for "/café",
// "/Api" for "/%41pi"), which is what a caller compares with a normalised path. The
// prefix must start with '/' and be whole leading static segments of the pattern; a
// trailing slash is kept; "/" strips nothing. An error wraps ErrBadPattern when the
// pattern itself is malformed, ErrBadPrefix otherwise.
func CanonicalPrefix(pattern, prefix string) (string, error) {
	segs, _, err := parsePattern(pattern)
	if err != nil {
		return "", err
	}
	bad := func(reason string) (string, error) {
		return "", fmt.Errorf("%w %q: %s", ErrBadPrefix, prefix, reason)
	}
	if prefix == "" || prefix[0] != '/' {
		return bad("must start with '/'")
	}
	inner := strings.TrimSuffix(prefix[1:], "/")
	if inner == "" {
		return prefix, nil
	}
	var b []byte
	for i, s := range strings.Split(inner, "/") {
		n := len(b)
		b = append(b, '/')
		var ok bool
		if b, ok = appendSegment(b, s); !ok {
			return bad(fmt.Sprintf("segment %q: malformed percent-escape", s))
		}
		c := string(b[n+1:])
		if i >= len(segs) || segs[i].kind != segStatic || segs[i].text != c || c == "" {
			return bad(fmt.Sprintf("is not a leading part of path %q", pattern))
		}
	}
	if strings.HasSuffix(prefix, "/") {
		b = append(b, '/')
	}
	return string(b), nil
}

// staticPath joins static segments back into the normalised path they match.
func staticPath(segs []segment) string {
	var b strings.Builder
	for _, s := range segs {
		b.WriteByte('/')
		b.WriteString(s.text)
	}
	return b.String()
}

// patternKey is the pattern with parameter names dropped, for messages:
// "/users/:id" and "/users/:uid" are the same pattern.
func patternKey(segs []segment) string {
	var b strings.Builder
	for _, s := range segs {
		b.WriteByte('/')
		switch s.kind {
		case segStatic:
			b.WriteString(s.text)
		case segParam:
			b.WriteByte(':')
		case segWild:
			b.WriteByte('*')
		}
	}
	return b.String()
}

func isName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9' {
			continue
		}
		return false
	}
	return true
}
