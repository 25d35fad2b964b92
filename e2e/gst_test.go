package e2e

import (
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor/internal/testutil"
)

// startGst runs gst-launch-1.0 with a pipeline in its own process group; stop sends it
// SIGINT, which -e turns into an end of stream, as a streamer stopping would.
func startGst(t testing.TB, gst string, pipeline ...string) *publisher {
	t.Helper()
	p := &publisher{out: &testutil.Buffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(gst, append([]string{"-q", "-e"}, pipeline...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(p.stop)
	return p
}

// TestGStreamerThroughFront: two more RTMP client implementations publish a stream key
// through the front. GStreamer's rtmpsink is librtmp, the library OBS's RTMP output is
// built on, whose header compression differs from ffmpeg's; rtmp2sink is GStreamer's own.
// Each plays at the public name, MediaMTX's API never names the key, and the front
// spliced the connection (it stopped parsing; ffmpeg is checked the same way).
func TestGStreamerThroughFront(t *testing.T) {
	gst := needTool(t, "gst-launch-1.0", "STAGEDOOR_TEST_GST", "")
	s := startStack(t, stackOptions{args: []string{"--log-level", "debug"}})
	key := s.addUser("benw")
	source := strings.Fields("videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=25/1 ! " +
		"x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 ! flvmux name=mux streamable=true !")
	audio := strings.Fields("audiotestsrc is-live=true ! audioconvert ! audioresample ! audio/x-raw,rate=44100,channels=2 ! " +
		"voaacenc ! mux.")
	for _, tt := range []struct {
		name string
		sink []string // nil: ffmpeg
	}{
		// librtmp reads options after the URL, separated by a space.
		{"LibrtmpRtmpsink", []string{"rtmpsink", "location=" + s.rtmpURL(key) + " live=1"}},
		{"Rtmp2sink", []string{"rtmp2sink", "location=" + s.rtmpURL(key)}},
		{"FFmpeg", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			spliced := strings.Count(s.out.String(), `rtmp front: spliced`)
			var p *publisher
			if tt.sink == nil {
				p = s.publish(s.rtmpURL(key))
			} else {
				p = startGst(t, gst, append(append(append([]string{}, source...), tt.sink...), audio...)...)
			}
			s.with(t).waitLive("benw", true, 20*time.Second)
			if err := playHLS(t, s.hlsURL("benw"), 10*time.Second); err != nil {
				t.Fatalf("public HLS: %v\npublisher: %s", err, p.out)
			}
			if err := s.mtxHolds(key); err != nil {
				t.Error(err)
			}
			if strings.Count(s.out.String(), `rtmp front: spliced`) != spliced+1 {
				t.Errorf("the front did not splice the connection")
			}
			p.stop()
			s.with(t).waitLive("benw", false, 10*time.Second)
		})
	}
}
