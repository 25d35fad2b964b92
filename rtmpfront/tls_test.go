package rtmpfront_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor/rtmpfront"
)

// selfSigned returns a self-signed ECDSA certificate for 127.0.0.1 and localhost with
// serial, and its key, both PEM-encoded.
func selfSigned(t *testing.T, serial int64) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "stagedoor test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// certPair writes a self-signed pair with serial into dir and returns the file paths.
func certPair(t *testing.T, dir string, serial int64) (certPath, keyPath string) {
	t.Helper()
	c, k := selfSigned(t, serial)
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeFile(t, certPath, c)
	writeFile(t, keyPath, k)
	return certPath, keyPath
}

// fakeClock is CertFile's clock, moved by the test.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// startRTMPS runs p on a TLS listener with certs and returns its address.
func startRTMPS(t *testing.T, p *rtmpfront.Proxy, certs *rtmpfront.CertFile, handshakeTimeout time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, rtmpfront.TLSListener(ln, rtmpfront.TLSConfig(certs), handshakeTimeout)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// serialOf opens a new TLS connection to addr and returns the serial of the certificate
// it was shown; the connection stays open until the test ends.
func serialOf(t *testing.T, addr string) (string, *tls.Conn) {
	t.Helper()
	d := &net.Dialer{Timeout: waitLong}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true}) // #nosec G402 -- self-signed test certificates; the serial is what is checked
	if err != nil {
		t.Fatalf("tls dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String(), c
}

// TestCertFileRenewal: the RTMPS front relays over TLS with the client's address in the
// PROXY header; a renewed pair is served to new connections without a restart while an
// open connection keeps relaying; a broken renewal keeps the previous certificate and is
// logged once; a renewal caught halfway is not logged, and is picked up once complete.
func TestCertFileRenewal(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath := certPair(t, dir, 1)
	logs := &lockedBuffer{}
	certs, err := rtmpfront.LoadCertFile(certPath, keyPath, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{now: time.Now()}
	rtmpfront.SetCertClock(certs, clock.Now)
	// Upstream connections are read by the test, not drained.
	hold := make(chan struct{})
	up, upConns := startUpstream(t, func(upConn) { <-hold })
	t.Cleanup(func() { close(hold) })
	addr := startRTMPS(t, &rtmpfront.Proxy{Upstream: up}, certs, 0)

	serial, first := serialOf(t, addr)
	if serial != "1" {
		t.Fatalf("first connection: serial %s, want 1", serial)
	}
	var firstUp upConn
	if _, err := first.Write(handshake()); err != nil {
		t.Fatal(err)
	}
	select {
	case firstUp = <-upConns:
	case <-time.After(waitLong):
		t.Fatal("the front did not connect upstream")
	}
	local := first.NetConn().LocalAddr().(*net.TCPAddr)
	if want := "PROXY TCP4 127.0.0.1 127.0.0.1 "; !strings.HasPrefix(firstUp.header, want) ||
		!strings.Contains(firstUp.header, " "+strconv.Itoa(local.Port)+" ") {
		t.Errorf("PROXY header %q does not name the client 127.0.0.1:%d", firstUp.header, local.Port)
	}

	// Renewal, within the second: not looked at yet.
	c2, k2 := selfSigned(t, 2)
	writeFile(t, certPath, c2)
	writeFile(t, keyPath, k2)
	if s, _ := serialOf(t, addr); s != "1" {
		t.Errorf("within a second of the last check: serial %s, want 1", s)
	}
	clock.Add(time.Second)
	if s, _ := serialOf(t, addr); s != "2" {
		t.Errorf("after renewal: serial %s, want 2", s)
	}

	// Broken renewal: a new certificate with the old key.
	c3, _ := selfSigned(t, 3)
	writeFile(t, certPath, c3)
	for range 3 {
		clock.Add(time.Second)
		if s, _ := serialOf(t, addr); s != "2" {
			t.Errorf("after a broken renewal: serial %s, want 2 (the previous pair)", s)
		}
	}
	if n := strings.Count(logs.String(), "renewed certificate not loaded"); n != 1 {
		t.Errorf("broken renewal logged %d times, want once:\n%s", n, logs)
	}

	// A renewal in place, certificate first: between the two writes the pair does
	// not match, which is served around but not logged; then the key arrives.
	c4, k4 := selfSigned(t, 4)
	writeFile(t, certPath, c4)
	clock.Add(time.Second)
	if s, _ := serialOf(t, addr); s != "2" {
		t.Errorf("halfway through a renewal: serial %s, want 2", s)
	}
	writeFile(t, keyPath, k4)
	clock.Add(time.Second)
	if s, _ := serialOf(t, addr); s != "4" {
		t.Errorf("after a good renewal: serial %s, want 4", s)
	}
	if n := strings.Count(logs.String(), "renewed certificate not loaded"); n != 1 {
		t.Errorf("%d renewal errors logged, want only the broken renewal's:\n%s", n, logs)
	}
	if !strings.Contains(logs.String(), "certificate reloaded") {
		t.Errorf("no reload logged:\n%s", logs)
	}

	// The first connection was relayed throughout: its RTMP handshake reached upstream,
	// and its connect command, sent after the renewals, does too.
	write(t, first, connect(t))
	_ = firstUp.conn.SetReadDeadline(time.Now().Add(waitLong))
	if _, err := io.ReadFull(firstUp.r, make([]byte, len(handshake())+1)); err != nil {
		t.Errorf("upstream of the first connection: %v", err)
	}
}

// TestLoadCertFileErrors: a missing or broken pair at start is an error that names the
// file, and no CertFile.
func TestLoadCertFileErrors(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath := certPair(t, dir, 1)
	_, otherKey := selfSigned(t, 2)
	mismatched := filepath.Join(dir, "other.key")
	writeFile(t, mismatched, otherKey)
	garbage := filepath.Join(dir, "garbage.pem")
	writeFile(t, garbage, []byte("not a certificate\n"))
	missing := filepath.Join(dir, "missing.pem")
	for _, tt := range []struct {
		name, cert, key, want string
	}{
		{"MissingCert", missing, keyPath, "missing.pem"},
		{"MissingKey", certPath, missing, "missing.pem"},
		{"KeyDoesNotMatch", certPath, mismatched, "private key does not match"},
		{"NotPEM", garbage, keyPath, "garbage.pem"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := rtmpfront.LoadCertFile(tt.cert, tt.key, nil)
			if err == nil || c != nil {
				t.Fatalf("LoadCertFile = %v, %v; want an error", c, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

// TestRTMPSHandshakeBounded: a client that opens a TCP connection to the RTMPS port and
// never finishes the TLS handshake (silent, or a ClientHello cut short) is disconnected,
// both by the listener's own handshake timeout and, with that one long, by the Proxy's
// HandshakeTimeout (its read deadline covers the handshake, which runs on first Read);
// its pending slot is then free for the next client.
func TestRTMPSHandshakeBounded(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath := certPair(t, dir, 1)
	certs, err := rtmpfront.LoadCertFile(certPath, keyPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name          string
		listenerLimit time.Duration
		proxyLimit    time.Duration
		send          []byte
	}{
		{"SilentListenerTimeout", 200 * time.Millisecond, time.Hour, nil},
		{"SilentProxyTimeout", time.Hour, 200 * time.Millisecond, nil},
		{"PartialHelloListenerTimeout", 200 * time.Millisecond, time.Hour, []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01}},
		{"PartialHelloProxyTimeout", time.Hour, 200 * time.Millisecond, []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up, _ := startUpstream(t, nil)
			addr := startRTMPS(t, &rtmpfront.Proxy{Upstream: up, HandshakeTimeout: tt.proxyLimit, MaxPendingPerIP: 1},
				certs, tt.listenerLimit)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(tt.send); err != nil {
				t.Fatal(err)
			}
			if !closedByFront(c, waitLong) {
				t.Fatal("a client that never finished the TLS handshake was not disconnected")
			}
			// Its pending slot is free: with MaxPendingPerIP 1, the next client gets a
			// certificate (retried: the slot is released just after the close).
			deadline := time.Now().Add(waitLong)
			for {
				c2, err := tls.DialWithDialer(&net.Dialer{Timeout: waitShort}, "tcp", addr,
					&tls.Config{InsecureSkipVerify: true}) // #nosec G402 -- self-signed test certificate
				if err == nil {
					c2.Close()
					return
				}
				if !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "reset") || time.Now().After(deadline) {
					t.Fatalf("next client: %v", err)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

// TestRTMPSRefusesOldTLS: TLS 1.0 and 1.1 clients are refused.
func TestRTMPSRefusesOldTLS(t *testing.T) {
	certPath, keyPath := certPair(t, t.TempDir(), 1)
	certs, err := rtmpfront.LoadCertFile(certPath, keyPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	up, _ := startUpstream(t, nil)
	addr := startRTMPS(t, &rtmpfront.Proxy{Upstream: up}, certs, 0)
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11}) // #nosec G402 -- testing the refusal
	if err == nil {
		c.Close()
		t.Fatal("a TLS 1.1 client completed the handshake")
	}
}
