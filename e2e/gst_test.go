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
// Each plays at the public name, and MediaMTX's API never names the key.
func TestGStreamerThroughFront(t *testing.T) {
	gst := needTool(t, "gst-launch-1.0", "STAGEDOOR_TEST_GST", "")
	s := startStack(t, stackOptions{})
	key := s.addUser("benw")
	source := strings.Fields("videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=25/1 ! " +
		"x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 ! flvmux name=mux streamable=true !")
	audio := strings.Fields("audiotestsrc is-live=true ! audioconvert ! audioresample ! audio/x-raw,rate=44100,channels=2 ! " +
		"voaacenc ! mux.")
	for _, tt := range []struct {
		name string
		sink []string
	}{
		// librtmp reads options after the URL, separated by a space.
		{"LibrtmpRtmpsink", []string{"rtmpsink", "location=" + s.rtmpURL(key) + " live=1"}},
		{"Rtmp2sink", []string{"rtmp2sink", "location=" + s.rtmpURL(key)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pipeline := append(append(append([]string{}, source...), tt.sink...), audio...)
			p := startGst(t, gst, pipeline...)
			s.with(t).waitLive("benw", true, 20*time.Second)
			if err := playHLS(t, s.hlsURL("benw"), 10*time.Second); err != nil {
				t.Fatalf("public HLS: %v\npublisher: %s", err, p.out)
			}
			if err := s.mtxHolds(key); err != nil {
				t.Error(err)
			}
			p.stop()
			s.with(t).waitLive("benw", false, 10*time.Second)
		})
	}
}
