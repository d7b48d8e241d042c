package jwtauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"hash"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Tokens in these tests are built here, with the standard library only; the verifier's
// library never signs what it then verifies.

var b64u = base64.RawURLEncoding

// t0 is the tests' "now".
var t0 = time.Unix(1_700_000_000, 0)

// clock is a movable test clock.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(t0.UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// signer signs a JWS signing input.
type signer func(t testing.TB, input []byte) []byte

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// jws builds header.claims.signature; a nil signer gives an empty signature.
func jws(t testing.TB, header, claims map[string]any, sign signer) string {
	t.Helper()
	input := b64u.EncodeToString(mustJSON(t, header)) + "." + b64u.EncodeToString(mustJSON(t, claims))
	var sig []byte
	if sign != nil {
		sig = sign(t, []byte(input))
	}
	return input + "." + b64u.EncodeToString(sig)
}

func hsSigner(h func() hash.Hash, secret []byte) signer {
	return func(t testing.TB, in []byte) []byte {
		m := hmac.New(h, secret)
		m.Write(in)
		return m.Sum(nil)
	}
}

func digest(h crypto.Hash, in []byte) []byte {
	d := h.New()
	d.Write(in)
	return d.Sum(nil)
}

func rsSigner(h crypto.Hash, k *rsa.PrivateKey) signer {
	return func(t testing.TB, in []byte) []byte {
		sig, err := rsa.SignPKCS1v15(rand.Reader, k, h, digest(h, in))
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
}

func psSigner(h crypto.Hash, k *rsa.PrivateKey) signer {
	return func(t testing.TB, in []byte) []byte {
		sig, err := rsa.SignPSS(rand.Reader, k, h, digest(h, in), &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
}

// esSigner produces the JWS R||S form (RFC 7518 §3.4), each half left-padded.
func esSigner(h crypto.Hash, k *ecdsa.PrivateKey) signer {
	return func(t testing.TB, in []byte) []byte {
		r, s, err := ecdsa.Sign(rand.Reader, k, digest(h, in))
		if err != nil {
			t.Fatal(err)
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		out := make([]byte, 2*size)
		r.FillBytes(out[:size])
		s.FillBytes(out[size:])
		return out
	}
}

func edSigner(k ed25519.PrivateKey) signer {
	return func(t testing.TB, in []byte) []byte { return ed25519.Sign(k, in) }
}

// keys shared by the tests: RSA generation is slow under -race.
type testKeys struct {
	rsa, rsa2     *rsa.PrivateKey
	p256, p384    *ecdsa.PrivateKey
	p521, p256b   *ecdsa.PrivateKey
	ed, ed2       ed25519.PrivateKey
	secret        []byte
	otherSecret   []byte
	rsaPEM, ecPEM []byte
}

var sharedKeys = sync.OnceValue(func() *testKeys {
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	k := &testKeys{secret: []byte("0123456789abcdef0123456789abcdef"), otherSecret: []byte("fedcba9876543210fedcba9876543210")}
	var err error
	k.rsa, err = rsa.GenerateKey(rand.Reader, 2048)
	must(err)
	k.rsa2, err = rsa.GenerateKey(rand.Reader, 2048)
	must(err)
	for _, p := range []struct {
		dst   **ecdsa.PrivateKey
		curve elliptic.Curve
	}{{&k.p256, elliptic.P256()}, {&k.p384, elliptic.P384()}, {&k.p521, elliptic.P521()}, {&k.p256b, elliptic.P256()}} {
		*p.dst, err = ecdsa.GenerateKey(p.curve, rand.Reader)
		must(err)
	}
	_, k.ed, err = ed25519.GenerateKey(rand.Reader)
	must(err)
	_, k.ed2, err = ed25519.GenerateKey(rand.Reader)
	must(err)
	k.rsaPEM = pkixPEM(&k.rsa.PublicKey)
	k.ecPEM = pkixPEM(&k.p256.PublicKey)
	return k
})

func pkixPEM(pub any) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// certPEM wraps pub in a self-signed certificate (signed by signerKey).
func certPEM(t testing.TB, pub any, signerKey crypto.Signer) []byte {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func writeFile(t testing.TB, name string, data ...[]byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	var all []byte
	for _, d := range data {
		all = append(all, d...)
	}
	if err := os.WriteFile(path, all, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// claimsAt returns standard valid claims at t0, plus extra.
func claimsAt(extra map[string]any) map[string]any {
	c := map[string]any{"sub": "user-1", "iat": t0.Unix(), "exp": t0.Add(time.Hour).Unix()}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	return c
}

func hdr(alg string, extra ...string) map[string]any {
	h := map[string]any{"alg": alg, "typ": "JWT"}
	for i := 0; i+1 < len(extra); i += 2 {
		h[extra[i]] = extra[i+1]
	}
	return h
}

func newVerifier(t testing.TB, p Provider) *Verifier {
	t.Helper()
	v, err := New(p)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return v
}

// jwkOf renders a public key as a JWK (RFC 7517/7518) with the given kid.
func jwkOf(kid string, pub any) map[string]any {
	m := map[string]any{"kid": kid, "use": "sig"}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		m["kty"] = "RSA"
		m["n"] = b64u.EncodeToString(k.N.Bytes())
		m["e"] = b64u.EncodeToString(big.NewInt(int64(k.E)).Bytes())
	case *ecdsa.PublicKey:
		point, err := k.Bytes() // 0x04 || X || Y
		if err != nil {
			panic(err)
		}
		size := (len(point) - 1) / 2
		m["kty"] = "EC"
		m["crv"] = k.Curve.Params().Name
		m["x"] = b64u.EncodeToString(point[1 : 1+size])
		m["y"] = b64u.EncodeToString(point[1+size:])
	case ed25519.PublicKey:
		m["kty"] = "OKP"
		m["crv"] = "Ed25519"
		m["x"] = b64u.EncodeToString(k)
	}
	return m
}

var sha256New = sha256.New
