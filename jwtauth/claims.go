package jwtauth

import (
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Claims are the claims of a verified token. The exported fields are the registered
// claims (zero when absent); everything else is read through Roles and Claim. A Claims is
// immutable and safe for concurrent reads.
type Claims struct {
	Subject   string
	Issuer    string
	Audience  []string
	ExpiresAt time.Time
	NotBefore time.Time
	IssuedAt  time.Time
	ID        string

	roles []string
	m     map[string]any
}

func newClaims(mc jwt.MapClaims, rolesClaim string) *Claims {
	c := &Claims{m: mc}
	c.Subject, _ = mc.GetSubject()
	c.Issuer, _ = mc.GetIssuer()
	if aud, err := mc.GetAudience(); err == nil && len(aud) > 0 {
		c.Audience = aud
	}
	if t, _ := mc.GetExpirationTime(); t != nil {
		c.ExpiresAt = t.Time
	}
	if t, _ := mc.GetNotBefore(); t != nil {
		c.NotBefore = t.Time
	}
	if t, _ := mc.GetIssuedAt(); t != nil {
		c.IssuedAt = t.Time
	}
	c.ID, _ = mc["jti"].(string)
	if v, ok := lookupClaim(mc, rolesClaim); ok {
		c.roles = rolesOf(v)
	}
	return c
}

// Roles returns the roles found in the provider's RolesClaim: the strings of an array
// (other elements skipped), or the space-separated words of a string (OAuth "scope").
// It is nil when the claim is absent or of another type. The caller must not modify it.
func (c *Claims) Roles() []string { return c.roles }

// HasAnyRole reports whether the token carries at least one of required. An empty
// required list is satisfied by any token.
func (c *Claims) HasAnyRole(required []string) bool {
	if len(required) == 0 {
		return true
	}
	for _, have := range c.roles {
		for _, want := range required {
			if have == want {
				return true
			}
		}
	}
	return false
}

// Claim returns the claim name rendered as a string, for forwarded headers and rate-limit
// keys. name is a top-level claim, or, when no claim has that exact name, a dotted path
// into nested objects ("realm_access.roles"). Strings are returned as they are; numbers
// in decimal without exponent when they are integers below 2^53 (else Go's shortest 'g'
// form); booleans as "true"/"false"; an array of such scalars as its elements joined with
// ",". Objects, null, and arrays holding them yield ("", false), as does a missing claim.
func (c *Claims) Claim(name string) (string, bool) {
	v, ok := lookupClaim(c.m, name)
	if !ok {
		return "", false
	}
	if list, ok := v.([]any); ok {
		var b strings.Builder
		for i, e := range list {
			s, ok := scalar(e)
			if !ok {
				return "", false
			}
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(s)
		}
		return b.String(), true
	}
	return scalar(v)
}

// lookupClaim finds name in m, first as a key, then as a dotted path.
func lookupClaim(m map[string]any, name string) (any, bool) {
	if v, ok := m[name]; ok {
		return v, true
	}
	if !strings.Contains(name, ".") {
		return nil, false
	}
	var cur any = m
	for rest := name; ; {
		seg, tail, more := strings.Cut(rest, ".")
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = obj[seg]; !ok {
			return nil, false
		}
		if !more {
			return cur, true
		}
		rest = tail
	}
}

func scalar(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case bool:
		return strconv.FormatBool(x), true
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return strconv.FormatInt(int64(x), 10), true
		}
		return strconv.FormatFloat(x, 'g', -1, 64), true
	}
	return "", false
}

func rolesOf(v any) []string {
	switch x := v.(type) {
	case string:
		return strings.Fields(x)
	case []any:
		roles := make([]string, 0, len(x))
		for _, e := range x {
			if s, ok := e.(string); ok && s != "" {
				roles = append(roles, s)
			}
		}
		return roles
	}
	return nil
}
