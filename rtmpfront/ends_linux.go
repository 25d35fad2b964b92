//go:build linux

package rtmpfront

import (
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// endWatcher waits, on one thread for every detached client, for their sockets' ends: an
// epoll instance of its own, where each socket is registered for EPOLLRDHUP alone (hang-
// ups and errors are always reported). A segment's arrival wakes a socket's waiters with
// EPOLLIN, which this registration does not match, so the watcher sleeps while the kernel
// forwards media; a blocking poll per client would hold an OS thread each.
type endWatcher struct {
	epfd, wake int // wake: an eventfd that ends run

	mu      sync.Mutex
	next    int32
	waiting map[int32]chan struct{}
	closed  bool
}

// wakeID is the event data of the wake eventfd.
const wakeID = 0

func newEndWatcher() (*endWatcher, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("end watcher: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("end watcher: %w", err)
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: wakeID}); err != nil {
		_ = unix.Close(wake)
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("end watcher: %w", err)
	}
	w := &endWatcher{epfd: epfd, wake: wake, waiting: make(map[int32]chan struct{})}
	go w.run()
	return w, nil
}

// watch registers fd; the returned channel is closed when its socket ends (or the
// watcher is closed). forget must follow before fd is closed.
func (w *endWatcher) watch(fd int) (id int32, ended <-chan struct{}, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, nil, errors.New("end watcher closed")
	}
	w.next++
	if w.next <= wakeID {
		w.next = wakeID + 1
	}
	id = w.next
	ch := make(chan struct{})
	ev := unix.EpollEvent{Events: unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: id}
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return 0, nil, fmt.Errorf("end watcher: %w", err)
	}
	w.waiting[id] = ch
	return id, ch, nil
}

// forget unregisters fd, watched as id; its channel is closed if it was not yet.
func (w *endWatcher) forget(id int32, fd int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		_ = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	}
	if ch, ok := w.waiting[id]; ok {
		close(ch)
		delete(w.waiting, id)
	}
}

func (w *endWatcher) run() {
	events := make([]unix.EpollEvent, 64)
	for {
		n, err := unix.EpollWait(w.epfd, events, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		w.mu.Lock()
		if err != nil || w.closed {
			for id, ch := range w.waiting {
				close(ch)
				delete(w.waiting, id)
			}
			_ = unix.Close(w.wake)
			_ = unix.Close(w.epfd)
			w.mu.Unlock()
			return
		}
		for _, ev := range events[:n] {
			if ch, ok := w.waiting[ev.Fd]; ok && ev.Fd != wakeID {
				close(ch)
				delete(w.waiting, ev.Fd)
			}
		}
		w.mu.Unlock()
	}
}

// close ends the watcher; every channel still waiting is closed.
func (w *endWatcher) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	w.closed = true
	var one [8]byte
	one[7] = 1 // an eventfd counter of 1, in either byte order non-zero
	_, _ = unix.Write(w.wake, one[:])
}
