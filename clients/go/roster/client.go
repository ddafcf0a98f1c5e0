// Package roster is a small layer over the generated Roster stubs
// (package rosterv1): a connection that carries a bearer token on every
// call, per-call tokens, creates retried safely across a failover
// (CreateUser, ...), a streaming CSV import, and Watch, the organization's
// changes as a resumable iterator.
package roster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/roster-dev/roster/clients/go/rosterv1"
)

// Client holds one connection and a stub per service.
type Client struct {
	conn          *grpc.ClientConn
	Auth          rosterv1.AuthServiceClient
	Organizations rosterv1.OrganizationServiceClient
	Users         rosterv1.UserServiceClient
	Groups        rosterv1.GroupServiceClient
	Imports       rosterv1.ImportServiceClient
	Changes       rosterv1.ChangeServiceClient
	retry         RetryPolicy
}

// Option adjusts Dial.
type Option func(*dialSettings)

type dialSettings struct {
	plaintext bool
	tls       *tls.Config
	extra     []grpc.DialOption
	retry     *RetryPolicy
}

// Plaintext dials without TLS: for a server on loopback or in development.
// Tokens are then sent in the clear, which Dial allows only when asked this way.
func Plaintext() Option { return func(s *dialSettings) { s.plaintext = true } }

// WithTLS dials with this TLS configuration instead of the system roots
// (see TLSConfig for a private CA and a client certificate).
func WithTLS(config *tls.Config) Option { return func(s *dialSettings) { s.tls = config } }

// TLSConfig reads PEM files for WithTLS: caFile, the CA that signed the
// server's certificate ("" trusts the system roots), and certFile and keyFile,
// the client certificate and key a server started with --tls-client-ca asks
// for (both "" for none).
func TLSConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	config := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("roster: the CA certificate: %w", err)
		}
		config.RootCAs = x509.NewCertPool()
		if !config.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("roster: no PEM certificate in the CA file %s", caFile)
		}
	}
	if certFile != "" || keyFile != "" {
		certificate, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("roster: the client certificate: %w", err)
		}
		config.Certificates = []tls.Certificate{certificate}
	}
	return config, nil
}

// WithDialOptions adds gRPC dial options (interceptors, keepalive, ...).
func WithDialOptions(options ...grpc.DialOption) Option {
	return func(s *dialSettings) { s.extra = append(s.extra, options...) }
}

// Dial connects to target (host:port) with token (an API key or a user's
// access token) sent as `authorization: Bearer <token>` on every call.
// An empty token dials without one (Login, RegisterPassword, ...).
func Dial(target, token string, options ...Option) (*Client, error) {
	var settings dialSettings
	for _, option := range options {
		option(&settings)
	}
	retry := DefaultRetryPolicy()
	if settings.retry != nil {
		retry = *settings.retry
	}
	if err := retry.validate(); err != nil {
		return nil, err
	}
	transport := credentials.NewTLS(settings.tls)
	if settings.plaintext {
		transport = insecure.NewCredentials()
	}
	dial := append([]grpc.DialOption{grpc.WithTransportCredentials(transport)}, settings.extra...)
	if token != "" {
		dial = append(dial, grpc.WithPerRPCCredentials(Bearer{Token: token, Plaintext: settings.plaintext}))
	}
	conn, err := grpc.NewClient(target, dial...)
	if err != nil {
		return nil, err
	}
	return &Client{
		conn:          conn,
		Auth:          rosterv1.NewAuthServiceClient(conn),
		Organizations: rosterv1.NewOrganizationServiceClient(conn),
		Users:         rosterv1.NewUserServiceClient(conn),
		Groups:        rosterv1.NewGroupServiceClient(conn),
		Imports:       rosterv1.NewImportServiceClient(conn),
		Changes:       rosterv1.NewChangeServiceClient(conn),
		retry:         retry,
	}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Bearer is gRPC per-call credentials: `authorization: Bearer <Token>`.
type Bearer struct {
	Token string
	// Plaintext allows sending the token without TLS (loopback, development).
	Plaintext bool
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (b Bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	if b.Token == "" {
		return nil, errors.New("roster: empty bearer token")
	}
	return map[string]string{"authorization": "Bearer " + b.Token}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials.
func (b Bearer) RequireTransportSecurity() bool { return !b.Plaintext }

// AsToken is a call option that sends token on this call only, for example
// a signed-in user's access token. Use it on a connection dialed without a
// token: gRPC would send both, and the server reads the first.
func AsToken(token string, plaintext bool) grpc.CallOption {
	return grpc.PerRPCCredentials(Bearer{Token: token, Plaintext: plaintext})
}
