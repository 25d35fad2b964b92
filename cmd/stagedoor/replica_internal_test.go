package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor"
	"github.com/stagedoor/stagedoor/authserver"
	"github.com/stagedoor/stagedoor/mediamtx/mediamtxtest"
	"github.com/stagedoor/stagedoor/plugin"
	"github.com/stagedoor/stagedoor/store/pgtest"
)

// replicaBackends runs f on a SQLite file and on a PostgreSQL schema: the DSN both
// services of a test share.
func replicaBackends(t *testing.T, f func(t *testing.T, dsn string)) {
	t.Run("sqlite", func(t *testing.T) { f(t, filepath.Join(t.TempDir(), "stagedoor.db")) })
	t.Run("postgres", func(t *testing.T) { f(t, pgtest.DSN(t)) })
}

// TestReplicaWithoutMediaMTX: `serve --no-mediamtx` starts with no MediaMTX and no hook
// secret; MediaMTX-only settings from the environment are ignored (no MediaMTX API call,
// no RTMP front bound, no advertised RTSP); its node is registered with rtsp_addr "" under
// its own id; /healthz, pages, the panel and the admin API answer; MediaMTX's auth and
// hooks are denied; a kick of a name live on another node is asked of that node; and
// over a few seconds (sweeps included) it logs no warning or error.
func TestReplicaWithoutMediaMTX(t *testing.T) {
	replicaBackends(t, func(t *testing.T, dsn string) {
		var apiCalls atomic.Int64
		api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			apiCalls.Add(1)
			w.WriteHeader(http.StatusNotFound)
		}))
		t.Cleanup(api.Close)
		rtmpAddr := "127.0.0.1:" + strconv.Itoa(freeLoopbackPort(t))
		env := map[string]string{
			"STAGEDOOR_ADMIN_TOKEN":    testAdminToken,
			"STAGEDOOR_MEDIAMTX_API":   api.URL,
			"STAGEDOOR_RTMP_ADDR":      rtmpAddr,
			"STAGEDOOR_ADVERTISE_RTSP": "10.0.0.5:8554",
			"STAGEDOOR_CLUSTER_SECRET": "cluster-secret-0123456789",
		}
		s := startTestServiceEnv(t, func(k string) string { return env[k] }, "--no-mediamtx", "--db", dsn,
			"--node-id", "cp1", "--reconcile-interval", "1s")
		ctx := t.Context()

		nodes, err := s.svc.db.Nodes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(nodes) != 1 || nodes[0].ID != "cp1" || nodes[0].RTSPAddr != "" {
			t.Errorf("nodes = %+v, want cp1 with rtsp_addr \"\"", nodes)
		}
		if c, err := net.DialTimeout("tcp", rtmpAddr, time.Second); err == nil {
			c.Close()
			t.Errorf("something listens on %s: the replica started an RTMP front", rtmpAddr)
		}
		if s.svc.meter() != nil {
			t.Error("the panel has a live meter: it would call MediaMTX's API every 3 s")
		}

		client := &http.Client{Timeout: 5 * time.Second}
		status, body, err := s.adminDo(ctx, client, http.MethodPost, "/users", map[string]string{"name": "benw"})
		if err != nil || status != http.StatusCreated {
			t.Fatalf("admin POST /users = %d %s, %v; want 201", status, body, err)
		}
		for _, tt := range []struct {
			name, method, url string
			want              int
		}{
			{"Healthz", http.MethodGet, "http://" + s.internal + "/healthz", http.StatusOK},
			{"HealthzHead", http.MethodHead, "http://" + s.internal + "/healthz", http.StatusOK},
			{"AuthHeadDenied", http.MethodHead, "http://" + s.internal + "/mediamtx/auth", http.StatusForbidden},
			{"Metrics", http.MethodGet, "http://" + s.internal + "/metrics", http.StatusOK},
			{"AuthDenied", http.MethodPost, "http://" + s.internal + "/mediamtx/auth", http.StatusForbidden},
			{"HookDenied", http.MethodPost, "http://" + s.internal + "/internal/hook", http.StatusForbidden},
			{"UnknownInternalDenied", http.MethodGet, "http://" + s.internal + "/v3/paths/list", http.StatusForbidden},
			{"StatusAPI", http.MethodGet, "http://" + s.public + "/api/v1/channels/benw", http.StatusOK},
			{"ChannelPage", http.MethodGet, "http://" + s.public + "/benw", http.StatusOK},
			{"PanelLogin", http.MethodGet, "http://" + s.public + "/panel/login", http.StatusOK},
		} {
			req, err := http.NewRequestWithContext(ctx, tt.method, tt.url, strings.NewReader(`{}`))
			if err != nil {
				t.Fatal(err)
			}
			res, err := client.Do(req)
			if err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			res.Body.Close()
			if res.StatusCode != tt.want {
				t.Errorf("%s: %s %s = %d, want %d", tt.name, tt.method, tt.url, res.StatusCode, tt.want)
			}
		}

		// benw live on node a (alive: its lease is renewed below), not on this replica.
		u, err := s.svc.db.UserByName(ctx, "benw")
		if err != nil {
			t.Fatal(err)
		}
		if err := s.svc.db.RegisterNode(ctx, "a", "10.0.0.7:8554"); err != nil {
			t.Fatal(err)
		}
		if c, err := s.svc.db.Claim(ctx, stagedoor.LiveState{NodeID: "a", Kind: stagedoor.LiveKey, Name: "benw",
			UserID: u.ID, UserName: "benw", SourceID: "S1", SourceType: "rtmpConn"}, false); err != nil || !c.Won {
			t.Fatalf("claim benw for node a: %+v, %v", c, err)
		}
		status, body, err = s.adminDo(ctx, client, http.MethodPost, "/users/benw/kick", nil)
		var out struct{ Kicked bool }
		_ = json.Unmarshal(body, &out)
		if err != nil || status != http.StatusOK || !out.Kicked {
			t.Errorf("kick of benw live on node a = %d %s, %v; want 200, kicked", status, body, err)
		}
		// The request waits for node a (none runs here): benw's, on a's source.
		if reqs, err := s.svc.db.TakeKickRequests(ctx, "a"); err != nil || len(reqs) != 1 ||
			reqs[0].Name != "benw" || reqs[0].SourceID != "S1" || reqs[0].By != s.svc.cfg.nodeID {
			t.Errorf("kick requests for node a = %+v, %v; want benw's on S1 by %s", reqs, err, s.svc.cfg.nodeID)
		}
		status, body, err = s.adminDo(ctx, client, http.MethodGet, "/live", nil)
		if err != nil || status != http.StatusOK || !strings.Contains(string(body), "benw") {
			t.Errorf("admin GET /live = %d %s, %v; want benw listed", status, body, err)
		}

		for range 6 { // three sweeps at 1 s, node a's lease kept alive meanwhile
			if err := s.svc.db.ProbeWrite(ctx, "a"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(500 * time.Millisecond)
		}
		if n := apiCalls.Load(); n != 0 {
			t.Errorf("%d calls to MediaMTX's API, want 0", n)
		}
		for line := range strings.SplitSeq(s.logs.String(), "\n") {
			if strings.Contains(line, `"level":"WARN"`) || strings.Contains(line, `"level":"ERROR"`) {
				t.Errorf("replica logged: %s", line)
			}
		}
		if states, err := s.svc.db.LiveStates(ctx); err != nil || len(states) != 1 || states[0].NodeID != "a" {
			t.Errorf("live states = %+v, %v; want benw still on node a", states, err)
		}
	})
}

// TestReplicaUsageErrors: flags that configure a MediaMTX are a usage error with
// --no-mediamtx (exit 2, no database created), and run has no --no-mediamtx.
func TestReplicaUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--mediamtx-api", "http://127.0.0.1:9997"}, {"--mediamtx-rtsp", "127.0.0.1:8554"},
		{"--mediamtx-rtmp", "127.0.0.1:1936"}, {"--rtmp-addr", ":1935"}, {"--rtmp-addr", ""},
		{"--rtmp-batch", "0"}, {"--rtmps-addr", ":1937"}, {"--rtmps-cert", "c.pem"}, {"--rtmps-key", "k.pem"},
		{"--advertise-rtsp", "10.0.0.5:8554"}, {"--public-read", "hls"}, {"--cluster-key-takeover=false"},
		{"--cluster-cidrs", "10.0.0.0/24"},
	} {
		dbFile := filepath.Join(t.TempDir(), "x.db")
		var stderr strings.Builder
		err := run(t.Context(), append([]string{"stagedoor", "serve", "--no-mediamtx", "--db", dbFile,
			"--internal-addr", "127.0.0.1:0", "--public-addr", "127.0.0.1:0"}, args...), serveEnv, strings.NewReader(""), io.Discard, &stderr)
		flagName, _, _ := strings.Cut(args[0][1:], "=")
		if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), flagName) {
			t.Errorf("serve --no-mediamtx %q: %v (exit %d), want a usage error naming %s", args, err, exitCode(err), flagName)
		}
		if _, serr := os.Stat(dbFile); serr == nil {
			t.Errorf("serve --no-mediamtx %q created the database", args)
		}
	}
	err := run(t.Context(), []string{"stagedoor", "run", "--no-mediamtx"}, serveEnv, strings.NewReader(""), io.Discard, io.Discard)
	if err == nil || exitCode(err) != 2 {
		t.Errorf("run --no-mediamtx: %v (exit %d), want a usage error", err, exitCode(err))
	}
}

// TestReplicaServeCommand runs `serve --no-mediamtx` through run, as the binary does,
// without the hook secret a MediaMTX node needs: it comes up (/healthz 200) under the
// default replica node id (the host name + "-replica") and stops cleanly.
func TestReplicaServeCommand(t *testing.T) {
	dbFile := filepath.Join(t.TempDir(), "stagedoor.db")
	internal := "127.0.0.1:" + strconv.Itoa(freeLoopbackPort(t))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"stagedoor", "serve", "--no-mediamtx", "--db", dbFile, "--internal-addr", internal,
			"--public-addr", "127.0.0.1:0"}, func(string) string { return "" }, strings.NewReader(""), io.Discard, io.Discard)
	}()
	client := &http.Client{Timeout: 2 * time.Second}
	up := false
	for range 400 { // a poll bounding the start under -race
		if res, err := client.Get("http://" + internal + "/healthz"); err == nil {
			res.Body.Close()
			if up = res.StatusCode == http.StatusOK; up {
				break
			}
		}
		select {
		case err := <-done:
			t.Fatalf("serve --no-mediamtx stopped: %v", err)
		case <-time.After(25 * time.Millisecond):
		}
	}
	if !up {
		t.Fatal("GET /healthz never answered 200")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serve --no-mediamtx stopped with %v, want nil", err)
	}
	db, err := openBackend(t.Context(), dbFile)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	nodes, err := db.Nodes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if want := replicaNodeID(defaultNodeID()); len(nodes) != 1 || nodes[0].ID != want || nodes[0].RTSPAddr != "" {
		t.Errorf("nodes = %+v, want %s with rtsp_addr \"\"", nodes, want)
	}
}

// TestReplicaPolicyReachesNode: a ban, a key reset and a password change made through a
// replica's admin API kick the publisher on the MediaMTX node sharing the database (the
// policy generation poll on SQLite, NOTIFY on PostgreSQL), within 2 s plus 1 s of slack;
// a kick asked of the replica names the node.
func TestReplicaPolicyReachesNode(t *testing.T) {
	replicaBackends(t, func(t *testing.T, dsn string) {
		fake := mediamtxtest.New(t, adminUser, "")
		node := startTestService(t, "--db", dsn, "--node-id", "a", "--mediamtx-api", fake.URL)
		replica := startTestService(t, "--no-mediamtx", "--db", dsn, "--node-id", "cp1")
		ctx := t.Context()
		client := &http.Client{Timeout: 10 * time.Second}
		admin := func(method, path string, body any, want int) []byte {
			t.Helper()
			status, b, err := replica.adminDo(ctx, client, method, path, body)
			if err != nil || status != want {
				t.Fatalf("replica %s %s = %d %s, %v; want %d", method, path, status, b, err, want)
			}
			return b
		}
		var created struct {
			StreamKey string `json:"stream_key"`
		}
		if err := json.Unmarshal(admin(http.MethodPost, "/users", map[string]string{"name": "benw"}, http.StatusCreated), &created); err != nil {
			t.Fatal(err)
		}
		key := created.StreamKey
		hookClient := mediaMTXClient()
		// live publishes on key path live/<key> as source id on node a, as MediaMTX and its
		// hook would.
		live := func(id string) {
			t.Helper()
			path := "live/" + key
			fake.SetSource(path, "rtmpConn", id)
			status, _, err := node.postHook(hookClient, plugin.Event{Kind: plugin.EventAvailable, Path: path, SourceID: id, SourceType: "rtmpConn"})
			if err != nil || status != http.StatusNoContent {
				t.Fatalf("available hook on node a = %d, %v; want 204", status, err)
			}
		}
		waitKicked := func(what, id string, since time.Time) {
			t.Helper()
			for !slices.Contains(fake.Kicks(), "rtmpConn/"+id) {
				if time.Since(since) > 3*time.Second {
					t.Fatalf("%s through the replica: node a did not kick %s within 3 s (kicks %v)", what, id, fake.Kicks())
				}
				time.Sleep(20 * time.Millisecond)
			}
			t.Logf("%s through the replica: node a kicked after %v", what, time.Since(since).Round(time.Millisecond))
		}

		live("S0")
		start := time.Now()
		if body := admin(http.MethodPost, "/users/benw/kick", nil, http.StatusOK); !strings.Contains(string(body), `"kicked":true`) {
			t.Errorf("kick through the replica = %s, want kicked", body)
		}
		waitKicked("kick", "S0", start)

		live("S1")
		start = time.Now()
		admin(http.MethodPost, "/users/benw/ban", nil, http.StatusOK)
		waitKicked("ban", "S1", start)

		admin(http.MethodPost, "/users/benw/unban", nil, http.StatusOK)
		live("S2")
		start = time.Now()
		var reset struct {
			StreamKey string `json:"stream_key"`
		}
		if err := json.Unmarshal(admin(http.MethodPost, "/users/benw/keys/reset", nil, http.StatusOK), &reset); err != nil || reset.StreamKey == "" {
			t.Fatalf("key reset answer: %v", err)
		}
		waitKicked("key reset", "S2", start)
		key = reset.StreamKey

		live("S3")
		start = time.Now()
		admin(http.MethodDelete, "/users/benw/keys/"+stagedoor.KeyDigest(key).Fingerprint(), nil, http.StatusOK)
		waitKicked("key revoke", "S3", start)

		// A password publish on the stream name concert (user/password through node a's
		// auth), then a new password set through the replica.
		admin(http.MethodPost, "/streams", map[string]string{"name": "concert", "user": "benw"}, http.StatusCreated)
		admin(http.MethodPut, "/users/benw/password", map[string]string{"password": "correct horse battery"}, http.StatusOK)
		id := *loadUUID(9, 4)
		status, _, err := node.postAuth(hookClient, authserver.Request{User: "benw", Password: "correct horse battery",
			IP: "198.51.100.7", Action: "publish", Path: "live/concert", Protocol: "rtmp", ID: &id})
		if err != nil || status != authAllowed {
			t.Fatalf("password publish auth on node a = %d, %v; want %d", status, err, authAllowed)
		}
		fake.SetSource("live/concert", "rtmpConn", id)
		if status, _, err := node.postHook(hookClient, plugin.Event{Kind: plugin.EventAvailable, Path: "live/concert",
			SourceID: id, SourceType: "rtmpConn"}); err != nil || status != http.StatusNoContent {
			t.Fatalf("available hook for concert on node a = %d, %v; want 204", status, err)
		}
		start = time.Now()
		admin(http.MethodPut, "/users/benw/password", map[string]string{"password": "another horse battery"}, http.StatusOK)
		waitKicked("password change", id, start)

		if n := fake.Unexpected.Load(); n > 0 {
			t.Errorf("%d unexpected MediaMTX API requests", n)
		}
	})
}

// TestReplicaNeverTakesANodesID: a replica ignores STAGEDOOR_NODE_ID (an env file shared
// with the node beside it names that node), and --node-id naming a running node with a
// MediaMTX is refused before anything is registered: the node keeps its address and its
// lease runs out when it dies.
func TestReplicaNeverTakesANodesID(t *testing.T) {
	dbFile := filepath.Join(t.TempDir(), "stagedoor.db")
	node := startTestService(t, "--db", dbFile, "--node-id", "a", "--advertise-rtsp", "10.0.0.7:8554")
	defer node.stop()
	env := func(k string) string {
		if k == "STAGEDOOR_NODE_ID" {
			return "a"
		}
		return serveEnv(k)
	}
	replica := startTestServiceEnv(t, env, "--no-mediamtx", "--db", dbFile)
	defer replica.stop()
	if id := replica.svc.cfg.nodeID; id == "a" || !strings.HasSuffix(id, replicaNodeSuffix) {
		t.Errorf("replica's node id with STAGEDOOR_NODE_ID=a: %q, want the host name + %q", id, replicaNodeSuffix)
	}
	err := run(t.Context(), []string{"stagedoor", "serve", "--no-mediamtx", "--db", dbFile, "--node-id", "a",
		"--internal-addr", "127.0.0.1:0", "--public-addr", "127.0.0.1:0"}, serveEnv, strings.NewReader(""), io.Discard, io.Discard)
	if exitCode(err) != 2 || !strings.Contains(fmt.Sprint(err), "node-id") {
		t.Fatalf("replica --node-id a beside running node a: %v, want a usage error naming -node-id", err)
	}
	nodes, err := node.svc.db.Nodes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if n.ID == "a" && n.RTSPAddr != "10.0.0.7:8554" {
			t.Errorf("node a's RTSP address = %q after the refused replica, want 10.0.0.7:8554", n.RTSPAddr)
		}
	}
}
