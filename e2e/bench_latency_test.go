package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"slices"
	"strings"
	"testing"
	"time"
)

// P3 and P5 of `make bench` (BENCHMARKS.md): time to public playback through the alias
// against direct ingest on the public name in the same MediaMTX run, and how fast bans
// and stops take effect. Each reports the median of benchRounds rounds.

const benchRounds = 5

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// firstSegment waits until the public media playlist lists a segment and returns when.
func firstSegment(tb testing.TB, url string, timeout time.Duration) time.Time {
	tb.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 5 * time.Second}
	base := url[:strings.LastIndexByte(url, '/')+1]
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		res, err := c.Get(url)
		if err == nil {
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				// index.m3u8 is a multivariant playlist: follow its first media playlist.
				for _, line := range strings.Split(string(body), "\n") {
					if line == "" || strings.HasPrefix(line, "#") {
						continue
					}
					if mr, err := c.Get(base + line); err == nil {
						mb, _ := io.ReadAll(mr.Body)
						mr.Body.Close()
						if strings.Contains(string(mb), "#EXTINF") {
							return time.Now()
						}
					}
					break
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	tb.Fatalf("no segment at %s within %v", url, timeout)
	return time.Time{}
}

// publishCopy sends the pre-encoded bench source with -c copy, as a real encoder would
// send already-encoded media.
func (s *stack) publishCopy(src, url string) *publisher {
	return startFFmpeg(s.t, s.ffmpeg, "-re", "-i", src, "-c", "copy", "-f", "flv", url)
}

// BenchmarkTimeToPlayback is P3: publisher start to the first segment in the public
// playlist, for each way in. "direct" (RTMP through the front, the key in the query) is
// the baseline; "alias" is RTMP on the key path; the others say which ingest starts
// fastest (README): RTMP straight to MediaMTX's loopback listener, SRT on the key path
// and on the public name, and WHIP (video only, from ffmpeg's H264 through the pion
// client).
func BenchmarkTimeToPlayback(b *testing.B) {
	if testing.Short() {
		b.Skip("needs MediaMTX and ffmpeg")
	}
	s := startStack(b, stackOptions{})
	src := benchSource(b, s.ffmpeg)
	key := s.addUser("benw")
	mtxRTMP := fmt.Sprintf("rtmp://127.0.0.1:%d/live/benw?key=%s", s.mediamtxRTMP(b), key)
	copyTo := func(format, url string) func() *publisher {
		return func() *publisher {
			return startFFmpeg(s.t, s.ffmpeg, "-re", "-i", src, "-c", "copy", "-f", format, url)
		}
	}
	for _, mode := range []struct {
		name  string
		start func() *publisher
	}{
		{"direct", copyTo("flv", s.rtmpURL("benw?key="+key))},
		{"alias", copyTo("flv", s.rtmpURL(key))},
		{"rtmp-mediamtx", copyTo("flv", mtxRTMP)},
		{"srt-key", copyTo("mpegts", s.srtURL("publish:live/"+key))},
		{"srt-name", copyTo("mpegts", s.srtURL("publish:live/benw:benw:"+key))},
		{"whip", func() *publisher { return s.with(b).whipPublish("benw", whipBearer(key)) }},
	} {
		b.Run(mode.name, func(b *testing.B) {
			for b.Loop() {
				var took []time.Duration
				for range benchRounds {
					start := time.Now()
					p := mode.start()
					took = append(took, firstSegment(b, s.hlsURL("benw"), 30*time.Second).Sub(start))
					p.stop()
					s.with(b).waitLive("benw", false, 10*time.Second)
					eventually(b, 10*time.Second, "public path gone", func() error {
						if code := hlsStatus(b, s.hlsURL("benw"), "", ""); code != http.StatusNotFound {
							return fmt.Errorf("status %d", code)
						}
						return nil
					})
				}
				b.ReportMetric(median(took).Seconds(), "s_to_first_segment")
			}
		})
	}
}

func BenchmarkControlLatency(b *testing.B) {
	if testing.Short() {
		b.Skip("needs MediaMTX and ffmpeg")
	}
	s := startStack(b, stackOptions{})
	src := benchSource(b, s.ffmpeg)
	key := s.addUser("benw")
	var banKick, banGone, stopOffline []time.Duration
	for b.Loop() {
		for range benchRounds {
			p := s.publishCopy(src, s.rtmpURL(key))
			s.with(b).waitLive("benw", true, 20*time.Second)
			firstSegment(b, s.hlsURL("benw"), 30*time.Second)
			start := time.Now()
			if _, errOut, err := s.cli("user", "ban", "benw"); err != nil {
				b.Fatalf("ban: %v %s", err, errOut)
			}
			p.kicked(b, 10*time.Second)
			banKick = append(banKick, time.Since(start))
			eventually(b, 10*time.Second, "public path gone", func() error {
				if code := hlsStatus(b, s.hlsURL("benw"), "", ""); code != http.StatusNotFound {
					return fmt.Errorf("status %d", code)
				}
				return nil
			})
			banGone = append(banGone, time.Since(start))
			if _, _, err := s.cli("user", "unban", "benw"); err != nil {
				b.Fatal(err)
			}

			p = s.publishCopy(src, s.rtmpURL(key))
			s.with(b).waitLive("benw", true, 20*time.Second)
			start = time.Now()
			p.stop()
			s.with(b).waitLive("benw", false, 10*time.Second)
			stopOffline = append(stopOffline, time.Since(start))
		}
	}
	b.ReportMetric(median(banKick).Seconds(), "s_ban_to_kicked")
	b.ReportMetric(median(banGone).Seconds(), "s_ban_to_public_404")
	b.ReportMetric(median(stopOffline).Seconds(), "s_stop_to_offline")
}
