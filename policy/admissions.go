package policy

import (
	"sync"
	"time"

	"github.com/stagedoor/stagedoor"
)

// Admission is what let a publish on a public name start: the stream key (whether it came
// as ?key=, as the password or as the token) or the stored password hash that was current
// when a password (or the hash itself) was accepted. Both are nil for a no-auth stream.
// StillAllowed checks a running publish against it (Running).
type Admission struct {
	KeyDigest *stagedoor.Digest
	// PasswordDigest is stagedoor.HashDigest of the stored hash, never the hash.
	PasswordDigest *stagedoor.Digest
}

// Admissions remembers, for each publish session Decide allowed on a public name, what
// admitted it, until the availability hook or the reconciler has copied it into the live
// state (by MediaMTX's source id, which equals the session id of the auth request for
// RTMP, RTSP, SRT and WebRTC publishers). Only MediaMTX sees the password and the token:
// the hook process gets neither, so this is the one place that knows a key sent as a
// password admitted a stream.
//
// It is memory only (the auth path must not write to the database), bounded in time
// (admissionTTL: a publisher becomes available within MediaMTX's read and handshake
// timeouts of its auth, or never) and in size (maxAdmissions; beyond it the oldest entries
// go first). A nil *Admissions remembers nothing. It is safe for concurrent use.
type Admissions struct {
	mu    sync.Mutex
	now   func() time.Time
	byID  map[string]admitted
	order []admittedAt // in recording order, for expiry and eviction
	seq   uint64
}

type admitted struct {
	adm Admission
	seq uint64
}

type admittedAt struct {
	id  string
	at  time.Time
	seq uint64
}

const (
	// admissionTTL is how long an admission waits for its stream to be seen live. MediaMTX
	// gives up on a publisher that is not ready within its readTimeout or WebRTC handshake
	// timeout (10 s by default); the reconciler copies admissions at least every 10 s.
	admissionTTL = 2 * time.Minute
	// maxAdmissions bounds the memory: more allowed publishes than MediaMTX's serial auth
	// can answer (≤ 200/s) in the time a stream takes to become available.
	maxAdmissions = 10_000
)

// NewAdmissions returns an empty Admissions on the wall clock.
func NewAdmissions() *Admissions { return newAdmissions(time.Now) }

func newAdmissions(now func() time.Time) *Admissions {
	return &Admissions{now: now, byID: make(map[string]admitted)}
}

// Record remembers what admitted session id; a later Record for the same id replaces it.
// An empty id (MediaMTX sent none) is not remembered.
func (a *Admissions) Record(id string, adm Admission) {
	if a == nil || id == "" {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	a.expire(now)
	for len(a.byID) >= maxAdmissions && len(a.order) > 0 {
		a.drop(a.order[0])
		a.order = a.order[1:]
	}
	a.seq++
	a.byID[id] = admitted{adm: adm, seq: a.seq}
	a.order = append(a.order, admittedAt{id: id, at: now, seq: a.seq})
}

// Admitted returns what admitted session id, if it is still remembered.
func (a *Admissions) Admitted(id string) (Admission, bool) {
	if a == nil || id == "" {
		return Admission{}, false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.expire(a.now())
	e, ok := a.byID[id]
	return e.adm, ok
}

// expire drops the entries older than admissionTTL.
func (a *Admissions) expire(now time.Time) {
	n := 0
	for n < len(a.order) && now.Sub(a.order[n].at) > admissionTTL {
		a.drop(a.order[n])
		n++
	}
	a.order = a.order[n:]
	if len(a.order) == 0 {
		a.order = nil // let the backing array go
	}
}

// drop removes e's id unless a later Record for the same id replaced it.
func (a *Admissions) drop(e admittedAt) {
	if cur, ok := a.byID[e.id]; ok && cur.seq == e.seq {
		delete(a.byID, e.id)
	}
}
