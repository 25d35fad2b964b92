package e2e

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor"
)

// TestSpine walks the README's story: a user is created with the CLI, publishes with a
// stream key over RTMP, is played publicly as HLS under the channel name, and nobody can
// reach the key path; then refusals, going offline, ban and key reset.
func TestSpine(t *testing.T) {
	s := startStack(t, stackOptions{})
	key := s.addUser("benw")
	s.addUser("alice")

	// Publish with the stream key, as OBS would with Server rtmp://HOST:1935/live.
	pub := s.publish(s.rtmpURL(key))
	s.with(t).waitLive("benw", true, 15*time.Second)
	if err := playHLS(t, s.hlsURL("benw"), 10*time.Second); err != nil {
		t.Fatalf("public HLS: %v\npublisher: %s", err, pub.out)
	}

	t.Run("KeyPathUnreadable", func(t *testing.T) {
		for _, c := range []struct{ name, user, pass string }{
			{"HLSAnonymous", "", ""},
			{"HLSRelayUserWrongPass", "stagedoor-relay", "guess"},
			{"HLSRelayCredentials", "stagedoor-relay", s.relayPass}, // relay reads only over RTSP
			{"HLSKeyAsPassword", "benw", key},
		} {
			if got := hlsStatus(t, s.hlsURL(key), c.user, c.pass); got != http.StatusUnauthorized {
				t.Errorf("%s: GET key playlist = %d, want 401", c.name, got)
			}
		}
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		rtsp := func(userinfo, path string) string {
			return "rtsp://" + userinfo + "127.0.0.1:" + itoa(s.rtsp) + "/live/" + path
		}
		// The front renamed the RTMP publish at ingest: MediaMTX has no key path at all,
		// and its API names no key (the relay's positive control lives in TestPublishForms,
		// over SRT, where the alias still runs).
		if err := s.mtxHolds(key); err != nil {
			t.Error(err)
		}
		var wg sync.WaitGroup
		for name, url := range map[string]string{
			"RTSPAnonymous":    rtsp("", key),
			"RTSPWrongRelay":   rtsp("stagedoor-relay:wrong@", key),
			"RTSPPublicName":   rtsp("", "benw"), // public reads are HLS only by default
			"RTMPKeyPath":      s.rtmpURL(key),
			"RTMPPublicName":   s.rtmpURL("benw"),
			"RTMPKeyWithCreds": s.rtmpURL(key + "?user=benw&pass=" + key),
		} {
			wg.Go(func() {
				extra := []string{}
				if strings.HasPrefix(url, "rtsp") {
					extra = []string{"-rtsp_transport", "tcp"}
				}
				if err := s.ffmpegRead(ctx, url, extra...); err == nil {
					t.Errorf("%s: read succeeded, want refused", name)
				}
			})
		}
		wg.Wait()
	})

	t.Run("PublishRefusals", func(t *testing.T) {
		wrongKey := stagedoor.NewKey()
		wrong := s.publish(s.rtmpURL(wrongKey))
		direct := s.publish(s.rtmpURL("benw"))
		other := s.publish(s.rtmpURL("alice")) // someone else's public name
		wrong.refused(t, 15*time.Second)
		direct.refused(t, 15*time.Second)
		other.refused(t, 15*time.Second)
		// Refused by the front before MediaMTX saw a publish: no path, no connection names it.
		if err := s.mtxHolds(wrongKey); err != nil {
			t.Error(err)
		}
		if code, v := s.channelStatus("alice"); code != http.StatusOK || v["live"] != false {
			t.Errorf("alice status = %d %v, want offline", code, v)
		}
	})

	t.Run("SecretsNotInOutput", func(t *testing.T) {
		out := s.out.String()
		for name, secret := range map[string]string{"stream key": key, "relay password": s.relayPass} {
			if strings.Contains(out, secret) {
				t.Errorf("stagedoor run output contains the %s", name)
			}
		}
		if !strings.Contains(out, stagedoor.Fingerprint(key)) {
			t.Errorf("output never names the key's fingerprint %s; the scan above may be vacuous", stagedoor.Fingerprint(key))
		}
	})

	t.Run("OfflineAfterStop", func(t *testing.T) {
		pub.stop()
		s.with(t).waitLive("benw", false, 5*time.Second)
		eventually(t, 5*time.Second, "public path gone", func() error {
			if got := hlsStatus(t, s.hlsURL("benw"), "", ""); got != http.StatusNotFound {
				return errorf("public playlist = %d, want 404", got)
			}
			return nil
		})
	})

	t.Run("BannedUserRefused", func(t *testing.T) {
		if _, errOut, err := s.cli("user", "ban", "benw"); err != nil {
			t.Fatalf("user ban: %v %s", err, errOut)
		}
		s.publish(s.rtmpURL(key)).refused(t, 15*time.Second)
		if _, errOut, err := s.cli("user", "unban", "benw"); err != nil {
			t.Fatalf("user unban: %v %s", err, errOut)
		}
	})

	t.Run("KeyReset", func(t *testing.T) {
		out, errOut, err := s.cli("key", "reset", "benw", "--json")
		if err != nil {
			t.Fatalf("key reset: %v %s", err, errOut)
		}
		newKey := jsonField(t, out, "stream_key")
		if newKey == key || !stagedoor.IsKey(newKey) {
			t.Fatalf("key reset returned %q", newKey)
		}
		s.publish(s.rtmpURL(key)).refused(t, 15*time.Second)
		p := s.publish(s.rtmpURL(newKey))
		s.with(t).waitLive("benw", true, 15*time.Second)
		if err := playHLS(t, s.hlsURL("benw"), 10*time.Second); err != nil {
			t.Fatalf("public HLS after key reset: %v", err)
		}
		p.stop()
		s.with(t).waitLive("benw", false, 5*time.Second)
	})
}
