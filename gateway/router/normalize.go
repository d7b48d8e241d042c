package router

// Normalize turns a raw request path (the escaped form: r.URL.EscapedPath() or the
// path part of r.RequestURI) into the canonical form the router matches on and the
// gateway sends upstream:
//
//   - a percent-escape of an unreserved character (ALPHA DIGIT - . _ ~) is decoded:
//     %41 is A, %2e%2e is "..";
//   - every other percent-escape is kept, its hex upper-cased (%2f becomes %2F); an
//     encoded slash therefore never splits a segment (but see dot segments below);
//   - a byte that may not appear in a path (space, non-ASCII, " < > \ ^ ` { | } …) is
//     percent-encoded, as url.URL.EscapedPath does;
//   - empty segments (repeated slashes) and "." segments are removed, ".." removes the
//     segment before it (RFC 3986 §5.2.4); a trailing slash is preserved, and a path
//     ending in "." or ".." ends with a slash ("/a/b/.." is "/a/");
//   - the empty path is "/".
//
// Dot segments hidden from that rule count as dot segments, because a backend that
// decodes the path before cleaning it would read them as such: a piece of a segment
// between encoded slashes or backslashes (%2F, %5C, or a raw '\') that is "." or "..",
// and a "." or ".." followed by parameters (";x", "%3Bx", which servlet containers
// strip). A segment holding one is split at its encoded separators into real segments
// and the dot segments among them are applied, parameters dropped:
// "/api/users/..%2f..%2fapi%2fme" is "/api/me", "/a/..;x/b" is "/b". A segment
// without hidden dot segments keeps its encoded slashes ("/a%2Fb" stays one segment).
// So the upstream never receives a segment a decoding backend would read as "..".
//
// ok is false when the path climbs above "/" ("/a/../..", "/a/..%2f..%2f.."), holds a
// malformed escape ("%zz", "%4") or does not start with a slash (including the "*" of
// "OPTIONS *"); the gateway answers 400 then.
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
// produces. Only a segment with a '.' in it can be or hide a dot segment, so only
// those are looked at twice.
func isNormal(p string) bool {
	seg := 1     // start of the current segment
	dot := false // the current segment has a '.'
	for i := 1; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '/':
			if i == seg || dot && hidesDot(p[seg:i]) {
				return false
			}
			seg, dot = i+1, false
		case c == '.':
			dot = true
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
	return !dot || !hidesDot(p[seg:])
}

// dotPiece returns 1 for a "." piece, 2 for a ".." piece (parameters ignored), else 0.
// piece is canonical: escapes upper-case, unreserved characters decoded.
func dotPiece[T string | []byte](piece T) int {
	end := len(piece)
	for i := 0; i < len(piece); i++ {
		if piece[i] == ';' || piece[i] == '%' && i+2 < len(piece) && piece[i+1] == '3' && piece[i+2] == 'B' {
			end = i
			break
		}
	}
	switch {
	case end == 1 && piece[0] == '.':
		return 1
	case end == 2 && piece[0] == '.' && piece[1] == '.':
		return 2
	}
	return 0
}

// nextSeparator returns the index in the canonical segment seg of the first encoded
// slash or backslash (%2F, %5C) at or after from, or len(seg).
func nextSeparator[T string | []byte](seg T, from int) int {
	for i := from; i+2 < len(seg); i++ {
		if seg[i] == '%' && (seg[i+1] == '2' && seg[i+2] == 'F' || seg[i+1] == '5' && seg[i+2] == 'C') {
			return i
		}
	}
	return len(seg)
}

// hidesDot reports whether the canonical segment seg is a dot segment or holds one
// between encoded separators or before parameters (see Normalize).
func hidesDot[T string | []byte](seg T) bool {
	for from := 0; ; {
		end := nextSeparator(seg, from)
		if dotPiece(seg[from:end]) > 0 {
			return true
		}
		if end == len(seg) {
			return false
		}
		from = end + 3
	}
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
		switch seg := buf[start+1:]; {
		case len(seg) == 0:
			buf = buf[:start]
			trailing = true
		case hidesDot(seg):
			if buf, trailing, ok = splitDots(buf, start); !ok {
				return "", false // climbs above "/"
			}
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

// splitDots rewrites the canonical segment written at buf[start:] ("/" then the
// segment) as real segments, one per piece between encoded separators, applying the
// dot pieces to what precedes them; parameters of dot pieces go with them. It works in
// place: what it writes never overtakes what it still has to read. trailing reports
// that the last piece was a dot or empty piece (the path then keeps a trailing slash);
// ok is false when a ".." climbs above "/".
func splitDots(buf []byte, start int) (out []byte, trailing, ok bool) {
	end := len(buf)
	w := start // next write position
	for r := start + 1; ; {
		q := nextSeparator(buf[:end], r)
		piece := buf[r:q]
		trailing = true
		switch dotPiece(piece) {
		case 0:
			if len(piece) > 0 {
				buf[w] = '/'
				w += 1 + copy(buf[w+1:], piece)
				trailing = false
			}
		case 2:
			if w == 0 {
				return nil, false, false
			}
			for w--; buf[w] != '/'; w-- {
			}
		}
		if q == end {
			return buf[:w], trailing, true
		}
		r = q + 3
	}
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
