package gateway

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

const testSecret = "test-secret-0123456789abcdef-0123456789"

// hs256 builds a token by hand, with no JWT library: the verifier is not trusted to
// make the tokens that test it.
func hs256(t testing.TB, secret string, header, claims map[string]any) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	signing := enc(header) + "." + enc(claims)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(signing))
	return signing + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

const authConfig = `
jwt "users" {
  algorithms     = ["HS256"]
  secret         = env("SECRET")
  issuer         = "infinity-x-one"
  audience       = ["api"]
  forward_claims = { sub = "X-User-Id" }
}
service "a" {
  instance { address = env("A") }
}
route "admin" {
  path    = "/admin"
  service = "a"
  jwt     = "users"
  roles   = ["admin"]
}
route "open" {
  path    = "/open"
  service = "a"
}`

func TestJWTRoute(t *testing.T) {
	b := echoBackend(t, "a")
	g := startGateway(t, authConfig, map[string]string{"A": hostOf(b.Server), "SECRET": testSecret})
	now := time.Now().Unix()
	hdr := map[string]any{"alg": "HS256", "typ": "JWT"}
	claims := func(mut func(map[string]any)) map[string]any {
		c := map[string]any{"sub": "alice", "iss": "infinity-x-one", "aud": "api", "exp": now + 600, "roles": []string{"admin"}}
		if mut != nil {
			mut(c)
		}
		return c
	}
	good := hs256(t, testSecret, hdr, claims(nil))
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." +
		base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"alice","iss":"infinity-x-one","aud":"api","exp":9999999999,"roles":["admin"]}`)) + "."

	cases := []struct {
		name   string
		auth   string
		status int
	}{
		{"valid", "Bearer " + good, 200},
		{"missing", "", 401},
		{"alg none", "Bearer " + none, 401},
		{"wrong key", "Bearer " + hs256(t, "another-secret-0123456789abcdef-0123", hdr, claims(nil)), 401},
		{"expired", "Bearer " + hs256(t, testSecret, hdr, claims(func(c map[string]any) { c["exp"] = now - 3600 })), 401},
		{"not yet valid", "Bearer " + hs256(t, testSecret, hdr, claims(func(c map[string]any) { c["nbf"] = now + 3600 })), 401},
		{"wrong issuer", "Bearer " + hs256(t, testSecret, hdr, claims(func(c map[string]any) { c["iss"] = "evil" })), 401},
		{"wrong audience", "Bearer " + hs256(t, testSecret, hdr, claims(func(c map[string]any) { c["aud"] = "other" })), 401},
		{"missing exp", "Bearer " + hs256(t, testSecret, hdr, claims(func(c map[string]any) { delete(c, "exp") })), 401},
		{"two segments", "Bearer abc.def", 401},
		{"four segments", "Bearer " + good + ".x", 401},
		{"bad base64", "Bearer !!!.@@@.###", 401},
		{"too large", "Bearer " + hs256(t, testSecret, hdr, claims(func(c map[string]any) { c["pad"] = strings.Repeat("x", 9000) })), 401},
		{"no role", "Bearer " + hs256(t, testSecret, hdr, claims(func(c map[string]any) { c["roles"] = []string{"reader"} })), 403},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := b.hits.Load()
			var hdrs []string
			if c.auth != "" {
				hdrs = []string{"Authorization", c.auth}
			}
			resp, body := get(t, g.URL+"/admin", hdrs...)
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.status, body)
			}
			if c.status == 200 {
				return
			}
			if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Fatalf("WWW-Authenticate %q", resp.Header.Get("WWW-Authenticate"))
			}
			if c.status == 401 && c.auth != "" && !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_`) {
				t.Fatalf("WWW-Authenticate without an RFC 6750 error: %q", resp.Header.Get("WWW-Authenticate"))
			}
			if b.hits.Load() != before {
				t.Fatal("a refused request reached the upstream")
			}
		})
	}

	t.Run("forged X-User-Id never reaches the upstream", func(t *testing.T) {
		_, body := get(t, g.URL+"/admin", "Authorization", "Bearer "+good, "X-User-Id", "root")
		if got := decodeSeen(t, body).Header.Values("X-User-Id"); len(got) != 1 || got[0] != "alice" {
			t.Fatalf("upstream saw X-User-Id %q", got)
		}
		// Not even on a route without jwt.
		_, body = get(t, g.URL+"/open", "X-User-Id", "root")
		if got := decodeSeen(t, body).Header.Get("X-User-Id"); got != "" {
			t.Fatalf("upstream saw forged X-User-Id %q on an open route", got)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		var sb strings.Builder
		mfs, _ := g.metrics.Registry.Gather()
		for _, mf := range mfs {
			if mf.GetName() == "gateway_jwt_validations_total" {
				for _, m := range mf.GetMetric() {
					if m.GetCounter().GetValue() > 0 {
						sb.WriteString(m.GetLabel()[1].GetValue() + " ")
					}
				}
			}
		}
		for _, want := range []string{"ok", "expired", "bad_signature", "forbidden", "missing"} {
			if !strings.Contains(sb.String(), want) {
				t.Errorf("no %q in jwt results %q", want, sb.String())
			}
		}
	})
}
