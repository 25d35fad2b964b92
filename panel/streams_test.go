package panel_test

import (
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stagedoor/stagedoor"
	"github.com/stagedoor/stagedoor/manage"
)

const publishPass = "Publish-Secret-4711"

func streamAuth(t *testing.T, f *fixture, name string) bool {
	t.Helper()
	s, err := f.db.StreamByName(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	return s.AuthRequired
}

func (f *fixture) auditSince(n int) []stagedoor.AuditEntry {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]stagedoor.AuditEntry(nil), f.audit[n:]...)
}

func (f *fixture) auditLen() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.audit)
}

// TestScaleEngineStreams: a streamer creates a stream, sets a publish password and sees
// its bcrypt hash with every encoder URL form the CLI prints, once; the password is in no
// response; authentication turns off and on; each change is audited via the panel.
func TestScaleEngineStreams(t *testing.T) {
	f := newFixture(t)
	b := f.browser()
	b.mustLogin("benw", benwPass)
	auditBefore := f.auditLen()

	csrf, nonce := b.form("/panel/channels/benw")
	if !strings.Contains(b.body, "No streams.") {
		t.Error("the dashboard does not say there are no streams yet")
	}
	if got := b.post("/panel/channels/benw/streams", url.Values{"csrf": {csrf}, "nonce": {nonce}, "stream": {"benw_show"}}); got != http.StatusOK {
		t.Fatalf("create stream: %d %s", got, b.body)
	}
	if !streamAuth(t, f, "benw_show") {
		t.Error("a stream created without the no-auth box has authentication off")
	}
	page := html.UnescapeString(b.body)
	if !strings.Contains(page, "rtmp://stream.example:1935/live/benw_show?user=benw&pass=<password>") {
		t.Errorf("stream created: no one-field URL with a password placeholder in\n%s", page)
	}

	csrf, nonce = b.form("/panel/channels/benw")
	if !strings.Contains(b.body, "benw_show") {
		t.Error("the dashboard does not list benw_show")
	}
	if got := b.post("/panel/channels/benw/publish-password",
		url.Values{"csrf": {csrf}, "nonce": {nonce}, "password": {publishPass}, "confirm": {publishPass}}); got != http.StatusOK {
		t.Fatalf("set publish password: %d %s", got, b.body)
	}
	st, err := f.db.StreamByName(t.Context(), "benw_show")
	if err != nil || st.PasswordHash == "" {
		t.Fatalf("benw_show = %+v, %v; want a password hash", st, err)
	}
	if !stagedoor.IsHashShaped(st.PasswordHash) {
		t.Fatalf("stored hash %q is not a bcrypt hash", st.PasswordHash)
	}
	page = html.UnescapeString(b.body)
	want := f.ops.URLs.Forms("benw_show", "benw", st.PasswordHash, true)
	for what, v := range map[string]string{
		"hash": st.PasswordHash, "two-part server": want.TwoPart.Server, "two-part key": want.TwoPart.StreamKey,
		"one field": want.OneField, "SRT": want.SRT, "RTSP": want.RTSP, "WHIP": want.WHIP,
	} {
		if !strings.Contains(page, `value="`+v+`"`) {
			t.Errorf("password set: %s %q not shown", what, v)
		}
	}
	if strings.Contains(want.OneField, "<password>") || !strings.Contains(want.OneField, st.PasswordHash) {
		t.Fatalf("test broken: one-field URL %q", want.OneField)
	}

	// A reload of the answer (the same form again) changes nothing and shows no hash.
	if got := b.post("/panel/channels/benw/publish-password",
		url.Values{"csrf": {csrf}, "nonce": {nonce}, "password": {publishPass}, "confirm": {publishPass}}); got != http.StatusSeeOther {
		t.Errorf("re-posted password form: %d, want 303", got)
	}
	if again, _ := f.db.StreamByName(t.Context(), "benw_show"); again.PasswordHash != st.PasswordHash {
		t.Error("a re-posted form set the password again")
	}
	b.get("/panel/channels/benw")
	if strings.Contains(html.UnescapeString(b.body), st.PasswordHash) {
		t.Error("the dashboard shows the hash after the answer that set it")
	}

	// Refused passwords: the answer names the rule, not the value.
	csrf, nonce = b.form("/panel/channels/benw")
	for _, bad := range []url.Values{
		{"password": {"Mismatch-One-1"}, "confirm": {"Mismatch-One-2"}},
		{"password": {st.PasswordHash}, "confirm": {st.PasswordHash}},
		{"password": {strings.Repeat("Long-Secret-", 7)}, "confirm": {strings.Repeat("Long-Secret-", 7)}},
	} {
		bad.Set("csrf", csrf)
		bad.Set("nonce", nonce)
		if got := b.post("/panel/channels/benw/publish-password", bad); got != http.StatusBadRequest {
			t.Errorf("bad password: %d, want 400", got)
		}
		if strings.Contains(b.body, bad.Get("password")) || strings.Contains(html.UnescapeString(b.body), bad.Get("password")) {
			t.Errorf("a refused password is echoed:\n%s", b.body)
		}
	}
	if again, _ := f.db.StreamByName(t.Context(), "benw_show"); again.PasswordHash != st.PasswordHash {
		t.Error("a refused password changed the hash")
	}
	// The corrected form, with the same nonce (the refusals spent nothing), is accepted.
	if got := b.post("/panel/channels/benw/publish-password",
		url.Values{"csrf": {csrf}, "nonce": {nonce}, "password": {"Corrected-Secret-2"}, "confirm": {"Corrected-Secret-2"}}); got != http.StatusOK {
		t.Errorf("corrected password form after refusals: %d, want 200", got)
	}
	if again, _ := f.db.StreamByName(t.Context(), "benw_show"); again.PasswordHash == st.PasswordHash {
		t.Error("the corrected password did not change the hash")
	}

	// Authentication off, then on.
	csrf, _ = b.form("/panel/channels/benw")
	if !strings.Contains(b.body, "Disable authentication") {
		t.Error("no disable button for an authenticated stream")
	}
	if got := b.post("/panel/channels/benw/streams/auth", url.Values{"csrf": {csrf}, "stream": {"benw_show"}, "auth": {"off"}}); got != http.StatusSeeOther {
		t.Fatalf("auth off: %d %s", got, b.body)
	}
	if streamAuth(t, f, "benw_show") {
		t.Error("authentication still on")
	}
	b.get("/panel/channels/benw")
	if !strings.Contains(b.body, "Enable authentication") {
		t.Error("no enable button for a stream without authentication")
	}
	if got := b.post("/panel/channels/benw/streams/auth", url.Values{"csrf": {csrf}, "stream": {"benw_show"}, "auth": {"on"}}); got != http.StatusSeeOther {
		t.Fatalf("auth on: %d %s", got, b.body)
	}
	if !streamAuth(t, f, "benw_show") {
		t.Error("authentication still off")
	}
	if got := b.post("/panel/channels/benw/streams/auth", url.Values{"csrf": {csrf}, "stream": {"benw_show"}, "auth": {"maybe"}}); got != http.StatusBadRequest {
		t.Errorf("auth maybe: %d, want 400", got)
	}

	// A no-auth stream: URLs without credentials.
	csrf, nonce = b.form("/panel/channels/benw")
	if got := b.post("/panel/channels/benw/streams", url.Values{"csrf": {csrf}, "nonce": {nonce}, "stream": {"benw_lobby"}, "auth": {"off"}}); got != http.StatusOK {
		t.Fatalf("create no-auth stream: %d %s", got, b.body)
	}
	if streamAuth(t, f, "benw_lobby") || !strings.Contains(b.body, `value="rtmp://stream.example:1935/live/benw_lobby"`) {
		t.Error("no-auth stream: authentication on, or its one-field URL not shown without credentials")
	}

	for i, body := range b.all {
		if strings.Contains(body, publishPass) || strings.Contains(html.UnescapeString(body), publishPass) {
			t.Errorf("response %d carries the publish password", i)
		}
	}
	var reasons []string
	for _, e := range f.auditSince(auditBefore) {
		if e.Protocol != manage.ViaPanel || e.User != "benw" || e.Kind != "admin" {
			t.Errorf("audit entry %+v: want an admin entry for benw via panel", e)
		}
		reasons = append(reasons, e.Reason)
	}
	wantReasons := "stream created benw_show (by benw)|password set (by benw)|password set (by benw)|stream auth disabled benw_show (by benw)|" +
		"stream auth enabled benw_show (by benw)|stream created benw_lobby (by benw)"
	if got := strings.Join(reasons, "|"); got != wantReasons {
		t.Errorf("audit reasons:\n got %s\nwant %s", got, wantReasons)
	}
}

// TestScaleEngineOtherChannel404: benw's stream actions on alice's channel, or on alice's
// stream through benw's own URL, answer 404 and change nothing.
func TestScaleEngineOtherChannel404(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	if _, err := f.ops.CreateStream(ctx, manage.Actor{Via: manage.ViaCLI}, "alice_show", "alice", true); err != nil {
		t.Fatal(err)
	}
	b := f.browser()
	b.mustLogin("benw", benwPass)
	csrf, _ := b.form("/panel/channels/benw")
	auditBefore, changes := f.auditLen(), f.changes()
	for _, tt := range []struct {
		path string
		form url.Values
	}{
		{"/panel/channels/alice/streams", url.Values{"stream": {"forged_show"}}},
		{"/panel/channels/alice/publish-password", url.Values{"password": {publishPass}, "confirm": {publishPass}}},
		{"/panel/channels/alice/streams/auth", url.Values{"stream": {"alice_show"}, "auth": {"off"}}},
		{"/panel/channels/benw/streams/auth", url.Values{"stream": {"alice_show"}, "auth": {"off"}}},
		{"/panel/channels/nobody/publish-password", url.Values{"password": {publishPass}, "confirm": {publishPass}}},
	} {
		tt.form.Set("csrf", csrf)
		tt.form.Set("nonce", stagedoor.NewPanelToken())
		tt.form.Set("user", "alice")
		tt.form.Set("channel", "alice")
		if got := b.post(tt.path, tt.form); got != http.StatusNotFound {
			t.Errorf("POST %s as benw: %d, want 404", tt.path, got)
		}
	}
	if got := b.get("/panel/channels/alice"); got != http.StatusNotFound || strings.Contains(b.body, "alice_show") {
		t.Errorf("GET alice's page: %d, want 404 without her streams", got)
	}
	if !streamAuth(t, f, "alice_show") {
		t.Error("alice_show lost its authentication")
	}
	if u, _ := f.db.UserByName(ctx, "alice"); u.HasPassword {
		t.Error("alice got a publish password")
	}
	if _, err := f.db.StreamByName(ctx, "forged_show"); err == nil {
		t.Error("forged_show was created")
	}
	if n := f.auditLen(); n != auditBefore || f.changes() != changes {
		t.Errorf("%d audit entries and %d signals after refusals, want none", n-auditBefore, f.changes()-changes)
	}
}

// TestScaleEngineCSRF: the stream actions without the session's token are refused with
// 403 and change nothing.
func TestScaleEngineCSRF(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	if _, err := f.ops.CreateStream(ctx, manage.Actor{Via: manage.ViaCLI}, "benw_show", "benw", true); err != nil {
		t.Fatal(err)
	}
	b := f.browser()
	b.mustLogin("benw", benwPass)
	csrf, nonce := b.form("/panel/channels/benw")
	auditBefore, changes := f.auditLen(), f.changes()
	for _, tt := range []struct {
		path string
		form url.Values
	}{
		{"/panel/channels/benw/streams", url.Values{"stream": {"new_show"}, "nonce": {nonce}}},
		{"/panel/channels/benw/publish-password", url.Values{"password": {publishPass}, "confirm": {publishPass}, "nonce": {nonce}}},
		{"/panel/channels/benw/streams/auth", url.Values{"stream": {"benw_show"}, "auth": {"off"}}},
	} {
		for name, token := range map[string]string{"Missing": "", "Wrong": csrf[:len(csrf)-2] + "xx", "OtherSession": otherCSRF(t, f)} {
			form := url.Values{}
			for k, v := range tt.form {
				form[k] = v
			}
			if token != "" {
				form.Set("csrf", token)
			}
			if got := b.post(tt.path, form); got != http.StatusForbidden {
				t.Errorf("POST %s with %s token: %d, want 403", tt.path, name, got)
			}
		}
	}
	if !streamAuth(t, f, "benw_show") {
		t.Error("benw_show lost its authentication")
	}
	if u, _ := f.db.UserByName(ctx, "benw"); u.HasPassword {
		t.Error("benw got a publish password")
	}
	if _, err := f.db.StreamByName(ctx, "new_show"); err == nil {
		t.Error("new_show was created")
	}
	if n := f.auditLen(); n != auditBefore || f.changes() != changes {
		t.Errorf("%d audit entries and %d signals after refusals, want none", n-auditBefore, f.changes()-changes)
	}
	// The nonce of the refused forms is still good: the real form goes through.
	if got := b.post("/panel/channels/benw/publish-password",
		url.Values{"csrf": {csrf}, "nonce": {nonce}, "password": {publishPass}, "confirm": {publishPass}}); got != http.StatusOK {
		t.Errorf("the real form after refusals: %d, want 200", got)
	}
}

// TestScaleEngineOperator: an operator manages any channel's streams; the stream and the
// password land on that channel, and the audit entry names the operator.
func TestScaleEngineOperator(t *testing.T) {
	f := newFixture(t)
	b := f.browser()
	b.mustLogin("boss", opPass)
	auditBefore := f.auditLen()
	csrf, nonce := b.form("/panel/channels/alice")
	if got := b.post("/panel/channels/alice/streams", url.Values{"csrf": {csrf}, "nonce": {nonce}, "stream": {"alice_show"}}); got != http.StatusOK {
		t.Fatalf("operator creates alice_show: %d %s", got, b.body)
	}
	csrf, nonce = b.form("/panel/channels/alice")
	if got := b.post("/panel/channels/alice/publish-password",
		url.Values{"csrf": {csrf}, "nonce": {nonce}, "password": {publishPass}, "confirm": {publishPass}}); got != http.StatusOK {
		t.Fatalf("operator sets alice's publish password: %d %s", got, b.body)
	}
	st, err := f.db.StreamByName(t.Context(), "alice_show")
	if err != nil || st.UserName != "alice" || st.PasswordHash == "" {
		t.Fatalf("alice_show = %+v, %v; want alice's, with a password", st, err)
	}
	if u, _ := f.db.UserByName(t.Context(), "benw"); u.HasPassword {
		t.Error("benw got a publish password")
	}
	for _, e := range f.auditSince(auditBefore) {
		if e.User != "alice" || e.Protocol != manage.ViaPanel || !strings.HasSuffix(e.Reason, "(by boss)") {
			t.Errorf("audit entry %+v: want alice's, via panel, by boss", e)
		}
	}
	if n := len(f.auditSince(auditBefore)); n != 2 {
		t.Errorf("%d audit entries, want 2", n)
	}
}
