//go:build linux

package rtmpfront

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// clientConn is a plain-TCP client connection that the kernel forward can take out of Go's
// network poller. While the kernel forwards a client's bytes, the kernel still signals
// each segment's arrival to the socket's waiters (the verdict's data-ready calls the
// socket's own); Go's poller, which waits on every connection for readability, would wake
// the process for each. Detached, the connection is a bare descriptor that nothing polls
// for reading: the kernel forward's endWatcher waits for its end of stream only, and
// MediaMTX's replies are written to it directly.
type clientConn struct {
	net.Conn // a *net.TCPConn (or a wrapper of one) until detached, closed after

	mu       sync.RWMutex // held for reading around every use of fd, for writing to close it
	fd       int          // the detached descriptor, -1 before
	closed   bool
	shut     atomic.Bool  // Close has begun
	deadline atomic.Int64 // the write deadline in Unix nanoseconds; 0: none
	once     sync.Once

	ends  *endWatcher
	endID int32
	ended <-chan struct{}
}

// newClientConn wraps an accepted connection; one that is not plain TCP is returned as it is.
func newClientConn(c net.Conn) net.Conn {
	if _, ok := c.(syscall.Conn); !ok {
		return c
	}
	return &clientConn{Conn: c, fd: -1}
}

// SyscallConn is the connection's until it is detached.
func (c *clientConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.ErrUnsupported
	}
	return sc.SyscallConn()
}

// detach moves the connection's socket to a descriptor of its own, watched by ends, and
// closes the one Go polls: the socket stays open, and from now on Write, CloseWrite and
// Close act on the new descriptor.
func (c *clientConn) detach(ends *endWatcher) error {
	var fd int
	if err := withFD(c, func(orig int) error {
		var err error
		fd, err = unix.FcntlInt(uintptr(orig), unix.F_DUPFD_CLOEXEC, 0)
		return err
	}); err != nil {
		return err
	}
	id, ended, err := ends.watch(fd)
	if err != nil {
		_ = unix.Close(fd)
		return err
	}
	c.mu.Lock()
	c.fd, c.ends, c.endID, c.ended = fd, ends, id, ended
	c.mu.Unlock()
	return c.Conn.Close() // leaves Go's poller; the socket lives on in fd
}

// control runs f on the connection's descriptor: the detached one once detached.
func (c *clientConn) control(f func(fd int) error) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	switch {
	case c.closed:
		return net.ErrClosed
	case c.fd >= 0:
		return f(c.fd)
	}
	return withFD(c, f)
}

// waitEnd waits until the detached client's socket ends: the client closed or half-closed
// it (io.EOF), it failed, or Close shut it down (net.ErrClosed).
func (c *clientConn) waitEnd() error {
	<-c.ended
	if c.shut.Load() {
		return net.ErrClosed
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return net.ErrClosed
	}
	if v, err := unix.GetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_ERROR); err == nil && v != 0 {
		return unix.Errno(v)
	}
	return io.EOF
}

func (c *clientConn) Write(b []byte) (int, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	switch {
	case c.closed:
		return 0, net.ErrClosed
	case c.fd < 0:
		return c.Conn.Write(b)
	}
	written := 0
	for written < len(b) {
		n, err := unix.Write(c.fd, b[written:])
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			if err := c.waitWritable(); err != nil {
				return written, err
			}
			continue
		case err != nil:
			return written, err
		}
		written += n
	}
	return written, nil
}

// waitWritable waits until the socket takes more, or the write deadline passes. It holds
// an OS thread meanwhile: only while a client's receive window is full, at most until the
// deadline.
func (c *clientConn) waitWritable() error {
	timeout := -1
	if d := c.deadline.Load(); d != 0 {
		left := time.Until(time.Unix(0, d))
		if left <= 0 {
			return os.ErrDeadlineExceeded
		}
		timeout = int(left/time.Millisecond) + 1
	}
	fds := []unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLOUT}} //nolint:gosec // a descriptor fits
	n, err := unix.Poll(fds, timeout)
	switch {
	case errors.Is(err, unix.EINTR):
		return nil
	case err != nil:
		return err
	case n == 0:
		return os.ErrDeadlineExceeded
	}
	return nil
}

// SetWriteDeadline is kept for the detached descriptor as well, so that a deadline set just
// before the detach still bounds the next write.
func (c *clientConn) SetWriteDeadline(t time.Time) error {
	if t.IsZero() {
		c.deadline.Store(0)
	} else {
		c.deadline.Store(t.UnixNano())
	}
	c.mu.RLock()
	detached := c.fd >= 0
	c.mu.RUnlock()
	if detached {
		return nil
	}
	return c.Conn.SetWriteDeadline(t)
}

// CloseWrite half-closes the connection: the client reads its end of stream after what it
// was sent.
func (c *clientConn) CloseWrite() error {
	return c.control(func(fd int) error { return unix.Shutdown(fd, unix.SHUT_WR) })
}

// Close closes the connection; detached, it first shuts the socket down, which ends a
// waitEnd and a write waiting on it.
func (c *clientConn) Close() error {
	c.mu.RLock()
	fd := c.fd
	c.mu.RUnlock()
	if fd < 0 {
		return c.Conn.Close()
	}
	c.once.Do(func() {
		c.shut.Store(true)
		_ = unix.Shutdown(fd, unix.SHUT_RDWR)
		c.mu.Lock()
		c.ends.forget(c.endID, fd)
		_ = unix.Close(fd)
		c.closed = true
		c.mu.Unlock()
	})
	return nil
}
