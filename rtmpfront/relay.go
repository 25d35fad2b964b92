package rtmpfront

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bluenviron/gortmplib/pkg/amf0"

	"github.com/stagedoor/stagedoor"
	"github.com/stagedoor/stagedoor/policy"
)

// maxGrantLen bounds the grant the front asks for when it sizes a publish to the length
// of the client's (a longer stream name is padded instead).
const maxGrantLen = 64

// decisionWait is how long a publish waits for its turn at the policy (MaxDecisions).
const decisionWait = 5 * time.Second

// handle relays one connection; release ends its pending state.
func (p *Proxy) handle(ctx context.Context, conn net.Conn, release func()) {
	if p.Kernel != nil {
		conn = newClientConn(conn) // detachable once forwarded in the kernel
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(p.HandshakeTimeout))
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
	// MediaMTX → client needs no rewriting: copy it raw. When MediaMTX ends the
	// connection (a kick through its API, its readTimeout), so does the front, at once;
	// unless the front is about to answer a refused publish itself.
	var answering atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.copyToClient(conn, up)
		if !answering.Load() {
			conn.Close()
		}
	}()
	defer func() { up.Close(); <-done }()

	s := &session{p: p, conn: conn, client: &idleConn{Conn: conn}, up: up, release: release,
		ip: hostOf(conn.RemoteAddr())}
	if s.ip == "" {
		// PROXY UNKNOWN: MediaMTX sees the front's own address.
		s.ip = hostOf(up.LocalAddr())
	}
	_, err = io.CopyN(up, conn, handshakeClientBytes)
	if err == nil {
		err = s.relay(ctx)
	}
	if s.unhold != nil {
		s.unhold()
	}
	var le *limitError
	var ne net.Error
	var rf *refusal
	switch {
	case errors.As(err, &rf):
		// MediaMTX has not seen the publish: close it, let the copier finish what
		// MediaMTX had sent, then answer as MediaMTX would.
		answering.Store(true)
		up.Close()
		<-done
		p.reject(conn, rf.txID)
	case errors.Is(err, io.EOF):
		// The client is done sending: pass the half-close on and let MediaMTX read to the
		// end and close (closing now, with MediaMTX's answers unread, would reset the
		// connection and could lose the client's last bytes).
		if cw, ok := up.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
			select {
			case <-done:
			case <-time.After(p.HandshakeTimeout):
			}
		}
	case errors.As(err, &le):
		p.warn("rtmp front: client broke a limit; disconnected", "ip", hostOf(conn.RemoteAddr()), "limit", le.msg)
	case errors.As(err, &ne) && ne.Timeout():
		p.warn("rtmp front: client silent; disconnected", "ip", hostOf(conn.RemoteAddr()), "after", s.client.timeoutName(p))
	case !errors.Is(err, net.ErrClosed):
		p.Logger.Debug("rtmp front: connection ended", "err", err)
	}
}

// session is one client connection as the front relays it.
type session struct {
	p       *Proxy
	conn    net.Conn // as accepted: a *net.TCPConn, or a *tls.Conn behind an RTMPS listener
	client  *idleConn
	up      net.Conn
	ip      string // the client's address as MediaMTX's auth call names it
	release func()

	r *chunkReader
	w *chunkWriter

	commands  int    // AMF0 commands read
	tcURL     string // the first connect's tcUrl, as MediaMTX would have read it
	base      string // the tcUrl forwarded instead
	acted     bool   // publish or play has been forwarded
	published bool   // publish has: splice as soon as the two readers agree
	unhold    func() // takes the publish out of Proxy.Publishers
}

// errClose ends a connection MediaMTX itself would end (a malformed command) without a
// word to the client.
var errClose = errors.New("malformed command")

// refusal is a publish the front refused: the client is answered and disconnected.
type refusal struct{ txID float64 }

func (e *refusal) Error() string { return "publish refused" }

// relay copies client messages to MediaMTX one by one, rewriting commands, under the
// limits of the connection's phase: pending until publish or play (HandshakeTimeout,
// MaxPendingBytes), then publishing (IdleTimeout, MediaMTX's message size) or playing (no
// read timeout, small messages). A publishing connection is spliced as soon as
// MediaMTX's reader agrees with the front's on every chunk stream; a playing one is
// relayed to its end (players send next to nothing). It returns only when the connection
// ends, with the error that ended it.
func (s *session) relay(ctx context.Context) error {
	s.r = newChunkReader(s.client)
	s.r.limit(s.p.MaxPendingBytes, s.p.MaxPendingBytes, int64(s.p.MaxPendingBytes))
	s.w = newChunkWriter(s.up)
	for {
		if s.published && s.r.unfinished == 0 && s.w.inSync(s.r) {
			return s.splice()
		}
		msg, err := s.r.Read()
		if err != nil {
			return err
		}
		body := msg.Body
		switch msg.Type {
		case chunkSizeMessage:
			v, err := s.r.setChunkSize(msg.Body)
			if err != nil {
				return err
			}
			if err := s.w.write(msg.ChunkStreamID, s.r.streams[msg.ChunkStreamID].headerState, body); err != nil {
				return err
			}
			s.w.chunkSize = v
			continue
		case abortMessage:
			s.r.abort(msg.Body)
		case commandAMF0Message:
			if body, err = s.command(ctx, body); err != nil {
				return err
			}
		}
		if err := s.w.write(msg.ChunkStreamID, s.r.streams[msg.ChunkStreamID].headerState, body); err != nil {
			return err
		}
	}
}

// splice hands the rest of the client's stream to the kernel: the bytes already
// buffered, then the pump (splice(2) between two TCP connections on a clock), or a copy
// from a TLS connection. From here the front enforces no read timeout: MediaMTX
// drops a silent publisher (readTimeout), and copyToClient then closes the client.
func (s *session) splice() error {
	if n := s.r.br.Buffered(); n > 0 {
		b, _ := s.r.br.Peek(n)
		if _, err := s.up.Write(b); err != nil {
			return err
		}
	}
	_ = s.conn.SetReadDeadline(time.Time{})
	if ok, err := s.forwardInKernel(); ok {
		return err
	}
	_, raw := s.conn.(syscall.Conn)
	if s.p.PumpInterval > 0 && raw {
		s.p.Logger.Debug("rtmp front: spliced", "ip", s.ip, "forward", "pump")
		if ok, err := s.p.pump.splice(s.conn, s.up); ok {
			return err
		}
	}
	s.p.Logger.Debug("rtmp front: spliced", "ip", s.ip, "forward", "copy")
	if _, err := io.Copy(s.up, s.conn); err != nil {
		return err
	}
	return io.EOF
}

// kernelDrain bounds how long the front waits, after a kernel-forwarded client's end of
// stream, for the kernel to have handed the client's last bytes to MediaMTX's socket.
const kernelDrain = time.Second

// forwardInKernel hands the client's bytes to the kernel forward and waits for the
// client's end: io.EOF for a half-close, the error otherwise (a kick closes the client).
// ok is false when the kernel cannot take the connection (TLS, no forward, no slot): the
// caller pumps it.
func (s *session) forwardInKernel() (ok bool, err error) {
	client, ok1 := s.conn.(syscall.Conn) // not a TLS connection
	up, ok2 := s.up.(syscall.Conn)
	if s.p.Kernel == nil || !ok1 || !ok2 {
		return false, nil
	}
	// Before the forward starts: from here on, every byte the client's socket receives
	// that the front has not read is the kernel's to pass on.
	mark := handoverMark(client, up)
	stop, err := s.p.Kernel.forward(client, up)
	switch {
	case errors.Is(err, errNoSlot):
		s.p.warn("rtmp front: kernel forward full; pumping a publisher", "slots", kernelForwardSlots)
		return false, nil
	case err != nil:
		// A client that half-closed already (the kernel takes established sockets
		// only), or a socket closed by a kick meanwhile.
		s.p.Logger.Debug("rtmp front: kernel forward refused a publisher; pumping it", "err", err)
		return false, nil
	}
	defer stop()
	s.p.Logger.Debug("rtmp front: spliced", "ip", s.ip, "forward", "kernel")
	if cc, ok := s.conn.(*clientConn); ok {
		// Out of Go's poller, which would wake for every segment the kernel forwards.
		if err := cc.detach(s.p.Kernel.ends); err != nil {
			return true, err
		}
		err = cc.waitEnd()
	} else {
		// Nothing reaches the client socket's own queue while the forward holds it: a
		// read returns only at its end, or when it was closed.
		var b [1]byte
		var n int
		if n, err = s.conn.Read(b[:]); n > 0 {
			return true, errors.New("kernel forward: the client's bytes were not redirected")
		}
	}
	if errors.Is(err, io.EOF) {
		// The kernel may still be sending the client's last bytes to MediaMTX, and
		// stopping the forward drops what it has not sent: wait until it has.
		mark.drained(kernelDrain)
	}
	return true, err
}

// command returns the body of a client's AMF0 command as MediaMTX is to get it. A
// command MediaMTX would refuse to decode ends the connection, as it would there.
func (s *session) command(ctx context.Context, body []byte) ([]byte, error) {
	data, err := amf0.Unmarshal(body)
	if err != nil || len(data) < 3 {
		return nil, errClose
	}
	name, ok1 := data[0].(string)
	txID, ok2 := data[1].(float64)
	if !ok1 || !ok2 {
		return nil, errClose
	}
	s.commands++
	// The first command MediaMTX reads must be connect, and it reads the first only.
	if s.commands == 1 && name != "connect" {
		return nil, errClose
	}
	switch name {
	case "connect":
		if err := s.connect(data); err != nil {
			return nil, err
		}
	case "releaseStream", "FCPublish", "FCUnpublish":
		if len(data) >= 4 {
			if stream, ok := data[3].(string); ok {
				data[3] = s.publicName(stream)
			}
		}
	case "publish":
		if s.acted {
			// MediaMTX ignores a second one; it carries no name to MediaMTX either.
			if len(data) >= 4 {
				data[3] = ""
			}
			break
		}
		return s.publish(ctx, data, txID, len(body))
	case "play":
		if !s.acted {
			s.acted = true
			s.release()
			// A player sends little but an acknowledgement every few megabytes, so it
			// gets no read timeout: WriteTimeout notices a dead one.
			s.r.limit(s.p.MaxPendingBytes, s.p.MaxPendingBytes, 0)
			_ = s.client.SetReadDeadline(time.Time{})
		}
		return body, nil
	default:
		return body, nil
	}
	return marshalFit(data, len(body))
}

// connect cuts the connect command's tcUrl to scheme://host/app, and drops the other
// URLs a client may repeat it in. The first connect's tcUrl is kept for the publish
// decision.
func (s *session) connect(data amf0.Data) error {
	var obj amf0.Object
	switch o := data[2].(type) {
	case amf0.Object:
		obj = o
	case amf0.ECMAArray:
		obj = amf0.Object(o)
	default:
		return errClose
	}
	if _, ok := obj.GetString("app"); !ok {
		return errClose
	}
	tc, ok := obj.GetString("tcUrl")
	if !ok {
		if tc, ok = obj.GetString("tcurl"); !ok {
			return errClose
		}
	}
	tc = mediamtxTcURL(tc)
	base, app := forwardBase(tc)
	if s.commands == 1 {
		s.tcURL, s.base = tc, base
	}
	kept := obj[:0:0]
	for _, e := range obj {
		switch e.Key {
		case "tcUrl", "tcurl":
			e.Value = base
		case "app":
			e.Value = app
		case "swfUrl", "pageUrl":
			continue
		}
		kept = append(kept, e)
	}
	if _, isArray := data[2].(amf0.ECMAArray); isArray {
		data[2] = amf0.ECMAArray(kept)
	} else {
		data[2] = kept
	}
	return nil
}

// publicName is what releaseStream and FCPublish name instead of stream: the public name
// when stream names one, else nothing.
func (s *session) publicName(stream string) string {
	u, err := s.target(stream)
	if err != nil {
		return ""
	}
	if kind, rest := stagedoor.ParsePath(strings.TrimLeft(u.Path, "/")); kind == stagedoor.PathPublic {
		return rest
	}
	return ""
}

// publish decides the client's publish and returns the one MediaMTX is to get, or a
// refusal.
func (s *session) publish(ctx context.Context, data amf0.Data, txID float64, size int) ([]byte, error) {
	if len(data) < 4 {
		return nil, errClose
	}
	stream, ok := data[3].(string)
	if !ok {
		return nil, errClose
	}
	u, err := s.target(stream)
	if err != nil {
		return nil, errClose
	}
	a := attempt(u, s.ip)
	start := time.Now()
	v, name, adm := s.p.decide(ctx, a)
	var fwd string
	if v.Allow {
		fwd, v = s.forwardName(name, len(stream), v, adm)
	}
	if s.p.OnDecision != nil {
		s.p.OnDecision(a, v, time.Since(start))
	}
	if !v.Allow {
		level := slog.LevelInfo
		if v.Busy || v.Fault {
			level = slog.LevelError
		}
		s.p.Logger.Log(ctx, level, "rtmp front: publish refused", "ip", s.ip, "path_kind", v.PathKind,
			"user", v.User, "reason", v.Reason, "key_fp", v.KeyFP)
		return nil, &refusal{txID: float64(int(txID))}
	}
	data[3] = fwd
	body, err := marshalFit(data, size)
	if err != nil {
		return nil, err
	}
	s.p.Logger.Info("rtmp front: publish renamed", "ip", s.ip, "user", v.User, "name", name,
		"path_kind", v.PathKind, "reason", v.Reason, "key_fp", v.KeyFP)
	s.acted, s.published = true, true
	s.unhold = s.p.Publishers.add(name, v.KeyFP, func() {
		// The socket under a TLS connection: tls.Conn.Close would first try to send
		// close_notify, for up to 5 s to a client that does not read.
		if tc, ok := s.conn.(interface{ NetConn() net.Conn }); ok { // *tls.Conn, and tlsConn embedding one
			_ = tc.NetConn().Close()
		} else {
			_ = s.conn.Close()
		}
		_ = s.up.Close()
	})
	s.release()
	s.r.limit(maxMessageSize, maxUnfinished, 0)
	s.client.idle = s.p.IdleTimeout
	_ = s.client.SetReadDeadline(time.Now().Add(s.p.IdleTimeout))
	return body, nil
}

// decide asks the Decider, one decision at a time (MaxDecisions).
func (p *Proxy) decide(ctx context.Context, a policy.Attempt) (policy.Verdict, string, policy.Admission) {
	if p.Decider == nil {
		return policy.Verdict{Reason: "no decider"}, "", policy.Admission{}
	}
	wait := time.NewTimer(decisionWait)
	defer wait.Stop()
	select {
	case p.decisions <- struct{}{}:
	case <-ctx.Done():
		return policy.Verdict{Busy: true, Reason: "front stopping"}, "", policy.Admission{}
	case <-wait.C:
		return policy.Verdict{Busy: true, Reason: "front decisions queued too long"}, "", policy.Admission{}
	}
	defer func() { <-p.decisions }()
	return p.Decider.DecideIngest(ctx, a)
}

// forwardName mints the grant for the publish of live/name and returns the stream name
// that carries it to MediaMTX. The grant is as long as makes that name as long as the
// client's (orig bytes), within [policy.MinGrantLen, maxGrantLen], so that the forwarded
// publish usually has the client's length. v turns into a refusal when no grant can be
// had or the name would not route to live/name.
func (s *session) forwardName(name string, orig int, v policy.Verdict, adm policy.Admission) (string, policy.Verdict) {
	refuse := func(busy bool, reason string) (string, policy.Verdict) {
		return "", policy.Verdict{Busy: busy, Fault: !busy, Reason: reason, PathKind: v.PathKind, User: v.User, KeyFP: v.KeyFP}
	}
	prefix := ""
	switch app := strings.Trim(appOf(s.base), "/"); app {
	case "live":
	case "":
		prefix = stagedoor.LivePrefix
	default:
		return refuse(false, "front cannot route the publish")
	}
	head := prefix + name + "?" + policy.FrontParam + "="
	n := min(max(orig-len(head), policy.MinGrantLen), maxGrantLen)
	grant := s.p.Decider.Mint(name, s.ip, n, v, adm)
	if grant == "" {
		return refuse(true, "too many front grants waiting")
	}
	fwd := head + grant
	// What MediaMTX will join and authorise: exactly live/name with the grant alone.
	u, err := joinURL(s.base, fwd)
	if err != nil || strings.TrimLeft(u.Path, "/") != stagedoor.LivePrefix+name || u.RawQuery != policy.FrontParam+"="+grant {
		return refuse(false, "front cannot route the publish")
	}
	return fwd, v
}

// target is the URL MediaMTX would have joined from the client's tcUrl and stream name,
// with the ScaleEngine forms routed (RoutableName) as the front has always routed them.
func (s *session) target(stream string) (*url.URL, error) {
	tc := s.tcURL
	if base, ok := appBase(tc); ok {
		if n, ok := RoutableName(tc, stream); ok {
			stream = n
		}
		tc = base
	}
	return joinURL(tc, stream)
}

// attempt is the publish as MediaMTX v1.21.0's auth call describes it (internal/servers/
// rtmp/conn.go, internal/auth/manager.go): the path without its leading slashes, the raw
// query, user and pass from the query, and the token MediaMTX derives (the password, else
// a single token or jwt query parameter).
func attempt(u *url.URL, ip string) policy.Attempt {
	q := u.Query()
	a := policy.Attempt{Action: policy.ActionPublish, Protocol: "rtmp", Path: strings.TrimLeft(u.Path, "/"),
		Query: u.RawQuery, User: q.Get("user"), Password: q.Get("pass"), IP: ip}
	switch {
	case a.Password != "":
		a.Token = a.Password
	default:
		if v, err := url.ParseQuery(u.RawQuery); err == nil {
			if len(v["token"]) == 1 {
				a.Token = v["token"][0]
			} else if len(v["jwt"]) == 1 {
				a.Token = v["jwt"][0]
			}
		}
	}
	return a
}

// joinURL is gortmplib's (server_conn.go): how MediaMTX joins tcUrl and stream name.
func joinURL(tcURL, stream string) (*url.URL, error) {
	if stream != "" && stream[0] != '?' {
		tcURL += "/" + stream
	}
	return url.Parse(tcURL)
}

// mediamtxTcURL is the tcUrl as MediaMTX keeps it (gortmplib ServerConn): quotes trimmed,
// and Adobe authentication's parameters dropped.
func mediamtxTcURL(tc string) string {
	tc = strings.Trim(tc, "'")
	i := strings.Index(tc, "?authmod=adobe")
	if i < 0 {
		return tc
	}
	var kept []string
	for kv := range strings.SplitSeq(tc[i+1:], "&") {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "authmod" || k == "user" || k == "challenge" || k == "response" {
			continue
		}
		kept = append(kept, kv)
	}
	tc = tc[:i]
	if len(kept) > 0 {
		tc += "?" + strings.Join(kept, "&")
	}
	return tc
}

// forwardBase is the tcUrl MediaMTX gets instead of tc: scheme://host/app, without user
// information, further path or query; and app.
func forwardBase(tc string) (base, app string) {
	u, err := url.Parse(tc)
	if err != nil {
		return "", ""
	}
	app, _, _ = strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
	b := url.URL{Scheme: u.Scheme, Host: u.Host}
	if app != "" {
		b.Path = "/" + app
	}
	return b.String(), app
}

// appOf is the path of a forwarded base.
func appOf(base string) string {
	u, err := url.Parse(base)
	if err != nil {
		return "?"
	}
	return u.Path
}

// marshalFit encodes data, padded with AMF0 nulls to size bytes when shorter: MediaMTX
// ignores arguments past the ones it reads, and a body of the client's length leaves
// MediaMTX's reader where the client's next header expects it.
func marshalFit(data amf0.Data, size int) ([]byte, error) {
	b, err := data.Marshal()
	if err != nil {
		return nil, errClose
	}
	if len(b) < size {
		b = append(b, bytes.Repeat([]byte{0x05}, size-len(b))...)
	}
	return b, nil
}

// reject answers a refused publish as MediaMTX does (gortmplib ServerConn.RejectAction):
// onStatus NetStream.Publish.Unauthorized on chunk stream 5, in one chunk, then ends the
// connection once the client has had a moment to read it.
func (p *Proxy) reject(conn net.Conn, txID float64) {
	body, _ := amf0.Data{"onStatus", txID, nil, amf0.Object{
		{Key: "level", Value: "error"},
		{Key: "code", Value: "NetStream.Publish.Unauthorized"},
		{Key: "description", Value: "authentication failed"},
	}}.Marshal()
	var buf bytes.Buffer
	w := newChunkWriter(&buf)
	w.chunkSize = 1 << 16 // one chunk: the body (about 110 bytes) is shorter than any chunk size a reader may hold
	_ = w.write(5, headerState{started: true, typ: commandAMF0Message, streamID: 0x1000000}, body)
	_ = conn.SetWriteDeadline(time.Now().Add(p.WriteTimeout))
	if _, err := conn.Write(buf.Bytes()); err != nil {
		return
	}
	// Closing with unread bytes would reset the connection, and the answer with it.
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = conn.SetReadDeadline(time.Now().Add(time.Second))
	_, _ = io.Copy(io.Discard, io.LimitReader(conn, 64<<10))
}
