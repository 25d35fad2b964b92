//go:build linux

package rtmpfront

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestKernelForwardKeepsOrder: what the front forwarded itself, then what waited in the
// client socket's queue when the forward began, then what arrives after, reach MediaMTX
// in that order and unchanged (8 MiB in MTU-sized writes); MediaMTX's replies still
// reach the front by a plain read; the client's end of stream ends the front's read; the
// slot is free again after stop.
func TestKernelForwardKeepsOrder(t *testing.T) {
	kf, err := NewKernelForward()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("no kernel forward in CI: %v", err)
		}
		t.Skipf("no kernel forward here: %v", err)
	}
	defer kf.Close()
	encoder, frontClient := tcpPair(t)
	frontUp, mediamtx := tcpPair(t)

	if _, err := encoder.Write([]byte("relayed;")); err != nil {
		t.Fatal(err)
	}
	relayed := make([]byte, len("relayed;"))
	if _, err := io.ReadFull(frontClient, relayed); err != nil {
		t.Fatal(err)
	}
	if _, err := frontUp.Write(relayed); err != nil {
		t.Fatal(err)
	}
	if _, err := encoder.Write([]byte("queued;")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // in the front socket's receive queue
	mark := handoverMark(frontClient, frontUp)
	stop, err := kf.forward(frontClient, frontUp)
	if err != nil {
		t.Fatal(err)
	}
	if kf.Active() != 1 || kf.Forwarded() != 1 {
		t.Errorf("Active, Forwarded = %d, %d; want 1, 1", kf.Active(), kf.Forwarded())
	}
	after := make([]byte, 8<<20)
	_, _ = rand.Read(after)
	want := append([]byte("relayed;queued;"), after...)
	werr := make(chan error, 1)
	go func() {
		for b := after; len(b) > 0; {
			n, err := encoder.Write(b[:min(len(b), 1400)])
			if err != nil {
				werr <- err
				return
			}
			b = b[n:]
		}
		werr <- encoder.CloseWrite()
	}()
	got := make([]byte, len(want))
	_ = mediamtx.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadFull(mediamtx, got); err != nil {
		t.Fatalf("MediaMTX read: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("MediaMTX's bytes differ from the client's")
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	// Everything has passed, the client has ended: the drain sees it and returns long
	// before its limit (it used to wait out the limit, counting the FIN as a byte).
	time.Sleep(50 * time.Millisecond) // the FIN is in
	start := time.Now()
	mark.drained(20 * time.Second)
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("drained waited %v after every byte had passed", took)
	}
	if _, err := mediamtx.Write([]byte("reply")); err != nil {
		t.Fatal(err)
	}
	reply := make([]byte, 5)
	if _, err := io.ReadFull(frontUp, reply); err != nil || string(reply) != "reply" {
		t.Fatalf("the front read %q, %v; want MediaMTX's reply", reply, err)
	}
	_ = frontClient.SetReadDeadline(time.Now().Add(30 * time.Second))
	if n, err := frontClient.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Errorf("the front's read of the client = %d, %v; want its end of stream", n, err)
	}
	stop()
	if kf.Active() != 0 {
		t.Errorf("Active = %d after stop, want 0", kf.Active())
	}
}

// TestDetachedClientConn: once detached from Go's poller, the client connection still
// takes writes (MediaMTX's replies), a write to a client that does not read fails at the
// write deadline, the client's end of stream ends waitEnd with io.EOF, and Close ends a
// waitEnd in progress with net.ErrClosed.
func TestDetachedClientConn(t *testing.T) {
	ends, err := newEndWatcher()
	if err != nil {
		t.Fatal(err)
	}
	defer ends.close()
	t.Run("WritesAndEnd", func(t *testing.T) {
		encoder, accepted := tcpPair(t)
		c := newClientConn(accepted).(*clientConn)
		if err := c.detach(ends); err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("onStatus")); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len("onStatus"))
		_ = encoder.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.ReadFull(encoder, got); err != nil || string(got) != "onStatus" {
			t.Fatalf("the encoder read %q, %v", got, err)
		}
		_ = encoder.CloseWrite()
		if err := c.waitEnd(); !errors.Is(err, io.EOF) {
			t.Errorf("waitEnd after the client's half-close = %v, want io.EOF", err)
		}
	})
	t.Run("WriteDeadline", func(t *testing.T) {
		_, accepted := tcpPair(t) // the encoder never reads
		c := newClientConn(accepted).(*clientConn)
		if err := c.detach(ends); err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		block := make([]byte, 1<<20)
		var err error
		for range 64 { // far more than both sockets' buffers hold
			if _, err = c.Write(block); err != nil {
				break
			}
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("a write to a client that does not read = %v, want a timeout", err)
		}
	})
	t.Run("CloseEndsWait", func(t *testing.T) {
		_, accepted := tcpPair(t)
		c := newClientConn(accepted).(*clientConn)
		if err := c.detach(ends); err != nil {
			t.Fatal(err)
		}
		ended := make(chan error, 1)
		go func() { ended <- c.waitEnd() }()
		time.Sleep(50 * time.Millisecond)
		_ = c.Close()
		select {
		case err := <-ended:
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("waitEnd after Close = %v, want net.ErrClosed", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("Close did not end waitEnd")
		}
		if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
			t.Errorf("a write after Close = %v, want net.ErrClosed", err)
		}
	})
}

// TestKernelForwardUnprivileged: without CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN and
// CAP_PERFMON, NewKernelForward fails with an error (so that auto falls back to the pump),
// never a panic. The capabilities are dropped from one locked thread's effective set,
// which the kernel checks per thread; the thread ends with its goroutine.
func TestKernelForwardUnprivileged(t *testing.T) {
	result := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread goes with the goroutine
		defer func() {
			if r := recover(); r != nil {
				result <- fmt.Errorf("panic: %v", r)
			}
		}()
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			result <- fmt.Errorf("capget: %w", err)
			return
		}
		for _, c := range []uint{unix.CAP_BPF, unix.CAP_NET_ADMIN, unix.CAP_SYS_ADMIN, unix.CAP_PERFMON} {
			data[c/32].Effective &^= 1 << (c % 32)
		}
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			result <- fmt.Errorf("capset: %w", err)
			return
		}
		kf, err := NewKernelForward()
		if err == nil {
			kf.Close()
			result <- errors.New("NewKernelForward succeeded without the capabilities")
			return
		}
		if kf != nil {
			result <- errors.New("NewKernelForward returned a forward with its error")
			return
		}
		result <- nil
	}()
	if err := <-result; err != nil {
		t.Fatal(err)
	}
	(*KernelForward)(nil).Close() // a nil forward closes quietly
}
