package adminapi_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor/internal/testdb"

	"github.com/stagedoor/stagedoor"

	"golang.org/x/crypto/bcrypt"

	"github.com/stagedoor/stagedoor/adminapi"
	"github.com/stagedoor/stagedoor/internal/testutil"
	"github.com/stagedoor/stagedoor/manage"
	"github.com/stagedoor/stagedoor/store"
)

const (
	token  = "t0ken-t0ken-t0ken-1"
	prefix = "/api/v1/admin"
)

// ops is the operator-action service over db, as the running service builds it.
func ops(db *store.DB) *manage.Service {
	return &manage.Service{Store: db, URLs: stagedoor.URLs{RTMP: "rtmp://h/live", HLS: "http://h:8888"}}
}

// fixture is the admin API over a real database, with alice (a default and a backup key,
// a stream alices_show) and bobby (banned).
type fixture struct {
	db      *store.DB
	srv     *httptest.Server
	alice   stagedoor.NewUser
	backup  stagedoor.IssuedKey
	bob     stagedoor.NewUser
	changes atomic.Int64

	mu     sync.Mutex
	audits []stagedoor.AuditEntry
	kicks  []string // names the service was asked to kick
}

func newFixture(t *testing.T, tok string) *fixture {
	t.Helper()
	ctx := t.Context()
	f := &fixture{db: testdb.MustOpen(t)}
	var err error
	if f.alice, err = f.db.CreateUser(ctx, "alice"); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	if f.backup, err = f.db.AddKey(ctx, "alice", "backup"); err != nil {
		t.Fatalf("AddKey: %v", err)
	}
	if _, err := f.db.CreateStream(ctx, "alices_show", "alice", true); err != nil {
		t.Fatalf("CreateStream: %v", err)
	}
	if f.bob, err = f.db.CreateUser(ctx, "bobby"); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	if err := f.db.SetActive(ctx, "bobby", false); err != nil {
		t.Fatalf("ban bobby: %v", err)
	}
	opts := adminapi.Options{Token: tok}
	op := ops(f.db)
	op.Changed = func(context.Context) { f.changes.Add(1) }
	op.Kicker = func(_ context.Context, name string) (bool, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.kicks = append(f.kicks, name)
		return name == "alice", nil // alice is live, nobody else
	}
	op.Record = func(_ context.Context, e stagedoor.AuditEntry) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.audits = append(f.audits, e)
		return nil
	}
	// A new handler per request: the handlers pass the pooled *gin.Context to the store as
	// its context, which races (under -race) with gin reusing that Context for the next
	// request; see TestOneHandlerSequentialRequests. Each engine has its own pool.
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		adminapi.NewHandler(testutil.Discard(), op, opts).ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fixture) auditLog() []stagedoor.AuditEntry {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.audits)
}

// call sends a request with the Authorization header auth ("" for none).
func (f *fixture) call(t *testing.T, method, path, auth, body string) (int, http.Header, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, f.srv.URL+prefix+path, rd)
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	res, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return res.StatusCode, res.Header, b
}

// do sends an authorized request and checks its status.
func (f *fixture) do(t *testing.T, method, path, body string, want int) []byte {
	t.Helper()
	code, _, b := f.call(t, method, path, "Bearer "+token, body)
	if code != want {
		t.Fatalf("%s %s = %d %s, want %d", method, path, code, b, want)
	}
	return b
}

func decode[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

// dbState is everything an admin request may change.
type dbState struct {
	Users    []string // name:active:has-password
	Keys     []string // user:fingerprint:label
	Streams  []string // name:owner:auth
	Revoked  int
	Outbox   int
	Policy   int64
	AuditLog int
}

func (f *fixture) state(t *testing.T) dbState {
	t.Helper()
	ctx := t.Context()
	var s dbState
	us, err := f.db.Users(ctx)
	if err != nil {
		t.Fatalf("Users: %v", err)
	}
	for _, u := range us {
		s.Users = append(s.Users, strings.Join([]string{u.Name, boolStr(u.Active), boolStr(u.HasPassword)}, ":"))
	}
	for _, u := range us {
		ks, err := f.db.Keys(ctx, u.Name)
		if err != nil {
			t.Fatalf("Keys(%s): %v", u.Name, err)
		}
		for _, k := range ks {
			s.Keys = append(s.Keys, strings.Join([]string{u.Name, k.Fingerprint, k.Label}, ":"))
		}
	}
	ss, err := f.db.Streams(ctx, "")
	if err != nil {
		t.Fatalf("Streams: %v", err)
	}
	for _, st := range ss {
		s.Streams = append(s.Streams, strings.Join([]string{st.Name, st.UserName, boolStr(st.AuthRequired)}, ":"))
	}
	for _, k := range []string{f.alice.StreamKey, f.backup.StreamKey, f.bob.StreamKey} {
		if _, err := f.db.RevokedKey(ctx, stagedoor.KeyDigest(k)); err == nil {
			s.Revoked++
		} else if !errors.Is(err, stagedoor.ErrNotFound) {
			t.Fatalf("RevokedKey: %v", err)
		}
	}
	events, err := f.db.DueEvents(ctx, 100_000)
	if err != nil {
		t.Fatalf("DueEvents: %v", err)
	}
	s.Outbox = len(events)
	audit, err := f.db.Audit(ctx, stagedoor.AuditFilter{Limit: 100_000})
	if err != nil {
		t.Fatalf("Audit: %v", err)
	}
	s.AuditLog = len(audit)
	if s.Policy, err = f.db.PolicyGeneration(ctx); err != nil {
		t.Fatalf("PolicyGeneration: %v", err)
	}
	return s
}

func boolStr(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// route is one admin API route with a body that would change something if accepted.
type route struct{ method, path, body string }

func routes(f *fixture) []route {
	return []route{
		{http.MethodGet, "/users", ""},
		{http.MethodPost, "/users", `{"name":"carol"}`},
		{http.MethodGet, "/users/alice", ""},
		{http.MethodPost, "/users/alice/ban", ""},
		{http.MethodPost, "/users/bobby/unban", ""},
		{http.MethodPost, "/users/alice/kick", ""},
		{http.MethodPut, "/users/alice/password", `{"password":"correct horse"}`},
		{http.MethodGet, "/users/alice/keys", ""},
		{http.MethodPost, "/users/alice/keys", `{"label":"laptop"}`},
		{http.MethodDelete, "/users/alice/keys/" + f.backup.Fingerprint, ""},
		{http.MethodPost, "/users/alice/keys/reset", ""},
		{http.MethodPost, "/keys/reset-all", ""},
		{http.MethodGet, "/streams", ""},
		{http.MethodPost, "/streams", `{"name":"new_show","user":"alice"}`},
		{http.MethodDelete, "/streams/alices_show", ""},
		{http.MethodGet, "/audit", ""},
		{http.MethodGet, "/live", ""},
	}
}

func TestUnauthorizedChangesNothing(t *testing.T) {
	f := newFixture(t, token)
	before := f.state(t)
	for _, auth := range []struct{ name, header string }{
		{"NoHeader", ""},
		{"WrongToken", "Bearer wr0ng-wr0ng-wr0ng-1"},
		{"BearerPrefixMissing", token},
		{"TokenPrefixOnly", "Bearer " + token[:len(token)-1]},
		{"TokenWithSuffix", "Bearer " + token + "x"},
		{"EmptyBearer", "Bearer "},
		{"BasicScheme", "Basic " + base64.StdEncoding.EncodeToString([]byte("admin:"+token))},
	} {
		for _, r := range routes(f) {
			t.Run(auth.name+"/"+r.method+r.path, func(t *testing.T) {
				code, h, b := f.call(t, r.method, r.path, auth.header, r.body)
				if code != http.StatusUnauthorized {
					t.Errorf("status = %d, want 401", code)
				}
				if h.Get("WWW-Authenticate") == "" {
					t.Error("no WWW-Authenticate header on 401")
				}
				if strings.Contains(string(b), stagedoor.KeyPrefix) || strings.Contains(string(b), "alice") {
					t.Errorf("401 body %s carries data", b)
				}
			})
		}
	}
	if after := f.state(t); !reflect.DeepEqual(after, before) {
		t.Errorf("state after refused requests = %+v, want %+v", after, before)
	}
	if n := f.changes.Load(); n != 0 {
		t.Errorf("OnChange calls = %d, want 0", n)
	}
	if es := f.auditLog(); len(es) != 0 {
		t.Errorf("OnAudit entries = %+v, want none", es)
	}
}

func TestEmptyTokenRefusesEverything(t *testing.T) {
	f := newFixture(t, "")
	before := f.state(t)
	for _, auth := range []struct{ name, header string }{
		{"EmptyBearer", "Bearer "},
		{"AnyToken", "Bearer " + token},
		{"NoHeader", ""},
	} {
		for _, r := range routes(f) {
			t.Run(auth.name+"/"+r.method+r.path, func(t *testing.T) {
				if code, _, _ := f.call(t, r.method, r.path, auth.header, r.body); code != http.StatusUnauthorized {
					t.Errorf("status = %d, want 401", code)
				}
			})
		}
	}
	if after := f.state(t); !reflect.DeepEqual(after, before) {
		t.Errorf("state after refused requests = %+v, want %+v", after, before)
	}
	if n := f.changes.Load(); n != 0 {
		t.Errorf("OnChange calls = %d, want 0", n)
	}
}

func TestCreateUser(t *testing.T) {
	for _, tt := range []struct {
		name string
		body string
		want int
	}{
		{"Created", `{"name":"carol"}`, http.StatusCreated},
		{"DuplicateConflict", `{"name":"alice"}`, http.StatusConflict},
		{"NameOfStreamConflict", `{"name":"alices_show"}`, http.StatusConflict},
		{"InvalidNameBadRequest", `{"name":"Carol Smith"}`, http.StatusBadRequest},
		{"ReservedNameBadRequest", `{"name":"admin"}`, http.StatusBadRequest},
		{"KeyPrefixNameBadRequest", `{"name":"sk_carol"}`, http.StatusBadRequest},
		{"NoBodyBadRequest", ``, http.StatusBadRequest},
		{"MalformedJSONBadRequest", `{"name":`, http.StatusBadRequest},
		{"WrongTypeBadRequest", `{"name":5}`, http.StatusBadRequest},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, token)
			before := f.state(t)
			b := f.do(t, http.MethodPost, "/users", tt.body, tt.want)
			if tt.want != http.StatusCreated {
				if after := f.state(t); !reflect.DeepEqual(after, before) {
					t.Errorf("state = %+v, want unchanged %+v", after, before)
				}
				if n := f.changes.Load(); n != 0 {
					t.Errorf("OnChange calls = %d, want 0", n)
				}
				if strings.Contains(string(b), "stream_key") {
					t.Errorf("refusal %s carries a key", b)
				}
				return
			}
			got := decode[map[string]string](t, b)
			o, err := f.db.UserByKeyDigest(t.Context(), stagedoor.KeyDigest(got["stream_key"]))
			if err != nil {
				t.Fatalf("returned stream_key does not verify: %v", err)
			}
			want := map[string]string{"name": "carol", "stream_key": got["stream_key"], "fingerprint": o.Fingerprint,
				"server_url": "rtmp://h/live", "hls_url": "http://h:8888/live/carol/index.m3u8"}
			if !reflect.DeepEqual(got, want) || o.UserName != "carol" || !stagedoor.IsKey(got["stream_key"]) {
				t.Errorf("response = %v (key owner %q), want %v owned by carol", got, o.UserName, want)
			}
			if n := f.changes.Load(); n != 1 {
				t.Errorf("OnChange calls = %d, want 1", n)
			}
			if es := f.auditLog(); len(es) != 1 || es[0].Kind != "admin" || es[0].User != "carol" || es[0].Decision != "ok" {
				t.Errorf("OnAudit entries = %+v, want one admin entry for carol", es)
			}
		})
	}
}

func TestBanUnban(t *testing.T) {
	f := newFixture(t, token)
	ctx := t.Context()
	for i, step := range []struct {
		name       string
		path       string
		want       int
		wantActive bool
		wantReason string
	}{
		{"BanDeactivates", "/users/alice/ban", http.StatusOK, false, "user banned"},
		{"UnbanActivates", "/users/alice/unban", http.StatusOK, true, "user unbanned"},
		{"UnknownUserNotFound", "/users/nobody/ban", http.StatusNotFound, true, ""},
		{"UnknownUserUnbanNotFound", "/users/nobody/unban", http.StatusNotFound, true, ""},
	} {
		changes, audits := f.changes.Load(), len(f.auditLog())
		b := f.do(t, http.MethodPost, step.path, "", step.want)
		u, err := f.db.UserByName(ctx, "alice")
		if err != nil {
			t.Fatalf("UserByName: %v", err)
		}
		if u.Active != step.wantActive {
			t.Errorf("%s: alice active = %v, want %v", step.name, u.Active, step.wantActive)
		}
		if step.want != http.StatusOK {
			if f.changes.Load() != changes || len(f.auditLog()) != audits {
				t.Errorf("%s: OnChange or OnAudit called on a refusal", step.name)
			}
			continue
		}
		got := decode[map[string]any](t, b)
		if want := map[string]any{"name": "alice", "active": step.wantActive}; !reflect.DeepEqual(got, want) {
			t.Errorf("%s: response = %v, want %v", step.name, got, want)
		}
		if n := f.changes.Load(); n != changes+1 {
			t.Errorf("%s: OnChange calls = %d, want %d", step.name, n, changes+1)
		}
		es := f.auditLog()
		if len(es) != i+1 {
			t.Fatalf("%s: OnAudit entries = %d, want %d", step.name, len(es), i+1)
		}
		if e := es[i]; e.Kind != "admin" || e.User != "alice" || e.Reason != step.wantReason || e.IP == "" {
			t.Errorf("%s: audit entry = %+v, want admin %q for alice with the client IP", step.name, e, step.wantReason)
		}
	}
	var events []string
	due, err := f.db.DueEvents(ctx, 100_000)
	if err != nil {
		t.Fatalf("DueEvents: %v", err)
	}
	for _, e := range due {
		if e.User == "alice" {
			events = append(events, e.Event)
		}
	}
	if want := []string{stagedoor.EventUserBanned, stagedoor.EventUserUnbanned}; !reflect.DeepEqual(events, want) {
		t.Errorf("events = %v, want %v", events, want)
	}
}

// storedHash is the user's stored bcrypt hash, read through alice's stream alices_show
// (a stream carries its owner's hash for the auth path).
func storedHash(t *testing.T, db *store.DB, name string) string {
	t.Helper()
	ss, err := db.Streams(t.Context(), name)
	if err != nil || len(ss) == 0 {
		t.Fatalf("Streams(%s) = %v, %v: the fixture gives alice a stream", name, ss, err)
	}
	return ss[0].PasswordHash
}

func TestSetPassword(t *testing.T) {
	const pw = "correct horse"
	f := newFixture(t, token)
	for _, tt := range []struct {
		name, user, body string
		want             int
	}{
		{"TooLongBadRequest", "alice", `{"password":"` + strings.Repeat("p", 73) + `"}`, http.StatusBadRequest},
		{"EmptyBadRequest", "alice", `{"password":""}`, http.StatusBadRequest},
		{"NoBodyBadRequest", "alice", ``, http.StatusBadRequest},
		{"HashShapedBadRequest", "alice", `{"password":"$2a$10$7jiKhObtcPR5dNsER6VO5eedT/DWJc0NhjAwbetwvM9yfoF2iKCTq"}`, http.StatusBadRequest},
		{"CostTooHighBadRequest", "alice", `{"password":"` + pw + `","cost":13}`, http.StatusBadRequest},
		{"CostTooLowBadRequest", "alice", `{"password":"` + pw + `","cost":4}`, http.StatusBadRequest},
		{"MalformedJSONBadRequest", "alice", `{"password":`, http.StatusBadRequest},
		{"UnknownUserNotFound", "nobody", `{"password":"` + pw + `"}`, http.StatusNotFound},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := f.state(t)
			b := f.do(t, http.MethodPut, "/users/"+tt.user+"/password", tt.body, tt.want)
			if after := f.state(t); !reflect.DeepEqual(after, before) {
				t.Errorf("state = %+v, want unchanged %+v", after, before)
			}
			if strings.Contains(string(b), "$2a$") {
				t.Errorf("refusal %s carries a hash", b)
			}
		})
	}
	if h := storedHash(t, f.db, "alice"); h != "" {
		t.Fatalf("refusals stored a password hash")
	}
	if n := f.changes.Load(); n != 0 {
		t.Errorf("OnChange calls after refusals = %d, want 0", n)
	}

	t.Run("SetStoresBcrypt", func(t *testing.T) {
		gen, err := f.db.PolicyGeneration(t.Context())
		if err != nil {
			t.Fatalf("PolicyGeneration: %v", err)
		}
		got := decode[map[string]string](t, f.do(t, http.MethodPut, "/users/alice/password", `{"password":"`+pw+`"}`, http.StatusOK))
		hash := got["password_hash"]
		if got["name"] != "alice" || !stagedoor.IsHashShaped(hash) {
			t.Fatalf("response = %v, want alice and a bcrypt hash", got)
		}
		if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(pw)); err != nil {
			t.Errorf("returned hash does not verify the password: %v", err)
		}
		if c, err := bcrypt.Cost([]byte(hash)); err != nil || c != stagedoor.DefaultCost {
			t.Errorf("cost = %d, %v, want %d", c, err, stagedoor.DefaultCost)
		}
		if s := storedHash(t, f.db, "alice"); s != hash {
			t.Errorf("stored hash differs from the returned one")
		}
		if g, err := f.db.PolicyGeneration(t.Context()); err != nil || g == gen {
			t.Errorf("policy generation = %d, %v, want changed from %d", g, err, gen)
		}
		if n := f.changes.Load(); n != 1 {
			t.Errorf("OnChange calls = %d, want 1", n)
		}
		u := decode[map[string]any](t, f.do(t, http.MethodGet, "/users/alice", "", http.StatusOK))
		if u["has_password"] != true {
			t.Errorf("GET user = %v, want has_password true", u)
		}
		if es := f.auditLog(); len(es) != 1 || strings.Contains(es[0].Reason, "$2a$") || es[0].Reason != "password set" {
			t.Errorf("OnAudit entries = %+v, want one 'password set' without the hash", es)
		}
	})
}

type keyView struct {
	Fingerprint string     `json:"fingerprint"`
	Label       string     `json:"label"`
	CreatedAt   time.Time  `json:"created_at"`
	LastUsedAt  *time.Time `json:"last_used_at"`
}

func TestKeys(t *testing.T) {
	f := newFixture(t, token)
	ctx := t.Context()

	t.Run("ListShowsNoKey", func(t *testing.T) {
		b := f.do(t, http.MethodGet, "/users/alice/keys", "", http.StatusOK)
		got := decode[[]keyView](t, b)
		if len(got) != 2 || got[0].Fingerprint != f.alice.Fingerprint || got[0].Label != "default" ||
			got[1].Fingerprint != f.backup.Fingerprint || got[1].Label != "backup" {
			t.Errorf("keys = %+v, want default %s and backup %s", got, f.alice.Fingerprint, f.backup.Fingerprint)
		}
		if strings.Contains(string(b), stagedoor.KeyPrefix) {
			t.Errorf("key list %s carries a key", b)
		}
	})

	var added string
	t.Run("AddReturnsKeyOnce", func(t *testing.T) {
		got := decode[map[string]string](t, f.do(t, http.MethodPost, "/users/alice/keys", `{"label":"laptop"}`, http.StatusCreated))
		added = got["stream_key"]
		o, err := f.db.UserByKeyDigest(ctx, stagedoor.KeyDigest(added))
		if err != nil || o.UserName != "alice" {
			t.Fatalf("added key owner = %+v, %v, want alice", o, err)
		}
		if got["fingerprint"] != stagedoor.Fingerprint(added) || got["label"] != "laptop" {
			t.Errorf("response = %v, want fingerprint of the key and label laptop", got)
		}
	})

	for _, tt := range []struct {
		name, method, path, body string
		want                     int
	}{
		{"AddBadLabelBadRequest", http.MethodPost, "/users/alice/keys", `{"label":"a\u0000b"}`, http.StatusBadRequest},
		{"AddLongLabelBadRequest", http.MethodPost, "/users/alice/keys", `{"label":"` + strings.Repeat("l", 65) + `"}`, http.StatusBadRequest},
		{"AddMalformedBadRequest", http.MethodPost, "/users/alice/keys", `{"label"`, http.StatusBadRequest},
		{"AddUnknownUserNotFound", http.MethodPost, "/users/nobody/keys", `{"label":"x"}`, http.StatusNotFound},
		{"ListUnknownUserNotFound", http.MethodGet, "/users/nobody/keys", "", http.StatusNotFound},
		{"RevokeWrongFingerprintNotFound", http.MethodDelete, "/users/alice/keys/deadbeef", "", http.StatusNotFound},
		{"RevokeOthersKeyNotFound", http.MethodDelete, "/users/alice/keys/" + f.bob.Fingerprint, "", http.StatusNotFound},
		{"RevokeUnknownUserNotFound", http.MethodDelete, "/users/nobody/keys/" + f.alice.Fingerprint, "", http.StatusNotFound},
		{"ResetUnknownUserNotFound", http.MethodPost, "/users/nobody/keys/reset", "", http.StatusNotFound},
		{"GetUnknownUserNotFound", http.MethodGet, "/users/nobody", "", http.StatusNotFound},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before, changes := f.state(t), f.changes.Load()
			f.do(t, tt.method, tt.path, tt.body, tt.want)
			if after := f.state(t); !reflect.DeepEqual(after, before) {
				t.Errorf("state = %+v, want unchanged %+v", after, before)
			}
			if n := f.changes.Load(); n != changes {
				t.Errorf("OnChange calls = %d, want %d", n, changes)
			}
		})
	}

	for _, tt := range []struct {
		name, query string
		key         func() string
		keep        bool
	}{
		{"RevokeKeepLiveRecorded", "?keep_live=true", func() string { return f.backup.StreamKey }, true},
		{"RevokeKickRecorded", "", func() string { return added }, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			key := tt.key()
			fp := stagedoor.Fingerprint(key)
			changes := f.changes.Load()
			got := decode[map[string]any](t, f.do(t, http.MethodDelete, "/users/alice/keys/"+fp+tt.query, "", http.StatusOK))
			if want := map[string]any{"name": "alice", "fingerprint": fp, "revoked": true}; !reflect.DeepEqual(got, want) {
				t.Errorf("response = %v, want %v", got, want)
			}
			if _, err := f.db.UserByKeyDigest(ctx, stagedoor.KeyDigest(key)); !errors.Is(err, stagedoor.ErrNotFound) {
				t.Errorf("revoked key still verifies: %v", err)
			}
			r, err := f.db.RevokedKey(ctx, stagedoor.KeyDigest(key))
			if err != nil || r.KeepLive != tt.keep || r.UserName != "alice" {
				t.Errorf("RevokedKey = %+v, %v, want alice with KeepLive %v", r, err, tt.keep)
			}
			if n := f.changes.Load(); n != changes+1 {
				t.Errorf("OnChange calls = %d, want %d", n, changes+1)
			}
			f.do(t, http.MethodDelete, "/users/alice/keys/"+fp, "", http.StatusNotFound)
		})
	}

	t.Run("ResetKeepLive", func(t *testing.T) {
		got := decode[map[string]string](t, f.do(t, http.MethodPost, "/users/alice/keys/reset?keep_live=true", "", http.StatusOK))
		if o, err := f.db.UserByKeyDigest(ctx, stagedoor.KeyDigest(got["stream_key"])); err != nil || o.UserName != "alice" {
			t.Fatalf("reset key owner = %+v, %v, want alice", o, err)
		}
		if got["name"] != "alice" || got["fingerprint"] != stagedoor.Fingerprint(got["stream_key"]) || got["label"] != "default" {
			t.Errorf("response = %v, want alice's new default key", got)
		}
		r, err := f.db.RevokedKey(ctx, stagedoor.KeyDigest(f.alice.StreamKey))
		if err != nil || !r.KeepLive {
			t.Errorf("RevokedKey(old default) = %+v, %v, want KeepLive", r, err)
		}
		keys := decode[[]keyView](t, f.do(t, http.MethodGet, "/users/alice/keys", "", http.StatusOK))
		if len(keys) != 1 || keys[0].Fingerprint != got["fingerprint"] {
			t.Errorf("keys after reset = %+v, want only %s", keys, got["fingerprint"])
		}
	})

	t.Run("ResetAll", func(t *testing.T) {
		old := map[string]bool{}
		for _, k := range f.state(t).Keys {
			old[k] = true
		}
		got := decode[[]map[string]string](t, f.do(t, http.MethodPost, "/keys/reset-all", "", http.StatusOK))
		if len(got) != 2 || got[0]["name"] != "alice" || got[1]["name"] != "bobby" {
			t.Fatalf("reset-all = %v, want alice and bobby", got)
		}
		for _, k := range got {
			o, err := f.db.UserByKeyDigest(ctx, stagedoor.KeyDigest(k["stream_key"]))
			if err != nil || o.UserName != k["name"] || o.Fingerprint != k["fingerprint"] {
				t.Errorf("new key of %s: owner %+v, %v", k["name"], o, err)
			}
		}
		if _, err := f.db.UserByKeyDigest(ctx, stagedoor.KeyDigest(f.bob.StreamKey)); !errors.Is(err, stagedoor.ErrNotFound) {
			t.Errorf("bobby's old key still verifies: %v", err)
		}
		if r, err := f.db.RevokedKey(ctx, stagedoor.KeyDigest(f.bob.StreamKey)); err != nil || r.KeepLive {
			t.Errorf("RevokedKey(bobby's old key) = %+v, %v, want revoked without keep-live", r, err)
		}
		for _, k := range f.state(t).Keys {
			if old[k] {
				t.Errorf("key %s survived reset-all", k)
			}
		}
	})
}

type streamView struct {
	Name         string `json:"name"`
	User         string `json:"user"`
	AuthRequired bool   `json:"auth_required"`
	Live         bool   `json:"live"`
	HLSURL       string `json:"hls_url"`
}

func TestStreams(t *testing.T) {
	f := newFixture(t, token)
	for _, tt := range []struct {
		name, body string
		want       int
		wantView   streamView
	}{
		{"CreatedWithAuth", `{"name":"alice_late","user":"alice"}`, http.StatusCreated,
			streamView{Name: "alice_late", User: "alice", AuthRequired: true, HLSURL: "http://h:8888/live/alice_late/index.m3u8"}},
		{"CreatedNoAuth", `{"name":"open_mic","user":"bobby","no_auth":true}`, http.StatusCreated,
			streamView{Name: "open_mic", User: "bobby", HLSURL: "http://h:8888/live/open_mic/index.m3u8"}},
		{"DuplicateConflict", `{"name":"alices_show","user":"alice"}`, http.StatusConflict, streamView{}},
		{"UserNameConflict", `{"name":"bobby","user":"alice"}`, http.StatusConflict, streamView{}},
		{"InvalidNameBadRequest", `{"name":"Show!","user":"alice"}`, http.StatusBadRequest, streamView{}},
		{"UnknownUserNotFound", `{"name":"ghost_show","user":"nobody"}`, http.StatusNotFound, streamView{}},
		{"MalformedBadRequest", `{"name":"x"`, http.StatusBadRequest, streamView{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before, changes := f.state(t), f.changes.Load()
			b := f.do(t, http.MethodPost, "/streams", tt.body, tt.want)
			if tt.want != http.StatusCreated {
				if after := f.state(t); !reflect.DeepEqual(after, before) {
					t.Errorf("state = %+v, want unchanged %+v", after, before)
				}
				return
			}
			if got := decode[streamView](t, b); got != tt.wantView {
				t.Errorf("response = %+v, want %+v", got, tt.wantView)
			}
			if _, err := f.db.StreamByName(t.Context(), tt.wantView.Name); err != nil {
				t.Errorf("StreamByName: %v, want created", err)
			}
			if n := f.changes.Load(); n != changes+1 {
				t.Errorf("OnChange calls = %d, want %d", n, changes+1)
			}
		})
	}

	for _, tt := range []struct {
		name, query string
		want        int
		wantNames   []string
	}{
		{"ListAll", "", http.StatusOK, []string{"alice_late", "alices_show", "open_mic"}},
		{"ListByUser", "?user=alice", http.StatusOK, []string{"alice_late", "alices_show"}},
		{"ListUnknownUserNotFound", "?user=nobody", http.StatusNotFound, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := f.do(t, http.MethodGet, "/streams"+tt.query, "", tt.want)
			if tt.want != http.StatusOK {
				return
			}
			var names []string
			for _, s := range decode[[]streamView](t, b) {
				names = append(names, s.Name)
			}
			if !reflect.DeepEqual(names, tt.wantNames) {
				t.Errorf("streams = %v, want %v", names, tt.wantNames)
			}
			if strings.Contains(string(b), "$2a$") || strings.Contains(string(b), stagedoor.KeyPrefix) {
				t.Errorf("stream list %s carries a secret", b)
			}
		})
	}

	t.Run("DeleteThenNotFound", func(t *testing.T) {
		gen, err := f.db.PolicyGeneration(t.Context())
		if err != nil {
			t.Fatalf("PolicyGeneration: %v", err)
		}
		changes := f.changes.Load()
		got := decode[map[string]any](t, f.do(t, http.MethodDelete, "/streams/alices_show", "", http.StatusOK))
		if want := map[string]any{"name": "alices_show", "removed": true}; !reflect.DeepEqual(got, want) {
			t.Errorf("response = %v, want %v", got, want)
		}
		if _, err := f.db.StreamByName(t.Context(), "alices_show"); !errors.Is(err, stagedoor.ErrNotFound) {
			t.Errorf("StreamByName after delete: %v, want ErrNotFound", err)
		}
		if g, _ := f.db.PolicyGeneration(t.Context()); g == gen {
			t.Errorf("policy generation unchanged by a stream delete")
		}
		if n := f.changes.Load(); n != changes+1 {
			t.Errorf("OnChange calls = %d, want %d", n, changes+1)
		}
		before := f.state(t)
		f.do(t, http.MethodDelete, "/streams/alices_show", "", http.StatusNotFound)
		if after := f.state(t); !reflect.DeepEqual(after, before) {
			t.Errorf("state = %+v, want unchanged %+v", after, before)
		}
	})
}

func TestAudit(t *testing.T) {
	f := newFixture(t, token)
	now := time.Now()
	if err := f.db.AppendAudit(t.Context(), []stagedoor.AuditEntry{
		{At: now.Add(-2 * time.Hour), Kind: "publish", User: "alice", Decision: "allow", Reason: "old"},
		{At: now.Add(-10 * time.Minute), Kind: "publish", User: "bobby", Decision: "deny", Reason: "recent bobby"},
		{At: now.Add(-time.Minute), Kind: "kick", User: "alice", Decision: "ok", Reason: "recent alice"},
	}); err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}
	for _, tt := range []struct {
		name, query string
		want        int
		wantReasons []string
	}{
		{"AllNewestFirst", "", http.StatusOK, []string{"recent alice", "recent bobby", "old"}},
		{"SinceOneHour", "?since=1h", http.StatusOK, []string{"recent alice", "recent bobby"}},
		{"ByUser", "?user=alice", http.StatusOK, []string{"recent alice", "old"}},
		{"ByUserSince", "?user=alice&since=1h", http.StatusOK, []string{"recent alice"}},
		{"UnknownUserEmpty", "?user=nobody", http.StatusOK, []string{}},
		{"BadSinceBadRequest", "?since=yesterday", http.StatusBadRequest, nil},
		{"DaysSinceBadRequest", "?since=1d", http.StatusBadRequest, nil},
		{"NegativeSinceBadRequest", "?since=-1h", http.StatusBadRequest, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := f.do(t, http.MethodGet, "/audit"+tt.query, "", tt.want)
			if tt.want != http.StatusOK {
				return
			}
			got := []string{}
			for _, e := range decode[[]stagedoor.AuditEntry](t, b) {
				got = append(got, e.Reason)
			}
			if !reflect.DeepEqual(got, tt.wantReasons) {
				t.Errorf("audit = %v, want %v", got, tt.wantReasons)
			}
		})
	}
}

func TestLive(t *testing.T) {
	f := newFixture(t, token)
	ctx := t.Context()
	d := stagedoor.KeyDigest(f.alice.StreamKey)
	if err := f.db.SetLive(ctx, stagedoor.LiveState{NodeID: "local", Kind: stagedoor.LiveDirect, Name: "alice", UserID: f.alice.ID, UserName: "alice",
		KeyDigest: &d, SourceID: "conn-1", SourceType: "rtmpConn"}); err != nil {
		t.Fatalf("SetLive: %v", err)
	}
	b := f.do(t, http.MethodGet, "/live", "", http.StatusOK)
	got := decode[[]map[string]any](t, b)
	if len(got) != 1 {
		t.Fatalf("live = %v, want one channel", got)
	}
	delete(got[0], "live_since")
	if want := map[string]any{"name": "alice", "user": "alice", "protocol": "rtmpConn",
		"hls_url": "http://h:8888/live/alice/index.m3u8"}; !reflect.DeepEqual(got[0], want) {
		t.Errorf("live[0] = %v, want %v", got[0], want)
	}
	for _, secret := range []string{stagedoor.KeyPrefix, f.alice.Fingerprint, "conn-1"} {
		if strings.Contains(string(b), secret) {
			t.Errorf("live %s carries %q", b, secret)
		}
	}
	u := decode[map[string]any](t, f.do(t, http.MethodGet, "/users/alice", "", http.StatusOK))
	if u["live"] != true || u["live_since"] == nil || u["hls_url"] != "http://h:8888/live/alice/index.m3u8" {
		t.Errorf("GET user = %v, want live with live_since and hls_url", u)
	}
	users := decode[[]map[string]any](t, f.do(t, http.MethodGet, "/users", "", http.StatusOK))
	if len(users) != 2 || users[0]["name"] != "alice" || users[0]["live"] != true || users[1]["active"] != false {
		t.Errorf("GET users = %v, want live alice and banned bobby", users)
	}
}

// TestSecretsShownOnce drives every route with the token and checks that a stream key
// appears only in the response that issued it, a password hash only in the password
// response, and that no GET response ever carries "sk_" or "$2a$".
func TestSecretsShownOnce(t *testing.T) {
	f := newFixture(t, token)
	d := stagedoor.KeyDigest(f.backup.StreamKey)
	if err := f.db.SetLive(t.Context(), stagedoor.LiveState{NodeID: "local", Kind: stagedoor.LiveDirect, Name: "alice", UserID: f.alice.ID, UserName: "alice",
		KeyDigest: &d, SourceID: "conn-1", SourceType: "rtmpConn"}); err != nil {
		t.Fatalf("SetLive: %v", err)
	}
	if err := f.db.AppendAudit(t.Context(), []stagedoor.AuditEntry{{At: time.Now(), Kind: "publish", User: "alice",
		KeyFP: f.alice.Fingerprint, Decision: "allow"}}); err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}
	type response struct {
		req  string
		body string
	}
	var responses []response
	issued := map[string]string{} // key → the request that issued it
	var hash, hashReq string
	gets := func() {
		for _, p := range []string{"/users", "/users/alice", "/users/bobby", "/users/alice/keys", "/users/carol/keys",
			"/streams", "/streams?user=alice", "/audit", "/audit?since=1h", "/live"} {
			code, h, b := f.call(t, http.MethodGet, p, "Bearer "+token, "")
			if code != http.StatusOK && code != http.StatusNotFound {
				t.Errorf("GET %s = %d %s", p, code, b)
			}
			if code == http.StatusOK && h.Get("Cache-Control") != "no-store" {
				t.Errorf("GET %s: Cache-Control = %q, want no-store", p, h.Get("Cache-Control"))
			}
			if strings.Contains(string(b), stagedoor.KeyPrefix) || strings.Contains(string(b), "$2a$") {
				t.Errorf("GET %s = %s, carries a key or a hash", p, b)
			}
			responses = append(responses, response{"GET " + p, string(b)})
		}
	}
	change := func(method, path, body string, want int) []byte {
		b := f.do(t, method, path, body, want)
		responses = append(responses, response{method + " " + path, string(b)})
		return b
	}
	issue := func(req string, keys ...string) {
		for _, k := range keys {
			if !stagedoor.IsKey(k) {
				t.Fatalf("%s: %q is not a key", req, k)
			}
			issued[k] = req
		}
	}

	gets()
	b := change(http.MethodPost, "/users", `{"name":"carol"}`, http.StatusCreated)
	issue("POST /users", decode[map[string]string](t, b)["stream_key"])
	gets()
	b = change(http.MethodPost, "/users/carol/keys", `{"label":"phone"}`, http.StatusCreated)
	issue("POST /users/carol/keys", decode[map[string]string](t, b)["stream_key"])
	change(http.MethodPost, "/users/carol/ban", "", http.StatusOK)
	change(http.MethodPost, "/users/carol/unban", "", http.StatusOK)
	b = change(http.MethodPut, "/users/carol/password", `{"password":"s3cret pass"}`, http.StatusOK)
	hash, hashReq = decode[map[string]string](t, b)["password_hash"], "PUT /users/carol/password"
	change(http.MethodPost, "/streams", `{"name":"carols_show","user":"carol"}`, http.StatusCreated)
	gets()
	change(http.MethodDelete, "/users/alice/keys/"+f.backup.Fingerprint+"?keep_live=true", "", http.StatusOK)
	b = change(http.MethodPost, "/users/alice/keys/reset", "", http.StatusOK)
	issue("POST /users/alice/keys/reset", decode[map[string]string](t, b)["stream_key"])
	gets()
	b = change(http.MethodPost, "/keys/reset-all", "", http.StatusOK)
	for _, k := range decode[[]map[string]string](t, b) {
		issue("POST /keys/reset-all", k["stream_key"])
	}
	change(http.MethodDelete, "/streams/carols_show", "", http.StatusOK)
	gets()

	if len(issued) != 6 {
		t.Errorf("keys issued = %d, want 6 (create, add, reset, reset-all of 3 users)", len(issued))
	}
	for _, k := range []string{f.alice.StreamKey, f.backup.StreamKey, f.bob.StreamKey} {
		issued[k] = "" // made by the store directly: no response may show them
	}
	for k, req := range issued {
		var in []string
		for _, r := range responses {
			if strings.Contains(r.body, k) {
				in = append(in, r.req)
			}
		}
		var want []string
		if req != "" {
			want = []string{req}
		}
		if !reflect.DeepEqual(in, want) {
			t.Errorf("key %s appears in %v, want only %v", stagedoor.Fingerprint(k), in, want)
		}
	}
	var in []string
	for _, r := range responses {
		if strings.Contains(r.body, hash) {
			in = append(in, r.req)
		}
	}
	if !reflect.DeepEqual(in, []string{hashReq}) {
		t.Errorf("password hash appears in %v, want only %s", in, hashReq)
	}
	for _, e := range f.auditLog() {
		if strings.Contains(e.Reason, stagedoor.KeyPrefix) || strings.Contains(e.Reason, "$2a$") {
			t.Errorf("audit entry %+v carries a secret", e)
		}
	}
}

// TestOneHandlerSequentialRequests serves requests one after another from a single
// handler, as cmd/stagedoor does. Regression: the handlers used to hand the pooled
// *gin.Context to the store as its context.Context; database/sql kept reading it from its
// own goroutine after the handler returned while gin reused it for the next request (a
// data race under -race), and a client going away never cancelled the store call. They
// now pass c.Request.Context().
func TestOneHandlerSequentialRequests(t *testing.T) {
	db := testdb.MustOpen(t)
	if _, err := db.CreateUser(t.Context(), "alice"); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	srv := httptest.NewServer(adminapi.NewHandler(testutil.Discard(), ops(db), adminapi.Options{Token: token}))
	defer srv.Close()
	for i := range 20 {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+prefix+"/users/alice/keys/reset", nil)
		if err != nil {
			t.Fatalf("NewRequest: %v", err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("request %d = %d, want 200", i, res.StatusCode)
		}
	}
}

func TestKick(t *testing.T) {
	f := newFixture(t, token)
	got := decode[map[string]any](t, f.do(t, http.MethodPost, "/users/alice/kick", "", http.StatusOK))
	if got["name"] != "alice" || got["kicked"] != true {
		t.Errorf("kick alice = %v, want kicked", got)
	}
	got = decode[map[string]any](t, f.do(t, http.MethodPost, "/users/bobby/kick", "", http.StatusOK))
	if got["kicked"] != false {
		t.Errorf("kick of bobby (not live) = %v, want kicked false", got)
	}
	f.do(t, http.MethodPost, "/users/nobody/kick", "", http.StatusNotFound)
	f.mu.Lock()
	kicks := slices.Clone(f.kicks)
	f.mu.Unlock()
	if !slices.Equal(kicks, []string{"alice", "bobby"}) {
		t.Errorf("kicks asked of the service = %v, want [alice bobby] (none for an unknown name)", kicks)
	}
	es := f.auditLog()
	if len(es) != 1 || es[0].Reason != "kicked alice" || es[0].Protocol != "api" || es[0].User != "alice" {
		t.Errorf("audit = %+v, want one api entry for the kick that happened", es)
	}
}
