// Package rtmpfront is Stagedoor's RTMP front door: a proxy on the public RTMP port that
// renames a publish at ingest, so that a stream key, password or password hash never
// reaches MediaMTX.
//
// A client's publish names its credentials in one of several forms: the key as the stream
// name (live/<key>), name?key=<key>, or ScaleEngine's user and pass in the server URL
// ("rtmp://HOST/live?user=alice&pass=P" + "concert", or the single field
// "rtmp://HOST/live?user=alice&pass=P/concert"). The front reads the connection's commands,
// decides the publish itself with the policy (Decider), in process, with the client's real
// address, and:
//   - refused: MediaMTX never sees the publish; the client gets the error MediaMTX itself
//     would send (onStatus NetStream.Publish.Unauthorized) and is disconnected;
//   - allowed: MediaMTX gets the publish of live/<public name>?sd=<grant>, where the grant
//     is single use, short lived and bound to that name and address (policy.FrontGrants),
//     and MediaMTX's auth call presents it.
//
// The connect command reaches MediaMTX with its tcUrl cut to scheme://host/app, and
// releaseStream and FCPublish name the public name or nothing. Once the publish is
// forwarded and MediaMTX's chunk reader is in the state the client's own headers assume
// (chunkWriter), the front stops parsing and splices the two connections: the rest of the
// stream is copied by the kernel. MediaMTX learns the client's real address from a PROXY
// protocol header (rtmpTrustedProxies).
package rtmpfront

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/stagedoor/stagedoor"
	"github.com/stagedoor/stagedoor/policy"
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
	defaultPumpInterval     = 50 * time.Millisecond
	copyBufferSize          = 16 << 10
)

// Decider is the policy as the front needs it: policy.Policy's DecideIngest and
// policy.FrontGrants' Mint.
type Decider interface {
	// DecideIngest decides an RTMP publish as MediaMTX's auth call would, and names the
	// public name it goes out under.
	DecideIngest(ctx context.Context, a policy.Attempt) (policy.Verdict, string, policy.Admission)
	// Mint returns a grant of n characters for the publish of live/name from ip, "" when
	// it cannot.
	Mint(name, ip string, n int, v policy.Verdict, adm policy.Admission) string
}

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
	// Decider decides each publish. Nil: every publish is refused.
	Decider Decider
	// OnDecision, if set, is called after each publish decision of the front's, with the
	// attempt (which holds the credentials: log none of it) and how long it took.
	OnDecision func(policy.Attempt, policy.Verdict, time.Duration)
	// Logger receives one line per renamed, refused or failed connection; never
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
	// disconnected, until the front splices the connection (usually at once after
	// publish). After the splice the front reads nothing: MediaMTX drops a publisher
	// silent for its readTimeout (10 s by default), and the front then closes the client.
	// Players are exempt: they send nothing but an acknowledgement every few megabytes.
	// Zero means 60 s.
	IdleTimeout time.Duration
	// WriteTimeout is how long one write towards the client may block; every write gets a
	// new deadline, so a player that keeps reading is never cut, and one that stops is
	// disconnected within WriteTimeout of the front's buffers filling. Zero means 30 s.
	WriteTimeout time.Duration

	// MaxDecisions bounds the publish decisions the front makes at once; more wait their
	// turn (up to 5 s, then they are refused as busy). Zero means 1: MediaMTX asks its auth
	// one request at a time, and the policy's bcrypt budget (policy.Passwords), sized for
	// that, refuses a verification beyond GOMAXPROCS at once rather than queue it: ten
	// ScaleEngine-form encoders starting together must queue here, not be refused there.
	MaxDecisions int

	// PumpInterval is how often the bytes of spliced publishers are handed to MediaMTX
	// (see pump_linux.go): each publisher's media reaches MediaMTX at most this much later,
	// and the front wakes this often instead of on every frame of every encoder. Zero
	// means 50 ms; negative copies each connection as bytes arrive, as io.Copy does (and
	// as it is done on a TLS connection, and off Linux).
	PumpInterval time.Duration

	// Kernel, if set, forwards spliced publishers' bytes inside the kernel (see
	// sockmap_linux.go), so the front does not wake for them at all; a connection it cannot
	// take (TLS, no free slot) is pumped.
	Kernel *KernelForward

	// Publishers, if set, holds every publish this front let through until its connection
	// ends, so that a kick can close it here (Publishers.Disconnect).
	Publishers *Publishers

	pump      pump
	logGate   throttle
	decisions chan struct{}
}

// kernelForwardSlots is how many publishers the kernel forward carries at once; more are
// pumped.
const kernelForwardSlots = 4096

// errNoSlot: every slot of the kernel forward is taken; the caller pumps instead.
var errNoSlot = errors.New("kernel forward: no free slot")

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
	if p.MaxDecisions == 0 {
		p.MaxDecisions = 1
	}
	if p.PumpInterval == 0 {
		p.PumpInterval = defaultPumpInterval
	}
	p.pump.interval = p.PumpInterval
	p.decisions = make(chan struct{}, p.MaxDecisions)
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
