package rtmpfront_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib/pkg/amf0"
	"github.com/bluenviron/gortmplib/pkg/bytecounter"
	"github.com/bluenviron/gortmplib/pkg/rawmessage"

	"github.com/stagedoor/stagedoor/policy"
	"github.com/stagedoor/stagedoor/rtmpfront"
)

// Timeouts of the tests: generous, for a loaded machine under -race. Outcomes are what is
// asserted, never how fast they came.
const (
	waitLong  = 30 * time.Second // for something that must happen
	waitShort = 2 * time.Second  // for something that must not have happened yet
)

// lockedBuffer collects the front's log from its goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// upConn is one connection the front opened to the stand-in MediaMTX.
type upConn struct {
	header string // the PROXY protocol line
	conn   net.Conn
	r      *bufio.Reader
}

// startUpstream stands in for MediaMTX: it reads each connection's PROXY header, reports
// the connection, and hands it to serve (nil: read and discard everything).
func startUpstream(t *testing.T, serve func(upConn)) (string, <-chan upConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := make(chan upConn, 64)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			wg.Go(func() {
				r := bufio.NewReader(c)
				header, err := r.ReadString('\n')
				if err != nil {
					return
				}
				u := upConn{header: header, conn: c, r: r}
				conns <- u
				if serve != nil {
					serve(u)
					return
				}
				_, _ = io.Copy(io.Discard, r)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String(), conns
}

// countingListener counts what the front reads from each client it accepts.
type countingListener struct {
	net.Listener
	accepted chan *countingConn
}

type countingConn struct {
	net.Conn
	n atomic.Int64
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.n.Add(int64(n))
	return n, err
}

// SyscallConn lets the front splice the connection as it would the listener's own.
func (c *countingConn) SyscallConn() (syscall.RawConn, error) {
	return c.Conn.(syscall.Conn).SyscallConn()
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	cc := &countingConn{Conn: c}
	select {
	case l.accepted <- cc:
	default:
	}
	return cc, nil
}

// startFront runs p on a loopback listener until the test ends, with its log in the
// returned buffer.
func startFront(t *testing.T, p *rtmpfront.Proxy) (*countingListener, *lockedBuffer) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: ln, accepted: make(chan *countingConn, 64)}
	logs := &lockedBuffer{}
	p.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, cl) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve = %v, want nil after the context ends", err)
		}
	})
	return cl, logs
}

// dial connects to the front from the loopback address from (e.g. "127.0.0.2").
func dial(t *testing.T, addr, from string) net.Conn {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.DialContext(t.Context(), "tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s (Linux routes all of 127.0.0.0/8 to loopback): %v", from, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// allowAll is a Decider that allows every publish under the name concert.
type allowAll struct{}

func (allowAll) DecideIngest(context.Context, policy.Attempt) (policy.Verdict, string, policy.Admission) {
	return policy.Verdict{Allow: true, Reason: "test"}, "concert", policy.Admission{}
}

func (allowAll) Mint(_, _ string, n int, _ policy.Verdict, _ policy.Admission) string {
	return strings.Repeat("g", max(n, policy.MinGrantLen))
}

// handshake is C0, C1 and C2: the front copies them to MediaMTX without looking.
func handshake() []byte {
	b := make([]byte, 1+1536+1536)
	b[0] = 3
	return b
}

// commands encodes AMF0 commands as a client sends them (chunk size 128).
func commands(t *testing.T, cmds ...amf0.Data) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := rawmessage.NewWriter(&buf, bytecounter.NewWriter(&buf), false)
	for _, c := range cmds {
		body, err := c.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Write(&rawmessage.Message{ChunkStreamID: 3, Type: 20, Body: body}); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func connect(t *testing.T) []byte {
	return commands(t, amf0.Data{"connect", 1.0, amf0.Object{{Key: "app", Value: "live"}, {Key: "tcUrl", Value: "rtmp://127.0.0.1/live"}}})
}

func publish(t *testing.T) []byte {
	return commands(t, amf0.Data{"createStream", 2.0, nil}, amf0.Data{"publish", 3.0, nil, "concert", "live"})
}

func play(t *testing.T) []byte {
	return commands(t, amf0.Data{"createStream", 2.0, nil}, amf0.Data{"play", 3.0, nil, "concert"})
}

func write(t *testing.T, c net.Conn, parts ...[]byte) {
	t.Helper()
	for _, b := range parts {
		if _, err := c.Write(b); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
}

// closedByFront reports whether the front closed c within wait: a read that ends in
// anything but a timeout.
func closedByFront(c net.Conn, wait time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(wait))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !errors.As(err, &ne) || !ne.Timeout()
}

// Raw chunks for the attacks, by hand: a type 0 chunk header (chunk stream 2 or 3,
// timestamp 0, message stream 0) and a Set Chunk Size message.
func type0(csid byte, typ byte, bodyLen uint32) []byte {
	return []byte{csid, 0, 0, 0, byte(bodyLen >> 16), byte(bodyLen >> 8), byte(bodyLen), typ, 0, 0, 0, 0}
}

func setChunkSize(v uint32) []byte {
	return append(type0(2, 1, 4), byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// attack is what a client sends after the handshake: a prefix, then filler repeated up
// to n bytes in all.
func attack(prefix, filler []byte, n int) []byte {
	b := append([]byte(nil), prefix...)
	for len(b) < n {
		b = append(b, filler...)
	}
	return b[:n]
}

const (
	attackBytes            = 2 << 20
	defaultMaxPendingBytes = 32 << 10 // Proxy's documented default
)

// floods are issue 11's H1: before publish, a client makes the front hold far more than
// it sends, or send it without end.
func floods() []struct {
	name string
	data []byte
} {
	type1byte := append([]byte{0xC3}, 'x')
	ack := append(type0(2, 3, 4), 0, 0, 0, 1)
	return []struct {
		name string
		data []byte
	}{
		// Chunk size 0: every 1-byte type 3 header adds an empty fragment to a message that
		// never completes (70 times the bytes sent, measured).
		{"ChunkSizeZeroCut", attack(append(setChunkSize(0), type0(3, 20, 256)...), []byte{0xC3}, attackBytes)},
		{"ChunkSizeOneCut", attack(append(append(setChunkSize(1), type0(3, 20, 10<<20)...), 'x'), type1byte, attackBytes)},
		{"ChunkSizeOverMaximumCut", attack(setChunkSize(0x7FFFFFFF), []byte{0xC3}, attackBytes)},
		// A command announced at MediaMTX's 10 MiB maximum, its bytes following.
		{"HugeCommandCut", attack(append(type0(3, 20, 10<<20), make([]byte, 128)...), append([]byte{0xC3}, make([]byte, 128)...), attackBytes)},
		// The largest chunk size MediaMTX takes and a 10 MiB command: gortmplib allocates
		// the whole first chunk as the header arrives.
		{"HugeChunkSizeAndCommandCut", attack(append(setChunkSize(10<<20), type0(3, 20, 10<<20)...), []byte{0}, attackBytes)},
		// Valid little messages, without end and without publish.
		{"EndlessSmallMessagesCut", attack(nil, ack, attackBytes)},
	}
}

// TestFloodBeforePublishIsCut: each flood ends with the connection closed after the front
// has read at most MaxPendingBytes past the handshake (and its read buffer), and a warning
// naming the client's address.
func TestFloodBeforePublishIsCut(t *testing.T) {
	for _, tt := range floods() {
		t.Run(tt.name, func(t *testing.T) {
			up, _ := startUpstream(t, nil)
			p := &rtmpfront.Proxy{Upstream: up}
			ln, logs := startFront(t, p)
			c := dial(t, ln.Addr().String(), "127.0.0.1")
			server := <-ln.accepted
			written := make(chan struct{})
			go func() {
				defer close(written)
				if _, err := c.Write(handshake()); err != nil {
					return
				}
				for b := tt.data; len(b) > 0; b = b[min(len(b), 16<<10):] {
					if _, err := c.Write(b[:min(len(b), 16<<10)]); err != nil {
						return
					}
				}
			}()
			if !closedByFront(c, waitLong) {
				t.Errorf("connection still open after %v", waitLong)
			}
			c.Close()
			<-written
			bound := int64(len(handshake()) + defaultMaxPendingBytes + 4096)
			if got := server.n.Load(); got > bound {
				t.Errorf("front read %d bytes from the client, want at most %d", got, bound)
			}
			log := logs.String()
			if !strings.Contains(log, `"level":"WARN","msg":"rtmp front: client broke a limit; disconnected","ip":"127.0.0.1"`) {
				t.Errorf("no warning naming the client in the log:\n%s", log)
			}
		})
	}
}

// TestChunkFloodHeapBounded is H1 as measured live: clients send chunk size 0 and then
// empty type 3 chunks. The heap grows by a bounded amount, not with what they send.
func TestChunkFloodHeapBounded(t *testing.T) {
	up, _ := startUpstream(t, nil)
	ln, _ := startFront(t, &rtmpfront.Proxy{Upstream: up})
	const clients, each = 4, 512 << 10
	data := append(handshake(), attack(append(setChunkSize(0), type0(3, 20, 256)...), []byte{0xC3}, each)...)

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	conns := make([]net.Conn, clients)
	for i := range conns {
		conns[i] = dial(t, ln.Addr().String(), "127.0.0.1")
		server := <-ln.accepted
		closed := make(chan bool, 1)
		go func() { closed <- closedByFront(conns[i], waitLong) }()
		go func() { _, _ = conns[i].Write(data) }()
		// Until the front has cut the client or read all it sent.
		for deadline := time.Now().Add(waitLong); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if len(closed) > 0 || server.n.Load() >= int64(len(data)) {
				break
			}
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	grew := int64(after.HeapInuse) - int64(before.HeapInuse)
	t.Logf("heap in use grew by %d KiB for %d KiB sent", grew>>10, clients*len(data)>>10)
	if limit := int64(8 << 20); grew > limit {
		t.Errorf("heap in use grew by %d bytes, want at most %d", grew, limit)
	}
}

// TestPendingConnectionsLimited: a client address may hold MaxPendingPerIP connections
// that have not published; another address still gets through, up to MaxPending in all,
// and a connection that publishes frees its place.
func TestPendingConnectionsLimited(t *testing.T) {
	up, upConns := startUpstream(t, func(u upConn) {})
	ln, logs := startFront(t, &rtmpfront.Proxy{Upstream: up, Decider: allowAll{}, MaxPendingPerIP: 2, MaxPending: 3})
	addr := ln.Addr().String()
	// reached waits for the front to open the connection from ip to MediaMTX.
	reached := func(ip string) (upConn, bool) {
		select {
		case u := <-upConns:
			if !strings.HasPrefix(u.header, "PROXY TCP4 "+ip+" ") {
				t.Fatalf("upstream got %q, want the connection from %s", u.header, ip)
			}
			return u, true
		case <-time.After(waitLong):
			return upConn{}, false
		}
	}
	pending := func(ip string) (net.Conn, upConn) {
		c := dial(t, addr, ip)
		write(t, c, handshake())
		u, ok := reached(ip)
		if !ok {
			t.Fatalf("connection from %s never reached MediaMTX", ip)
		}
		return c, u
	}
	first, firstUp := pending("127.0.0.1")
	pending("127.0.0.1")

	if c := dial(t, addr, "127.0.0.1"); !closedByFront(c, waitLong) {
		t.Errorf("third pending connection from 127.0.0.1: still open, want it refused (MaxPendingPerIP 2)")
	}
	pending("127.0.0.2") // another address still gets through
	if c := dial(t, addr, "127.0.0.3"); !closedByFront(c, waitLong) {
		t.Errorf("fourth pending connection in all: still open, want it refused (MaxPending 3)")
	}
	if log := logs.String(); !strings.Contains(log, `"msg":"rtmp front: too many connections before publish; refused","ip":"127.0.0.1","limit":"MaxPendingPerIP"`) {
		t.Errorf("no warning naming the refused client in the log:\n%s", log)
	}

	// The first connection publishes: MediaMTX sees publish, and its place is free.
	write(t, first, connect(t), publish(t))
	var seen []byte
	buf := make([]byte, 4096)
	_ = firstUp.conn.SetReadDeadline(time.Now().Add(waitLong))
	for !bytes.Contains(seen, []byte("publish")) {
		n, err := firstUp.r.Read(buf)
		if err != nil {
			t.Fatalf("MediaMTX never got publish: %v", err)
		}
		seen = append(seen, buf[:n]...)
	}
	c := dial(t, addr, "127.0.0.1")
	write(t, c, handshake())
	if _, ok := reached("127.0.0.1"); !ok {
		t.Errorf("pending connection from 127.0.0.1 after one published: never reached MediaMTX, want it let through")
	}
}

// TestWriteTimeout (L1): a client that stops reading is dropped once a write to it has
// blocked for WriteTimeout, freeing both connections; one that keeps reading stays for
// many WriteTimeouts.
func TestWriteTimeout(t *testing.T) {
	t.Run("StalledPlayerDisconnected", func(t *testing.T) {
		upErr := make(chan error, 1)
		up, _ := startUpstream(t, func(u upConn) {
			go func() { _, _ = io.Copy(io.Discard, u.r) }()
			chunk := make([]byte, 32<<10)
			for {
				if _, err := u.conn.Write(chunk); err != nil {
					upErr <- err
					return
				}
			}
		})
		ln, logs := startFront(t, &rtmpfront.Proxy{Upstream: up, WriteTimeout: 200 * time.Millisecond})
		c := dial(t, ln.Addr().String(), "127.0.0.1")
		write(t, c, handshake(), connect(t), play(t))
		// c reads nothing from here on.
		select {
		case <-upErr:
		case <-time.After(waitLong):
			t.Fatalf("MediaMTX's connection still open %v after the client stopped reading", waitLong)
		}
		if log := logs.String(); !strings.Contains(log, `"msg":"rtmp front: client stopped reading; disconnected","ip":"127.0.0.1"`) {
			t.Errorf("no warning naming the client in the log:\n%s", log)
		}
	})
	t.Run("ReadingPlayerStays", func(t *testing.T) {
		const writeTimeout, streamFor = time.Second, 4 * time.Second
		upErr := make(chan error, 1)
		up, _ := startUpstream(t, func(u upConn) {
			go func() { _, _ = io.Copy(io.Discard, u.r) }()
			// A live stream's pace, about 800 KB/s.
			chunk := make([]byte, 16<<10)
			for end := time.Now().Add(streamFor); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
				if _, err := u.conn.Write(chunk); err != nil {
					upErr <- err
					return
				}
			}
			upErr <- nil
		})
		ln, _ := startFront(t, &rtmpfront.Proxy{Upstream: up, WriteTimeout: writeTimeout})
		c := dial(t, ln.Addr().String(), "127.0.0.1")
		write(t, c, handshake(), connect(t), play(t))
		var got atomic.Int64
		go func() {
			n, _ := io.Copy(io.Discard, c)
			got.Store(n)
		}()
		select {
		case err := <-upErr:
			if err != nil {
				t.Errorf("stream to a reading player ended after %d bytes: %v; want it to last %v", got.Load(), err, streamFor)
			}
		case <-time.After(waitLong):
			t.Fatalf("stream never ended")
		}
	})
}

// TestReadTimeouts (L1): a publisher that sends nothing for IdleTimeout before the front
// has spliced its connection is dropped, as is a client that neither publishes nor plays
// within HandshakeTimeout; a player, which has nothing to send, is not. (publish(t) is
// forwarded longer than it came, so the front waits for the client's next message on its
// chunk stream before it splices: TestKickClosesSplicedClient covers a spliced one.)
func TestReadTimeouts(t *testing.T) {
	const timeout = 200 * time.Millisecond
	for _, tt := range []struct {
		name            string
		idle, handshake time.Duration // the Proxy's IdleTimeout and HandshakeTimeout
		send            func(t *testing.T) []byte
		closed          bool
	}{
		{"SilentPublisherDisconnected", timeout, 0, func(t *testing.T) []byte { return append(connect(t), publish(t)...) }, true},
		{"SilentBeforePublishDisconnected", 0, timeout, connect, true},
		{"SilentPlayerStays", timeout, 0, func(t *testing.T) []byte { return append(connect(t), play(t)...) }, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up, _ := startUpstream(t, nil)
			p := &rtmpfront.Proxy{Upstream: up, Decider: allowAll{}, IdleTimeout: tt.idle, HandshakeTimeout: tt.handshake}
			ln, logs := startFront(t, p)
			c := dial(t, ln.Addr().String(), "127.0.0.1")
			write(t, c, handshake(), tt.send(t))
			wait := waitLong
			if !tt.closed {
				wait = waitShort // ten timeouts
			}
			if got := closedByFront(c, wait); got != tt.closed {
				t.Errorf("closed by the front within %v: %v, want %v", wait, got, tt.closed)
			}
			if tt.closed && !strings.Contains(logs.String(), `"msg":"rtmp front: client silent; disconnected","ip":"127.0.0.1"`) {
				t.Errorf("no warning naming the client in the log:\n%s", logs.String())
			}
		})
	}
}

// TestPendingDefaultsLetAStudioStart: with the default limits, ten encoders behind one
// address (a studio behind NAT, restarted) that connect at once all reach MediaMTX
// (the P4 benchmark's ten publishers from loopback found a cap of 8).
func TestPendingDefaultsLetAStudioStart(t *testing.T) {
	up, upConns := startUpstream(t, func(u upConn) {})
	ln, _ := startFront(t, &rtmpfront.Proxy{Upstream: up})
	const encoders = 10
	for range encoders {
		write(t, dial(t, ln.Addr().String(), "127.0.0.1"), handshake())
	}
	for i := range encoders {
		select {
		case <-upConns:
		case <-time.After(waitLong):
			t.Fatalf("%d of %d pending connections from one address reached MediaMTX", i, encoders)
		}
	}
}

// forwardModes runs f with each way the front forwards a spliced publisher: the pump
// (kernel nil), and the kernel forward. The kernel forward needs CAP_BPF and
// CAP_NET_ADMIN: without them it is skipped, except in CI, where that fails.
func forwardModes(t *testing.T, f func(t *testing.T, kernel *rtmpfront.KernelForward)) {
	t.Run("Pump", func(t *testing.T) { f(t, nil) })
	t.Run("Kernel", func(t *testing.T) { f(t, kernelForward(t)) })
}

func kernelForward(t *testing.T) *rtmpfront.KernelForward {
	t.Helper()
	kf, err := rtmpfront.NewKernelForward()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("no kernel forward in CI: %v", err)
		}
		t.Skipf("no kernel forward here: %v", err)
	}
	t.Cleanup(kf.Close)
	return kf
}
