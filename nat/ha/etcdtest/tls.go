package etcdtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// PKI is a throw-away CA with a server certificate for 127.0.0.1 and a
// client certificate, as PEM files in a temporary directory.
type PKI struct {
	CA, ServerCert, ServerKey, ClientCert, ClientKey string
}

// NewPKI writes a PKI for tb.
func NewPKI(tb testing.TB) PKI {
	tb.Helper()
	dir := tb.TempDir()
	p := PKI{CA: filepath.Join(dir, "ca.pem"), ServerCert: filepath.Join(dir, "server.pem"), ServerKey: filepath.Join(dir, "server-key.pem"),
		ClientCert: filepath.Join(dir, "client.pem"), ClientKey: filepath.Join(dir, "client-key.pem")}
	caKey, caDER := newCert(tb, nil, nil, &x509.Certificate{Subject: pkix.Name{CommonName: "pptpgw test CA"}, IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true})
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		tb.Fatal(err)
	}
	writePEM(tb, p.CA, "CERTIFICATE", caDER)
	for _, c := range []struct {
		cert, key string
		tmpl      *x509.Certificate
	}{
		{p.ServerCert, p.ServerKey, &x509.Certificate{Subject: pkix.Name{CommonName: "etcd"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}},
		{p.ClientCert, p.ClientKey, &x509.Certificate{Subject: pkix.Name{CommonName: "pptpgw"},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}},
	} {
		key, der := newCert(tb, ca, caKey, c.tmpl)
		writePEM(tb, c.cert, "CERTIFICATE", der)
		kder, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			tb.Fatal(err)
		}
		writePEM(tb, c.key, "EC PRIVATE KEY", kder)
	}
	return p
}

var serial int64

func newCert(tb testing.TB, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, tmpl *x509.Certificate) (*ecdsa.PrivateKey, []byte) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	serial++
	tmpl.SerialNumber = big.NewInt(serial)
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		tb.Fatal(err)
	}
	return key, der
}

func writePEM(tb testing.TB, path, typ string, der []byte) {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
}

// StartTLS runs a one-member etcd that serves clients over TLS and
// requires a client certificate of p's CA.
func StartTLS(tb testing.TB, p PKI) *Etcd {
	tb.Helper()
	bin := lookBinary(tb)
	dir := tb.TempDir()
	e := &Etcd{bin: bin, tb: tb, name: "tls", Dir: filepath.Join(dir, "data"),
		URL: "https://" + freeAddr(tb), peer: "http://" + freeAddr(tb), pki: &p}
	e.cluster = e.name + "=" + e.peer
	var err error
	if e.Log, err = os.Create(filepath.Join(dir, "etcd.log")); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		e.Stop()
		e.Log.Close()
	})
	if err := e.Start(); err != nil {
		tb.Fatal(err)
	}
	return e
}

// tlsArgs are the client TLS flags of a member with a PKI.
func (e *Etcd) tlsArgs() []string {
	if e.pki == nil {
		return nil
	}
	return []string{"--cert-file", e.pki.ServerCert, "--key-file", e.pki.ServerKey,
		"--trusted-ca-file", e.pki.CA, "--client-cert-auth"}
}

// healthClient is the HTTP client that asks a member's /health.
func (e *Etcd) healthClient() (*http.Client, error) {
	if e.pki == nil {
		return http.DefaultClient, nil
	}
	cert, err := tls.LoadX509KeyPair(e.pki.ClientCert, e.pki.ClientKey)
	if err != nil {
		return nil, err
	}
	pem, err := os.ReadFile(e.pki.CA)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}}}, nil
}
