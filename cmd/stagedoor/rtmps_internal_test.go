package main

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// writeSelfSigned writes a self-signed ECDSA certificate for 127.0.0.1 with serial, and
// its key, as PEM files in dir, and returns their paths.
func writeSelfSigned(t *testing.T, dir string, serial int64) (certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for p, b := range map[string][]byte{
		certPath: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPath:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
	} {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return certPath, keyPath
}

// TestRTMPSFlagsRefused: RTMPS flags that do not go together, and a certificate pair
// that is missing or broken, are usage errors (exit 2) that name the problem and create
// no database, for `serve` and for `run`.
func TestRTMPSFlagsRefused(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath := writeSelfSigned(t, dir, 1)
	_, otherKey := writeSelfSigned(t, t.TempDir(), 2)
	missing := filepath.Join(dir, "missing.pem")
	for _, f := range []string{"mediamtx", "mediamtx.yml"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"AddrWithoutCertAndKey", []string{"--rtmps-addr", "127.0.0.1:0"}, "-rtmps-addr needs -rtmps-cert and -rtmps-key"},
		{"AddrWithoutKey", []string{"--rtmps-addr", "127.0.0.1:0", "--rtmps-cert", certPath}, "-rtmps-addr needs"},
		{"AddrWithoutCert", []string{"--rtmps-addr", "127.0.0.1:0", "--rtmps-key", keyPath}, "-rtmps-addr needs"},
		{"CertWithoutAddr", []string{"--rtmps-cert", certPath, "--rtmps-key", keyPath}, "need -rtmps-addr"},
		{"KeyWithoutAddr", []string{"--rtmps-key", keyPath}, "need -rtmps-addr"},
		{"AddrWithoutPort", []string{"--rtmps-addr", "127.0.0.1", "--rtmps-cert", certPath, "--rtmps-key", keyPath}, "like :1937"},
		{"SameAddrAsRTMP", []string{"--rtmp-addr", "127.0.0.1:1935", "--rtmps-addr", "127.0.0.1:1935",
			"--rtmps-cert", certPath, "--rtmps-key", keyPath}, "differ from -rtmp-addr"},
		{"CertMissing", []string{"--rtmps-addr", "127.0.0.1:0", "--rtmps-cert", missing, "--rtmps-key", keyPath}, "missing.pem"},
		{"KeyDoesNotMatch", []string{"--rtmps-addr", "127.0.0.1:0", "--rtmps-cert", certPath, "--rtmps-key", otherKey},
			"private key does not match"},
		{"RTMPSOnlyStillNeedsLoopbackMediaMTX", []string{"--rtmp-addr", "", "--rtmps-addr", "127.0.0.1:0",
			"--rtmps-cert", certPath, "--rtmps-key", keyPath, "--mediamtx-rtmp", "0.0.0.0:1936"}, "loopback"},
	} {
		for _, cmd := range []string{"serve", "run"} {
			if cmd == "serve" && strings.Contains(tt.name, "MediaMTX") {
				continue // `serve` does not bind MediaMTX
			}
			t.Run(tt.name+"/"+cmd, func(t *testing.T) {
				dbPath := filepath.Join(t.TempDir(), "stagedoor.db")
				args := []string{"stagedoor", cmd, "--db", dbPath, "--internal-addr", "127.0.0.1:0", "--public-addr", "127.0.0.1:0"}
				if cmd == "run" {
					args = append(args, "--mediamtx", filepath.Join(dir, "mediamtx"), "--mediamtx-config", filepath.Join(dir, "mediamtx.yml"))
				}
				err := run(t.Context(), append(args, tt.args...), serveEnv, strings.NewReader(""), io.Discard, io.Discard)
				if got := exitCode(err); got != 2 {
					t.Fatalf("%s %v: err = %v (exit %d), want a usage error (exit 2)", cmd, tt.args, err, got)
				}
				if !strings.Contains(err.Error(), tt.want) {
					t.Errorf("err = %q, want it to mention %q", err, tt.want)
				}
				if _, statErr := os.Stat(dbPath); !errors.Is(statErr, os.ErrNotExist) {
					t.Errorf("database file after refusal: stat err = %v, want not exist", statErr)
				}
			})
		}
	}
}

// TestServeRTMPS: `serve --rtmps-addr` terminates TLS with the given certificate and
// relays to MediaMTX's RTMP listener (here a stand-in) with the client's address in the
// PROXY header, with no plain RTMP front at all.
func TestServeRTMPS(t *testing.T) {
	certPath, keyPath := writeSelfSigned(t, t.TempDir(), 7)
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	headers := make(chan string, 1)
	held := make(chan net.Conn, 1) // open until the test ends: closing it would end the relay
	go func() {
		c, err := up.Accept()
		if err != nil {
			return
		}
		held <- c
		line, _ := bufio.NewReader(c).ReadString('\n')
		headers <- line
	}()
	defer func() {
		select {
		case c := <-held:
			c.Close()
		default:
		}
	}()
	addr := "127.0.0.1:" + strconv.Itoa(freeLoopbackPort(t))
	ts := startTestService(t, "--rtmps-addr", addr, "--rtmps-cert", certPath, "--rtmps-key", keyPath,
		"--mediamtx-rtmp", up.Addr().String())

	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) // #nosec G402 -- self-signed test certificate; its serial is checked
	if err != nil {
		t.Fatalf("tls dial: %v\n%s", err, ts.logs)
	}
	defer c.Close()
	if got := c.ConnectionState().PeerCertificates[0].SerialNumber.String(); got != "7" {
		t.Errorf("certificate serial %s, want 7", got)
	}
	if _, err := c.Write([]byte{3}); err != nil { // C0: the relay starts
		t.Fatal(err)
	}
	port := c.NetConn().LocalAddr().(*net.TCPAddr).Port
	select {
	case h := <-headers:
		if !strings.HasPrefix(h, "PROXY TCP4 127.0.0.1 127.0.0.1 "+strconv.Itoa(port)+" ") {
			t.Errorf("PROXY header %q, want the client 127.0.0.1:%d", h, port)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("nothing reached MediaMTX's RTMP listener\n%s", ts.logs)
	}
	if !strings.Contains(ts.logs.String(), `"listener":"rtmps front"`) {
		t.Errorf("no rtmps listener logged:\n%s", ts.logs)
	}
}

// TestMediaMTXEnvRTMPSOnly: with the RTMPS front alone, MediaMTX's RTMP listener still
// moves to loopback behind it and trusts its PROXY header.
func TestMediaMTXEnvRTMPSOnly(t *testing.T) {
	cfg := serviceConfig{internalAddr: "127.0.0.1:9090", mediamtxAPI: "http://127.0.0.1:9997",
		mediamtxRTMP: "127.0.0.1:1936", rtmps: rtmpsConfig{addr: ":1937", cert: "c.pem", key: "k.pem"}}
	env, err := mediamtxEnv(cfg, secrets{hook: "hook-secret-0123456789abcdef"}, nil, "/opt/stagedoor")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"MTX_RTMPADDRESS=127.0.0.1:1936", "MTX_RTMPTRUSTEDPROXIES=127.0.0.1"} {
		if !slices.Contains(env, want) {
			t.Errorf("MediaMTX env lacks %s: %v", want, env)
		}
	}
}

// TestRTMPSURLPrinted: --rtmps-url (or STAGEDOOR_RTMPS_URL) adds the RTMPS server to
// what `user add` prints; without it nothing about RTMPS is printed.
func TestRTMPSURLPrinted(t *testing.T) {
	dbPath := filepath.Join(t.TempDir(), "stagedoor.db")
	env := map[string]string{"STAGEDOOR_DB": dbPath, "STAGEDOOR_INTERNAL_ADDR": "127.0.0.1:1"}
	getenv := func(k string) string { return env[k] }
	var out bytes.Buffer
	if err := run(t.Context(), []string{"stagedoor", "user", "add", "alice"}, getenv, strings.NewReader(""), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "rtmps") {
		t.Errorf("RTMPS printed without --rtmps-url:\n%s", out.String())
	}
	env["STAGEDOOR_RTMPS_URL"] = "rtmps://stream.example:1937/live"
	out.Reset()
	if err := run(t.Context(), []string{"stagedoor", "user", "add", "bob"}, getenv, strings.NewReader(""), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "Server: rtmps://stream.example:1937/live (same Stream Key)") {
		t.Errorf("RTMPS server not printed:\n%s", out.String())
	}
	var js bytes.Buffer
	if err := run(t.Context(), []string{"stagedoor", "user", "add", "carol", "--json", "--rtmps-url", "rtmps://h:443/live"},
		getenv, strings.NewReader(""), &js, io.Discard); err != nil {
		t.Fatal(err)
	}
	var v map[string]string
	if err := json.Unmarshal(js.Bytes(), &v); err != nil || v["rtmps_server_url"] != "rtmps://h:443/live" {
		t.Errorf("user add --json = %s (%v), want rtmps_server_url", js.String(), err)
	}
}
