package jwtauth

import (
	"context"
	"crypto"
	"crypto/sha256"
	"testing"
)

func benchVerify(b *testing.B, v *Verifier, tok string) {
	ctx := context.Background()
	if _, err := v.Verify(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

func benchClaims() map[string]any {
	return claimsAt(map[string]any{"iss": "idp", "aud": "api", "roles": []string{"admin", "reader"}})
}

func BenchmarkVerifyHS256(b *testing.B) {
	k := sharedKeys()
	v := newVerifier(b, Provider{Secret: k.secret, Issuer: "idp", Audience: []string{"api"}, Now: newClock().Now, CacheSize: -1})
	benchVerify(b, v, jws(b, hdr("HS256"), benchClaims(), hsSigner(sha256.New, k.secret)))
}

func BenchmarkVerifyES256(b *testing.B) {
	k := sharedKeys()
	v := newVerifier(b, Provider{PublicKeyFile: writeFile(b, "ec.pem", k.ecPEM), Issuer: "idp", Audience: []string{"api"}, Now: newClock().Now, CacheSize: -1})
	benchVerify(b, v, jws(b, hdr("ES256"), benchClaims(), esSigner(crypto.SHA256, k.p256)))
}

func BenchmarkVerifyRS256(b *testing.B) {
	k := sharedKeys()
	v := newVerifier(b, Provider{PublicKeyFile: writeFile(b, "rsa.pem", k.rsaPEM), Issuer: "idp", Audience: []string{"api"}, Now: newClock().Now, CacheSize: -1})
	benchVerify(b, v, jws(b, hdr("RS256"), benchClaims(), rsSigner(crypto.SHA256, k.rsa)))
}

// BenchmarkVerifyHS256Cached is a token verified before: a cache hit.
func BenchmarkVerifyHS256Cached(b *testing.B) {
	k := sharedKeys()
	v := newVerifier(b, Provider{Secret: k.secret, Issuer: "idp", Audience: []string{"api"}, Now: newClock().Now})
	benchVerify(b, v, jws(b, hdr("HS256"), benchClaims(), hsSigner(sha256.New, k.secret)))
}

func BenchmarkVerifyHS256Parallel(b *testing.B) {
	k := sharedKeys()
	v := newVerifier(b, Provider{Secret: k.secret, Issuer: "idp", Audience: []string{"api"}, Now: newClock().Now, CacheSize: -1})
	tok := jws(b, hdr("HS256"), benchClaims(), hsSigner(sha256.New, k.secret))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := v.Verify(context.Background(), tok); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
