package router

// Normalize turns a raw request path (the escaped form: r.URL.EscapedPath() or the
// path part of r.RequestURI) into the canonical form the router matches on and the
// gateway sends upstream:
//
//   - a percent-escape of an unreserved character (ALPHA DIGIT - . _ ~) is decoded:
//     %41 is A, %2e%2e is "..";
//   - every other percent-escape is kept, its hex upper-cased (%2f becomes %2F); an
//     encoded slash therefore never splits a segment;
//   - a byte that may not appear in a path (space, non-ASCII, " < > \ ^ ` { | } …) is
//     percent-encoded, as url.URL.EscapedPath does;
//   - empty segments (repeated slashes) and "." segments are removed, ".." removes the
//     segment before it (RFC 3986 §5.2.4); a trailing slash is preserved, and a path
//     ending in "." or ".." ends with a slash ("/a/b/.." is "/a/");
//   - the empty path is "/".
//
// ok is false when the path climbs above "/" ("/a/../.."), holds a malformed escape
// ("%zz", "%4") or does not start with a slash (including the "*" of "OPTIONS *"); the
// gateway answers 400 then.
//
// A path that is already normal, the common case, is returned as is without
// allocating. Normalize(Normalize(p)) == Normalize(p).
func Normalize(p string) (clean string, ok bool) {
	if p == "" {
		return "/", true
	}
	if p[0] != '/' {
		return "", false
	}
	if isNormal(p) {
		return p, true
	}
	return normalizeSlow(p)
}

// isNormal reports whether p (starting with '/') is already in the form Normalize
// produces.
func isNormal(p string) bool {
	seg := 1 // start of the current segment
	for i := 1; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '/':
			if s := p[seg:i]; s == "" || s == "." || s == ".." {
				return false
			}
			seg = i + 1
		case c == '%':
			if i+2 >= len(p) {
				return false
			}
			hi, lo := p[i+1], p[i+2]
			if !isUpperHex(hi) || !isUpperHex(lo) || isUnreserved(unhex(hi)<<4|unhex(lo)) {
				return false
			}
			i += 2
		case !isPchar(c):
			return false
		}
	}
	s := p[seg:]
	return s != "." && s != ".."
}

// normalizeSlow builds the normal form of p, which starts with '/'.
func normalizeSlow(p string) (string, bool) {
	buf := make([]byte, 0, len(p)+8)
	trailing := false
	for i := 1; i <= len(p); {
		j := i
		for j < len(p) && p[j] != '/' {
			j++
		}
		start := len(buf)
		buf = append(buf, '/')
		var ok bool
		buf, ok = appendSegment(buf, p[i:j])
		if !ok {
			return "", false
		}
		switch s := buf[start+1:]; {
		case len(s) == 0, len(s) == 1 && s[0] == '.':
			buf = buf[:start]
			trailing = true
		case len(s) == 2 && s[0] == '.' && s[1] == '.':
			buf = buf[:start]
			if len(buf) == 0 {
				return "", false // climbs above "/"
			}
			k := len(buf) - 1
			for buf[k] != '/' {
				k--
			}
			buf = buf[:k]
			trailing = true
		default:
			trailing = false
		}
		i = j + 1
	}
	if len(buf) == 0 || trailing {
		buf = append(buf, '/')
	}
	return string(buf), true
}

// appendSegment appends the canonical form of one path segment (no '/' in it) to buf.
// It reports false on a malformed percent-escape.
func appendSegment(buf []byte, seg string) ([]byte, bool) {
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		switch {
		case c == '%':
			if i+2 >= len(seg) || !isHex(seg[i+1]) || !isHex(seg[i+2]) {
				return buf, false
			}
			hi, lo := unhex(seg[i+1]), unhex(seg[i+2])
			if b := hi<<4 | lo; isUnreserved(b) {
				buf = append(buf, b)
			} else {
				buf = append(buf, '%', upperHex[hi], upperHex[lo])
			}
			i += 2
		case isPchar(c):
			buf = append(buf, c)
		default:
			buf = append(buf, '%', upperHex[c>>4], upperHex[c&15])
		}
	}
	return buf, true
}

const upperHex = "0123456789ABCDEF"

// isUnreserved reports whether c is an RFC 3986 unreserved character.
func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// isPchar reports whether c may appear unescaped in a path segment (RFC 3986 pchar,
// minus the '%' of pct-encoded, which callers handle).
func isPchar(c byte) bool {
	if isUnreserved(c) {
		return true
	}
	switch c {
	case '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=', ':', '@':
		return true
	}
	return false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isUpperHex(c byte) bool {
	return '0' <= c && c <= '9' || 'A' <= c && c <= 'F'
}

// unhex returns the value of the hex digit c, which the caller has checked.
func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
