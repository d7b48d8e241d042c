package jwtauth

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
)

func TestNewRefusesBadConfig(t *testing.T) {
	k := sharedKeys()
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	rsaFile := writeFile(t, "rsa.pem", k.rsaPEM)
	privDER, err := x509.MarshalPKCS8PrivateKey(k.p256)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		p    Provider
		want error
		msg  string
	}{
		{"no key source", Provider{Name: "x"}, ErrConfig, "exactly one of"},
		{"secret and file", Provider{Secret: k.secret, PublicKeyFile: rsaFile}, ErrConfig, "exactly one of"},
		{"file and JWKS", Provider{PublicKeyFile: rsaFile, JWKSURL: "https://idp/jwks"}, ErrConfig, "exactly one of"},
		{"short secret", Provider{Secret: []byte("short")}, ErrWeakSecret, "32 bytes"},
		{"alg none", Provider{Secret: k.secret, Algorithms: []string{"none"}}, ErrConfig, `"none"`},
		{"unknown alg", Provider{Secret: k.secret, Algorithms: []string{"HS1024"}}, ErrConfig, "unsupported algorithm"},
		{"HS with a public key", Provider{PublicKeyFile: rsaFile, Algorithms: []string{"RS256", "HS256"}}, ErrConfig, "needs a secret"},
		{"RS with a secret", Provider{Secret: k.secret, Algorithms: []string{"RS256"}}, ErrConfig, "needs a public key"},
		{"HS with JWKS", Provider{JWKSURL: "https://idp/jwks", Algorithms: []string{"HS256"}}, ErrConfig, "needs a secret"},
		{"ES256 with an RSA file", Provider{PublicKeyFile: rsaFile, Algorithms: []string{"ES256"}}, ErrConfig, "no key for ES256"},
		{"ES384 with a P-256 file", Provider{PublicKeyFile: writeFile(t, "ec.pem", k.ecPEM), Algorithms: []string{"ES384"}}, ErrConfig, "no key for ES384"},
		{"missing file", Provider{PublicKeyFile: "/nonexistent/key.pem"}, ErrConfig, "no such file"},
		{"not PEM", Provider{PublicKeyFile: writeFile(t, "junk.pem", []byte("hello"))}, ErrConfig, "no PEM public key"},
		{"private key", Provider{PublicKeyFile: writeFile(t, "priv.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}))}, ErrConfig, "private key"},
		{"corrupt PEM body", Provider{PublicKeyFile: writeFile(t, "bad.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2, 3}}))}, ErrConfig, "PEM block 1"},
		{"1024-bit RSA", Provider{PublicKeyFile: writeFile(t, "small.pem", pkixPEM(&small.PublicKey))}, ErrConfig, "1024 bits"},
		{"ftp JWKS", Provider{JWKSURL: "ftp://idp/jwks"}, ErrConfig, "http:// or https://"},
		{"JWKS without host", Provider{JWKSURL: "https:///jwks"}, ErrConfig, "http:// or https://"},
		{"negative leeway", Provider{Secret: k.secret, Leeway: -1}, ErrConfig, "leeway"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, err := New(tc.p)
			if v != nil || !errors.Is(err, tc.want) || !errors.Is(err, ErrConfig) {
				t.Fatalf("New = %v, %v; want %v", v, err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not mention %q", err, tc.msg)
			}
		})
	}
}

func TestNewDefaults(t *testing.T) {
	k := sharedKeys()
	mixed := writeFile(t, "mixed.pem", []byte("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"),
		k.rsaPEM, pkixPEM(&k.p384.PublicKey), pkixPEM(k.ed.Public()))
	cases := []struct {
		name string
		p    Provider
		want string
	}{
		{"secret", Provider{Secret: k.secret}, "HS256"},
		{"RSA file", Provider{PublicKeyFile: writeFile(t, "rsa.pem", k.rsaPEM)}, "RS256"},
		{"P-256 file", Provider{PublicKeyFile: writeFile(t, "ec.pem", k.ecPEM)}, "ES256"},
		{"mixed file", Provider{PublicKeyFile: mixed}, "RS256,ES384,EdDSA"},
		{"JWKS", Provider{JWKSURL: "http://127.0.0.1:1/jwks"}, "RS256"},
		{"explicit", Provider{Secret: k.secret, Algorithms: []string{"HS512"}}, "HS512"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := newVerifier(t, tc.p)
			if got := strings.Join(v.Algorithms(), ","); got != tc.want {
				t.Errorf("algorithms %s, want %s", got, tc.want)
			}
			if v.p.RolesClaim != "roles" || v.p.RefreshInterval != DefaultRefreshInterval ||
				v.p.MinRefetchInterval != DefaultMinRefetchInterval || v.p.Now == nil || v.p.Logger == nil || v.p.HTTPClient == nil {
				t.Errorf("defaults not applied: %+v", v.p)
			}
		})
	}
	// The caller's slices are copied.
	algs := []string{"HS256"}
	secret := append([]byte(nil), k.secret...)
	v := newVerifier(t, Provider{Name: "n", Secret: secret, Algorithms: algs})
	algs[0], secret[0] = "HS512", 'X'
	if v.Algorithms()[0] != "HS256" || v.p.Secret[0] == 'X' || v.Name() != "n" {
		t.Error("New kept references to the caller's slices")
	}
}
