//go:build !linux

package rtmpfront

import (
	"errors"
	"net"
	"syscall"
	"time"
)

// KernelForward is Linux's (sockmap_linux.go); elsewhere the front pumps.
type KernelForward struct{ ends *endWatcher }

// NewKernelForward fails off Linux.
func NewKernelForward() (*KernelForward, error) { return nil, errors.ErrUnsupported }

// Active returns 0.
func (*KernelForward) Active() int { return 0 }

// Forwarded returns 0.
func (*KernelForward) Forwarded() int { return 0 }

// Close does nothing.
func (*KernelForward) Close() {}

func (*KernelForward) forward(client, up syscall.Conn) (stop func(), err error) {
	return nil, errors.ErrUnsupported
}

// newClientConn is Linux's; elsewhere connections are used as accepted.
func newClientConn(c net.Conn) net.Conn { return c }

// clientConn is Linux's.
type clientConn struct{ net.Conn }

func (c *clientConn) detach(*endWatcher) error { return errors.ErrUnsupported }
func (c *clientConn) waitEnd() error           { return errors.ErrUnsupported }

// endWatcher is Linux's.
type endWatcher struct{}

// handover is Linux's.
type handover struct{}

func handoverMark(client, up syscall.Conn) handover { return handover{} }

func (handover) drained(time.Duration) {}
