package cache

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pquerna/cachecontrol/cacheobject"
)

// Request is a request as the cache sees it, made by Classify.
type Request struct {
	// Key is the primary cache key: method (HEAD looks up GET), host, path and sorted query.
	Key    string
	Method string
	Header http.Header
	// Bypass: the cache takes no part (a method other than GET/HEAD, a Range request).
	Bypass bool
	// NoCache: a stored answer may not be used without going upstream (request
	// no-cache, Pragma: no-cache, max-age=0); the fresh answer may still be stored.
	NoCache bool
	// NoStore: nothing of this exchange is stored (request no-store).
	NoStore bool
	// MaxAge is the request's max-age (-1: none): an older stored answer is not used.
	MaxAge time.Duration
	// MinFresh is the request's min-fresh: the answer must stay fresh that much longer.
	MinFresh time.Duration
}

// Classify reads a request's method, target and Cache-Control. path must be the
// normalised path; rawQuery the query as received.
func Classify(method, host, path, rawQuery string, h http.Header) Request {
	r := Request{Method: method, Header: h, MaxAge: -1}
	if (method != http.MethodGet && method != http.MethodHead) || h.Get("Range") != "" {
		r.Bypass = true
		return r
	}
	r.Key = Key(host, path, rawQuery)
	if cc := h.Values("Cache-Control"); len(cc) > 0 {
		d, err := cacheobject.ParseRequestCacheControl(strings.Join(cc, ","))
		if err == nil {
			r.NoCache = d.NoCache
			r.NoStore = d.NoStore
			if d.MaxAge >= 0 {
				r.MaxAge = time.Duration(d.MaxAge) * time.Second
				if d.MaxAge == 0 {
					r.NoCache = true
				}
			}
			if d.MinFresh > 0 {
				r.MinFresh = time.Duration(d.MinFresh) * time.Second
			}
		}
	} else if strings.Contains(strings.ToLower(h.Get("Pragma")), "no-cache") {
		r.NoCache = true // RFC 9111 §5.4: Pragma only counts without Cache-Control
	}
	return r
}

// Key is the primary cache key of a GET: host (lower-cased, default port dropped),
// normalised path and the query with its parameters sorted (their encoding kept).
func Key(host, path, rawQuery string) string {
	host = strings.ToLower(strings.TrimSuffix(host, ":80"))
	var b strings.Builder
	b.Grow(len(host) + len(path) + len(rawQuery) + 8)
	b.WriteString("GET ")
	b.WriteString(host)
	b.WriteString(path)
	if rawQuery != "" {
		params := strings.Split(rawQuery, "&")
		params = slices.DeleteFunc(params, func(s string) bool { return s == "" })
		slices.Sort(params)
		if len(params) > 0 {
			b.WriteByte('?')
			b.WriteString(strings.Join(params, "&"))
		}
	}
	return b.String()
}

// variantKey is the key of the variant of key selected by the Vary headers' values.
func variantKey(key string, vary, values []string) string {
	var b strings.Builder
	b.WriteString(key)
	for i := range vary {
		b.WriteString("\x00")
		b.WriteString(vary[i])
		b.WriteString("=")
		b.WriteString(values[i])
	}
	return b.String()
}

// varyValue is a request's value of a Vary header, whitespace around commas removed,
// so that "en, fr" and "en,fr" select one variant.
func varyValue(h http.Header, name string) string {
	vv := h.Values(name)
	if len(vv) == 0 {
		return ""
	}
	parts := make([]string, 0, 2)
	for _, v := range vv {
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
	}
	return strings.Join(parts, ",")
}

// parseVary returns the canonical header names of Vary, sorted; star reports "*".
func parseVary(h http.Header) (names []string, star bool) {
	for _, v := range h.Values("Vary") {
		for f := range strings.SplitSeq(v, ",") {
			f = strings.TrimSpace(f)
			switch f {
			case "":
				continue
			case "*":
				return nil, true
			}
			f = http.CanonicalHeaderKey(f)
			if !slices.Contains(names, f) {
				names = append(names, f)
			}
		}
	}
	slices.Sort(names)
	return names, false
}

// Reason says why an answer is not stored ("" when it is).
type Reason string

// Reasons an answer is not stored.
const (
	Storable          Reason = ""
	ReasonMethod      Reason = "method"        // not a GET
	ReasonRequest     Reason = "request"       // the request said no-store
	ReasonStatus      Reason = "status"        // a status the cache does not store
	ReasonNoStore     Reason = "no-store"      // response no-store
	ReasonPrivate     Reason = "private"       // response private
	ReasonNoCache     Reason = "no-cache"      // response no-cache: would need revalidation each time
	ReasonCookie      Reason = "set-cookie"    // response sets a cookie
	ReasonAuth        Reason = "authorization" // request with Authorization, response not public/s-maxage
	ReasonVaryStar    Reason = "vary"          // Vary: *
	ReasonNoFreshness Reason = "no-freshness"  // no lifetime and no default_ttl
	ReasonBadHeader   Reason = "cache-control" // unparsable Cache-Control
)

// heuristic lists the statuses cacheable by default (RFC 9110 §15.1), to which
// default_ttl applies; understood lists every status this cache stores at all.
var (
	heuristic  = []int{200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501}
	understood = []int{200, 203, 204, 300, 301, 302, 307, 308, 404, 405, 410, 414, 501}
)

// Decide judges an upstream answer to req (RFC 9111 §3, shared cache). now is when the
// answer arrived. It returns the freshness lifetime, or the reason it is not stored.
func Decide(req *Request, status int, h http.Header, now time.Time, defaultTTL time.Duration) (time.Duration, Reason) {
	switch {
	case req.Method != http.MethodGet:
		return 0, ReasonMethod
	case req.NoStore:
		return 0, ReasonRequest
	case !slices.Contains(understood, status):
		return 0, ReasonStatus
	}
	d, err := cacheobject.ParseResponseCacheControl(strings.Join(h.Values("Cache-Control"), ","))
	if err != nil {
		return 0, ReasonBadHeader
	}
	switch {
	case d.NoStore:
		return 0, ReasonNoStore
	case d.PrivatePresent:
		return 0, ReasonPrivate
	case d.NoCachePresent:
		return 0, ReasonNoCache
	case len(h["Set-Cookie"]) > 0:
		return 0, ReasonCookie
	case req.Header.Get("Authorization") != "" && !d.Public && d.SMaxAge < 0:
		return 0, ReasonAuth
	}
	if _, star := parseVary(h); star {
		return 0, ReasonVaryStar
	}
	var life time.Duration
	switch {
	case d.SMaxAge >= 0:
		life = time.Duration(d.SMaxAge) * time.Second
	case d.MaxAge >= 0:
		life = time.Duration(d.MaxAge) * time.Second
	case h.Get("Expires") != "":
		exp, err := http.ParseTime(h.Get("Expires"))
		if err != nil {
			return 0, ReasonNoFreshness // an invalid Expires means "already expired"
		}
		date, err := http.ParseTime(h.Get("Date"))
		if err != nil {
			date = now
		}
		life = exp.Sub(date)
	case slices.Contains(heuristic, status) || d.Public:
		life = defaultTTL
	}
	if life <= 0 {
		return 0, ReasonNoFreshness
	}
	return life, Storable
}

// initialAge is the corrected initial age of an answer (RFC 9111 §4.2.3): requested
// is when the request went upstream, received when the answer arrived.
func initialAge(h http.Header, requested, received time.Time) time.Duration {
	var apparent time.Duration
	if date, err := http.ParseTime(h.Get("Date")); err == nil {
		apparent = max(0, received.Sub(date))
	}
	var ageValue time.Duration
	if a, err := strconv.ParseInt(strings.TrimSpace(h.Get("Age")), 10, 64); err == nil && a > 0 {
		ageValue = time.Duration(a) * time.Second
	}
	corrected := ageValue + max(0, received.Sub(requested))
	return max(apparent, corrected)
}

// Usable reports whether a stored entry may answer req at now without going upstream.
func Usable(e *Entry, req *Request, now time.Time) bool {
	if req.NoCache || !e.Fresh(now) {
		return false
	}
	age := e.Age(now)
	if req.MaxAge >= 0 && age > req.MaxAge {
		return false
	}
	return req.MinFresh <= 0 || e.Lifetime-age >= req.MinFresh
}
