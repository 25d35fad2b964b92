package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor/webhook"
)

const (
	webhookSecret = "e2e-webhook-signing-secret"
	adminToken    = "e2e-admin-token-0123456789"
)

// receiver is a webhook endpoint that checks every signature.
type receiver struct {
	mu     sync.Mutex
	events []webhook.Payload
	bad    int
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	ts, _ := strconv.ParseInt(req.Header.Get(webhook.HeaderTimestamp), 10, 64)
	r.mu.Lock()
	defer r.mu.Unlock()
	if req.Header.Get(webhook.HeaderSignature) != webhook.Sign(webhookSecret, ts, body) {
		r.bad++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var p webhook.Payload
	if err := json.Unmarshal(body, &p); err != nil || req.Header.Get(webhook.HeaderEvent) != p.Event {
		r.bad++
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	r.events = append(r.events, p)
}

func (r *receiver) has(event, user string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if e.Event == event && e.User == user {
			return nil
		}
	}
	return fmt.Errorf("no %s for %s among %d events (%d badly signed)", event, user, len(r.events), r.bad)
}

// adminRequest builds a call of the admin API on the public listener.
func (s *stack) adminRequest(method, path, token string, body any) *http.Request {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, s.url(s.public, "/api/v1/admin"+path), rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req
}

// admin calls the admin API on the public listener.
func (s *stack) admin(method, path, token string, body any) (int, []byte) {
	s.t.Helper()
	res, err := http.DefaultClient.Do(s.adminRequest(method, path, token, body))
	if err != nil {
		s.t.Fatal(err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	return res.StatusCode, out
}

// kicked waits for a publisher to be disconnected by the server.
func (p *publisher) kicked(t testing.TB, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	select {
	case <-p.exited:
	case <-time.After(timeout):
		t.Fatalf("publisher still connected %v later, want kicked", timeout)
	}
	return time.Since(start)
}

// stillRunning fails if the publisher has exited.
func (p *publisher) stillRunning(t testing.TB) {
	t.Helper()
	select {
	case <-p.exited:
		t.Fatalf("publisher exited (%v), want it still streaming:\n%s", p.err, p.out)
	default:
	}
}

func TestOperatorControls(t *testing.T) {
	rcv := &receiver{}
	hooks := httptest.NewServer(rcv)
	defer hooks.Close()
	s := startStack(t, stackOptions{
		args: []string{"--webhook-url", hooks.URL + "/hooks"},
		env:  []string{"STAGEDOOR_WEBHOOK_SECRET=" + webhookSecret, "STAGEDOOR_ADMIN_TOKEN=" + adminToken},
	})
	key := s.addUser("benw")

	t.Run("BanKicksLiveStream", func(t *testing.T) {
		s := s.with(t)
		p := s.publish(s.rtmpURL(key))
		s.waitLive("benw", true, 20*time.Second)
		eventually(t, 10*time.Second, "stream.started webhook", func() error { return rcv.has("stream.started", "benw") })
		if _, errOut, err := s.cli("user", "ban", "benw"); err != nil {
			t.Fatalf("user ban: %v %s", err, errOut)
		}
		took := p.kicked(t, 10*time.Second)
		t.Logf("publisher kicked %v after `user ban` returned", took)
		eventually(t, 5*time.Second, "public path gone", func() error {
			if got := hlsStatus(t, s.hlsURL("benw"), "", ""); got != http.StatusNotFound {
				return fmt.Errorf("public playlist = %d, want 404", got)
			}
			return nil
		})
		s.waitLive("benw", false, 5*time.Second)
		s.publish(s.rtmpURL(key)).refused(t, 20*time.Second)
		for _, ev := range []string{"user.banned", "stream.stopped"} {
			eventually(t, 10*time.Second, ev+" webhook", func() error { return rcv.has(ev, "benw") })
		}
		if _, _, err := s.cli("user", "unban", "benw"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("LabelledKeyRevokedWhileLive", func(t *testing.T) {
		s := s.with(t)
		out, errOut, err := s.cli("key", "add", "benw", "--label", "obs-home", "--json")
		if err != nil {
			t.Fatalf("key add: %v %s", err, errOut)
		}
		var k struct{ StreamKey, Fingerprint, Label string }
		if err := json.Unmarshal([]byte(strings.ReplaceAll(strings.ReplaceAll(out, "stream_key", "StreamKey"), "fingerprint", "Fingerprint")), &k); err != nil || k.Label != "obs-home" {
			t.Fatalf("key add --json = %s", out)
		}
		list, _, _ := s.cli("key", "list", "benw", "--json")
		if !strings.Contains(list, `"label": "obs-home"`) || !strings.Contains(list, k.Fingerprint) || strings.Contains(list, "sk_") {
			t.Errorf("key list --json = %s", list)
		}
		p := s.publish(s.rtmpURL(k.StreamKey))
		s.waitLive("benw", true, 20*time.Second)
		if _, errOut, err := s.cli("key", "revoke", "benw", k.Fingerprint); err != nil {
			t.Fatalf("key revoke: %v %s", err, errOut)
		}
		p.kicked(t, 10*time.Second)
		s.publish(s.rtmpURL(k.StreamKey)).refused(t, 20*time.Second)
		eventually(t, 10*time.Second, "key.rotated webhook", func() error { return rcv.has("key.rotated", "benw") })
	})

	t.Run("KeepLiveLetsTheStreamFinish", func(t *testing.T) {
		s := s.with(t)
		p := s.publish(s.rtmpURL(key))
		s.waitLive("benw", true, 20*time.Second)
		out, errOut, err := s.cli("key", "reset", "benw", "--keep-live", "--json")
		if err != nil {
			t.Fatalf("key reset: %v %s", err, errOut)
		}
		key = jsonField(t, out, "stream_key")
		time.Sleep(3 * time.Second) // several enforcement rounds (policy poll 250 ms)
		p.stillRunning(t)
		if err := playHLS(t, s.hlsURL("benw"), 10*time.Second); err != nil {
			t.Errorf("kept stream no longer plays: %v", err)
		}
		p.stop()
		s.waitLive("benw", false, 10*time.Second)
	})

	t.Run("AdminAPI", func(t *testing.T) {
		s := s.with(t)
		for _, tok := range []string{"", "wrong-token-wrong-token"} {
			if code, _ := s.admin(http.MethodPost, "/users", tok, map[string]string{"name": "mallory"}); code != http.StatusUnauthorized {
				t.Errorf("create user with token %q: %d, want 401", tok, code)
			}
			if code, _ := s.admin(http.MethodPost, "/users/benw/ban", tok, nil); code != http.StatusUnauthorized {
				t.Errorf("ban with token %q: %d, want 401", tok, code)
			}
		}
		if code, _ := s.channelStatus("mallory"); code != http.StatusNotFound {
			t.Errorf("mallory exists after unauthorized create (%d)", code)
		}
		code, body := s.admin(http.MethodPost, "/users", adminToken, map[string]string{"name": "alice"})
		if code != http.StatusCreated {
			t.Fatalf("create alice: %d %s", code, body)
		}
		aliceKey := jsonField(t, string(body), "stream_key")
		p := s.publish(s.rtmpURL(aliceKey))
		s.waitLive("alice", true, 20*time.Second)
		code, body = s.admin(http.MethodGet, "/live", adminToken, nil)
		if code != http.StatusOK || !strings.Contains(string(body), `"alice"`) || strings.Contains(string(body), "sk_") {
			t.Errorf("GET /live = %d %s", code, body)
		}
		if code, body := s.admin(http.MethodPost, "/users/alice/ban", adminToken, nil); code != http.StatusOK {
			t.Fatalf("ban alice: %d %s", code, body)
		}
		p.kicked(t, 10*time.Second)
		eventually(t, 5*time.Second, "kick in the audit trail", func() error {
			// Audit entries are written in batches, off the auth path.
			if code, body := s.admin(http.MethodGet, "/audit?user=alice&since=1h", adminToken, nil); code != http.StatusOK ||
				!strings.Contains(string(body), `"kicked"`) || !strings.Contains(string(body), `"allow"`) {
				return fmt.Errorf("GET /audit = %d %s", code, body)
			}
			return nil
		})
	})

	t.Run("AuditAndMetrics", func(t *testing.T) {
		s := s.with(t)
		out, errOut, err := s.cli("audit", "--user", "benw", "--json")
		if err != nil {
			t.Fatalf("audit: %v %s", err, errOut)
		}
		var es []map[string]any
		if err := json.Unmarshal([]byte(out), &es); err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, e := range es {
			seen[fmt.Sprint(e["kind"], "/", e["decision"])] = true
		}
		for _, want := range []string{"publish/allow", "publish/deny", "kick/kicked"} {
			if !seen[want] {
				t.Errorf("audit lacks %s: %v", want, seen)
			}
		}
		res, err := http.Get(s.url(s.internal, "/metrics"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		for _, want := range []string{
			// The front renames a key publish at ingest: MediaMTX's auth call that admits it
			// is for the public name, and the front counts the refusals it answers itself.
			`stagedoor_auth_decisions_total{action="publish",path_kind="public",protocol="rtmp",result="allow"}`,
			`stagedoor_auth_decisions_total{action="publish",path_kind="key",protocol="rtmp",result="deny"}`,
			`stagedoor_kicks_total{reason="user banned"}`,
			`stagedoor_webhook_deliveries_total{event="stream.started",result="ok"}`,
			`stagedoor_auth_decision_seconds_bucket`,
			`stagedoor_live_channels`,
			`stagedoor_bcrypt_runs_total`,
		} {
			if !strings.Contains(string(body), want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
		for name, secret := range map[string]string{"key": key, "admin token": adminToken, "webhook secret": webhookSecret} {
			if strings.Contains(s.out.String(), secret) || strings.Contains(string(body), secret) || strings.Contains(out, secret) {
				t.Errorf("the %s appears in output, metrics or audit", name)
			}
		}
	})
}
