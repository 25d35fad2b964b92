//go:build linux

package rtmpfront

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The pump carries spliced publishers' bytes to MediaMTX on a clock instead of on every
// arrival. An encoder writes each audio and video frame on its own (about 80 writes a
// second at 30 fps), and a copy that waits on each connection (io.Copy, which splices)
// wakes the process for each one: measured, about 1.5 % of a core per 1 Mbit/s
// publisher, more than MediaMTX spent on the same stream. Here one goroutine wakes every
// PumpInterval while any publisher is spliced, and moves what each connection has
// received with one read and one write, never waiting on a socket. What costs on this
// path is waking and system calls, not copying bytes: splice(2) would need a third call
// per tick to learn that a socket is empty (a pipe fills by slots, one per packet, so a
// short splice does not mean an empty socket), while a read shorter than its buffer does.
// A publisher's bytes reach MediaMTX at most one interval later; the kernel holds them
// meanwhile (a 10 Mbit/s encoder sends 61 KiB in 50 ms, well inside a socket's receive
// buffer).

// pumpBuffer is the most one read moves from a connection, and pumpReads the reads one
// tick makes of a connection whose reads keep filling the buffer: 4 MiB a tick, 671 Mbit/s
// at a 50 ms interval and 168 Mbit/s at the longest, 200 ms. A connection with more waits
// for the next tick, as TCP's window makes its encoder wait.
const (
	pumpBuffer = 256 << 10
	pumpReads  = 16
)

type pump struct {
	interval time.Duration
	mu       sync.Mutex
	conns    map[*pumped]struct{}
	running  bool
	buf      []byte       // the one goroutine's read buffer
	ticks    atomic.Int64 // ticks so far (tests)
}

// pumped is one spliced connection: its client and MediaMTX sockets, and what MediaMTX
// has not yet taken.
type pumped struct {
	src, dst syscall.RawConn
	pending  []byte // read from the client, not yet written to MediaMTX
	eof      bool   // the client has half-closed
	done     chan error
}

// splice copies from client to up until either ends, as io.Copy would, then returns
// io.EOF for a client's half-close and the error otherwise. ok is false when the two
// cannot be pumped (a TLS client): the caller copies instead.
func (p *pump) splice(client, up net.Conn) (ok bool, err error) {
	src, err1 := rawConn(client)
	dst, err2 := rawConn(up)
	if err1 != nil || err2 != nil {
		return false, nil //nolint:nilerr // not an error: a conn without a raw fd (TLS) is copied by the caller
	}
	c := &pumped{src: src, dst: dst, done: make(chan error, 1)}
	p.mu.Lock()
	if p.conns == nil {
		p.conns = make(map[*pumped]struct{})
	}
	p.conns[c] = struct{}{}
	if !p.running {
		p.running = true
		go p.run()
	}
	p.mu.Unlock()
	return true, <-c.done
}

func rawConn(c net.Conn) (syscall.RawConn, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, errors.ErrUnsupported
	}
	return sc.SyscallConn()
}

// run ticks while any connection is registered, then ends: an idle front never wakes.
func (p *pump) run() {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	if p.buf == nil {
		p.buf = make([]byte, pumpBuffer)
	}
	var batch []*pumped
	for range t.C {
		p.ticks.Add(1)
		p.mu.Lock()
		if len(p.conns) == 0 {
			p.running = false
			p.mu.Unlock()
			return
		}
		batch = batch[:0]
		for c := range p.conns {
			batch = append(batch, c)
		}
		p.mu.Unlock()
		for _, c := range batch {
			if err := c.step(p.buf); err != nil {
				p.mu.Lock()
				delete(p.conns, c)
				p.mu.Unlock()
				c.done <- err
			}
		}
	}
}

// step moves what the client has sent so far towards MediaMTX, never waiting. It returns
// nil to be called again next tick, io.EOF once a half-closed client's bytes are all
// delivered, and any other error when a socket failed or was closed (a kick closes both).
func (c *pumped) step(buf []byte) error {
	if len(c.pending) > 0 {
		n, err := c.write(c.pending)
		if err != nil {
			return err
		}
		c.pending = c.pending[n:]
		if len(c.pending) > 0 {
			return nil // MediaMTX is not keeping up: the client waits, TCP holds its bytes
		}
		c.pending = nil
	}
	for range pumpReads {
		if c.eof {
			return io.EOF
		}
		n, err := c.read(buf)
		if err != nil || n == 0 {
			return err
		}
		w, err := c.write(buf[:n])
		if err != nil {
			return err
		}
		if w < n {
			c.pending = append([]byte(nil), buf[w:n]...)
			return nil
		}
		if n < len(buf) {
			return nil // a short read: the socket is empty
		}
	}
	return nil
}

// read reads what the client's socket holds, up to len(buf): 0 when it holds nothing now.
// A read of 0 bytes that is not "nothing now" is the client's end of stream.
func (c *pumped) read(buf []byte) (int, error) {
	n, again, err := nonblocking(c.src, func(fd int) (int, error) { return unix.Read(fd, buf) })
	if err == nil && n == 0 && !again {
		c.eof = true
	}
	return n, err
}

// write writes what MediaMTX's socket takes now of b.
func (c *pumped) write(b []byte) (int, error) {
	n, _, err := nonblocking(c.dst, func(fd int) (int, error) { return unix.Write(fd, b) })
	return n, err
}

// nonblocking runs one read or write on rc's socket, never waiting: again reports that the
// socket had nothing (or took nothing) now, with n = 0. A closed socket is an error.
func nonblocking(rc syscall.RawConn, op func(fd int) (int, error)) (n int, again bool, err error) {
	var serr error
	if err := rc.Control(func(fd uintptr) {
		for {
			n, serr = op(int(fd))
			if !errors.Is(serr, unix.EINTR) {
				return
			}
		}
	}); err != nil {
		return 0, false, err
	}
	switch {
	case errors.Is(serr, unix.EAGAIN):
		return 0, true, nil
	case serr != nil:
		return 0, false, serr
	}
	return max(n, 0), false, nil
}
