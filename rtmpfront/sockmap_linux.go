//go:build linux

package rtmpfront

import (
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// The kernel forward moves a spliced publisher's bytes to MediaMTX inside the kernel,
// without waking the process at all: an eBPF sk_skb verdict program, run by the kernel
// on every segment a client's socket receives, redirects the segment to the send side of
// that client's MediaMTX socket (a sockmap redirect). The front's goroutine only waits
// for the client's end of stream. It needs CAP_BPF and CAP_NET_ADMIN (root has both);
// without them the front falls back to the pump.
//
// Three maps: clients, a sockmap holding the clients' sockets, with the program attached
// (so it runs for them only); targets, a sockmap holding the MediaMTX sockets, with no
// program (MediaMTX's replies are read by the front as before); routes, from a client
// socket's cookie to its MediaMTX socket's slot in targets. A segment whose client has no
// route passes to the client socket's own queue (the front would read it); a route to an
// empty slot drops it, which cannot happen while the front adds a route only after its
// target and removes a target only after the client's socket is closed.
//
// Order: the front stops reading the client, writes what it has buffered to MediaMTX,
// then adds the target, the route and the client, in that order. Bytes that arrive
// meanwhile wait in the client socket's receive queue, which the kernel hands to the
// program, in order, with the next segment that arrives.

// KernelForward is the sockmap redirect, set up once per process and shared by fronts.
type KernelForward struct {
	clients, targets, routes *ebpf.Map
	prog                     *ebpf.Program

	ends *endWatcher // waits for forwarded clients' ends of stream

	mu        sync.Mutex
	free      []uint32 // free slots of targets
	forwarded int      // connections taken so far
}

// skPass is the sk_skb verdict that leaves a segment to the socket's own receive queue.
const skPass = 1

// NewKernelForward loads the verdict program and its maps. It fails without CAP_BPF and
// CAP_NET_ADMIN, or on a kernel without sockmap (before 5.13): the front then pumps.
func NewKernelForward() (*KernelForward, error) {
	kf := &KernelForward{}
	if err := kf.load(); err != nil {
		kf.Close()
		return nil, err
	}
	return kf, nil
}

func (kf *KernelForward) load() error {
	var err error
	if kf.clients, err = ebpf.NewMap(&ebpf.MapSpec{Name: "sd_clients", Type: ebpf.SockMap, KeySize: 4, ValueSize: 4,
		MaxEntries: kernelForwardSlots}); err != nil {
		return fmt.Errorf("clients sockmap: %w", err)
	}
	if kf.targets, err = ebpf.NewMap(&ebpf.MapSpec{Name: "sd_targets", Type: ebpf.SockMap, KeySize: 4, ValueSize: 4,
		MaxEntries: kernelForwardSlots}); err != nil {
		return fmt.Errorf("targets sockmap: %w", err)
	}
	if kf.routes, err = ebpf.NewMap(&ebpf.MapSpec{Name: "sd_routes", Type: ebpf.Hash, KeySize: 8, ValueSize: 4,
		MaxEntries: kernelForwardSlots}); err != nil {
		return fmt.Errorf("routes map: %w", err)
	}
	kf.prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:    "sd_forward",
		Type:    ebpf.SkSKB,
		License: "GPL", // bpf_sk_redirect_map is GPL-only
		Instructions: asm.Instructions{
			asm.Mov.Reg(asm.R6, asm.R1),
			asm.FnGetSocketCookie.Call(), // r0 = the client socket's cookie
			asm.StoreMem(asm.RFP, -8, asm.R0, asm.DWord),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -8),
			asm.LoadMapPtr(asm.R1, kf.routes.FD()),
			asm.FnMapLookupElem.Call(), // r0 = &routes[cookie] or NULL
			asm.JEq.Imm(asm.R0, 0, "pass"),
			asm.LoadMem(asm.R3, asm.R0, 0, asm.Word),
			asm.Mov.Reg(asm.R1, asm.R6),
			asm.LoadMapPtr(asm.R2, kf.targets.FD()),
			asm.Mov.Imm(asm.R4, 0), // to the target's send side
			asm.FnSkRedirectMap.Call(),
			asm.Return(),
			asm.Mov.Imm(asm.R0, skPass).WithSymbol("pass"),
			asm.Return(),
		},
	})
	if err != nil {
		return fmt.Errorf("verdict program: %w", err)
	}
	if err := link.RawAttachProgram(link.RawAttachProgramOptions{Target: kf.clients.FD(), Program: kf.prog,
		Attach: ebpf.AttachSkSKBVerdict}); err != nil {
		return fmt.Errorf("attach the verdict program: %w", err)
	}
	if kf.ends, err = newEndWatcher(); err != nil {
		return err
	}
	kf.free = make([]uint32, 0, kernelForwardSlots)
	for i := range uint32(kernelForwardSlots) {
		kf.free = append(kf.free, kernelForwardSlots-1-i)
	}
	return nil
}

// Close releases the program and the maps; connections it forwards stop being forwarded
// (the kernel passes their bytes to the front's sockets, whose reader then fails them).
func (kf *KernelForward) Close() {
	if kf == nil {
		return
	}
	if kf.ends != nil {
		kf.ends.close()
	}
	if kf.prog != nil {
		_ = kf.prog.Close()
	}
	for _, m := range []*ebpf.Map{kf.clients, kf.targets, kf.routes} {
		if m != nil {
			_ = m.Close()
		}
	}
}

// Active returns how many (0 for nil) connections the kernel forwards now.
func (kf *KernelForward) Active() int {
	if kf == nil {
		return 0
	}
	kf.mu.Lock()
	defer kf.mu.Unlock()
	return kernelForwardSlots - len(kf.free)
}

// Forwarded returns how many (0 for nil) connections the kernel has taken so far.
func (kf *KernelForward) Forwarded() int {
	if kf == nil {
		return 0
	}
	kf.mu.Lock()
	defer kf.mu.Unlock()
	return kf.forwarded
}

// forward redirects everything client receives from now on to up's send side, until
// client is closed; the returned stop undoes it and must be called after client is
// closed and before up is. An error leaves nothing behind: the caller pumps instead.
func (kf *KernelForward) forward(client, up syscall.Conn) (stop func(), err error) {
	kf.mu.Lock()
	if len(kf.free) == 0 {
		kf.mu.Unlock()
		return nil, errNoSlot
	}
	slot := kf.free[len(kf.free)-1]
	kf.free = kf.free[:len(kf.free)-1]
	kf.mu.Unlock()
	release := func() {
		kf.mu.Lock()
		kf.free = append(kf.free, slot)
		kf.mu.Unlock()
	}
	var cookie uint64
	if err := withFD(client, func(fd int) error {
		var e error
		cookie, e = unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
		return e
	}); err != nil {
		release()
		return nil, fmt.Errorf("socket cookie: %w", err)
	}
	if err := withFD(up, func(fd int) error { return kf.targets.Update(slot, uint32(fd), ebpf.UpdateAny) }); err != nil { //nolint:gosec // a descriptor fits
		release()
		return nil, fmt.Errorf("add the MediaMTX socket: %w", err)
	}
	removeTarget := func() { _ = kf.targets.Delete(slot) }
	if err := kf.routes.Update(cookie, slot, ebpf.UpdateAny); err != nil {
		removeTarget()
		release()
		return nil, fmt.Errorf("add the route: %w", err)
	}
	removeRoute := func() { _ = kf.routes.Delete(cookie) }
	if err := withFD(client, func(fd int) error { return kf.clients.Update(slot, uint32(fd), ebpf.UpdateAny) }); err != nil { //nolint:gosec // a descriptor fits
		removeRoute()
		removeTarget()
		release()
		return nil, fmt.Errorf("add the client socket: %w", err)
	}
	kf.mu.Lock()
	kf.forwarded++
	kf.mu.Unlock()
	return func() {
		_ = kf.clients.Delete(slot) // gone already when the client socket was closed
		removeRoute()
		removeTarget()
		release()
	}, nil
}

// withFD runs f on c's file descriptor.
func withFD(c syscall.Conn, f func(fd int) error) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// handover is what the two sockets had seen when the kernel took a connection over, so
// that at the client's end the front can tell when the kernel has passed on all it got.
type handover struct {
	client   func(func(fd int) error) error // runs f on the client's descriptor, detached or not
	up       syscall.Conn
	consumed uint64 // bytes of the client's the front read itself
	written  uint64 // bytes written to MediaMTX's socket so far
	ok       bool
}

func handoverMark(client, up syscall.Conn) handover {
	h := handover{up: up, client: func(f func(int) error) error { return withFD(client, f) }}
	if cc, ok := client.(*clientConn); ok {
		h.client = cc.control
	}
	rx, inq, err1 := h.received()
	w, err2 := tcpWritten(up)
	h.consumed, h.written, h.ok = rx-inq, w, err1 == nil && err2 == nil && inq <= rx
	return h
}

// received returns how many bytes the client's socket has received, and how many of them
// wait unread in its queue.
func (h handover) received() (rx, inq uint64, err error) {
	err = h.client(func(fd int) error {
		info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			return err
		}
		n, err := unix.IoctlGetInt(fd, unix.SIOCINQ)
		if err != nil {
			return err
		}
		rx, inq = info.Bytes_received, uint64(max(n, 0))
		return nil
	})
	return rx, inq, err
}

// tcpWritten returns how many bytes have been written into c's socket: acknowledged, or
// still in its send queue.
func tcpWritten(c syscall.Conn) (uint64, error) {
	var w uint64
	err := withFD(c, func(fd int) error {
		info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			return err
		}
		n, err := unix.IoctlGetInt(fd, unix.SIOCOUTQ)
		if err != nil {
			return err
		}
		w = info.Bytes_acked + uint64(max(n, 0))
		return nil
	})
	return w, err
}

// drained waits, up to limit, until MediaMTX's socket has taken every byte the client sent
// after the hand-over, once the client has ended its stream. Without the counters it waits
// 50 ms.
func (h handover) drained(limit time.Duration) {
	if !h.ok {
		time.Sleep(50 * time.Millisecond)
		return
	}
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		rx, _, err1 := h.received()
		w, err2 := tcpWritten(h.up)
		// The client's FIN takes a sequence number: bytes_received counts it as one byte.
		if err1 != nil || err2 != nil || w-h.written+1 >= rx-h.consumed {
			return
		}
	}
}
