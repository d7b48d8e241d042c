package jwtauth

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// DefaultMintTTL is MintOptions.TTL when it is zero.
const DefaultMintTTL = time.Hour

// MintOptions describe a token for Mint. Zero values leave a claim out, except TTL and Now.
type MintOptions struct {
	Subject  string        // "sub"
	Roles    []string      // "roles", an array of strings (the default RolesClaim)
	TTL      time.Duration // "exp" = Now + TTL (default 1h; negative is an error)
	Issuer   string        // "iss"
	Audience []string      // "aud": a string for one value, an array for several
	Now      func() time.Time
}

// Mint signs an HS256 token with secret (at least MinSecretLen bytes), carrying "iat",
// "exp" and the options' claims. It is what `gateway token` and `gateway dev` print.
func Mint(secret []byte, o MintOptions) (string, error) {
	if len(secret) < MinSecretLen {
		return "", ErrWeakSecret
	}
	if o.TTL < 0 {
		return "", errors.New("jwtauth: negative token TTL")
	}
	if o.TTL == 0 {
		o.TTL = DefaultMintTTL
	}
	now := time.Now()
	if o.Now != nil {
		now = o.Now()
	}
	c := jwt.MapClaims{
		"iat": now.Unix(),
		"exp": now.Add(o.TTL).Unix(),
	}
	if o.Subject != "" {
		c["sub"] = o.Subject
	}
	if len(o.Roles) > 0 {
		c["roles"] = o.Roles
	}
	if o.Issuer != "" {
		c["iss"] = o.Issuer
	}
	switch len(o.Audience) {
	case 0:
	case 1:
		c["aud"] = o.Audience[0]
	default:
		c["aud"] = o.Audience
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("jwtauth: signing: %w", err)
	}
	return s, nil
}
