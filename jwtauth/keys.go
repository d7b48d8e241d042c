package jwtauth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
)

// minRSABits is the smallest RSA modulus accepted from a file or a JWKS.
const minRSABits = 2048

// publicKey is one verification key with what it may verify.
type publicKey struct {
	kid string
	alg string // "" = any algorithm of its family
	fam family
	key any // *rsa.PublicKey | *ecdsa.PublicKey | ed25519.PublicKey
}

// fits reports whether k may verify a token signed with alg (of family fam).
func (k *publicKey) fits(alg string, fam family) bool {
	return k.fam == fam && (k.alg == "" || k.alg == alg)
}

// classifyKey returns the family of a parsed public key, or an error for unusable keys.
func classifyKey(key any) (family, error) {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return 0, fmt.Errorf("RSA key of %d bits (at least %d required)", k.N.BitLen(), minRSABits)
		}
		return famRSA, nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return famEC256, nil
		case elliptic.P384():
			return famEC384, nil
		case elliptic.P521():
			return famEC521, nil
		}
		return 0, fmt.Errorf("unsupported ECDSA curve %s", k.Curve.Params().Name)
	case ed25519.PublicKey:
		return famEd25519, nil
	}
	return 0, fmt.Errorf("unsupported key type %T", key)
}

// defaultAlg is the algorithm a key implies when the provider lists none.
func defaultAlg(f family) string {
	switch f {
	case famRSA:
		return "RS256"
	case famEC256:
		return "ES256"
	case famEC384:
		return "ES384"
	case famEC521:
		return "ES512"
	case famEd25519:
		return "EdDSA"
	}
	return ""
}

// parsePEMKeys reads every public key and certificate in data.
func parsePEMKeys(data []byte) ([]publicKey, error) {
	var keys []publicKey
	for n := 1; ; n++ {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		var (
			key any
			err error
		)
		switch block.Type {
		case "PUBLIC KEY":
			key, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			key, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
				key = cert.PublicKey
			}
		default:
			if strings.Contains(block.Type, "PRIVATE KEY") {
				return nil, fmt.Errorf("PEM block %d is a private key: give the public key only", n)
			}
			continue // e.g. "EC PARAMETERS"
		}
		if err != nil {
			return nil, fmt.Errorf("PEM block %d (%s): %w", n, block.Type, err)
		}
		fam, err := classifyKey(key)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d (%s): %w", n, block.Type, err)
		}
		keys = append(keys, publicKey{fam: fam, key: key})
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM public key or certificate found")
	}
	return keys, nil
}

// loadKeyFile reads PublicKeyFile and fills the provider's default algorithms from it.
func loadKeyFile(p *Provider) ([]publicKey, error) {
	data, err := os.ReadFile(p.PublicKeyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: provider %q: %w", ErrConfig, p.Name, err)
	}
	keys, err := parsePEMKeys(data)
	if err != nil {
		return nil, fmt.Errorf("%w: provider %q: public_key_file %s: %w", ErrConfig, p.Name, p.PublicKeyFile, err)
	}
	if len(p.Algorithms) == 0 {
		for _, k := range keys {
			if alg := defaultAlg(k.fam); !slices.Contains(p.Algorithms, alg) {
				p.Algorithms = append(p.Algorithms, alg)
			}
		}
	}
	for _, alg := range p.Algorithms {
		if !hasKey(keys, alg) {
			return nil, fmt.Errorf("%w: provider %q: public_key_file %s has no key for %s",
				ErrConfig, p.Name, p.PublicKeyFile, alg)
		}
	}
	return keys, nil
}

func hasKey(keys []publicKey, alg string) bool {
	fam := algFamily(alg)
	for i := range keys {
		if keys[i].fits(alg, fam) {
			return true
		}
	}
	return false
}
