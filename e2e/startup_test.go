package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// authLine is the part of Stagedoor's auth log line this file reads.
type authLine struct {
	Msg       string `json:"msg"`
	Action    string `json:"action"`
	Allow     bool   `json:"allow"`
	UserAgent string `json:"user_agent"`
	Note      string `json:"note"`
}

// deniedAuthLines are the auth denials in `run`'s JSON output.
func deniedAuthLines(out string) []authLine {
	var lines []authLine
	for _, l := range strings.Split(out, "\n") {
		var a authLine
		if json.Unmarshal([]byte(l), &a) == nil && a.Msg == "auth" && !a.Allow {
			lines = append(lines, a)
		}
	}
	return lines
}

// TestStartupLogAndEnviron (issue 11, L2 and the anonymous-API probe), on a real
// `stagedoor run` with MediaMTX v1.21.0 and Stagedoor's secrets in its environment:
//   - MediaMTX's /proc/<pid>/environ holds none of them (the hook secret excepted);
//   - the start-up log has no unexplained denial: the probe of MediaMTX's API anonymity
//     is labelled as such;
//   - an anonymous API call with a guessed marker and a direct auth call with one are
//     logged as the denials they are, never labelled as the probe.
func TestStartupLogAndEnviron(t *testing.T) {
	secrets := map[string]string{
		"STAGEDOOR_ADMIN_TOKEN":    "e2e-admin-token-0123456789abcdef",
		"STAGEDOOR_WEBHOOK_SECRET": "e2e-webhook-secret-0123456789abcdef",
		"STAGEDOOR_ADMIN_PASSWORD": "e2e-admin-password-0123456789abcdef",
	}
	var env []string
	for k, v := range secrets {
		env = append(env, k+"="+v)
	}
	s := startStack(t, stackOptions{env: append(env, "STAGEDOOR_LOG_FORMAT=json")})
	secrets["STAGEDOOR_RELAY_PASSWORD"] = s.relayPass
	secrets["database path"] = s.db

	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", childPID(t, s.cmd.Process.Pid, "mediamtx")))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range secrets {
		if bytes.Contains(raw, []byte(v)) {
			t.Errorf("the %s is in /proc/<mediamtx>/environ", k)
		}
	}

	// The probe runs once the first reconcile has reached MediaMTX.
	eventually(t, 20*time.Second, "the API anonymity probe's denial", func() error {
		for _, a := range deniedAuthLines(s.out.String()) {
			if a.Action == "api" {
				return nil
			}
		}
		return fmt.Errorf("no api denial yet")
	})
	before := deniedAuthLines(s.out.String())
	for _, a := range before {
		if a.Note == "" {
			t.Errorf("unexplained denial in the start-up log: %+v", a)
		}
	}

	// A stranger's anonymous API call, with a guessed marker, through MediaMTX.
	req, _ := http.NewRequest(http.MethodGet, s.url(s.api, "/v3/paths/list?itemsPerPage=1&stagedoor_selfcheck=guess"), nil)
	if res, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else {
		res.Body.Close()
		if res.StatusCode != http.StatusUnauthorized {
			t.Errorf("anonymous API call answered %d, want 401", res.StatusCode)
		}
	}
	// And a direct auth call shaped like the probe's.
	body, _ := json.Marshal(map[string]any{"user": "", "password": "", "token": "", "ip": "127.0.0.1",
		"action": "api", "path": "", "protocol": "", "id": nil, "userAgent": "forger-direct/1.0",
		"query": "itemsPerPage=1&stagedoor_selfcheck=guess"})
	res, err := http.Post(s.url(s.internal, "/mediamtx/auth"), "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	// MediaMTX passes no user agent for API calls: the forged API call is the new
	// unlabelled api denial without one (a probe rerun meanwhile would be labelled).
	eventually(t, 10*time.Second, "both forged denials logged, unlabelled", func() error {
		var viaAPI, direct bool
		for _, a := range deniedAuthLines(s.out.String())[len(before):] {
			switch {
			case a.UserAgent == "forger-direct/1.0":
				if a.Note != "" {
					t.Fatalf("the forged auth call was labelled %q", a.Note)
				}
				direct = true
			case a.Action == "api" && a.UserAgent == "" && a.Note == "":
				viaAPI = true
			}
		}
		if !viaAPI || !direct {
			return fmt.Errorf("unlabelled denials of the forged API call: %v, of the direct call: %v", viaAPI, direct)
		}
		return nil
	})
}
