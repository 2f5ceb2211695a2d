package wallet

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
)

// AuthorizationMetadataKey is the metadata key the nodes read the bearer token from.
const AuthorizationMetadataKey = "authorization"

// NoForwardMetadataKey is the request metadata (any value) asking a write node not to forward
// a write it does not lead to the leader but to answer NOT_LEADER with the leader's address.
// A WalletClient given more than one distinct endpoint routes by itself and sends it (with
// NoForwardMetadataValue) on every call; given one (a Kubernetes Service, a port-forward, a
// load balancer) it sends nothing and the nodes forward. The one definition is
// proto::NO_FORWARD_METADATA in proto/src/lib.rs.
const NoForwardMetadataKey = "wallet-no-forward"

// NoForwardMetadataValue is the value sent (any is accepted; the Rust SDK sends the same).
const NoForwardMetadataValue = "sdk"

// discoveredEndpointsMax: connections kept to nodes learnt from leader hints.
const discoveredEndpointsMax = 16

// TLSConfig switches every connection to TLS: the CA (PEM) that signs the nodes'
// certificates, optionally a client certificate and key (PEM) for nodes that require one
// (mTLS), and a name to verify in the node's certificate instead of the host dialled.
type TLSConfig struct {
	CAFile string
	// CertFile and KeyFile: the client certificate and its key (both or neither).
	CertFile string
	KeyFile  string
	// ServerName overrides the name verified in the node's certificate.
	ServerName string
	// CAPEM, CertPEM, KeyPEM: the same as bytes, used instead of the files when set.
	CAPEM, CertPEM, KeyPEM []byte
}

func (c *TLSConfig) load() (*tls.Config, error) {
	read := func(pem []byte, file, what string) ([]byte, error) {
		if len(pem) > 0 || file == "" {
			return pem, nil
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, configErrorf("reading the %s: %v", what, err)
		}
		return b, nil
	}
	ca, err := read(c.CAPEM, c.CAFile, "CA file")
	if err != nil {
		return nil, err
	}
	if len(ca) == 0 {
		return nil, configErrorf("TLS needs the CA (CAFile or CAPEM)")
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, configErrorf("the CA holds no PEM certificate")
	}
	config := &tls.Config{RootCAs: pool, ServerName: c.ServerName, MinVersion: tls.VersionTLS12}
	cert, err := read(c.CertPEM, c.CertFile, "client certificate")
	if err != nil {
		return nil, err
	}
	key, err := read(c.KeyPEM, c.KeyFile, "client key")
	if err != nil {
		return nil, err
	}
	if (len(cert) == 0) != (len(key) == 0) {
		return nil, configErrorf("a client certificate needs its key, and a key its certificate")
	}
	if len(cert) > 0 {
		pair, err := tls.X509KeyPair(cert, key)
		if err != nil {
			return nil, configErrorf("client certificate: %v", err)
		}
		config.Certificates = []tls.Certificate{pair}
	}
	return config, nil
}

// Option configures a WalletClient or a QueryClient.
type Option func(*options)

type options struct {
	tls         *TLSConfig
	token       string
	hasToken    bool
	policy      RetryPolicy
	dialOptions []grpc.DialOption
}

// WithTLS dials every node over TLS (endpoints are then host:port or https://host:port).
func WithTLS(config TLSConfig) Option { return func(o *options) { c := config; o.tls = &c } }

// WithToken sends "authorization: Bearer <token>" on every call, streams included.
func WithToken(token string) Option {
	return func(o *options) { o.token, o.hasToken = token, true }
}

// WithRetryPolicy replaces DefaultRetryPolicy.
func WithRetryPolicy(policy RetryPolicy) Option { return func(o *options) { o.policy = policy } }

// WithDialOptions adds grpc-go dial options (interceptors, keepalive, ...).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dialOptions = append(o.dialOptions, opts...) }
}

// bearer is the per-call credential carrying the token.
type bearer struct{ header string }

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{AuthorizationMetadataKey: b.header}, nil
}

// RequireTransportSecurity is false: plain-text development clusters take tokens too.
func (b bearer) RequireTransportSecurity() bool { return false }

// noForward is the per-call credential of a write client that routes by itself.
type noForward struct{}

func (noForward) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{NoForwardMetadataKey: NoForwardMetadataValue}, nil
}

func (noForward) RequireTransportSecurity() bool { return false }

// checkToken rejects what the nodes would refuse: empty, whitespace, non-printable ASCII.
func checkToken(token string) (string, error) {
	token = strings.TrimSpace(token)
	if token == "" {
		return "", configErrorf("the token is empty")
	}
	for _, r := range token {
		if unicode.IsSpace(r) {
			return "", configErrorf("the token contains whitespace")
		}
		if r < 0x21 || r > 0x7e {
			return "", configErrorf("the token must be printable ASCII")
		}
	}
	return token, nil
}

// NormalizeEndpoint returns host:port from host:port, http://host:port (plain text only) or
// https://host:port (TLS only), so TLS is never silently skipped.
func NormalizeEndpoint(endpoint string, useTLS bool) (string, error) {
	trimmed := strings.TrimRight(strings.TrimSpace(endpoint), "/")
	scheme, rest := "http", trimmed
	if useTLS {
		scheme = "https"
	}
	if i := strings.Index(trimmed, "://"); i >= 0 {
		scheme, rest = trimmed[:i], trimmed[i+3:]
	}
	switch {
	case scheme != "http" && scheme != "https":
		return "", configErrorf("endpoint %q: only http:// and https:// are supported", endpoint)
	case scheme == "https" && !useTLS:
		return "", configErrorf("endpoint %q is https:// but no TLS settings (CA) are configured", endpoint)
	case scheme == "http" && useTLS:
		return "", configErrorf("endpoint %q is http:// but TLS is configured: use host:port or https://", endpoint)
	}
	colon := strings.LastIndex(rest, ":")
	if rest == "" || strings.ContainsAny(rest, "/ \t\r\n") || colon <= 0 {
		return "", configErrorf("endpoint %q must be host:port (with an explicit port)", endpoint)
	}
	if port, err := strconv.Atoi(rest[colon+1:]); err != nil || port <= 0 || port > 65535 {
		return "", configErrorf("endpoint %q must be host:port (with an explicit port)", endpoint)
	}
	return rest, nil
}

// channels holds one lazily connecting *grpc.ClientConn per node, closed together.
type channels struct {
	endpoints []string
	useTLS    bool
	dial      []grpc.DialOption
	mu        sync.Mutex
	conns     map[string]*grpc.ClientConn
	closed    bool
}

// newChannels: write is true for a WalletClient, which then, given more than one distinct
// endpoint, sends NoForwardMetadataKey on every call.
func newChannels(endpoints []string, opts []Option, write bool) (*channels, RetryPolicy, error) {
	o := options{policy: DefaultRetryPolicy()}
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.policy.Validate(); err != nil {
		return nil, o.policy, err
	}
	c := &channels{conns: map[string]*grpc.ClientConn{}, useTLS: o.tls != nil}
	seen := map[string]bool{}
	for _, e := range endpoints {
		for _, part := range strings.Split(e, ",") {
			if strings.TrimSpace(part) == "" {
				continue
			}
			normalized, err := NormalizeEndpoint(part, o.tls != nil)
			if err != nil {
				return nil, o.policy, err
			}
			if !seen[normalized] {
				seen[normalized] = true
				c.endpoints = append(c.endpoints, normalized)
			}
		}
	}
	if len(c.endpoints) == 0 {
		return nil, o.policy, configErrorf("at least one endpoint is required")
	}
	if o.tls != nil {
		config, err := o.tls.load()
		if err != nil {
			return nil, o.policy, err
		}
		c.dial = append(c.dial, grpc.WithTransportCredentials(credentials.NewTLS(config)))
	} else {
		c.dial = append(c.dial, grpc.WithInsecure())
	}
	if o.hasToken {
		token, err := checkToken(o.token)
		if err != nil {
			return nil, o.policy, err
		}
		c.dial = append(c.dial, grpc.WithPerRPCCredentials(bearer{header: "Bearer " + token}))
	}
	// Given every write node, the client routes by leader hints (a hop fewer); given one
	// address (a Service, a port-forward, a load balancer), the nodes forward.
	if write && len(c.endpoints) > 1 {
		c.dial = append(c.dial, grpc.WithPerRPCCredentials(noForward{}))
	}
	c.dial = append(c.dial, grpc.WithKeepaliveParams(keepalive.ClientParameters{
		Time: 30 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: false,
	}))
	c.dial = append(c.dial, o.dialOptions...)
	return c, o.policy, nil
}

// get returns the connection to endpoint (host:port), dialling it (lazily) on first use.
func (c *channels) get(endpoint string) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, configErrorf("the client is closed")
	}
	if conn, ok := c.conns[endpoint]; ok {
		return conn, nil
	}
	if len(c.conns) >= len(c.endpoints)+discoveredEndpointsMax {
		// Too many nodes learnt from hints: forget the discovered ones.
		for e, conn := range c.conns {
			if !contains(c.endpoints, e) {
				_ = conn.Close()
				delete(c.conns, e)
			}
		}
	}
	conn, err := grpc.Dial(endpoint, c.dial...)
	if err != nil {
		return nil, fmt.Errorf("wallet: dialling %s: %w", endpoint, err)
	}
	c.conns[endpoint] = conn
	return conn, nil
}

func (c *channels) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	var first error
	for e, conn := range c.conns {
		if err := conn.Close(); err != nil && first == nil {
			first = err
		}
		delete(c.conns, e)
	}
	return first
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}
