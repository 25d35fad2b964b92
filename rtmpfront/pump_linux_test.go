//go:build linux

package rtmpfront

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	mrand "math/rand/v2"
	"net"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (dialed, accepted *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d, err := net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	a, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close(); a.Close() })
	return d, a
}

// pumpFixture is an encoder, the front's two sockets and MediaMTX, with the pump
// splicing the front's.
type pumpFixture struct {
	encoder, mediamtx *net.TCPConn
	p                 *pump
	result            chan error
}

func newPumpFixture(t *testing.T) *pumpFixture {
	t.Helper()
	encoder, client := tcpPair(t)
	up, mediamtx := tcpPair(t)
	f := &pumpFixture{encoder: encoder, mediamtx: mediamtx, p: &pump{interval: 5 * time.Millisecond},
		result: make(chan error, 1)}
	go func() {
		ok, err := f.p.splice(client, up)
		if !ok {
			err = errors.New("not pumped")
		}
		up.CloseWrite()
		f.result <- err
	}()
	return f
}

func (f *pumpFixture) waitIdle(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f.p.mu.Lock()
		running := f.p.running
		f.p.mu.Unlock()
		if !running {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the pump still ticks with no connection")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPumpDeliversEveryByte: 8 MiB in writes of 1 to 3000 bytes reach MediaMTX unchanged
// and in order, although MediaMTX reads nothing for the first 300 ms (the pipe and the
// sockets fill, and the encoder is held back); the encoder's half-close ends the splice
// with io.EOF once everything is delivered, and the pump stops ticking.
func TestPumpDeliversEveryByte(t *testing.T) {
	f := newPumpFixture(t)
	sent := make([]byte, 8<<20)
	_, _ = rand.Read(sent)
	go func() {
		for rest := sent; len(rest) > 0; {
			n := min(len(rest), 1+mrand.IntN(3000))
			if _, err := f.encoder.Write(rest[:n]); err != nil {
				return
			}
			rest = rest[n:]
		}
		f.encoder.CloseWrite()
	}()
	time.Sleep(300 * time.Millisecond)
	got, err := io.ReadAll(f.mediamtx)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, sent) {
		t.Fatalf("MediaMTX got %d bytes, not the %d sent unchanged", len(got), len(sent))
	}
	if err := <-f.result; !errors.Is(err, io.EOF) {
		t.Fatalf("splice ended with %v, want io.EOF", err)
	}
	f.waitIdle(t)
}

// TestPumpEndsOnKick: closing the front's sockets (as a kick does) ends the splice with
// net.ErrClosed, and the pump stops ticking.
func TestPumpEndsOnKick(t *testing.T) {
	encoder, client := tcpPair(t)
	up, mediamtx := tcpPair(t)
	p := &pump{interval: 5 * time.Millisecond}
	result := make(chan error, 1)
	go func() {
		_, err := p.splice(client, up)
		result <- err
	}()
	if _, err := encoder.Write([]byte("media")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(mediamtx, buf); err != nil || string(buf) != "media" {
		t.Fatalf("MediaMTX read %q, %v", buf, err)
	}
	client.Close()
	up.Close()
	select {
	case err := <-result:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("splice ended with %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the splice outlived its closed sockets")
	}
	(&pumpFixture{p: p}).waitIdle(t)
}

// TestPumpEndsWhenMediaMTXGoes: MediaMTX closing its end (its readTimeout, a kick through
// its API) ends the splice with an error, not a hang.
func TestPumpEndsWhenMediaMTXGoes(t *testing.T) {
	f := newPumpFixture(t)
	f.mediamtx.SetLinger(0)
	f.mediamtx.Close()
	go func() {
		for {
			if _, err := f.encoder.Write(make([]byte, 4096)); err != nil {
				return
			}
		}
	}()
	select {
	case err := <-f.result:
		if err == nil || errors.Is(err, io.EOF) {
			t.Fatalf("splice ended with %v, want the write error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the splice outlived MediaMTX's connection")
	}
}

// TestPumpKeepsUpWithAFastEncoder: one tick moves more than one buffer's worth when the
// encoder has sent more: 64 MiB through the pump take far fewer ticks than the 256 that
// one 256 KiB read per tick would need.
func TestPumpKeepsUpWithAFastEncoder(t *testing.T) {
	encoder, client := tcpPair(t)
	up, mediamtx := tcpPair(t)
	p := &pump{interval: 20 * time.Millisecond}
	result := make(chan error, 1)
	go func() {
		_, err := p.splice(client, up)
		up.CloseWrite()
		result <- err
	}()
	sent := make([]byte, 64<<20)
	go func() {
		_, _ = encoder.Write(sent)
		encoder.CloseWrite()
	}()
	n, err := io.Copy(io.Discard, mediamtx)
	if err != nil || n != int64(len(sent)) {
		t.Fatalf("MediaMTX read %d bytes (%v), want %d", n, err, len(sent))
	}
	if err := <-result; !errors.Is(err, io.EOF) {
		t.Fatalf("splice ended with %v, want io.EOF", err)
	}
	if ticks := p.ticks.Load(); ticks >= 256 {
		t.Errorf("64 MiB took %d ticks: the pump moves only one buffer a tick", ticks)
	}
}
