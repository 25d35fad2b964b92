package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Peer aliases (cluster.md §5, §9 E2, E3, E4, E7, E8): a node that does not hold
// live/<name> carries a runtime path live/<name> whose source is the holder's public
// path, pulled over RTSP with the cluster secret on demand, so that a viewer plays any
// channel from any node.

// peerUser is the RTSP user a node pulls a peer's public path with.
const peerUser = "stagedoor-peer"

// anyKey matches a stream key (store's grammar: sk_ and 43 base64url characters).
var anyKey = regexp.MustCompile(`sk_[A-Za-z0-9_-]{43}`)

// pathConf is the part of a MediaMTX path configuration the peer tests read.
type pathConf struct {
	Name           string `json:"name"`
	Source         string `json:"source"`
	SourceOnDemand bool   `json:"sourceOnDemand"`
}

// pathConf returns node s's configuration of path (from /v3/config/paths/list), and
// whether it has one.
func (s *splitStack) pathConf(path string) (pathConf, bool, error) {
	var list struct{ Items []pathConf }
	code, err := s.mtxGet("/v3/config/paths/list?itemsPerPage=1000", &list)
	if err != nil || code != http.StatusOK {
		return pathConf{}, false, fmt.Errorf("config/paths/list: %d %v", code, err)
	}
	for _, p := range list.Items {
		if p.Name == path {
			return p, true, nil
		}
	}
	return pathConf{}, false, nil
}

// peerAlias waits until node s has a peer alias of live/<name> to holder: on-demand, its
// source the holder's advertised RTSP address and public path, with the peer user.
func (s *splitStack) peerAlias(t testing.TB, name string, holder *splitStack, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, fmt.Sprintf("node %s's peer alias of live/%s to node %s", s.node, name, holder.node), func() error {
		p, ok, err := s.pathConf("live/" + name)
		switch {
		case err != nil:
			return err
		case !ok:
			return errors.New("no such path configuration")
		case !p.SourceOnDemand:
			return errors.New("not sourceOnDemand")
		}
		u, err := url.Parse(p.Source)
		if err != nil {
			return errors.New("source is not a URL")
		}
		if want := fmt.Sprintf("127.0.0.1:%d", holder.rtsp); u.Scheme != "rtsp" || u.Host != want ||
			u.Path != "/live/"+name || u.User.Username() != peerUser {
			// The source holds the cluster secret: describe it without.
			return fmt.Errorf("source %s://%s@%s%s, want rtsp://%s@%s/live/%s", u.Scheme, u.User.Username(), u.Host, u.Path, peerUser, want, name)
		}
		return nil
	})
}

// noPathConf waits until node s has no configuration of live/<name> and returns how long
// that took from since.
func (s *splitStack) noPathConf(t testing.TB, name string, since time.Time, timeout time.Duration) time.Duration {
	t.Helper()
	eventually(t, timeout, fmt.Sprintf("node %s's path configuration of live/%s gone", s.node, name), func() error {
		_, ok, err := s.pathConf("live/" + name)
		if err != nil {
			return err
		}
		if ok {
			return errors.New("still configured")
		}
		return nil
	})
	return time.Since(since)
}

// mtxRaw returns the raw answer of node s's MediaMTX API at path.
func (s *splitStack) mtxRaw(t testing.TB, path string) string {
	t.Helper()
	var raw json.RawMessage
	if code, err := s.mtxGet(path, &raw); err != nil || code != http.StatusOK {
		t.Fatalf("node %s: MediaMTX API %s: %d %v", s.node, path, code, err)
	}
	return string(raw)
}

// TestClusterPeer: a channel live on node a plays from node b through b's peer alias,
// which follows the live state: it goes when the stream stops or is banned, and moves
// when a key publish on b takes the name over.
func TestClusterPeer(t *testing.T) {
	// Debug: node a logs the peer reads it allows at that level (cluster.md §5).
	c := startCluster(t, clusterOptions{args: []string{"--log-level", "debug"}})
	a, b := c.a, c.b
	if !serveHas(t, "cluster-cidrs") {
		t.Log("serve has no --cluster-cidrs: peer aliases are not built in; these cases fail")
	}
	key := a.addUser("benw")
	p := a.publish(a.rtmpURL(key))
	defer p.stop()
	liveOn(t, a, "benw", p, 30*time.Second)

	t.Run("E2_PeerAliasOnB", func(t *testing.T) {
		b.peerAlias(t, "benw", a, 5*time.Second)
		if _, ok, err := a.pathConf("live/benw"); err != nil || ok {
			t.Errorf("the holder, node a, has a configuration of live/benw (%v, %v): its stream is published there", ok, err)
		}
	})
	t.Run("E3_PlayFromBothNodes", func(t *testing.T) {
		began := time.Now()
		if err := playHLS(t, b.hlsURL("benw"), 15*time.Second); err != nil {
			t.Fatalf("benw from node b: %v", err)
		}
		t.Logf("benw played from node b in %v (a cold peer pull)", time.Since(began).Round(time.Millisecond))
		// Node b pulled from node a with the peer credential, and a allowed it as such.
		eventually(t, 5*time.Second, "node a's auth allows b's peer read", func() error {
			for _, line := range strings.Split(a.out.String(), "\n") {
				if strings.Contains(line, `"msg":"auth"`) && strings.Contains(line, `"action":"read"`) &&
					strings.Contains(line, `"protocol":"rtsp"`) && strings.Contains(line, `"allow":true`) &&
					strings.Contains(line, `"reason":"peer"`) {
					return nil
				}
			}
			return errors.New("no such auth line")
		})
		if err := playHLS(t, a.hlsURL("benw"), 15*time.Second); err != nil {
			t.Errorf("benw from node a: %v", err)
		}
	})
	t.Run("E3_NoKeyOnB", func(t *testing.T) {
		// Any stream key, not just benw's: the shipped configuration's key-path pattern
		// (sk_[A-Za-z0-9_-]{43}) is no key.
		holdsKey := func(text string) bool { return anyKey.MatchString(text) || strings.Contains(text, key) }
		for _, path := range []string{"/v3/config/paths/list?itemsPerPage=1000", "/v3/paths/list?itemsPerPage=1000", "/v3/config/global/get"} {
			if holdsKey(b.mtxRaw(t, path)) {
				t.Errorf("node b's MediaMTX API %s holds a stream key", path)
			}
		}
		res, err := http.Get(b.url(b.internal, "/metrics"))
		if err != nil {
			t.Fatal(err)
		}
		metrics, _ := io.ReadAll(res.Body)
		res.Body.Close()
		for what, text := range map[string]string{"metrics": string(metrics), "serve's log": b.out.String(), "MediaMTX's log": b.mtxOut.String()} {
			if holdsKey(text) {
				t.Errorf("node b's %s holds a stream key", what)
			}
		}
		for _, s := range []*splitStack{a, b} {
			if strings.Contains(s.out.String(), clusterSecret) {
				t.Errorf("node %s's serve logs the cluster secret", s.node)
			}
		}
	})
	t.Run("E8_StopOnAEndsOnB", func(t *testing.T) {
		p.stop()
		stopped := time.Now()
		eventually(t, kickBar, "node b's HLS of benw answers 404", func() error {
			if code := hlsStatus(t, b.hlsURL("benw"), "", ""); code != http.StatusNotFound {
				return fmt.Errorf("playlist %d", code)
			}
			return nil
		})
		took := b.noPathConf(t, "benw", stopped, kickBar)
		t.Logf("node b's peer alias of benw gone %v after the publisher stopped", took.Round(time.Millisecond))
		c.noRow(t, "benw", 5*time.Second)
	})
	t.Run("E7_BanRemovesPeerAlias", func(t *testing.T) {
		key := a.with(t).addUser("kate")
		p := a.with(t).publish(a.rtmpURL(key))
		defer p.stop()
		liveOn(t, a, "kate", p, 30*time.Second)
		b.peerAlias(t, "kate", a, 5*time.Second)
		code, body := b.with(t).admin(http.MethodPost, "/users/kate/ban", adminToken, nil)
		banned := time.Now()
		if code != http.StatusOK {
			t.Fatalf("ban through B's admin API: %d %s", code, body)
		}
		took := b.noPathConf(t, "kate", banned, kickBar)
		t.Logf("node b's peer alias of kate gone %v after the ban", took.Round(time.Millisecond))
		p.kicked(t, kickTimeout)
	})
	t.Run("E4_TakeoverMovesPeerAlias", func(t *testing.T) {
		key := a.with(t).addUser("luke")
		pa := a.with(t).publish(a.rtmpURL(key))
		defer pa.stop()
		liveOn(t, a, "luke", pa, 30*time.Second)
		b.peerAlias(t, "luke", a, 5*time.Second)
		// The encoder reconnects through node b: the key takes the name over there.
		pb := b.with(t).publish(b.rtmpURL(key))
		defer pb.stop()
		c.row(t, "luke", "b", 30*time.Second)
		pa.kicked(t, kickTimeout)
		liveOn(t, b, "luke", pb, 10*time.Second)
		a.peerAlias(t, "luke", b, 5*time.Second)
		if err := playHLS(t, a.hlsURL("luke"), 15*time.Second); err != nil {
			t.Errorf("luke from node a after the takeover: %v", err)
		}
		if err := playHLS(t, b.hlsURL("luke"), 15*time.Second); err != nil {
			t.Errorf("luke from node b, its holder now: %v", err)
		}
	})
}
