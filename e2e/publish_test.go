package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

const alicePassword = "correct horse battery"

// setPassword sets a user's password with the CLI until its bcrypt hash contains "/"
// (so every URL form is exercised with the hard case) and returns the hash.
func (s *stack) setPassword(user, password string) string {
	s.t.Helper()
	for range 30 {
		out, errOut, err := s.cli("user", "passwd", user, "--password", password, "--json")
		if err != nil {
			s.t.Fatalf("user passwd %s: %v %s", user, err, errOut)
		}
		if h := jsonField(s.t, out, "password_hash"); strings.Contains(h, "/") {
			return h
		}
	}
	s.t.Fatal("no bcrypt hash with / in 30 tries")
	return ""
}

func (s *stack) addStream(name, user string, extra ...string) {
	s.t.Helper()
	if _, errOut, err := s.cli(append([]string{"stream", "add", name, "--user", user}, extra...)...); err != nil {
		s.t.Fatalf("stream add %s: %v %s", name, err, errOut)
	}
}

// rtmpTwoPart publishes like OBS with Server = rtmp://HOST/<app> and Stream Key = <key>.
func (s *stack) rtmpTwoPart(app, key string) *publisher {
	return s.publishWith("flv", "-rtmp_app", app, "-rtmp_playpath", key, fmt.Sprintf("rtmp://127.0.0.1:%d", s.rtmp))
}

func (s *stack) srtURL(streamid string) string {
	return fmt.Sprintf("srt://127.0.0.1:%d?streamid=%s&pkt_size=1316", s.srt, streamid)
}

func (s *stack) rtspURL(user, pass, name string) string {
	u := url.URL{Scheme: "rtsp", Host: fmt.Sprintf("127.0.0.1:%d", s.rtsp), Path: "/live/" + name}
	if user != "" {
		u.User = url.UserPassword(user, pass)
	}
	return u.String()
}

// TestPublishForms publishes with every URL form and protocol, hashed and plaintext, each
// to its own stream at the same time, and plays every one under its public name.
func TestPublishForms(t *testing.T) {
	s := startStack(t, stackOptions{})
	s.addUser("alice")
	benwKey := s.addUser("benw")
	hash := s.setPassword("alice", alicePassword)
	enc := strings.ReplaceAll(hash, "$", "%24")

	forms := []struct {
		stream string
		start  func() *publisher
	}{
		{"rtmp_two_hash", func() *publisher { return s.rtmpTwoPart("live", "rtmp_two_hash?user=alice&pass="+hash) }},
		{"rtmp_two_plain", func() *publisher {
			return s.rtmpTwoPart("live", "rtmp_two_plain?user=alice&pass="+url.QueryEscape(alicePassword))
		}},
		{"rtmp_one_hash", func() *publisher { return s.publish(s.rtmpURL("rtmp_one_hash?user=alice&pass=" + hash)) }},
		{"rtmp_one_enc", func() *publisher { return s.publish(s.rtmpURL("rtmp_one_enc?user=alice&pass=" + enc)) }},
		{"rtmp_one_plain", func() *publisher {
			return s.publish(s.rtmpURL("rtmp_one_plain?user=alice&pass=" + url.QueryEscape(alicePassword)))
		}},
		// ScaleEngine verbatim: the credentials in the server URL, before the stream name.
		{"se_two_hash", func() *publisher { return s.rtmpTwoPart("live?user=alice&pass="+hash, "se_two_hash") }},
		{"se_two_plain", func() *publisher {
			return s.rtmpTwoPart("live?user=alice&pass="+url.QueryEscape(alicePassword), "se_two_plain")
		}},
		{"se_one_hash", func() *publisher {
			return s.publish(fmt.Sprintf("rtmp://127.0.0.1:%d/live?user=alice&pass=%s/se_one_hash", s.rtmp, hash))
		}},
		{"srt_hash", func() *publisher { return s.publishWith("mpegts", s.srtURL("publish:live/srt_hash:alice:"+hash)) }},
		{"srt_plain", func() *publisher {
			return s.publishWith("mpegts", s.srtURL("publish:live/srt_plain:alice:"+url.QueryEscape(alicePassword)))
		}},
		{"rtsp_plain", func() *publisher { return s.publishWith("rtsp", s.rtspURL("alice", alicePassword, "rtsp_plain")) }},
		{"rtsp_hash", func() *publisher { return s.publishWith("rtsp", s.rtspURL("alice", hash, "rtsp_hash")) }},
	}
	for _, f := range forms {
		s.addStream(f.stream, "alice")
	}
	// Stream-key users put the secret in the query or the password instead of the path.
	keyForms := []struct {
		name  string
		start func() *publisher
	}{
		{"KeyInQueryTwoPart", func() *publisher { return s.rtmpTwoPart("live", "benw?key="+benwKey) }},
		{"KeyOverSRT", func() *publisher { return s.publishWith("mpegts", s.srtURL("publish:live/benw:benw:"+benwKey)) }},
		{"KeyOverRTSP", func() *publisher { return s.publishWith("rtsp", s.rtspURL("benw", benwKey, "benw")) }},
	}

	pubs := map[string]*publisher{}
	for _, f := range forms {
		pubs[f.stream] = f.start()
	}
	for _, f := range forms {
		t.Run(f.stream, func(t *testing.T) {
			s.with(t).waitLive(f.stream, true, 20*time.Second)
			if err := playHLS(t, s.hlsURL(f.stream), 10*time.Second); err != nil {
				t.Fatalf("public HLS of %s: %v\npublisher: %s", f.stream, err, pubs[f.stream].out)
			}
		})
	}
	for _, p := range pubs {
		p.stop()
	}
	for _, f := range keyForms {
		t.Run(f.name, func(t *testing.T) {
			p := f.start()
			s.with(t).waitLive("benw", true, 20*time.Second)
			if err := playHLS(t, s.hlsURL("benw"), 10*time.Second); err != nil {
				t.Fatalf("public HLS: %v\npublisher: %s", err, p.out)
			}
			p.stop()
			s.with(t).waitLive("benw", false, 10*time.Second)
		})
	}
	t.Run("SecretsNotInOutput", func(t *testing.T) {
		out := s.out.String()
		for name, secret := range map[string]string{"hash": hash, "password": alicePassword, "key": benwKey} {
			if strings.Contains(out, secret) {
				t.Errorf("stagedoor run output contains the %s", name)
			}
		}
	})
}

// TestPublishRefusals checks every refusal of user/password publishing, and that several
// ScaleEngine-form streamers can publish at the same time.
func TestPublishRefusals(t *testing.T) {
	s := startStack(t, stackOptions{})
	s.addUser("alice")
	s.addUser("bob")
	hash := s.setPassword("alice", alicePassword)
	bobHash := s.setPassword("bob", "bobs own password")
	s.addStream("concert", "alice")
	s.addStream("lobbycam", "alice", "--no-auth")
	s.addStream("bobcam", "bob")
	last := "a" // a hash one character off: its last character changed
	if hash[len(hash)-1] == 'a' {
		last = "b"
	}
	changed := hash[:len(hash)-1] + last

	t.Run("SeveralScaleEngineStreamersAtOnce", func(t *testing.T) {
		a := s.rtmpTwoPart("live?user=alice&pass="+hash, "concert")
		b := s.publish(fmt.Sprintf("rtmp://127.0.0.1:%d/live?user=bob&pass=%s/bobcam", s.rtmp, bobHash))
		s.with(t).waitLive("concert", true, 20*time.Second)
		s.with(t).waitLive("bobcam", true, 20*time.Second)
		for _, name := range []string{"concert", "bobcam"} {
			if err := playHLS(t, s.hlsURL(name), 10*time.Second); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
		a.stop()
		b.stop()
		s.with(t).waitLive("concert", false, 10*time.Second)
	})

	t.Run("NoAuthStream", func(t *testing.T) {
		p := s.publish(s.rtmpURL("lobbycam"))
		s.with(t).waitLive("lobbycam", true, 20*time.Second)
		p.stop()
	})

	t.Run("WHIP", func(t *testing.T) {
		// MediaMTX asks auth before it parses the offer: a refused credential is 401, an
		// accepted one reaches the SDP parser and fails there with 400. (Real WHIP
		// sessions, s.whipPublish, are in TestKeyKicks and TestSecretScrape.)
		whip := fmt.Sprintf("http://127.0.0.1:%d/live/concert/whip", s.webrtc)
		for _, c := range []struct {
			name, user, pass string
			accepted         bool
		}{
			{"Plaintext", "alice", alicePassword, true},
			{"Hash", "alice", hash, true},
			{"WrongPassword", "alice", "wrong", false},
			{"OtherUser", "bob", bobHash, false},
		} {
			req, _ := http.NewRequest(http.MethodPost, whip, bytes.NewReader([]byte("v=0\r\n")))
			req.Header.Set("Content-Type", "application/sdp")
			req.SetBasicAuth(c.user, c.pass)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if got := res.StatusCode != http.StatusUnauthorized; got != c.accepted {
				t.Errorf("%s: WHIP status %d, accepted = %v, want %v", c.name, res.StatusCode, got, c.accepted)
			}
		}
	})

	t.Run("WrongPasswordFloodDoesNotLockOut", func(t *testing.T) {
		// 10,000 wrong passwords for alice from one address, posted as MediaMTX would;
		// then alice publishes for real with her plaintext password.
		body := func(pass string) []byte {
			b, _ := json.Marshal(map[string]any{"user": "alice", "password": pass, "ip": "198.51.100.7",
				"action": "publish", "path": "live/concert", "protocol": "rtmp", "id": nil, "query": ""})
			return b
		}
		client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
		for i := range 10000 {
			res, err := client.Post(s.url(s.internal, "/mediamtx/auth"), "application/json",
				bytes.NewReader(body(fmt.Sprintf("guess-%d", i))))
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode/100 == 2 {
				t.Fatalf("wrong password %d allowed", i)
			}
		}
		p := s.publish(s.rtmpURL("concert?user=alice&pass=" + url.QueryEscape(alicePassword)))
		s.with(t).waitLive("concert", true, 20*time.Second)
		p.stop()
	})
	// Last: these wrong passwords all come from 127.0.0.1, like every publisher here, and
	// five failures block an address for an hour (the fail2ban recipe).
	t.Run("Refused", func(t *testing.T) {
		refusals := map[string]*publisher{
			"NoCredentials":        s.publish(s.rtmpURL("concert")),
			"WrongPassword":        s.publish(s.rtmpURL("concert?user=alice&pass=wrong")),
			"HashOneCharChanged":   s.publish(s.rtmpURL("concert?user=alice&pass=" + changed)),
			"UnknownStream":        s.publish(s.rtmpURL("nosuch?user=alice&pass=" + hash)),
			"OtherUsersStream":     s.publish(s.rtmpURL("concert?user=bob&pass=" + bobHash)),
			"OtherUsersName":       s.publish(s.rtmpURL("concert?user=bob&pass=" + hash)),
			"UnknownNoAuthName":    s.publish(s.rtmpURL("lobbycam2")),
			"ScaleEngineWrongPass": s.rtmpTwoPart("live?user=alice&pass=wrong", "concert"),
			"SRTWrongPassword":     s.publishWith("mpegts", s.srtURL("publish:live/concert:alice:wrong")),
			"SRTNoCredentials":     s.publishWith("mpegts", s.srtURL("publish:live/concert")),
			"RTSPWrongPassword":    s.publishWith("rtsp", s.rtspURL("alice", "wrong", "concert")),
			"RTSPNoCredentials":    s.publishWith("rtsp", s.rtspURL("", "", "concert")),
		}
		var wg sync.WaitGroup
		for name, p := range refusals {
			wg.Go(func() {
				t.Run(name, func(t *testing.T) { p.refused(t, 20*time.Second) })
			})
		}
		wg.Wait()
		if code, v := s.channelStatus("concert"); code != http.StatusOK || v["live"] != false {
			t.Errorf("concert status = %d %v after refusals, want offline", code, v)
		}
	})

}
