package rtmpfront

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// certCheckEvery is how often, at most, CertFile looks at its files for a renewal: once
// a second, on a handshake, so that a handshake flood costs two stat calls a second.
const certCheckEvery = time.Second

// CertFile serves a PEM certificate and key pair read from two files, and picks up a
// renewal without a restart: on a TLS handshake, at most once a second, it compares the
// files' modification time, size and inode with those it loaded and reloads them when
// they changed. A renewed pair that does not load (a half-written file, a key that does
// not match the certificate) leaves the previous pair in use; if it still fails at the
// next check (a renewal in progress gets that long to finish) it is logged once, at
// error level. The next change of the files is tried again. Create it with
// LoadCertFile.
type CertFile struct {
	certPath, keyPath string
	logger            *slog.Logger
	// now is the clock of the once-a-second check; tests replace it.
	now func() time.Time

	mu           sync.Mutex
	cert         *tls.Certificate
	loaded       [2]fileStamp // the files' stamps when cert was read
	failed       [2]fileStamp // the stamps of the last pair that failed to load
	failedErr    string       // and its error,
	failedLogged bool         // logged once, at the second check that finds it
	nextCheck    time.Time
}

// fileStamp is what tells a renewed file from the one loaded: certbot swaps a symlink
// (new inode), others rewrite in place (new mtime, usually a new size).
type fileStamp struct {
	mtime time.Time
	size  int64
	ino   uint64
}

// LoadCertFile reads the certificate chain (PEM, leaf first) at certPath and its private
// key at keyPath. It returns an error naming the problem when either is missing or
// unreadable, or they do not form a pair: the RTMPS listener must not start without a
// certificate. logger (nil: discard) receives one line per reload and per failed renewal.
func LoadCertFile(certPath, keyPath string, logger *slog.Logger) (*CertFile, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &CertFile{certPath: certPath, keyPath: keyPath, logger: logger, now: time.Now}
	stamps, err := c.stat()
	if err != nil {
		return nil, err
	}
	cert, err := c.load()
	if err != nil {
		return nil, err
	}
	c.cert, c.loaded = cert, stamps
	c.nextCheck = c.now().Add(certCheckEvery)
	return c, nil
}

// GetCertificate is tls.Config's GetCertificate: the current pair, reloaded first if the
// files changed since the last check. It never fails once LoadCertFile succeeded.
func (c *CertFile) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := c.now(); !now.Before(c.nextCheck) {
		c.nextCheck = now.Add(certCheckEvery)
		c.reload()
	}
	return c.cert, nil
}

// reload loads the files when their stamps changed since the pair in use or the last
// failure; c.mu is held.
func (c *CertFile) reload() {
	stamps, err := c.stat()
	switch {
	case err == nil && stamps == c.loaded:
		c.failed, c.failedErr, c.failedLogged = [2]fileStamp{}, "", false
		return
	case err == nil && stamps == c.failed:
		c.logFailure()
		return
	}
	var cert *tls.Certificate
	if err == nil {
		cert, err = c.load()
	}
	if err != nil {
		if msg := err.Error(); stamps != c.failed || msg != c.failedErr {
			// First sight of this pair: a renewal that rewrites the files in place may
			// be half done (the certificate written, the key not yet). Logged only if
			// the same pair still fails at the next check.
			c.failed, c.failedErr, c.failedLogged = stamps, msg, false
			return
		}
		c.logFailure()
		return
	}
	c.cert, c.loaded = cert, stamps
	c.failed, c.failedErr, c.failedLogged = [2]fileStamp{}, "", false
	c.logger.Info("rtmps: certificate reloaded", "serial", cert.Leaf.SerialNumber.String(),
		"not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
}

// logFailure logs the failed renewal once; c.mu is held.
func (c *CertFile) logFailure() {
	if !c.failedLogged {
		c.failedLogged = true
		c.logger.Error("rtmps: renewed certificate not loaded; the previous one stays in use", "err", c.failedErr)
	}
}

func (c *CertFile) stat() ([2]fileStamp, error) {
	var out [2]fileStamp
	for i, p := range []string{c.certPath, c.keyPath} {
		fi, err := os.Stat(p)
		if err != nil {
			return [2]fileStamp{}, fmt.Errorf("rtmps certificate: %w", err)
		}
		out[i] = fileStamp{mtime: fi.ModTime(), size: fi.Size()}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			out[i].ino = st.Ino
		}
	}
	return out, nil
}

func (c *CertFile) load() (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(c.certPath, c.keyPath)
	if err != nil {
		return nil, fmt.Errorf("rtmps certificate %s and key %s: %w", c.certPath, c.keyPath, err)
	}
	if cert.Leaf == nil { // set by LoadX509KeyPair since Go 1.23; checked for the log
		return nil, errors.New("rtmps certificate: no leaf certificate")
	}
	return &cert, nil
}

// TLSConfig is the server configuration of the RTMPS listener: TLS 1.2 and later, Go's
// default cipher suites, and certificates from certs.
func TLSConfig(certs *CertFile) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: certs.GetCertificate,
	}
}

// TLSListener wraps ln so that every accepted connection is served over TLS with cfg:
// give it to Proxy.Serve for RTMPS. Accept never handshakes (a slow client must not hold
// up the accept loop); the handshake runs on a connection's first Read or Write, bounded
// by handshakeTimeout (zero: 10 s) whatever deadlines the caller set, so a client that
// never finishes it holds a goroutine and a pending slot for that long at most. The
// Proxy's read deadline (HandshakeTimeout) bounds it too.
func TLSListener(ln net.Listener, cfg *tls.Config, handshakeTimeout time.Duration) net.Listener {
	if handshakeTimeout <= 0 {
		handshakeTimeout = defaultHandshakeTimeout
	}
	return &tlsListener{Listener: ln, cfg: cfg, timeout: handshakeTimeout}
}

type tlsListener struct {
	net.Listener
	cfg     *tls.Config
	timeout time.Duration
}

func (l *tlsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &tlsConn{Conn: tls.Server(c, l.cfg), timeout: l.timeout}, nil
}

// tlsConn handshakes under its own timeout before the first Read or Write. It embeds
// *tls.Conn, so ConnectionState and the rest stay reachable.
type tlsConn struct {
	*tls.Conn
	timeout time.Duration
	once    sync.Once
	err     error
}

func (c *tlsConn) handshake() error {
	c.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		defer cancel()
		c.err = c.HandshakeContext(ctx)
	})
	return c.err
}

func (c *tlsConn) Read(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

func (c *tlsConn) Write(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}
