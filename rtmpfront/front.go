// Package rtmpfront is Stagedoor's RTMP front door: a thin proxy on the public RTMP port
// that makes ScaleEngine's verbatim encoder URLs work with MediaMTX.
//
// In those forms the credentials sit in the server URL, before the stream name:
// Server "rtmp://HOST/live?user=alice&pass=P" + stream name "concert", or the single
// field "rtmp://HOST/live?user=alice&pass=P/concert". MediaMTX joins tcUrl and stream
// name and parses the result, so the name lands inside pass and every such publisher
// lands on the one path "live". The front rewrites the connect and publish commands of
// exactly those connections into the routable form (tcUrl ".../live", stream name
// "concert?user=alice&pass=P"), so each stream gets its own path. Every other connection
// is relayed unchanged. MediaMTX learns the client's real address from a PROXY protocol
// header (rtmpTrustedProxies), so auth still sees the streamer's IP.
package rtmpfront

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/stagedoor/stagedoor"

	"github.com/bluenviron/gortmplib/pkg/amf0"
	"github.com/bluenviron/gortmplib/pkg/bytecounter"
	"github.com/bluenviron/gortmplib/pkg/rawmessage"
)

// Handshake sizes (RTMP spec §5.2): C0/S0 one byte, C1/S1/C2/S2 1536 bytes each.
const handshakeClientBytes = 1 + 1536 + 1536

// Message types the front acts on (spec §5.4, §7.1).
const (
	chunkSizeMessage   = 1
	abortMessage       = 2
	commandAMF0Message = 20
)

// Defaults of Proxy's limits. What a client may do before publish or play is bounded
// tightly: nobody has authenticated yet. OBS and ffmpeg send under 1 KiB there.
const (
	defaultHandshakeTimeout = 10 * time.Second
	defaultMaxPendingBytes  = 32 << 10
	defaultMaxPendingPerIP  = 32
	defaultMaxPending       = 256
	defaultIdleTimeout      = 60 * time.Second
	defaultWriteTimeout     = 30 * time.Second
	copyBufferSize          = 16 << 10
)

// Proxy relays RTMP connections to MediaMTX. Set the fields, then call Serve.
//
// A connection is pending from accept until its client sends publish or play. Pending
// connections are bounded in number, time and bytes, so that a flood of them costs a small,
// fixed amount of memory (about 100 KiB each at most, with MaxPending of them) and a few
// goroutines. A client that breaks a limit is disconnected and logged at warning level with
// its address.
type Proxy struct {
	// Upstream is MediaMTX's RTMP listener, e.g. 127.0.0.1:1936. Required.
	Upstream string
	// Logger receives one line per rewritten, refused or failed connection; never
	// credentials. Warnings about clients are throttled to about 10 lines a second.
	Logger *slog.Logger
	// HandshakeTimeout bounds a pending connection's life: the handshake and the commands
	// up to publish or play. Zero means 10 s.
	HandshakeTimeout time.Duration
	// MaxPendingBytes bounds what a pending connection's client may send after the
	// handshake, in bytes: every chunk and message counts, and a message announced larger
	// than this is refused at its header. After play, it bounds each message. Zero means
	// 32 KiB.
	MaxPendingBytes int
	// MaxPendingPerIP bounds the pending connections from one address (IPv4) or /64
	// (IPv6); more are closed at accept. Zero means 32: a studio's encoders behind one
	// NAT address reconnect together after a restart (with 8, the tenth of ten
	// publishers starting at once from one address was refused), and 32 pending
	// connections cost about 3 MiB.
	MaxPendingPerIP int
	// MaxPending bounds the pending connections from all addresses together. Zero means
	// 256.
	MaxPending int
	// IdleTimeout is how long a publishing client may send nothing at all before it is
	// disconnected. Encoders send media without pause, and MediaMTX drops a publisher
	// silent for its readTimeout (10 s by default) first: this is the backstop. Players
	// are exempt: they send nothing but an acknowledgement every few megabytes. Zero
	// means 60 s.
	IdleTimeout time.Duration
	// WriteTimeout is how long one write towards the client may block; every write gets a
	// new deadline, so a player that keeps reading is never cut, and one that stops is
	// disconnected within WriteTimeout of the front's buffers filling. Zero means 30 s.
	WriteTimeout time.Duration

	logGate throttle
}

// Serve accepts connections on ln until ctx ends (then it returns nil) or ln fails.
// Temporary accept errors, such as running out of file descriptors, are retried with a
// backoff from 5 ms doubling to 1 s, as net/http's Server.Serve does; any other is logged
// and returned.
func (p *Proxy) Serve(ctx context.Context, ln net.Listener) error {
	p.setDefaults()
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	pending := &pendingSet{perIP: make(map[string]int)}
	var delay time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !temporary(err) {
				p.Logger.Error("rtmp front: accept failed; the front stops", "err", err)
				return fmt.Errorf("rtmp front: %w", err)
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			p.warn("rtmp front: accept failed; retrying", "err", err, "retry_in", delay.String())
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(delay):
			}
			continue
		}
		delay = 0
		key := clientKey(conn.RemoteAddr())
		if over := pending.acquire(key, p.MaxPendingPerIP, p.MaxPending); over != "" {
			p.warn("rtmp front: too many connections before publish; refused", "ip", hostOf(conn.RemoteAddr()), "limit", over)
			conn.Close()
			continue
		}
		wg.Go(func() {
			released := false
			release := func() {
				if !released {
					released = true
					pending.release(key)
				}
			}
			defer release()
			p.handle(ctx, conn, release)
		})
	}
}

func (p *Proxy) setDefaults() {
	if p.HandshakeTimeout == 0 {
		p.HandshakeTimeout = defaultHandshakeTimeout
	}
	if p.MaxPendingBytes == 0 {
		p.MaxPendingBytes = defaultMaxPendingBytes
	}
	if p.MaxPendingPerIP == 0 {
		p.MaxPendingPerIP = defaultMaxPendingPerIP
	}
	if p.MaxPending == 0 {
		p.MaxPending = defaultMaxPending
	}
	if p.IdleTimeout == 0 {
		p.IdleTimeout = defaultIdleTimeout
	}
	if p.WriteTimeout == 0 {
		p.WriteTimeout = defaultWriteTimeout
	}
	if p.Logger == nil {
		p.Logger = slog.New(slog.DiscardHandler)
	}
}

// temporary reports whether an accept error may go away by itself: a timeout, a full file
// table (EMFILE, ENFILE), a connection reset before it was accepted, or the kernel short
// of memory.
func temporary(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	// What net/http's Serve retries: syscall.Errno calls EINTR, EMFILE and ENFILE
	// temporary.
	var t interface{ Temporary() bool }
	if errors.As(err, &t) && t.Temporary() {
		return true
	}
	for _, errno := range []syscall.Errno{syscall.ECONNABORTED, syscall.ECONNRESET, syscall.ENOBUFS, syscall.ENOMEM} {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}

// handle relays one connection; release ends its pending state.
func (p *Proxy) handle(ctx context.Context, conn net.Conn, release func()) {
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(p.HandshakeTimeout))
	client := &idleConn{Conn: conn}
	up, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", p.Upstream)
	if err != nil {
		p.Logger.Warn("rtmp front: upstream unreachable", "err", err)
		return
	}
	defer up.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close(); up.Close() })
	defer stop()

	if _, err := io.WriteString(up, proxyHeader(conn.RemoteAddr(), conn.LocalAddr())); err != nil {
		return
	}
	// MediaMTX → client needs no rewriting: copy it raw.
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.copyToClient(conn, up)
		conn.Close()
	}()
	defer func() { up.Close(); <-done }()

	_, err = io.CopyN(up, conn, handshakeClientBytes)
	if err == nil {
		err = p.relay(client, up, release)
	}
	var le *limitError
	var ne net.Error
	switch {
	case errors.As(err, &le):
		p.warn("rtmp front: client broke a limit; disconnected", "ip", hostOf(conn.RemoteAddr()), "limit", le.msg)
	case errors.As(err, &ne) && ne.Timeout():
		p.warn("rtmp front: client silent; disconnected", "ip", hostOf(conn.RemoteAddr()), "after", client.timeoutName(p))
	case !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed):
		p.Logger.Debug("rtmp front: connection ended", "err", err)
	}
}

// copyToClient copies MediaMTX's bytes to the client until either side fails. Each write
// gets a fresh deadline of WriteTimeout, so a client that stops reading is dropped while
// one that keeps reading never is.
func (p *Proxy) copyToClient(client, up net.Conn) {
	buf := make([]byte, copyBufferSize)
	for {
		n, err := up.Read(buf)
		if n > 0 {
			_ = client.SetWriteDeadline(time.Now().Add(p.WriteTimeout))
			if _, werr := client.Write(buf[:n]); werr != nil {
				var ne net.Error
				if errors.As(werr, &ne) && ne.Timeout() {
					p.warn("rtmp front: client stopped reading; disconnected", "ip", hostOf(client.RemoteAddr()),
						"after", p.WriteTimeout.String())
				}
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// idleConn is the client connection as the relay reads it: while idle is set, every read
// gets a fresh deadline of idle; otherwise the deadline set last stands.
type idleConn struct {
	net.Conn
	idle time.Duration
}

func (c *idleConn) Read(b []byte) (int, error) {
	if c.idle > 0 {
		_ = c.SetReadDeadline(time.Now().Add(c.idle))
	}
	return c.Conn.Read(b)
}

// timeoutName names the read timeout in force, for the log.
func (c *idleConn) timeoutName(p *Proxy) string {
	if c.idle > 0 {
		return "IdleTimeout " + c.idle.String()
	}
	return "HandshakeTimeout " + p.HandshakeTimeout.String()
}

// relay copies client messages to MediaMTX one by one, rewriting the commands of
// ScaleEngine-form connections, under the limits of the connection's phase: pending until
// publish or play (HandshakeTimeout, MaxPendingBytes), then publishing (IdleTimeout,
// MediaMTX's message size) or playing (no read timeout, small messages). It returns only
// when the connection ends, with the error that ended it.
func (p *Proxy) relay(client *idleConn, up net.Conn, release func()) error {
	r := newChunkReader(client)
	r.limit(p.MaxPendingBytes, p.MaxPendingBytes, int64(p.MaxPendingBytes))
	w := rawmessage.NewWriter(up, bytecounter.NewWriter(up), false)
	var st state
	pending := true
	for {
		msg, err := r.Read()
		if err != nil {
			return err
		}
		switch msg.Type {
		case chunkSizeMessage:
			v, err := r.setChunkSize(msg.Body)
			if err != nil {
				return err
			}
			if err := w.Write(msg); err != nil {
				return err
			}
			w.SetChunkSize(v)
			continue
		case abortMessage:
			r.abort(msg.Body)
		case commandAMF0Message:
			name, err := st.rewrite(msg)
			if err != nil {
				return err
			}
			if pending && (name == "publish" || name == "play") {
				pending = false
				release()
				if name == "publish" {
					r.limit(maxMessageSize, maxUnfinished, 0)
					client.idle = p.IdleTimeout
					_ = client.SetReadDeadline(time.Now().Add(p.IdleTimeout))
				} else {
					// A player sends little but an acknowledgement every few megabytes,
					// so it gets no read timeout: WriteTimeout notices a dead one.
					r.limit(p.MaxPendingBytes, p.MaxPendingBytes, 0)
					_ = client.SetReadDeadline(time.Time{})
				}
				if st.rewritten {
					p.Logger.Info("rtmp front: ScaleEngine URL form routed", "ip", hostOf(client.RemoteAddr()))
				}
			}
		}
		if err := w.Write(msg); err != nil {
			return err
		}
	}
}

// state is what a connection's connect command told us.
type state struct {
	tcURL     string // the original tcUrl when it carried a query, else ""
	rewritten bool
}

// rewrite edits msg's AMF0 command in place when needed and returns the command name.
func (st *state) rewrite(msg *rawmessage.Message) (string, error) {
	data, err := amf0.Unmarshal(msg.Body)
	if err != nil || len(data) == 0 {
		return "", nil //nolint:nilerr // not ours to judge: MediaMTX will refuse it
	}
	name, _ := data[0].(string)
	changed := false
	switch name {
	case "connect":
		if len(data) < 3 {
			break
		}
		obj, ok := data[2].(amf0.Object)
		if !ok {
			break
		}
		tc, _ := obj.GetString("tcUrl")
		base, ok := appBase(tc)
		if !ok {
			break
		}
		// The query (and anything after it) goes back into the stream name at publish.
		st.tcURL = tc
		for i := range obj {
			switch obj[i].Key {
			case "tcUrl":
				obj[i].Value = base
			case "app":
				obj[i].Value = base[strings.LastIndexByte(base, '/')+1:]
			}
		}
		changed = true
	case "releaseStream", "FCPublish", "publish":
		if st.tcURL == "" || len(data) < 4 {
			break
		}
		stream, _ := data[3].(string)
		if n, ok := RoutableName(st.tcURL, stream); ok {
			data[3] = n
			changed, st.rewritten = true, true
		}
	}
	if changed {
		b, err := data.Marshal()
		if err != nil {
			return name, fmt.Errorf("re-encode %s: %w", name, err)
		}
		msg.Body = b
	}
	return name, nil
}

// appBase returns tcURL cut to scheme://host/app when it carries a query, ok=false when
// it has none (then the connection is relayed unchanged).
func appBase(tcURL string) (string, bool) {
	before, _, hasQuery := strings.Cut(tcURL, "?")
	if !hasQuery {
		return "", false
	}
	u, err := url.Parse(before)
	if err != nil || u.Host == "" {
		return "", false
	}
	app, _, _ := strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
	if app == "" {
		return "", false
	}
	return u.Scheme + "://" + u.Host + "/" + app, true
}

// RoutableName returns the stream name to publish under appBase(tcURL) so that MediaMTX
// sees the path and credentials the encoder meant. MediaMTX joins tcURL and stream as
// tcURL + "/" + stream and parses that, and encoders split one-field URLs at a "/" of
// their choosing (a bcrypt hash contains "/"), so the joined string is the truth:
//   - ".../live/NAME?QUERY": the name is in the path; publish "NAME?QUERY";
//   - ".../live?QUERY/NAME" (ScaleEngine): stream names never contain "/", so the name
//     is what follows the last "/" of the query, whatever "/" the password or its bcrypt
//     hash contains; the query must carry user and pass, or key. Publish "NAME?QUERY".
//
// The query is passed on byte for byte, for MediaMTX to decode. It returns ok=false when
// the joined URL is none of these.
func RoutableName(tcURL, stream string) (string, bool) {
	full := tcURL
	if stream != "" && stream[0] != '?' {
		full += "/" + stream
	}
	u, err := url.Parse(full)
	if err != nil {
		return "", false
	}
	segs := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	switch {
	case len(segs) == 2 && segs[0] != "" && validName(segs[1]):
		return segs[1] + "?" + u.RawQuery, true
	case len(segs) != 1 || segs[0] == "":
		return "", false
	}
	i := strings.LastIndexByte(u.RawQuery, '/')
	if i < 0 {
		return "", false
	}
	query, name := u.RawQuery[:i], u.RawQuery[i+1:]
	q, err := url.ParseQuery(query)
	if err != nil || !validName(name) {
		return "", false
	}
	switch key := q.Get("key"); {
	case key != "" && !stagedoor.IsKey(key):
		return "", false
	case key == "" && (q.Get("user") == "" || q.Get("pass") == ""):
		return "", false
	}
	return name + "?" + query, true
}

// validName accepts only what Stagedoor can route: a channel or stream name, or a key.
func validName(name string) bool {
	return stagedoor.ValidUsername(name) == nil || stagedoor.IsKey(name)
}

// proxyHeader is a PROXY protocol v1 line naming the client, for MediaMTX's
// rtmpTrustedProxies.
func proxyHeader(src, dst net.Addr) string {
	s, d := tcpAddr(src), tcpAddr(dst)
	if s == nil || d == nil {
		return "PROXY UNKNOWN\r\n"
	}
	fam := "TCP4"
	if s.IP.To4() == nil || d.IP.To4() == nil {
		fam = "TCP6"
	}
	return fmt.Sprintf("PROXY %s %s %s %d %d\r\n", fam, s.IP, d.IP, s.Port, d.Port)
}

func tcpAddr(a net.Addr) *net.TCPAddr {
	t, _ := a.(*net.TCPAddr)
	return t
}

func hostOf(a net.Addr) string {
	if t := tcpAddr(a); t != nil {
		return t.IP.String()
	}
	return ""
}

// clientKey is what MaxPendingPerIP counts by: the IPv4 address, or the /64 of an IPv6
// one (a single subscriber is commonly given a whole /64).
func clientKey(a net.Addr) string {
	t := tcpAddr(a)
	if t == nil {
		return ""
	}
	if ip4 := t.IP.To4(); ip4 != nil {
		return ip4.String()
	}
	return t.IP.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// pendingSet counts pending connections, per client key and in all.
type pendingSet struct {
	mu    sync.Mutex
	perIP map[string]int
	total int
}

// acquire counts one more pending connection for key, or returns which limit it would
// break.
func (s *pendingSet) acquire(key string, perIP, total int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.perIP[key] >= perIP:
		return "MaxPendingPerIP"
	case s.total >= total:
		return "MaxPending"
	}
	s.perIP[key]++
	s.total++
	return ""
}

func (s *pendingSet) release(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total--
	if s.perIP[key]--; s.perIP[key] == 0 {
		delete(s.perIP, key)
	}
}

// throttle lets one line through per logEvery and counts the rest, so that a flood of
// refused clients cannot flood the log (or the disk under it).
type throttle struct {
	mu         sync.Mutex
	next       time.Time
	suppressed int
}

const logEvery = 100 * time.Millisecond

// warn logs a warning about a client unless the throttle holds it back; the next line
// that passes says how many were held back.
func (p *Proxy) warn(msg string, args ...any) {
	g := &p.logGate
	g.mu.Lock()
	now := time.Now()
	if now.Before(g.next) {
		g.suppressed++
		g.mu.Unlock()
		return
	}
	g.next = now.Add(logEvery)
	suppressed := g.suppressed
	g.suppressed = 0
	g.mu.Unlock()
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	p.Logger.Warn(msg, args...)
}
