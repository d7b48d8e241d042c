package jwtauth

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestVerifyValidTokens(t *testing.T) {
	k := sharedKeys()
	clk := newClock()
	hs := newVerifier(t, Provider{Name: "hs", Secret: k.secret, Algorithms: []string{"HS256", "HS384", "HS512"}, Now: clk.Now})
	rsFile := writeFile(t, "rsa.pem", k.rsaPEM)
	rs := newVerifier(t, Provider{Name: "rs", PublicKeyFile: rsFile, Algorithms: []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}, Now: clk.Now})
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&k.rsa.PublicKey)})
	rsPKCS1 := newVerifier(t, Provider{PublicKeyFile: writeFile(t, "rsa1.pem", pkcs1), Now: clk.Now})
	rsCert := newVerifier(t, Provider{PublicKeyFile: writeFile(t, "cert.pem", certPEM(t, &k.rsa.PublicKey, k.rsa)), Now: clk.Now})
	ec := newVerifier(t, Provider{PublicKeyFile: writeFile(t, "ec.pem", pkixPEM(&k.p256.PublicKey), pkixPEM(&k.p384.PublicKey), pkixPEM(&k.p521.PublicKey)), Now: clk.Now})
	ecCert := newVerifier(t, Provider{PublicKeyFile: writeFile(t, "eccert.pem", certPEM(t, &k.p256.PublicKey, k.p256)), Now: clk.Now})
	ed := newVerifier(t, Provider{PublicKeyFile: writeFile(t, "ed.pem", pkixPEM(k.ed.Public())), Now: clk.Now})

	if got := strings.Join(ec.Algorithms(), ","); got != "ES256,ES384,ES512" {
		t.Errorf("EC file default algorithms = %s", got)
	}
	cases := []struct {
		name string
		v    *Verifier
		alg  string
		sign signer
	}{
		{"HS256", hs, "HS256", hsSigner(sha256.New, k.secret)},
		{"HS384", hs, "HS384", hsSigner(sha512.New384, k.secret)},
		{"HS512", hs, "HS512", hsSigner(sha512.New, k.secret)},
		{"RS256", rs, "RS256", rsSigner(crypto.SHA256, k.rsa)},
		{"RS384", rs, "RS384", rsSigner(crypto.SHA384, k.rsa)},
		{"RS512", rs, "RS512", rsSigner(crypto.SHA512, k.rsa)},
		{"PS256", rs, "PS256", psSigner(crypto.SHA256, k.rsa)},
		{"PS384", rs, "PS384", psSigner(crypto.SHA384, k.rsa)},
		{"PS512", rs, "PS512", psSigner(crypto.SHA512, k.rsa)},
		{"RS256 PKCS#1 PEM", rsPKCS1, "RS256", rsSigner(crypto.SHA256, k.rsa)},
		{"RS256 certificate", rsCert, "RS256", rsSigner(crypto.SHA256, k.rsa)},
		{"ES256", ec, "ES256", esSigner(crypto.SHA256, k.p256)},
		{"ES384", ec, "ES384", esSigner(crypto.SHA384, k.p384)},
		{"ES512", ec, "ES512", esSigner(crypto.SHA512, k.p521)},
		{"ES256 certificate", ecCert, "ES256", esSigner(crypto.SHA256, k.p256)},
		{"EdDSA", ed, "EdDSA", edSigner(k.ed)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok := jws(t, hdr(tc.alg), claimsAt(map[string]any{"jti": "id-7", "aud": "api"}), tc.sign)
			c, err := tc.v.Verify(context.Background(), tok)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if c.Subject != "user-1" || c.ID != "id-7" || !c.ExpiresAt.Equal(t0.Add(time.Hour)) ||
				!c.IssuedAt.Equal(t0) || len(c.Audience) != 1 || c.Audience[0] != "api" {
				t.Errorf("claims = %+v", c)
			}
		})
	}
}

func TestVerifyAttacks(t *testing.T) {
	k := sharedKeys()
	clk := newClock()
	hs := newVerifier(t, Provider{Name: "hs", Secret: k.secret, Issuer: "idp", Audience: []string{"api", "web"}, Now: clk.Now})
	rsFile := writeFile(t, "rsa.pem", k.rsaPEM)
	rs := newVerifier(t, Provider{Name: "rs", PublicKeyFile: rsFile, Algorithms: []string{"RS256"}, Issuer: "idp", Audience: []string{"api"}, Now: clk.Now})
	ed := newVerifier(t, Provider{Name: "ed", PublicKeyFile: writeFile(t, "ed.pem", pkixPEM(k.ed.Public())), Now: clk.Now})
	lenient := newVerifier(t, Provider{Name: "lenient", Secret: k.secret, Leeway: 2 * time.Minute, Now: clk.Now})

	hs256 := hsSigner(sha256.New, k.secret)
	rs256 := rsSigner(crypto.SHA256, k.rsa)
	good := func(extra map[string]any) map[string]any {
		return claimsAt(mergeMaps(map[string]any{"iss": "idp", "aud": "api"}, extra))
	}
	validHS := jws(t, hdr("HS256"), good(nil), hs256)
	validRS := jws(t, hdr("RS256"), good(nil), rs256)
	hsParts := strings.Split(validHS, ".")

	cases := []struct {
		name  string
		v     *Verifier
		token string
		want  error // nil = valid
	}{
		{"valid HS256", hs, validHS, nil},
		{"valid RS256", rs, validRS, nil},
		{"alg none on HS provider", hs, jws(t, hdr("none"), good(nil), nil), ErrAlgorithm},
		{"alg none on RS provider", rs, jws(t, hdr("none"), good(nil), nil), ErrAlgorithm},
		{"alg None spelled oddly", hs, jws(t, hdr("None"), good(nil), nil), ErrAlgorithm},
		{"alg none with a signature", hs, jws(t, hdr("none"), good(nil), hs256), ErrAlgorithm},
		{"alg missing", hs, jws(t, map[string]any{"typ": "JWT"}, good(nil), hs256), ErrAlgorithm},
		{"HS256 keyed with the RS public key PEM", rs, jws(t, hdr("HS256"), good(nil), hsSigner(sha256.New, k.rsaPEM)), ErrAlgorithm},
		{"HS256 keyed with the RS public key DER", rs, jws(t, hdr("HS256"), good(nil), hsSigner(sha256.New, mustDER(t, &k.rsa.PublicKey))), ErrAlgorithm},
		{"RS256 on HS provider", hs, validRS, ErrAlgorithm},
		{"PS256 on RS256-only provider", rs, jws(t, hdr("PS256"), good(nil), psSigner(crypto.SHA256, k.rsa)), ErrAlgorithm},
		{"HS384 on HS256-only provider", hs, jws(t, hdr("HS384"), good(nil), hsSigner(sha512.New384, k.secret)), ErrAlgorithm},
		{"EdDSA token on RS provider", rs, jws(t, hdr("EdDSA"), good(nil), edSigner(k.ed)), ErrAlgorithm},
		{"HS256 with another secret", hs, jws(t, hdr("HS256"), good(nil), hsSigner(sha256.New, k.otherSecret)), ErrBadSignature},
		{"RS256 by another key", rs, jws(t, hdr("RS256"), good(nil), rsSigner(crypto.SHA256, k.rsa2)), ErrBadSignature},
		{"EdDSA by another key", ed, jws(t, hdr("EdDSA"), claimsAt(nil), edSigner(k.ed2)), ErrBadSignature},
		{"claims swapped after signing", hs, hsParts[0] + "." + b64u.EncodeToString(mustJSON(t, good(map[string]any{"sub": "admin"}))) + "." + hsParts[2], ErrBadSignature},
		{"signature stripped", hs, hsParts[0] + "." + hsParts[1] + ".", ErrBadSignature},
		{"RS signature one byte short", rs, validRS[:len(validRS)-2], ErrBadSignature},
		{"expired", hs, jws(t, hdr("HS256"), good(map[string]any{"exp": t0.Add(-time.Minute).Unix()}), hs256), ErrExpired},
		{"expired within leeway", lenient, jws(t, hdr("HS256"), claimsAt(map[string]any{"exp": t0.Add(-time.Minute).Unix()}), hs256), nil},
		{"expired beyond leeway", lenient, jws(t, hdr("HS256"), claimsAt(map[string]any{"exp": t0.Add(-3 * time.Minute).Unix()}), hs256), ErrExpired},
		{"nbf in the future", hs, jws(t, hdr("HS256"), good(map[string]any{"nbf": t0.Add(10 * time.Minute).Unix()}), hs256), ErrNotYetValid},
		{"nbf within leeway", lenient, jws(t, hdr("HS256"), claimsAt(map[string]any{"nbf": t0.Add(time.Minute).Unix()}), hs256), nil},
		{"nbf in the past", hs, jws(t, hdr("HS256"), good(map[string]any{"nbf": t0.Add(-time.Minute).Unix()}), hs256), nil},
		{"wrong issuer", hs, jws(t, hdr("HS256"), good(map[string]any{"iss": "evil"}), hs256), ErrIssuer},
		{"missing issuer", hs, jws(t, hdr("HS256"), good(map[string]any{"iss": nil}), hs256), ErrIssuer},
		{"wrong audience", hs, jws(t, hdr("HS256"), good(map[string]any{"aud": "other"}), hs256), ErrAudience},
		{"wrong audiences", hs, jws(t, hdr("HS256"), good(map[string]any{"aud": []string{"x", "y"}}), hs256), ErrAudience},
		{"missing audience", hs, jws(t, hdr("HS256"), good(map[string]any{"aud": nil}), hs256), ErrAudience},
		{"one of the audiences", hs, jws(t, hdr("HS256"), good(map[string]any{"aud": []string{"x", "web"}}), hs256), nil},
		{"missing exp", hs, jws(t, hdr("HS256"), good(map[string]any{"exp": nil}), hs256), ErrMissingClaim},
		{"missing exp, wrong issuer too", hs, jws(t, hdr("HS256"), good(map[string]any{"exp": nil, "iss": "evil"}), hs256), ErrMissingClaim},
		{"exp zero", hs, jws(t, hdr("HS256"), good(map[string]any{"exp": 0}), hs256), ErrMissingClaim},
		{"exp a string", hs, jws(t, hdr("HS256"), good(map[string]any{"exp": "tomorrow"}), hs256), ErrMalformed},
		{"expired and wrong issuer", hs, jws(t, hdr("HS256"), good(map[string]any{"exp": t0.Add(-time.Hour).Unix(), "iss": "evil"}), hs256), ErrExpired},
		{"two segments", hs, hsParts[0] + "." + hsParts[1], ErrMalformed},
		{"four segments", hs, validHS + ".e30", ErrMalformed},
		{"one segment", hs, "abc", ErrMalformed},
		{"bad base64 in header", hs, "eyJhbGciOiJIUzI1NiJ9!." + hsParts[1] + "." + hsParts[2], ErrMalformed},
		{"bad base64 in claims", hs, hsParts[0] + ".e30*." + hsParts[2], ErrMalformed},
		{"bad base64 in signature", hs, hsParts[0] + "." + hsParts[1] + ".%%%", ErrMalformed},
		{"padded base64", hs, hsParts[0] + "=." + hsParts[1] + "." + hsParts[2], ErrMalformed},
		{"header not JSON", hs, b64u.EncodeToString([]byte("{alg")) + "." + hsParts[1] + "." + hsParts[2], ErrMalformed},
		{"claims not an object", hs, signRaw(t, hdr("HS256"), "[1,2]", hs256), ErrMalformed},
		{"crit header", hs, jws(t, map[string]any{"alg": "HS256", "crit": []string{"exp"}, "exp": 1}, good(nil), hs256), ErrMalformed},
		{"over 8 KiB", hs, jws(t, hdr("HS256"), good(map[string]any{"pad": strings.Repeat("x", MaxTokenSize)}), hs256), ErrTooLarge},
		{"empty", hs, "", ErrMissingToken},
		{"jku header is not followed", rs, jws(t, hdr("RS256", "jku", "http://127.0.0.1:1/evil.json", "kid", "evil"), good(nil), rsSigner(crypto.SHA256, k.rsa2)), ErrBadSignature},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.v.Verify(context.Background(), tc.token)
			if tc.want == nil {
				if err != nil || c == nil {
					t.Fatalf("Verify = %v, want success", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
			if c != nil {
				t.Error("claims returned with an error")
			}
			// Exactly one sentinel: Reason picks the first that matches.
			if got, want := Reason(err), Reason(tc.want); got != want {
				t.Errorf("Reason = %s, want %s (err %v)", got, want, err)
			}
		})
	}
}

func TestVerifySizeLimit(t *testing.T) {
	k := sharedKeys()
	v := newVerifier(t, Provider{Secret: k.secret, Now: newClock().Now})
	sign := hsSigner(sha256.New, k.secret)
	var below, above string
	for n := MaxTokenSize*3/4 - 200; above == ""; n++ {
		tok := jws(t, hdr("HS256"), claimsAt(map[string]any{"pad": strings.Repeat("x", n)}), sign)
		if len(tok) <= MaxTokenSize {
			below = tok
		} else {
			above = tok
		}
	}
	if len(below) < MaxTokenSize-2 {
		t.Fatalf("largest token below the limit is only %d bytes", len(below))
	}
	if _, err := v.Verify(context.Background(), below); err != nil {
		t.Errorf("token of %d bytes: %v", len(below), err)
	}
	if _, err := v.Verify(context.Background(), above); !errors.Is(err, ErrTooLarge) {
		t.Errorf("token of %d bytes: %v, want ErrTooLarge", len(above), err)
	}
}

func TestVerifyClockMoves(t *testing.T) {
	k := sharedKeys()
	clk := newClock()
	v := newVerifier(t, Provider{Secret: k.secret, Now: clk.Now})
	tok := jws(t, hdr("HS256"), claimsAt(map[string]any{"nbf": t0.Add(time.Minute).Unix()}), hsSigner(sha256.New, k.secret))
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, ErrNotYetValid) {
		t.Fatalf("before nbf: %v", err)
	}
	clk.Advance(2 * time.Minute)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("after nbf: %v", err)
	}
	clk.Advance(time.Hour)
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, ErrExpired) {
		t.Fatalf("after exp: %v", err)
	}
}

func mergeMaps(a, b map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

func mustDER(t testing.TB, pub *rsa.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// signRaw signs a raw claims segment (for payloads json.Marshal of a map cannot produce).
func signRaw(t testing.TB, header map[string]any, claims string, sign signer) string {
	input := b64u.EncodeToString(mustJSON(t, header)) + "." + b64u.EncodeToString([]byte(claims))
	return input + "." + b64u.EncodeToString(sign(t, []byte(input)))
}
