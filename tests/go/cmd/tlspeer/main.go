// Command tlspeer is the Go side of the AutoMTLS interop tests (tests/it/autotls.rs).
//
// It makes a throwaway certificate with the same fields go-plugin's AutoMTLS certificates
// have, builds the TLS configuration go-plugin builds from it, and completes one TLS
// connection with a Rust peer, echoing one line over it. Only the standard library is used,
// so the test exercises Go's crypto/tls and crypto/x509 exactly as go-plugin hosts and
// plugins do, without gRPC in the way.
//
// Modes (the first argument):
//
//	server   Acts like a go-plugin plugin. Reads the peer's PEM certificate from
//	         PLUGIN_CLIENT_CERT, listens on 127.0.0.1, prints a go-plugin handshake line
//	         "1|1|tcp|<addr>|grpc|<base64 DER, no padding>" and serves one connection.
//	client   Acts like a go-plugin host. Prints "cert <base64 of its PEM certificate>", reads
//	         "<addr>|<base64 DER>" from stdin and dials that address.
//	gencert  Prints "cert <base64 of a PEM certificate>" and exits.
//
// In both roles, once the handshake is done, tlspeer reads one line and writes it back with
// an "echo: " prefix. It reads first so that a peer refusing its certificate shows up as the
// peer's TLS alert, not as a write racing the peer's close.
//
// Progress goes to stdout, one line per event, for the test to follow:
// "handshake ok version=<v> alpn=<p>", "handshake error: <e>", "read error: <e>" and
// "echoed <line>". The exit status is 0 only if the echo completed.
// TLSPEER_MAX_VERSION=1.2 caps the TLS version at 1.2.
package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"strings"
	"time"
)

const (
	hostName = "localhost"
	// alpnH2 is what gRPC negotiates; grpc-go 1.67 and later refuse connections without it.
	alpnH2 = "h2"
	// ioTimeout bounds every network wait so a stuck peer fails the test instead of hanging it.
	ioTimeout = 30 * time.Second
)

func main() {
	if len(os.Args) != 2 {
		fail("usage: tlspeer server|client|gencert")
	}
	var err error
	switch os.Args[1] {
	case "server":
		err = runServer()
	case "client":
		err = runClient()
	case "gencert":
		err = runGencert()
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fail(err.Error())
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "tlspeer:", msg)
	os.Exit(1)
}

// selfSigned is a certificate made by newSelfSigned, in the forms the modes need.
type selfSigned struct {
	pair tls.Certificate
	der  []byte
	pem  []byte
}

// newSelfSigned makes a certificate matching go-plugin's AutoMTLS one field for field:
// ECDSA P-521 key (Go then signs with ECDSA-SHA512), a random serial below 2^128,
// subject O=HashiCorp CN=localhost, SAN DNS localhost, valid from 30 s ago for
// 262980 h, CA with both TLS extended key usages.
func newSelfSigned() (*selfSigned, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("drawing serial: %w", err)
	}
	now := time.Now()
	tmpl := x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{"HashiCorp"}, CommonName: hostName},
		DNSNames:     []string{hostName},
		NotBefore:    now.Add(-30 * time.Second),
		NotAfter:     now.Add(262980 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment |
			x509.KeyUsageKeyAgreement | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, &tmpl, &priv.PublicKey, priv)
	if err != nil {
		return nil, fmt.Errorf("creating certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("encoding key: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("loading key pair: %w", err)
	}
	return &selfSigned{pair: pair, der: der, pem: certPEM}, nil
}

// tlsConfig is the configuration go-plugin gives both sides once each knows the other's
// certificate: present our certificate, demand one from the client, and trust a pool
// holding nothing but the peer's certificate, for both roles.
func tlsConfig(own *selfSigned, peers *x509.CertPool) *tls.Config {
	cfg := &tls.Config{
		Certificates: []tls.Certificate{own.pair},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    peers,
		RootCAs:      peers,
		ServerName:   hostName,
		MinVersion:   tls.VersionTLS12,
		// grpc-go's credentials.NewTLS adds h2 to whatever the config lists.
		NextProtos: []string{alpnH2},
	}
	if os.Getenv("TLSPEER_MAX_VERSION") == "1.2" {
		cfg.MaxVersion = tls.VersionTLS12
	}
	return cfg
}

// handshake completes the TLS handshake and enforces ALPN h2 as grpc-go does.
func handshake(conn *tls.Conn) error {
	if err := conn.SetDeadline(time.Now().Add(ioTimeout)); err != nil {
		return err
	}
	if err := conn.Handshake(); err != nil {
		fmt.Println("handshake error:", err)
		return err
	}
	state := conn.ConnectionState()
	if state.NegotiatedProtocol != alpnH2 {
		err := fmt.Errorf("ALPN negotiated %q, not %q", state.NegotiatedProtocol, alpnH2)
		fmt.Println("handshake error:", err)
		return err
	}
	fmt.Printf("handshake ok version=%s alpn=%s\n",
		tls.VersionName(state.Version), state.NegotiatedProtocol)
	return nil
}

func runServer() error {
	peers := x509.NewCertPool()
	if !peers.AppendCertsFromPEM([]byte(os.Getenv("PLUGIN_CLIENT_CERT"))) {
		return errors.New("PLUGIN_CLIENT_CERT holds no PEM certificate")
	}
	own, err := newSelfSigned()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	fmt.Printf("1|1|tcp|%s|grpc|%s\n", ln.Addr(), base64.RawStdEncoding.EncodeToString(own.der))

	raw, err := ln.Accept()
	if err != nil {
		return err
	}
	conn := tls.Server(raw, tlsConfig(own, peers))
	defer conn.Close()
	if err := handshake(conn); err != nil {
		return err
	}
	return echoOnce(conn)
}

// echoOnce reads one line from conn and writes it back with an "echo: " prefix.
func echoOnce(conn *tls.Conn) error {
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		fmt.Println("read error:", err)
		return err
	}
	if _, err := fmt.Fprintf(conn, "echo: %s", line); err != nil {
		fmt.Println("write error:", err)
		return err
	}
	fmt.Println("echoed", strings.TrimSpace(line))
	return nil
}

func runClient() error {
	own, err := newSelfSigned()
	if err != nil {
		return err
	}
	fmt.Println("cert", base64.StdEncoding.EncodeToString(own.pem))

	reply, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil {
		return fmt.Errorf("reading the peer's address and certificate from stdin: %w", err)
	}
	addr, certB64, ok := strings.Cut(strings.TrimSpace(reply), "|")
	if !ok {
		return fmt.Errorf("stdin line %q is not <addr>|<base64 DER>", reply)
	}
	der, err := base64.RawStdEncoding.DecodeString(certB64)
	if err != nil {
		return fmt.Errorf("decoding the peer's certificate: %w", err)
	}
	peer, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("parsing the peer's certificate: %w", err)
	}
	peers := x509.NewCertPool()
	peers.AddCert(peer)

	raw, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		return err
	}
	conn := tls.Client(raw, tlsConfig(own, peers))
	defer conn.Close()
	if err := handshake(conn); err != nil {
		return err
	}
	return echoOnce(conn)
}

func runGencert() error {
	own, err := newSelfSigned()
	if err != nil {
		return err
	}
	fmt.Println("cert", base64.StdEncoding.EncodeToString(own.pem))
	return nil
}
