package e2e

import (
	"os"
	"strings"
	"testing"
	"time"
)

// startGst runs gst-launch-1.0 with a pipeline in its own process group; stop sends it
// SIGINT, which -e turns into an end of stream, as a streamer stopping would.
func startGst(t testing.TB, gst string, pipeline ...string) *publisher {
	t.Helper()
	return startPublisher(t, gst, append([]string{"-q", "-e"}, pipeline...)...)
}

// TestGStreamerThroughFront: two more RTMP client implementations publish a stream key
// through the front. GStreamer's rtmpsink is librtmp, the library OBS's RTMP output is
// built on, whose header compression differs from ffmpeg's; rtmp2sink is GStreamer's own.
// Each plays at the public name, MediaMTX's API never names the key, and the front
// spliced the connection (it stopped parsing; ffmpeg is checked the same way): into the
// kernel forward, and, with --rtmp-forward pump, into the pump.
func TestGStreamerThroughFront(t *testing.T) {
	gst := needTool(t, "gst-launch-1.0", "STAGEDOOR_TEST_GST", "")
	t.Run("Kernel", func(t *testing.T) { gstreamerThroughFront(t, gst, "kernel") })
	t.Run("Pump", func(t *testing.T) { gstreamerThroughFront(t, gst, "pump") })
}

func gstreamerThroughFront(t *testing.T, gst, forward string) {
	if forward == "kernel" && os.Geteuid() != 0 && os.Getenv("CI") == "" {
		t.Skip("the kernel forward needs CAP_BPF and CAP_NET_ADMIN (root here)")
	}
	s := startStack(t, stackOptions{args: []string{"--log-level", "debug", "--rtmp-forward", forward}})
	key := s.addUser("benw")
	s.addUser("carol")
	const carolPassword = "carol's long rehearsal password"
	hash := s.setPassword("carol", carolPassword)
	s.addStream("concert", "carol")
	source := strings.Fields("videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=25/1 ! " +
		"x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 ! flvmux name=mux streamable=true !")
	audio := strings.Fields("audiotestsrc is-live=true ! audioconvert ! audioresample ! audio/x-raw,rate=44100,channels=2 ! " +
		"voaacenc ! mux.")
	base := strings.TrimSuffix(s.rtmpURL(""), "/live/")
	for _, tt := range []struct {
		name    string
		sink    []string // nil: ffmpeg
		channel string   // "" for benw
		secret  string   // what MediaMTX must never hold; "" for the key
	}{
		// librtmp reads options after the URL, separated by a space.
		{"LibrtmpRtmpsink", []string{"rtmpsink", "location=" + s.rtmpURL(key) + " live=1"}, "", ""},
		{"LibrtmpKeyInQuery", []string{"rtmpsink", "location=" + s.rtmpURL("benw?key="+key) + " live=1"}, "", ""},
		// ScaleEngine's two-part form as OBS sends it through librtmp: the credentials in
		// the app (the server URL), the stream name alone.
		{"LibrtmpScaleEngineHash", []string{"rtmpsink", "location=" + base + "/live/concert app=live?user=carol&pass=" + hash +
			" playpath=concert live=1"}, "concert", hash},
		{"Rtmp2sink", []string{"rtmp2sink", "location=" + s.rtmpURL(key)}, "", ""},
		{"FFmpeg", nil, "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			spliced := countSplices(s.out.String(), forward)
			var p *publisher
			if tt.sink == nil {
				p = s.publish(s.rtmpURL(key))
			} else {
				p = startGst(t, gst, append(append(append([]string{}, source...), tt.sink...), audio...)...)
			}
			channel, secret := tt.channel, tt.secret
			if channel == "" {
				channel = "benw"
			}
			if secret == "" {
				secret = key
			}
			s.with(t).waitLive(channel, true, 20*time.Second)
			if err := playHLS(t, s.hlsURL(channel), 10*time.Second); err != nil {
				t.Fatalf("public HLS: %v\npublisher: %s", err, p.out)
			}
			if err := s.mtxHolds(secret); err != nil {
				t.Error(err)
			}
			if countSplices(s.out.String(), forward) != spliced+1 {
				t.Errorf("the front did not splice the connection into the %s", forward)
			}
			p.stop()
			s.with(t).waitLive(channel, false, 10*time.Second)
		})
	}
}

// countSplices counts the front's log lines saying it spliced a connection into forward.
func countSplices(log, forward string) int {
	n := 0
	for line := range strings.Lines(log) {
		if strings.Contains(line, `"msg":"rtmp front: spliced"`) && strings.Contains(line, `"forward":"`+forward+`"`) {
			n++
		}
	}
	return n
}
