package rtmpfront_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor/rtmpfront"
)

// scriptedListener returns its errors from Accept, one per call, then conns; once closed,
// net.ErrClosed.
type scriptedListener struct {
	mu      sync.Mutex
	errs    []error
	accepts int
	conns   chan net.Conn
	closed  chan struct{}
	once    sync.Once
}

func newScriptedListener(errs ...error) *scriptedListener {
	return &scriptedListener{errs: errs, conns: make(chan net.Conn, 1), closed: make(chan struct{})}
}

func (l *scriptedListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	l.accepts++
	if len(l.errs) > 0 {
		err := l.errs[0]
		l.errs = l.errs[1:]
		l.mu.Unlock()
		return nil, err
	}
	l.mu.Unlock()
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *scriptedListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *scriptedListener) Addr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1935}
}

func acceptError(errno syscall.Errno) error {
	return &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", errno)}
}

// timeoutError is what Accept returns past a listener deadline.
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// TestServeRetriesTemporaryAcceptErrors (M3): out of file descriptors, or another error
// that passes, the front warns, backs off and accepts again, and the next client gets
// through.
func TestServeRetriesTemporaryAcceptErrors(t *testing.T) {
	up, upConns := startUpstream(t, nil)
	ln := newScriptedListener(acceptError(syscall.EMFILE), acceptError(syscall.EMFILE), acceptError(syscall.ENFILE),
		acceptError(syscall.ECONNABORTED), acceptError(syscall.ENOBUFS), acceptError(syscall.ENOMEM), timeoutError{})
	logs := &lockedBuffer{}
	done, stop := startFrontOn(t, &rtmpfront.Proxy{Upstream: up}, ln, logs)

	client, server := net.Pipe()
	defer client.Close()
	ln.conns <- server
	select {
	case u := <-upConns:
		if u.header != "PROXY UNKNOWN\r\n" {
			t.Errorf("upstream got %q, want the piped client's header", u.header)
		}
	case err := <-done:
		t.Fatalf("Serve = %v, want it to retry temporary accept errors", err)
	case <-time.After(waitLong):
		t.Fatalf("client accepted after temporary errors never reached MediaMTX")
	}
	ln.mu.Lock()
	if ln.accepts < 8 {
		t.Errorf("Accept called %d times, want 8 (7 errors, then the client)", ln.accepts)
	}
	ln.mu.Unlock()
	if log := logs.String(); !strings.Contains(log, `"level":"WARN","msg":"rtmp front: accept failed; retrying"`) {
		t.Errorf("no warning in the log:\n%s", log)
	}
	stop()
	if err := <-done; err != nil {
		t.Errorf("Serve = %v after the context ended, want nil", err)
	}
}

// TestServeReturnsFatalAcceptError (M3): a listener that fails for good ends Serve with
// that error, logged, so that the service can stop rather than refuse RTMP in silence.
func TestServeReturnsFatalAcceptError(t *testing.T) {
	broken := errors.New("listener broken")
	for _, tt := range []struct {
		name string
		err  error
	}{
		{"UnknownErrorReturned", broken},
		{"ClosedByOtherThanContextReturned", net.ErrClosed},
		{"BadDescriptorReturned", acceptError(syscall.EBADF)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			logs := &lockedBuffer{}
			p := &rtmpfront.Proxy{Upstream: "127.0.0.1:1"}
			ln, _ := startFrontOn(t, p, newScriptedListener(tt.err), logs)
			select {
			case err := <-ln:
				if !errors.Is(err, tt.err) {
					t.Errorf("Serve = %v, want %v", err, tt.err)
				}
			case <-time.After(waitLong):
				t.Fatalf("Serve still running %v after a fatal accept error", waitLong)
			}
			if log := logs.String(); !strings.Contains(log, `"level":"ERROR","msg":"rtmp front: accept failed; the front stops"`) {
				t.Errorf("no error in the log:\n%s", log)
			}
		})
	}
}

// startFrontOn runs p.Serve on ln with its log in logs and returns Serve's result.
func startFrontOn(t *testing.T, p *rtmpfront.Proxy, ln net.Listener, logs *lockedBuffer) (<-chan error, context.CancelFunc) {
	t.Helper()
	p.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, ln) }()
	return done, cancel
}
