package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeCert writes a self-signed ECDSA certificate for 127.0.0.1 with serial, and its
// key, to certPath and keyPath, as a renewal tool would.
func writeCert(t *testing.T, certPath, keyPath string, serial int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// certSerial opens a new TLS connection to addr and returns the serial of the
// certificate it was shown.
func certSerial(addr string) (string, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true}) // #nosec G402 -- self-signed test certificate; its serial is what is checked
	if err != nil {
		return "", err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
}

// TestRTMPS: ffmpeg publishes over rtmps:// to the front's TLS port, with the key in the
// query and with the key as the stream name, and both play at their public names over
// HLS; MediaMTX itself has no TLS. The certificate files are then renewed in place: a new
// connection is shown the new certificate without a restart, while the streams published
// under the old one keep playing.
func TestRTMPS(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "fullchain.pem"), filepath.Join(dir, "privkey.pem")
	writeCert(t, certPath, keyPath, 1)
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	s := startStack(t, stackOptions{args: []string{
		"--rtmps-addr", addr, "--rtmps-cert", certPath, "--rtmps-key", keyPath,
		"--rtmps-url", "rtmps://" + addr + "/live",
	}})
	benwKey := s.addUser("benw")
	aliceKey := s.addUser("alice")
	rtmps := func(path string) string { return "rtmps://" + addr + "/live/" + path }

	if got, err := certSerial(addr); err != nil || got != "1" {
		t.Fatalf("certificate before renewal: serial %q, %v; want 1", got, err)
	}

	inQuery := s.publish(rtmps("benw?key=" + benwKey))
	t.Run("KeyInQueryPlays", func(t *testing.T) {
		s.with(t).waitLive("benw", true, 20*time.Second)
		if err := playHLS(t, s.hlsURL("benw"), 10*time.Second); err != nil {
			t.Fatalf("public HLS of benw: %v\npublisher: %s", err, inQuery.out)
		}
	})
	// The key as the stream name, as OBS's Stream Key field sends it: whether the front
	// renames it or MediaMTX's alias republishes it, it plays at the public name.
	asName := s.publish(rtmps(aliceKey))
	t.Run("KeyPathPlaysAtPublicName", func(t *testing.T) {
		s.with(t).waitLive("alice", true, 20*time.Second)
		if err := playHLS(t, s.hlsURL("alice"), 10*time.Second); err != nil {
			t.Fatalf("public HLS of alice: %v\npublisher: %s", err, asName.out)
		}
	})

	t.Run("RenewedCertificateWithoutRestart", func(t *testing.T) {
		writeCert(t, certPath, keyPath, 2)
		eventually(t, 10*time.Second, "new certificate served", func() error {
			got, err := certSerial(addr)
			if err != nil {
				return err
			}
			if got != "2" {
				return fmt.Errorf("serial %s", got)
			}
			return nil
		})
		eventually(t, 5*time.Second, "reload logged", func() error {
			if !strings.Contains(s.out.String(), "certificate reloaded") {
				return fmt.Errorf("not in the service's log")
			}
			return nil
		})
		for name, p := range map[string]*publisher{"benw": inQuery, "alice": asName} {
			select {
			case <-p.exited:
				t.Fatalf("%s's ffmpeg exited after the renewal: %v\n%s", name, p.err, p.out)
			default:
			}
			if err := playHLS(t, s.hlsURL(name), 10*time.Second); err != nil {
				t.Errorf("public HLS of %s after the renewal: %v", name, err)
			}
		}
	})

	inQuery.stop()
	asName.stop()
	s.waitLive("benw", false, 10*time.Second)
	t.Run("KeysNotInOutput", func(t *testing.T) {
		out := s.out.String()
		for name, key := range map[string]string{"benw": benwKey, "alice": aliceKey} {
			if strings.Contains(out, key) {
				t.Errorf("stagedoor run output contains %s's key", name)
			}
		}
	})
}
