package store_test

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor"

	"github.com/stagedoor/stagedoor/store"
	"github.com/stagedoor/stagedoor/store/pgtest"
)

// T25 (docs/threats.md §5.4): kill -9 during writes. TestKillNineDuringWrites runs this
// test binary again as a writer (TestCrashWriter) and SIGKILLs it at a random moment, 20
// times over one database file. The writer announces every call before it makes it
// ("begin …") and acknowledges it after it returned nil ("ack …"), so after each kill the
// parent knows every acknowledged write and the one call that may have been in flight.

const (
	crashDBEnv    = "STAGEDOOR_CRASH_DB"
	crashRoundEnv = "STAGEDOOR_CRASH_ROUND"
	crashRounds   = 20
	// crashMinKilled is how many rounds must end with the writer SIGKILLed while it was
	// still writing. The writer never stops on its own, so anything less is a failure.
	crashMinKilled = 15
)

// TestMain runs this test binary as the child writer of TestKillNineDuringWrites when
// STAGEDOOR_CRASH_DB is set; otherwise it runs the tests, with a PostgreSQL for those
// that use one (pgtest). The writer writes until it is killed.
func TestMain(m *testing.M) {
	path := os.Getenv(crashDBEnv)
	if path == "" {
		os.Exit(pgtest.Main(m))
	}
	// A safety net in case the parent dies without killing us; the parent kills the
	// writer long before this.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	err := crashWrite(ctx, path, os.Getenv(crashRoundEnv), os.Stdout)
	cancel()
	// Stdout carries the protocol only.
	fmt.Fprintln(os.Stderr, "crash writer stopped:", err)
	os.Exit(3)
}

// crashWrite opens the database and loops forever over creating users, adding, revoking
// and resetting keys and flipping live state, on this round's users and every user of
// the earlier rounds. Each call is announced on out before it starts and acknowledged
// after it returned nil; os.Stdout is unbuffered and each line is one write.
func crashWrite(ctx context.Context, path, round string, out io.Writer) error {
	db, err := store.Open(ctx, path)
	if err != nil {
		return err
	}
	users, err := db.Users(ctx)
	if err != nil {
		return err
	}
	type member struct {
		id   int64
		name string
	}
	pool := make([]member, 0, len(users))
	for _, u := range users {
		pool = append(pool, member{u.ID, u.Name})
	}
	emit := func(format string, args ...any) error {
		_, err := fmt.Fprintf(out, format+"\n", args...)
		return err
	}
	digestHex := func(key string) string { d := stagedoor.KeyDigest(key); return hex.EncodeToString(d[:]) }
	keepFlag := func(keep bool) int {
		if keep {
			return 1
		}
		return 0
	}
	sourceTypes := []string{"rtmpConn", "srtConn", "webRTCSession", "rtspSession"}

	for n := 0; ; n++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		dice := rand.IntN(100)
		if len(pool) == 0 || dice < 30 {
			name := fmt.Sprintf("crash_r%s_%d", round, n)
			if err := emit("begin create %s", name); err != nil {
				return err
			}
			nu, err := db.CreateUser(ctx, name)
			if err != nil {
				return err
			}
			pool = append(pool, member{nu.ID, nu.Name})
			if err := emit("ack create %s %d %s", name, nu.ID, digestHex(nu.StreamKey)); err != nil {
				return err
			}
			continue
		}
		u := pool[rand.IntN(len(pool))]
		keep := rand.IntN(4) == 0
		switch {
		case dice < 50:
			label := fmt.Sprintf("obs%d", n)
			if err := emit("begin addkey %s %s", u.name, label); err != nil {
				return err
			}
			k, err := db.AddKey(ctx, u.name, label)
			if err != nil {
				return err
			}
			if err := emit("ack addkey %s %s", u.name, digestHex(k.StreamKey)); err != nil {
				return err
			}
		case dice < 65:
			keys, err := db.Keys(ctx, u.name)
			if err != nil {
				return err
			}
			// Revoke one key only while another one (with another fingerprint) stays:
			// a user without keys would look half-created.
			fps := map[string]bool{}
			for _, k := range keys {
				fps[k.Fingerprint] = true
			}
			if len(fps) < 2 {
				continue
			}
			fp := keys[rand.IntN(len(keys))].Fingerprint
			if err := emit("begin revoke %s %s %d", u.name, fp, keepFlag(keep)); err != nil {
				return err
			}
			if err := db.RevokeKey(ctx, u.name, fp, stagedoor.Revocation{KeepLive: keep}); err != nil {
				return err
			}
			if err := emit("ack revoke %s", u.name); err != nil {
				return err
			}
		case dice < 75:
			if err := emit("begin reset %s %d", u.name, keepFlag(keep)); err != nil {
				return err
			}
			k, err := db.ResetKeysWith(ctx, u.name, stagedoor.Revocation{KeepLive: keep})
			if err != nil {
				return err
			}
			if err := emit("ack reset %s %s", u.name, digestHex(k.StreamKey)); err != nil {
				return err
			}
		case dice < 90:
			// Few source ids, so the same source repeats (idempotent) as often as a new
			// one replaces it (an encoder that reconnected).
			src := fmt.Sprintf("conn%d", rand.IntN(3))
			typ := sourceTypes[rand.IntN(len(sourceTypes))]
			if err := emit("begin live %s %d %s %s", u.name, u.id, src, typ); err != nil {
				return err
			}
			if err := db.SetLive(ctx, stagedoor.LiveState{NodeID: "local", Kind: stagedoor.LiveDirect, Name: u.name, UserID: u.id, UserName: u.name, SourceID: src, SourceType: typ}); err != nil {
				return err
			}
			if err := emit("ack live %s", u.name); err != nil {
				return err
			}
		default:
			// Mostly the current source; sometimes unconditional, sometimes a stale one.
			src := "stale"
			l, err := db.LiveByName(ctx, u.name)
			switch {
			case err != nil && !errors.Is(err, stagedoor.ErrNotFound):
				return err
			case err == nil && rand.IntN(10) < 7:
				src = l.SourceID
			case rand.IntN(2) == 0:
				src = ""
			}
			if err := emit("begin offline %s %s", u.name, orDash(src)); err != nil {
				return err
			}
			changed, err := db.SetOffline(ctx, u.name, "local", src)
			if err != nil {
				return err
			}
			if err := emit("ack offline %s %t", u.name, changed); err != nil {
				return err
			}
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// TestKillNineDuringWrites is T25: 20 SIGKILLs of a writer at random points while it
// creates users, rotates keys and flips live flags, all on one database file. After each
// kill the database opens (migrations are idempotent), integrity_check says ok, no
// foreign key dangles, every user has a stream key (no half-created user), and the
// database holds exactly the acknowledged writes: users with their ids, key digests and
// labels, revoked keys, live rows and outbox events. The one call in flight at the kill
// is either wholly there or wholly absent.
func TestKillNineDuringWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("T25: 20 writer processes killed with SIGKILL; skipped under -short")
	}
	path := filepath.Join(t.TempDir(), "stagedoor.db")
	model := crashState{} // the database as verified after the previous round
	var acks, killed, inFlight, inFlightCommitted int
	for round := range crashRounds {
		delay := time.Duration(100+rand.IntN(501)) * time.Millisecond
		lines, wasKilled, stderr := runCrashWriter(t, path, round, delay)
		if wasKilled {
			killed++
		}
		if stderr != "" {
			t.Errorf("round %d: writer stderr:\n%s", round, stderr)
		}
		ops, err := parseCrashLines(lines)
		if err != nil {
			t.Fatalf("round %d: writer output: %v", round, err)
		}
		var pending *crashOp
		roundAcks := len(ops)
		if len(ops) > 0 && ops[len(ops)-1].ack == nil {
			pending = &ops[len(ops)-1]
			roundAcks--
			inFlight++
		}
		acks += roundAcks

		got := checkCrashedDB(t, path, round, ops)
		applied, err := verifyCrashRound(model, ops, got)
		if err != nil {
			t.Fatalf("round %d (killed after %v, %d acks, in flight: %v): %v", round, delay, roundAcks, pending, err)
		}
		if applied {
			inFlightCommitted++
		}
		model = got
	}
	t.Logf("%d rounds: %d acknowledged writes, all present; %d users; writer killed while running in %d rounds, "+
		"with a call in flight in %d (committed in %d)", crashRounds, acks, len(model), killed, inFlight, inFlightCommitted)
	if acks == 0 {
		t.Errorf("no write was acknowledged in %d rounds", crashRounds)
	}
	if killed < crashMinKilled {
		t.Errorf("writer killed while still writing in %d of %d rounds, want at least %d", killed, crashRounds, crashMinKilled)
	}
}

// runCrashWriter starts the writer on path, waits for its first acknowledgement and then
// delay, and SIGKILLs it. It returns every line the writer printed, whether the kill
// found it still running, and its stderr.
func runCrashWriter(t *testing.T, path string, round int, delay time.Duration) (lines []string, killed bool, stderr string) {
	t.Helper()
	// A pipe of our own rather than StdoutPipe, so that Wait may run before the reader
	// has drained it.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var errBuf strings.Builder
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), crashDBEnv+"="+path, crashRoundEnv+"="+strconv.Itoa(round))
	cmd.Stdout = w
	cmd.Stderr = &errBuf
	if err := cmd.Start(); err != nil {
		w.Close()
		t.Fatalf("start writer: %v", err)
	}
	w.Close()

	firstAck := make(chan struct{})
	read := make(chan []string, 1)
	go func() {
		var out []string
		acked := false
		sc := bufio.NewScanner(r)
		for sc.Scan() { // until EOF: the writer is dead
			if !acked && strings.HasPrefix(sc.Text(), "ack ") {
				acked = true
				close(firstAck)
			}
			out = append(out, sc.Text())
		}
		read <- out
	}()
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	select {
	case <-firstAck:
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Errorf("round %d: writer acknowledged nothing within 30 s", round)
	}
	select {
	case <-time.After(delay):
	case <-exited:
	}
	select {
	case <-exited:
	default:
		if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			t.Fatalf("kill writer: %v", err)
		}
		<-exited
		ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
		killed = ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
	}
	if !killed {
		t.Errorf("round %d: writer stopped on its own: %v", round, cmd.ProcessState)
	}
	return <-read, killed, errBuf.String()
}

// crashOp is one call of the writer: its begin line and, once it returned nil, its ack.
type crashOp struct {
	kind string   // create, addkey, revoke, reset, live or offline
	name string   // the user
	args []string // the rest of the begin line
	ack  []string // the rest of the ack line; nil while the call was in flight
}

func (o *crashOp) String() string {
	return strings.Join(append([]string{o.kind, o.name}, o.args...), " ")
}

// crashArity is how many fields after kind and name each begin and ack line carries.
var crashArity = map[string][2]int{
	"create":  {0, 2}, // ack: id digest
	"addkey":  {1, 1}, // begin: label; ack: digest
	"revoke":  {2, 0}, // begin: fingerprint keep
	"reset":   {1, 1}, // begin: keep; ack: digest
	"live":    {3, 0}, // begin: id source type
	"offline": {1, 1}, // begin: source or -; ack: changed
}

// parseCrashLines turns the writer's output into calls. Only the last call may lack its
// ack: the writer is sequential and was killed during (or after) it.
func parseCrashLines(lines []string) ([]crashOp, error) {
	var ops []crashOp
	for i, l := range lines {
		f := strings.Fields(l)
		if len(f) < 3 {
			return nil, fmt.Errorf("line %d %q: too short", i+1, l)
		}
		arity, ok := crashArity[f[1]]
		if !ok {
			return nil, fmt.Errorf("line %d %q: unknown call", i+1, l)
		}
		pending := len(ops) > 0 && ops[len(ops)-1].ack == nil
		switch f[0] {
		case "begin":
			if pending {
				return nil, fmt.Errorf("line %d %q: %v was never acknowledged", i+1, l, &ops[len(ops)-1])
			}
			if len(f) != 3+arity[0] {
				return nil, fmt.Errorf("line %d %q: want %d fields", i+1, l, 3+arity[0])
			}
			ops = append(ops, crashOp{kind: f[1], name: f[2], args: f[3:]})
		case "ack":
			if !pending || ops[len(ops)-1].kind != f[1] || ops[len(ops)-1].name != f[2] {
				return nil, fmt.Errorf("line %d %q: acknowledges no call in flight", i+1, l)
			}
			if len(f) != 3+arity[1] {
				return nil, fmt.Errorf("line %d %q: want %d fields", i+1, l, 3+arity[1])
			}
			ops[len(ops)-1].ack = append([]string{}, f[3:]...)
		default:
			return nil, fmt.Errorf("line %d %q: not begin or ack", i+1, l)
		}
	}
	return ops, nil
}

// crashUser is everything the writer's calls change for one user.
type crashUser struct {
	id       int64
	keys     map[string]string // digest (hex) -> label
	revoked  map[string]int    // digest (hex) -> keep_live
	liveUser int64             // live_state.user_id; 0 while offline
	liveSrc  string
	liveType string
	events   map[string]int // "event channel" -> outbox rows
}

func newCrashUser(id int64) *crashUser {
	return &crashUser{id: id, keys: map[string]string{}, revoked: map[string]int{}, events: map[string]int{}}
}

func (u *crashUser) clone() *crashUser {
	if u == nil {
		return nil
	}
	c := *u
	c.keys, c.revoked, c.events = maps.Clone(u.keys), maps.Clone(u.revoked), maps.Clone(u.events)
	return &c
}

// String is a canonical form: two users are equal when their strings are.
func (u *crashUser) String() string {
	if u == nil {
		return "absent"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "id=%d keys=[", u.id)
	for _, d := range slices.Sorted(maps.Keys(u.keys)) {
		fmt.Fprintf(&b, " %s:%s", d[:8], u.keys[d])
	}
	b.WriteString(" ] revoked=[")
	for _, d := range slices.Sorted(maps.Keys(u.revoked)) {
		fmt.Fprintf(&b, " %s:%d", d[:8], u.revoked[d])
	}
	b.WriteString(" ] live=")
	if u.liveSrc == "" {
		b.WriteString("no")
	} else {
		fmt.Fprintf(&b, "%s/%s(user %d)", u.liveSrc, u.liveType, u.liveUser)
	}
	b.WriteString(" events=[")
	for _, e := range slices.Sorted(maps.Keys(u.events)) {
		fmt.Fprintf(&b, " %s:%d", e, u.events[e])
	}
	b.WriteString(" ]")
	return b.String()
}

// crashState maps user names to their state.
type crashState map[string]*crashUser

// apply applies one call with its result (the ack fields) to st, the way the store
// documents it. It fails when the call could not have succeeded on st.
func (st crashState) apply(o *crashOp, res []string) error {
	u := st[o.name]
	if u == nil && o.kind != "create" {
		return fmt.Errorf("%v: no such user", o)
	}
	switch o.kind {
	case "create":
		if u != nil {
			return fmt.Errorf("%v: user exists already", o)
		}
		id, err := strconv.ParseInt(res[0], 10, 64)
		if err != nil {
			return err
		}
		u = newCrashUser(id)
		u.keys[res[1]] = "default"
		st[o.name] = u
	case "addkey":
		if _, dup := u.keys[res[0]]; dup {
			return fmt.Errorf("%v: digest issued twice", o)
		}
		u.keys[res[0]] = o.args[0]
	case "revoke":
		keep, err := strconv.Atoi(o.args[1])
		if err != nil {
			return err
		}
		n := 0
		for d := range u.keys {
			if d[:8] == o.args[0] {
				delete(u.keys, d)
				u.revoked[d] = keep
				n++
			}
		}
		if n == 0 {
			return fmt.Errorf("%v: no key with this fingerprint", o)
		}
		u.events[stagedoor.EventKeyRotated+" "+o.name]++
	case "reset":
		keep, err := strconv.Atoi(o.args[0])
		if err != nil {
			return err
		}
		if keep == 0 { // a reset without keep-live ends the user's earlier keep-live graces
			for d := range u.revoked {
				u.revoked[d] = 0
			}
		}
		for d := range u.keys {
			delete(u.keys, d)
			u.revoked[d] = keep
		}
		u.keys[res[0]] = "default"
		u.events[stagedoor.EventKeyRotated+" "+o.name]++
	case "live":
		id, err := strconv.ParseInt(o.args[0], 10, 64)
		if err != nil {
			return err
		}
		if id != u.id {
			return fmt.Errorf("%v: user id is %d", o, u.id)
		}
		if u.liveSrc == "" {
			u.events[stagedoor.EventStreamStarted+" "+o.name]++
		}
		u.liveUser, u.liveSrc, u.liveType = id, o.args[1], o.args[2]
	case "offline":
		src := o.args[0]
		changed := u.liveSrc != "" && (src == "-" || src == u.liveSrc)
		if len(res) > 0 && res[0] != strconv.FormatBool(changed) {
			return fmt.Errorf("%v: SetOffline reported changed=%s, want %t", o, res[0], changed)
		}
		if changed {
			u.liveUser, u.liveSrc, u.liveType = 0, "", ""
			u.events[stagedoor.EventStreamStopped+" "+o.name]++
		}
	default:
		return fmt.Errorf("%v: unknown call", o)
	}
	return nil
}

// verifyCrashRound checks got, the database after a kill, against before (the database
// after the previous kill) plus the round's calls: every acknowledged call must be there
// and nothing else, except the call in flight, which must be wholly there or wholly
// absent. It reports whether that call committed.
func verifyCrashRound(before crashState, ops []crashOp, got crashState) (committed bool, err error) {
	want := crashState{}
	for name, u := range before {
		want[name] = u.clone()
	}
	var pending *crashOp
	for i := range ops {
		if ops[i].ack == nil {
			pending = &ops[i]
			break
		}
		if err := want.apply(&ops[i], ops[i].ack); err != nil {
			return false, fmt.Errorf("acknowledged call does not fit the model: %w", err)
		}
	}
	var diffs []string
	for _, name := range slices.Sorted(maps.Keys(mergeKeys(want, got))) {
		if pending != nil && name == pending.name {
			continue
		}
		if w, g := want[name].String(), got[name].String(); w != g {
			diffs = append(diffs, fmt.Sprintf("%s:\n\tdb   %s\n\twant %s", name, g, w))
		}
	}
	if len(diffs) > 0 {
		if len(diffs) > 10 {
			diffs = append(diffs[:10], fmt.Sprintf("… and %d more", len(diffs)-10))
		}
		return false, fmt.Errorf("database differs from the acknowledged writes:\n%s", strings.Join(diffs, "\n"))
	}
	if pending == nil {
		return false, nil
	}

	g, absent := got[pending.name], want[pending.name]
	if g.String() == absent.String() {
		return false, nil
	}
	// The call may have committed: take the result it would have returned from the
	// database (the one new key digest) and check that everything else follows.
	var res []string
	switch pending.kind {
	case "create", "addkey", "reset":
		var fresh []string
		for d := range g.keys {
			if absent == nil || absent.keys[d] == "" {
				fresh = append(fresh, d)
			}
		}
		if len(fresh) != 1 {
			return false, fmt.Errorf("call in flight %v: db has %s, want %s (not committed) or one new key", pending, g, absent)
		}
		res = fresh
		if pending.kind == "create" {
			res = []string{strconv.FormatInt(g.id, 10), fresh[0]}
		}
	}
	applied := crashState{pending.name: absent.clone()}
	if absent == nil {
		delete(applied, pending.name)
	}
	if err := applied.apply(pending, res); err != nil {
		return false, fmt.Errorf("call in flight %v: db has %s: %w", pending, g, err)
	}
	if w := applied[pending.name].String(); g.String() != w {
		return false, fmt.Errorf("call in flight %v half done:\n\tdb            %s\n\tnot committed %s\n\tcommitted     %s",
			pending, g, absent, w)
	}
	return true, nil
}

func mergeKeys(a, b crashState) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

// crashScanner is a row of *sql.Rows.
type crashScanner interface{ Scan(dest ...any) error }

// checkCrashedDB opens the database the writer was killed on, checks the file and the
// invariants that need no model, reads back everything the writer changes and closes it.
func checkCrashedDB(t *testing.T, path string, round int, ops []crashOp) crashState {
	t.Helper()
	ctx := t.Context()
	db, err := store.Open(ctx, path)
	if err != nil {
		t.Fatalf("round %d: Open after kill -9: %v", round, err)
	}
	defer func() {
		if err := db.Close(); err != nil {
			t.Errorf("round %d: Close: %v", round, err)
		}
	}()
	q := func(query string, scan func(rows crashScanner) error) {
		t.Helper()
		rows, err := db.SQLForTest().QueryContext(ctx, query)
		if err != nil {
			t.Fatalf("round %d: %s: %v", round, query, err)
		}
		defer rows.Close()
		for rows.Next() {
			if err := scan(rows); err != nil {
				t.Fatalf("round %d: %s: %v", round, query, err)
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("round %d: %s: %v", round, query, err)
		}
	}

	var integrity []string
	q(`PRAGMA integrity_check`, func(r crashScanner) error {
		var line string
		err := r.Scan(&line)
		integrity = append(integrity, line)
		return err
	})
	if len(integrity) != 1 || integrity[0] != "ok" {
		t.Fatalf("round %d: integrity_check = %q, want [ok]", round, integrity)
	}
	q(`PRAGMA foreign_key_check`, func(r crashScanner) error {
		var table string
		var rowid, parent, fk any
		if err := r.Scan(&table, &rowid, &parent, &fk); err != nil {
			return err
		}
		return fmt.Errorf("dangling foreign key: %s row %v -> %v", table, rowid, parent)
	})
	q(`SELECT name FROM users u WHERE NOT EXISTS (SELECT 1 FROM stream_keys k WHERE k.user_id = u.id)`,
		func(r crashScanner) error {
			var name string
			if err := r.Scan(&name); err != nil {
				return err
			}
			return fmt.Errorf("half-created user %s: no stream key", name)
		})

	got := crashState{}
	names := map[int64]string{}
	user := func(id int64) *crashUser {
		name, ok := names[id]
		if !ok {
			name = fmt.Sprintf("#%d (no such user)", id)
		}
		if got[name] == nil {
			got[name] = newCrashUser(0)
		}
		return got[name]
	}
	q(`SELECT id, name FROM users`, func(r crashScanner) error {
		var id int64
		var name string
		if err := r.Scan(&id, &name); err != nil {
			return err
		}
		names[id] = name
		got[name] = newCrashUser(id)
		return nil
	})
	q(`SELECT user_id, lower(hex(digest)), label FROM stream_keys`, func(r crashScanner) error {
		var id int64
		var d, label string
		if err := r.Scan(&id, &d, &label); err != nil {
			return err
		}
		user(id).keys[d] = label
		return nil
	})
	q(`SELECT user_id, lower(hex(digest)), keep_live FROM revoked_keys`, func(r crashScanner) error {
		var id int64
		var d string
		var keep int
		if err := r.Scan(&id, &d, &keep); err != nil {
			return err
		}
		user(id).revoked[d] = keep
		return nil
	})
	q(`SELECT name, user_id, source_id, source_type FROM live_state`, func(r crashScanner) error {
		var name string
		var l crashUser
		if err := r.Scan(&name, &l.liveUser, &l.liveSrc, &l.liveType); err != nil {
			return err
		}
		u := got[name]
		if u == nil {
			u = newCrashUser(0)
			got[name] = u
		}
		u.liveUser, u.liveSrc, u.liveType = l.liveUser, l.liveSrc, l.liveType
		return nil
	})
	q(`SELECT username, event, channel, count(*) FROM outbox GROUP BY 1, 2, 3`, func(r crashScanner) error {
		var name, event, channel string
		var n int
		if err := r.Scan(&name, &event, &channel, &n); err != nil {
			return err
		}
		u := got[name]
		if u == nil {
			u = newCrashUser(0)
			got[name] = u
		}
		u.events[event+" "+channel] = n
		return nil
	})

	// The same answers through the store's own reads, for this round's acknowledged
	// users, keys and live flags.
	for i := range ops {
		o := &ops[i]
		if o.ack == nil {
			continue
		}
		var digest string
		switch o.kind {
		case "create":
			u, err := db.UserByName(ctx, o.name)
			if err != nil {
				t.Errorf("round %d: acknowledged %v: UserByName: %v", round, o, err)
				continue
			}
			if id := strconv.FormatInt(u.ID, 10); id != o.ack[0] {
				t.Errorf("round %d: acknowledged %v: UserByName id = %s, want %s", round, o, id, o.ack[0])
			}
			digest = o.ack[1]
		case "addkey", "reset":
			digest = o.ack[0]
		default:
			continue
		}
		if _, held := got[o.name].keys[digest]; !held {
			continue // revoked later; verifyCrashRound checks that it was acknowledged
		}
		var d stagedoor.Digest
		if b, err := hex.DecodeString(digest); err != nil || len(b) != len(d) {
			t.Fatalf("round %d: %v: bad digest %q", round, o, digest)
		} else {
			copy(d[:], b)
		}
		owner, err := db.UserByKeyDigest(ctx, d)
		if err != nil || owner.UserName != o.name {
			t.Errorf("round %d: acknowledged %v: UserByKeyDigest = %+v, %v; want owner %s", round, o, owner, err, o.name)
		}
	}
	for i := range ops {
		o := &ops[i]
		u := got[o.name]
		if o.ack == nil || o.kind != "live" || u == nil || u.liveSrc == "" {
			continue // still offline or taken offline later: verifyCrashRound decides
		}
		l, err := db.LiveByName(ctx, o.name)
		if err != nil || l.SourceID != u.liveSrc || l.UserID != u.id {
			t.Errorf("round %d: acknowledged %v: LiveByName = %+v, %v; want source %s of user %d", round, o, l, err, u.liveSrc, u.id)
		}
	}
	return got
}
