package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/pion/webrtc/v4/pkg/media/h264reader"

	"github.com/stagedoor/stagedoor/internal/testutil"
)

// whipAuth puts a credential on a WHIP request.
type whipAuth func(*http.Request)

// whipBearer is `Authorization: Bearer tok` (a stream key, as the README prints it).
func whipBearer(tok string) whipAuth {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
}

// whipBasic is `Authorization: Basic user:pass`.
func whipBasic(user, pass string) whipAuth {
	return func(r *http.Request) { r.SetBasicAuth(user, pass) }
}

// whipPublish publishes an H264 test pattern to live/<name> over WHIP, as OBS's WHIP
// output does. ffmpeg 5.1 has no WHIP muxer, so ffmpeg only encodes (Annex B to a pipe,
// one access unit per frame) and a pion peer connection on loopback sends it.
//
// The publisher's exited channel closes when the session ends: refused (err names the
// status), ended by MediaMTX (DTLS closed or ICE failed: err says so), or stopped (stop,
// err nil). Its cmd is the encoder, whose argv holds no credential.
func (s *stack) whipPublish(name string, auth whipAuth) *publisher {
	s.t.Helper()
	p := &publisher{out: &testutil.Buffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(s.ffmpeg, "-hide_banner", "-nostats", "-loglevel", "error", "-re",
		"-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
		"-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-profile:v", "baseline",
		"-g", "25", "-bf", "0", "-pix_fmt", "yuv420p",
		"-bsf:v", "h264_metadata=aud=insert", // an AUD starts every access unit: how frames are split
		"-f", "h264", "-")
	p.cmd.Stderr = p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	h264, err := p.cmd.StdoutPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	endpoint := fmt.Sprintf("http://127.0.0.1:%d/live/%s/whip", s.webrtc, name)
	go func() {
		err := runWHIP(endpoint, auth, h264, p.out)
		_ = p.cmd.Process.Signal(os.Interrupt) // a session that ended stops its encoder
		_, _ = io.Copy(io.Discard, h264)       // Wait only after the pipe is drained
		if werr := p.cmd.Wait(); err == nil && werr != nil && !isInterrupt(werr) {
			err = fmt.Errorf("encoder: %w", werr)
		}
		p.err = err
		close(p.exited)
	}()
	s.t.Cleanup(p.stop)
	return p
}

func isInterrupt(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	// ffmpeg exits 255 on SIGINT; a signal it did not catch shows as the signal.
	return ok && (ws.ExitStatus() == 255 || (ws.Signaled() && ws.Signal() == syscall.SIGINT))
}

// runWHIP offers a send-only H264 track to endpoint, applies the answer and sends the
// access units read from h264 until the encoder stops (nil) or the session ends (error).
//
// MediaMTX drops a WHIP session whose first packet has not arrived 2 s after it
// connected (webrtcTrackGatherTimeout), and an encoder that starts slowly on a busy
// machine can take longer than that: so the offer goes out only once the encoder has
// produced its first access unit, and sending starts as soon as the session connects.
func runWHIP(endpoint string, auth whipAuth, h264 io.Reader, log io.Writer) error {
	aus, err := newAUReader(h264)
	if err != nil {
		return err
	}
	first, err := aus.next()
	if err != nil {
		return fmt.Errorf("encoder: %w", err)
	}
	pc, track, err := newWHIPPeer()
	if err != nil {
		return err
	}
	defer pc.Close()

	ended := make(chan error, 1)
	end := func(err error) {
		select {
		case ended <- err:
		default:
		}
	}
	connected := make(chan struct{})
	var connectedOnce sync.Once
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateConnected:
			connectedOnce.Do(func() { close(connected) })
		case webrtc.PeerConnectionStateFailed:
			end(errors.New("WebRTC session failed (ICE)"))
		}
	})
	sender := pc.GetSenders()[0]
	sender.Transport().OnStateChange(func(st webrtc.DTLSTransportState) {
		// MediaMTX's close (a kick) sends a DTLS close_notify; pion keeps the peer
		// connection "connected" after it, so this is where a kick shows first.
		if st == webrtc.DTLSTransportStateClosed || st == webrtc.DTLSTransportStateFailed {
			end(fmt.Errorf("WebRTC session ended by the server (DTLS %s)", st))
		}
	})
	go func() { // RTCP must be read for the interceptors to work
		buf := make([]byte, 1500)
		for {
			if _, _, err := sender.Read(buf); err != nil {
				return
			}
		}
	}()

	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return err
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return err
	}
	select { // every candidate in the offer: MediaMTX needs no trickle PATCH then
	case <-gathered:
	case <-time.After(20 * time.Second):
		return errors.New("ICE gathering did not complete within 20 s")
	}
	req, _ := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(pc.LocalDescription().SDP))
	req.Header.Set("Content-Type", "application/sdp")
	auth(req)
	client := &http.Client{Timeout: 30 * time.Second} // a refusal is held up to 4 s
	res, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("WHIP POST: %w", err)
	}
	answer, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		return fmt.Errorf("WHIP POST refused: %s", res.Status)
	}
	resource := res.Header.Get("Location")
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(answer)}); err != nil {
		return fmt.Errorf("WHIP answer: %w", err)
	}

	select {
	case <-connected:
	case err := <-ended:
		return err
	case <-time.After(30 * time.Second):
		return errors.New("WebRTC session not connected within 30 s")
	}
	sent := make(chan error, 1)
	go func() { sent <- sendAccessUnits(first, aus, track) }()
	select {
	case err := <-ended:
		return err
	case err := <-sent:
		if err != nil {
			select { // a write that failed because the session ended reports the end
			case e := <-ended:
				return e
			case <-time.After(time.Second):
			}
			return err
		}
		// The encoder stopped: end the session as a WHIP client does, with DELETE.
		if base, perr := url.Parse(endpoint); perr == nil && resource != "" {
			if loc, lerr := base.Parse(resource); lerr == nil {
				del, _ := http.NewRequest(http.MethodDelete, loc.String(), nil)
				auth(del)
				if res, derr := client.Do(del); derr == nil {
					res.Body.Close()
				} else {
					fmt.Fprintf(log, "WHIP DELETE: %v\n", derr)
				}
			}
		}
		return nil
	}
}

// newWHIPPeer builds a peer connection with one send-only H264 track, its ICE limited
// to UDP on 127.0.0.1 (MediaMTX's WebRTC UDP listener is on loopback here) and short
// ICE timeouts, so that a session MediaMTX dropped without a DTLS close fails in
// seconds rather than half a minute.
func newWHIPPeer() (*webrtc.PeerConnection, *webrtc.TrackLocalStaticSample, error) {
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetICETimeouts(3*time.Second, 6*time.Second, 500*time.Millisecond)
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		return nil, nil, err
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil {
		return nil, nil, err
	}
	api := webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, nil, err
	}
	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{
		MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
	}, "video", "stagedoor-e2e")
	if err == nil {
		_, err = pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	}
	if err != nil {
		_ = pc.Close()
		return nil, nil, err
	}
	return pc, track, nil
}

// auReader splits Annex B H264 with an AUD before every access unit (ffmpeg's
// h264_metadata=aud=insert) into access units, each in Annex B.
type auReader struct {
	rd *h264reader.H264Reader
}

func newAUReader(r io.Reader) (*auReader, error) {
	rd, err := h264reader.NewReader(r)
	if err != nil {
		return nil, err
	}
	return &auReader{rd: rd}, nil
}

// next returns the next access unit, or io.EOF when the encoder has stopped.
func (a *auReader) next() ([]byte, error) {
	var au bytes.Buffer
	for {
		nal, err := a.rd.NextNAL()
		if errors.Is(err, io.EOF) && au.Len() > 0 {
			return au.Bytes(), nil
		}
		if err != nil {
			return nil, err
		}
		if nal.UnitType == h264reader.NalUnitTypeAUD {
			if au.Len() > 0 {
				return au.Bytes(), nil
			}
			continue
		}
		au.Write([]byte{0, 0, 0, 1})
		au.Write(nal.Data)
	}
}

// sendAccessUnits writes first and then every access unit of aus as one sample each,
// 40 ms apart in media time (the encoder runs at 25 fps, -re), until the encoder stops.
func sendAccessUnits(first []byte, aus *auReader, track *webrtc.TrackLocalStaticSample) error {
	au := first
	for {
		if err := track.WriteSample(media.Sample{Data: au, Duration: 40 * time.Millisecond}); err != nil {
			return err
		}
		var err error
		if au, err = aus.next(); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
	}
}
