package consul

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/consul/api"
)

var (
	// ErrMeshDenied reports that an upstream's Connect proxy (or a Connect-native
	// service) refused this client's certificate with a TLS alert: an intention
	// denies the connection, or the upstream does not trust the leaf. Nothing of
	// the request was processed; retrying elsewhere would meet the same intention.
	ErrMeshDenied = errors.New("consul: the upstream refused the connection (Connect intention or certificate)")

	// ErrPeerRejected reports that an upstream presented a certificate that does
	// not chain to a current Connect root, or carries another SPIFFE ID than the
	// service dialled. The connection is closed before anything is sent.
	ErrPeerRejected = errors.New("consul: upstream certificate refused")

	// ErrNotAuthorized reports that the agent's authorization (intentions) refused
	// an incoming client of a Connect-native service.
	ErrNotAuthorized = errors.New("consul: connection not authorized by intentions")

	// ErrCertsNotReady reports a handshake attempted before the first leaf and roots.
	ErrCertsNotReady = errors.New("consul: connect leaf certificate and CA roots not received yet")
)

// spiffeID is a Consul service SPIFFE ID:
// spiffe://<trust-domain>[/ap/<partition>]/ns/<namespace>/dc/<dc>/svc/<service>.
type spiffeID struct {
	uri                                            *url.URL
	trustDomain, partition, namespace, dc, service string
}

// parseSPIFFE returns the service SPIFFE ID in x's URI SANs.
func parseSPIFFE(x *x509.Certificate) (spiffeID, error) {
	for _, u := range x.URIs {
		if u.Scheme != "spiffe" {
			continue
		}
		id := spiffeID{uri: u, trustDomain: strings.ToLower(u.Host), partition: "default"}
		seg := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
		if len(seg)%2 != 0 {
			continue
		}
		for i := 0; i < len(seg); i += 2 {
			switch seg[i] {
			case "ap":
				id.partition = seg[i+1]
			case "ns":
				id.namespace = seg[i+1]
			case "dc":
				id.dc = seg[i+1]
			case "svc":
				id.service = seg[i+1]
			}
		}
		if id.service != "" && id.namespace != "" && id.dc != "" {
			return id, nil
		}
	}
	return spiffeID{}, errors.New("no Consul service SPIFFE ID among the certificate's URI SANs")
}

// ServiceURI is the SPIFFE ID of a service of the default namespace and partition.
func ServiceURI(trustDomain, datacenter, service string) string {
	return "spiffe://" + trustDomain + "/ns/default/dc/" + datacenter + "/svc/" + service
}

// ClientTLS returns the TLS config of connections to instances of service (a
// Consul service name) in datacenter ("" means the leaf's own datacenter). It
// presents the current leaf (through GetClientCertificate: the built-in proxy asks
// for a client certificate with a CA list that a static Certificates field might
// not match) and accepts the upstream only if its certificate chains to a root
// Consul lists now and carries the SPIFFE ID
// spiffe://<trust-domain>/ns/default/dc/<datacenter>/svc/<service>. Go's own
// name verification is off (InsecureSkipVerify): Connect certificates carry no DNS
// names, and VerifyConnection does the whole check instead, on every connection.
// ALPN offers http/1.1 only: the built-in proxy advertises none.
func (c *Certs) ClientTLS(service, datacenter string) *tls.Config {
	return &tls.Config{
		MinVersion:           tls.VersionTLS12,
		InsecureSkipVerify:   true, // replaced by VerifyConnection below
		GetClientCertificate: c.clientCertificate,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return c.verifyUpstream(cs.PeerCertificates, service, datacenter)
		},
		NextProtos: []string{"http/1.1"},
	}
}

// ServerTLS returns the TLS config of a Connect-native service listening as this
// identity: it presents the current leaf, requires a client certificate that
// chains to a current root and carries a SPIFFE ID of this trust domain, and asks
// auth (client.Agent()) whether intentions allow that client, on every new
// connection (session tickets are off so that no connection skips the check).
// An agent that cannot answer refuses the connection.
func (c *Certs) ServerTLS(auth AuthorizeAPI) *tls.Config {
	return &tls.Config{
		MinVersion:             tls.VersionTLS12,
		ClientAuth:             tls.RequireAnyClientCert, // verified in VerifyConnection
		GetCertificate:         c.serverCertificate,
		SessionTicketsDisabled: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return c.verifyClient(cs.PeerCertificates, auth)
		},
	}
}

// AuthorizeAPI is the agent call a Connect-native server asks about each client.
// *api.Agent implements it.
type AuthorizeAPI interface {
	ConnectAuthorize(auth *api.AgentAuthorizeParams) (*api.AgentAuthorize, error)
}

func (c *Certs) clientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	if l := c.leaf.Load(); l != nil {
		return &l.Cert, nil
	}
	return nil, ErrCertsNotReady
}

func (c *Certs) serverCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.clientCertificate(nil)
}

// verifyChain checks that certs[0] chains to a current root through the other
// certificates, for the given use, and returns its SPIFFE ID.
func (c *Certs) verifyChain(certs []*x509.Certificate, usage x509.ExtKeyUsage) (spiffeID, *Roots, error) {
	roots := c.roots.Load()
	if roots == nil {
		return spiffeID{}, nil, ErrCertsNotReady
	}
	if len(certs) == 0 {
		return spiffeID{}, nil, fmt.Errorf("%w: no certificate presented", ErrPeerRejected)
	}
	inter := x509.NewCertPool()
	for _, x := range certs[1:] {
		inter.AddCert(x)
	}
	opts := x509.VerifyOptions{Roots: roots.Pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}
	if _, err := certs[0].Verify(opts); err != nil {
		return spiffeID{}, nil, fmt.Errorf("%w: does not chain to a current Connect root: %v", ErrPeerRejected, err)
	}
	id, err := parseSPIFFE(certs[0])
	if err != nil {
		return spiffeID{}, nil, fmt.Errorf("%w: %v", ErrPeerRejected, err)
	}
	return id, roots, nil
}

// verifyUpstream is the client side's check of an upstream's certificate.
func (c *Certs) verifyUpstream(certs []*x509.Certificate, service, datacenter string) error {
	id, roots, err := c.verifyChain(certs, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return err
	}
	if datacenter == "" {
		if l := c.leaf.Load(); l != nil {
			datacenter = l.Datacenter
		}
	}
	if id.trustDomain != roots.TrustDomain || !strings.EqualFold(id.service, service) ||
		!strings.EqualFold(id.dc, datacenter) || id.namespace != "default" || id.partition != "default" {
		return fmt.Errorf("%w: it is %s, not %s", ErrPeerRejected, id.uri, ServiceURI(roots.TrustDomain, datacenter, service))
	}
	return nil
}

// verifyClient is a Connect-native server's check of a client.
func (c *Certs) verifyClient(certs []*x509.Certificate, auth AuthorizeAPI) error {
	id, roots, err := c.verifyChain(certs, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return err
	}
	if id.trustDomain != roots.TrustDomain {
		return fmt.Errorf("%w: %s is not of trust domain %s", ErrPeerRejected, id.uri, roots.TrustDomain)
	}
	res, err := auth.ConnectAuthorize(&api.AgentAuthorizeParams{
		Target: c.opts.Service, ClientCertURI: id.uri.String(), ClientCertSerial: formatSerial(certs[0]),
	})
	if err != nil {
		return fmt.Errorf("%w: %s: the agent could not answer: %v", ErrNotAuthorized, id.uri, err)
	}
	if !res.Authorized {
		return fmt.Errorf("%w: %s: %s", ErrNotAuthorized, id.uri, res.Reason)
	}
	return nil
}

// Dialer opens mutual-TLS connections to the instances of one Connect service, for
// an http.Transport's DialContext: the transport speaks plain HTTP/1.1 over the
// TLS connection it gets, so requests keep their http:// URLs and connections are
// pooled as usual.
type Dialer struct {
	certs *Certs
	net   *net.Dialer
	cfg   *tls.Config
	conns atomic.Uint64
}

// Dialer returns a Dialer for instances of service in datacenter ("" = the leaf's),
// dialling TCP with d (its Timeout also bounds the TLS handshake).
func (c *Certs) Dialer(service, datacenter string, d *net.Dialer) *Dialer {
	if d == nil {
		d = &net.Dialer{}
	}
	return &Dialer{certs: c, net: d, cfg: c.ClientTLS(service, datacenter)}
}

// Connections returns how many connections the dialer has opened (handshakes that
// succeeded): with pooled keep-alive connections it should grow far slower than
// the request count.
func (d *Dialer) Connections() uint64 { return d.conns.Load() }

// DialContext dials addr and completes the TLS handshake. A TCP failure is
// returned as the dialer's own error (a *net.OpError with Op "dial", so callers
// may try another instance); a refusal by the upstream wraps ErrMeshDenied; an
// upstream certificate that fails the check wraps ErrPeerRejected.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	raw, err := d.net.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	hctx := ctx
	if d.net.Timeout > 0 {
		var cancel context.CancelFunc
		hctx, cancel = context.WithTimeout(ctx, d.net.Timeout)
		defer cancel()
	}
	tc := tls.Client(raw, d.cfg)
	if err := tc.HandshakeContext(hctx); err != nil {
		_ = raw.Close()
		return nil, ClassifyMeshError(fmt.Errorf("connect handshake with %s: %w", addr, err))
	}
	d.conns.Add(1)
	return tc, nil
}

// ClassifyMeshError wraps err with ErrMeshDenied when it is a TLS alert by which
// the upstream refused this client's certificate. With TLS 1.3 the client's
// handshake completes before the server has checked the client, so the refusal
// arrives on the first read ("remote error: tls: bad certificate") — classify
// errors of the whole exchange, not only of the dial. Other errors are returned
// unchanged.
func ClassifyMeshError(err error) error {
	if err == nil || errors.Is(err, ErrMeshDenied) {
		return err
	}
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "remote error" || op.Err == nil {
		return err
	}
	switch strings.TrimPrefix(op.Err.Error(), "tls: ") {
	case "bad certificate", "unsupported certificate", "certificate revoked", "certificate expired",
		"certificate unknown", "unknown certificate authority", "access denied", "certificate required":
		return fmt.Errorf("%w: %w", ErrMeshDenied, err)
	}
	return err
}
