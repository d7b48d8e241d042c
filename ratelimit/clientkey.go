package ratelimit

import "net/netip"

// DefaultIPv6Prefix is the prefix length by which ClientKey keys an IPv6
// client when given 0 (client_ipv6_prefix's default): a /64 is what one
// subscriber, host or container network usually holds, and rotating
// addresses inside it must not buy a client fresh buckets.
const DefaultIPv6Prefix = 64

// ClientKey is the bucket key of a client address: an IPv4 address (or an
// IPv4-mapped IPv6 one) as is, an IPv6 address as its /v6Prefix network
// ("2001:db8:1:2::/64"), so that one client cannot escape its limit, or
// flood the store with keys, by rotating through the addresses of its
// network. v6Prefix 0 means DefaultIPv6Prefix; 128 keys every address on
// its own. Anything that is not an IP address is returned unchanged. Only
// an IPv6 client's key is built (one allocation); an IPv4 key is ip itself.
func ClientKey(ip string, v6Prefix int) string {
	addr, err := netip.ParseAddr(ip)
	if err != nil || addr.Is4() || addr.Is4In6() {
		return ip
	}
	if v6Prefix <= 0 {
		v6Prefix = DefaultIPv6Prefix
	}
	if v6Prefix >= 128 {
		return addr.WithZone("").String()
	}
	p, err := addr.WithZone("").Prefix(v6Prefix)
	if err != nil {
		return ip
	}
	return p.String()
}
