package rtmpfront_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/amf0"
	"github.com/bluenviron/gortmplib/pkg/bytecounter"
	rtmphs "github.com/bluenviron/gortmplib/pkg/handshake"
	"github.com/bluenviron/gortmplib/pkg/message"
	"github.com/bluenviron/gortmplib/pkg/rawmessage"

	"github.com/stagedoor/stagedoor"
	"github.com/stagedoor/stagedoor/internal/testdb"
	"github.com/stagedoor/stagedoor/policy"
	"github.com/stagedoor/stagedoor/rtmpfront"
)

// frontPolicy is a real policy over a real store (benw active, mallory banned) with front
// grants, as the service builds it.
type frontPolicy struct {
	*policy.Policy
	*policy.FrontGrants
}

func newFrontPolicy(t *testing.T) (frontPolicy, testdb.Users) {
	t.Helper()
	f := testdb.NewUsers(t)
	grants := policy.NewFrontGrants()
	pol := &policy.Policy{Credentials: f.DB, Passwords: policy.NewPasswords(), Front: grants, Admissions: policy.NewAdmissions()}
	return frontPolicy{pol, grants}, f
}

func setPassword(t *testing.T, f testdb.Users, pw string) {
	t.Helper()
	h, err := stagedoor.HashPassword(pw, stagedoor.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.DB.SetPasswordHash(t.Context(), "benw", h); err != nil {
		t.Fatal(err)
	}
	if _, err := f.DB.CreateStream(t.Context(), "concert", "benw", true); err != nil {
		t.Fatal(err)
	}
}

// mtxAuth is MediaMTX's auth call for a publish as MediaMTX v1.21.0 makes it: path and
// query from the joined URL, user and pass from the query, the IP from the PROXY header.
func (fp frontPolicy) mtxAuth(t *testing.T, header string, u *url.URL) policy.Verdict {
	t.Helper()
	f := strings.Fields(header)
	if len(f) < 3 {
		t.Errorf("PROXY header %q", header)
		return policy.Verdict{}
	}
	q := u.Query()
	return fp.Decide(context.Background(), policy.Attempt{Action: "publish", Protocol: "rtmp",
		Path: strings.TrimLeft(u.Path, "/"), Query: u.RawQuery, User: q.Get("user"), Password: q.Get("pass"),
		IP: f[2], SessionID: "s1"})
}

// mtxResult is what the stand-in MediaMTX saw on one connection.
type mtxResult struct {
	raw      []byte   // every byte after the PROXY header
	url      *url.URL // the publish or play URL gortmplib joined; nil if none came
	publish  bool
	verdict  policy.Verdict
	messages []message.Message // read after the action was accepted
	err      error
}

// teeConn records what it reads.
type teeConn struct {
	r   io.Reader
	w   io.Writer
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *teeConn) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.mu.Lock()
	c.buf.Write(b[:n])
	c.mu.Unlock()
	return n, err
}

func (c *teeConn) Write(b []byte) (int, error) { return c.w.Write(b) }

func (c *teeConn) bytes() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.buf.Bytes())
}

// startMTX stands in for MediaMTX with gortmplib's own server side (ServerConn, as
// MediaMTX v1.21.0 uses it): it accepts or rejects the action with fp's answer to
// MediaMTX's auth call, then reads messages until the connection ends.
func startMTX(t *testing.T, fp frontPolicy) (string, <-chan mtxResult) {
	t.Helper()
	results := make(chan mtxResult, 16)
	addr, _ := startUpstream(t, func(u upConn) {
		tc := &teeConn{r: u.r, w: u.conn}
		var res mtxResult
		defer func() {
			res.raw = tc.bytes()
			results <- res
		}()
		_ = u.conn.SetDeadline(time.Now().Add(waitLong))
		sc := &gortmplib.ServerConn{RW: tc}
		if res.err = sc.Initialize(); res.err != nil {
			return
		}
		if res.err = sc.AcceptConn(); res.err != nil {
			return
		}
		res.url, res.publish = sc.URL, sc.Publish
		res.verdict = fp.mtxAuth(t, u.header, sc.URL)
		if !res.verdict.Allow {
			res.err = sc.RejectAction()
			return
		}
		if res.err = sc.AcceptAction(); res.err != nil {
			return
		}
		for {
			msg, err := sc.Read()
			if err != nil {
				res.err = err
				return
			}
			res.messages = append(res.messages, msg)
		}
	})
	return addr, results
}

func waitResult(t *testing.T, results <-chan mtxResult) mtxResult {
	t.Helper()
	select {
	case r := <-results:
		return r
	case <-time.After(waitLong):
		t.Fatal("MediaMTX's connection never ended")
		return mtxResult{}
	}
}

// gortmplibPublish publishes u through the front with gortmplib's client, sends data
// messages, and closes.
func gortmplibPublish(t *testing.T, u string, extra int) error {
	t.Helper()
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	c := &gortmplib.Client{URL: pu, Publish: true}
	ctx, cancel := context.WithTimeout(t.Context(), waitLong)
	defer cancel()
	if err := c.Initialize(ctx); err != nil {
		return err
	}
	defer c.Close()
	for i := range extra {
		if err := c.Write(&message.DataAMF0{ChunkStreamID: 4, MessageStreamID: 0x1000000,
			Payload: amf0.Data{"@setDataFrame", "onMetaData", amf0.Object{{Key: "n", Value: float64(i)}}}}); err != nil {
			return err
		}
	}
	return nil
}

// TestRenameAtIngest: a key publish through the front reaches MediaMTX as the public name
// with a grant MediaMTX's auth call redeems, in every form a streamer uses; no byte
// MediaMTX receives holds the key or the password, and what the client sends after
// publish arrives.
func TestRenameAtIngest(t *testing.T) { forwardModes(t, renameAtIngest) }

func renameAtIngest(t *testing.T, kernel *rtmpfront.KernelForward) {
	fp, f := newFrontPolicy(t)
	setPassword(t, f, "correct horse")
	up, results := startMTX(t, fp)
	ln, logs := startFront(t, &rtmpfront.Proxy{Upstream: up, Decider: fp, Kernel: kernel})
	base := "rtmp://" + ln.Addr().String()
	for _, tt := range []struct {
		name    string
		url     string
		want    string // the public name
		secrets []string
	}{
		// gortmplib's client puts the fragment in the stream name.
		{"KeyAsStreamName", base + "/live#" + f.ActiveKey, "benw", []string{f.ActiveKey}},
		{"NameWithKeyQuery", base + "/live#benw?key=" + f.ActiveKey, "benw", []string{f.ActiveKey}},
		{"ScaleEngineTwoPart", base + "/live?user=benw&pass=correct+horse#concert", "concert", []string{"correct", "horse"}},
		{"ScaleEngineOneField", base + "/live?user=benw&pass=correct+horse/concert", "concert", []string{"correct", "horse"}},
		{"PasswordInStreamName", base + "/live#concert?user=benw&pass=correct+horse", "concert", []string{"correct", "horse"}},
		{"KeyInServerURL", base + "/live?key=" + f.ActiveKey + "#benw", "benw", []string{f.ActiveKey}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := gortmplibPublish(t, tt.url, 3); err != nil {
				t.Fatalf("publish through the front: %v\n%s", err, logs.String())
			}
			res := waitResult(t, results)
			if res.url == nil || !res.publish {
				t.Fatalf("MediaMTX saw no publish (%v)", res.err)
			}
			if got := strings.TrimLeft(res.url.Path, "/"); got != "live/"+tt.want {
				t.Errorf("MediaMTX's path = %q, want live/%s", got, tt.want)
			}
			if q, _ := url.ParseQuery(res.url.RawQuery); len(q) != 1 || len(q.Get(policy.FrontParam)) < policy.MinGrantLen {
				t.Errorf("MediaMTX's query has %d parameters, want the grant alone", len(q))
			}
			if !res.verdict.Allow || res.verdict.User != "benw" {
				t.Errorf("MediaMTX's auth call: %+v, want benw allowed", res.verdict)
			}
			for _, s := range tt.secrets {
				if bytes.Contains(res.raw, []byte(s)) {
					t.Errorf("MediaMTX received %q", s)
				}
			}
			if n := countData(res.messages); n != 3 {
				t.Errorf("MediaMTX read %d data messages after publish, want 3 (%v)", n, res.err)
			}
		})
	}
	for _, s := range []string{f.ActiveKey, "correct", "horse"} {
		if strings.Contains(logs.String(), s) {
			t.Errorf("the front logged a secret")
		}
	}
	if !strings.Contains(logs.String(), `"msg":"rtmp front: publish renamed","ip":"127.0.0.1","user":"benw","name":"benw"`) {
		t.Errorf("no rename line in the log:\n%s", logs.String())
	}
}

func countData(msgs []message.Message) int {
	n := 0
	for _, m := range msgs {
		if _, ok := m.(*message.DataAMF0); ok {
			n++
		}
	}
	return n
}

// TestRefusedBeforeMediaMTX: a refused publish is answered with MediaMTX's own error and
// MediaMTX never sees a publish; a busy policy refuses the same way.
func TestRefusedBeforeMediaMTX(t *testing.T) {
	fp, f := newFrontPolicy(t)
	up, results := startMTX(t, fp)
	ln, logs := startFront(t, &rtmpfront.Proxy{Upstream: up, Decider: fp})
	base := "rtmp://" + ln.Addr().String()
	for _, tt := range []struct {
		name, url string
		setup     func()
	}{
		{"UnknownKey", base + "/live#sk_" + strings.Repeat("A", 43), nil},
		{"BannedKey", base + "/live#" + f.BannedKey, nil},
		{"WrongPassword", base + "/live?user=benw&pass=nope#benw", nil},
		{"GrantFromAClient", base + "/live#benw?sd=AAAAAAAAAAAAAAAAAAAA", nil},
		{"Busy", base + "/live#" + f.ActiveKey, func() { fp.Healthy = func() error { return errors.New("down") } }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.setup != nil {
				tt.setup()
			}
			err := gortmplibPublish(t, tt.url, 0)
			if err == nil || !strings.Contains(err.Error(), "NetStream.Publish.Unauthorized") {
				t.Errorf("client got %v, want onStatus NetStream.Publish.Unauthorized", err)
			}
			res := waitResult(t, results)
			if res.url != nil {
				t.Errorf("MediaMTX saw the action %v", res.url.Path)
			}
			if bytes.Contains(res.raw, []byte("publish")) {
				t.Errorf("MediaMTX received a publish command")
			}
		})
	}
	if strings.Contains(logs.String(), f.BannedKey) {
		t.Errorf("the front logged a key")
	}
	if !strings.Contains(logs.String(), `"msg":"rtmp front: publish refused","ip":"127.0.0.1"`) {
		t.Errorf("no refusal line in the log:\n%s", logs.String())
	}
}

// chunks builds a client's chunk stream by hand, header by header.
type chunks struct{ b []byte }

func (c *chunks) ts24(v uint32) {
	v = min(v, 0xFFFFFF)
	c.b = append(c.b, byte(v>>16), byte(v>>8), byte(v))
}

func (c *chunks) ext(v uint32) {
	if v >= 0xFFFFFF {
		c.b = binary.BigEndian.AppendUint32(c.b, v)
	}
}

// msg writes one message: its first chunk with the given header format (0 to 3), then
// type 3 continuation chunks at chunkSize, with the extended timestamp field ext on each
// when the header's field was extended.
func (c *chunks) msg(format, csid byte, field uint32, typ byte, sid uint32, body []byte, chunkSize int, extField uint32) {
	c.b = append(c.b, format<<6|csid)
	switch format {
	case 0:
		c.ts24(field)
		c.b = append(c.b, byte(len(body)>>16), byte(len(body)>>8), byte(len(body)), typ)
		c.b = binary.BigEndian.AppendUint32(c.b, sid)
	case 1:
		c.ts24(field)
		c.b = append(c.b, byte(len(body)>>16), byte(len(body)>>8), byte(len(body)), typ)
	case 2:
		c.ts24(field)
	}
	c.ext(extField)
	for first := true; first || len(body) > 0; first = false {
		if !first {
			c.b = append(c.b, 3<<6|csid)
			c.ext(extField)
		}
		k := min(len(body), chunkSize)
		c.b = append(c.b, body[:k]...)
		body = body[k:]
	}
}

func amf(t *testing.T, d amf0.Data, size int) []byte {
	t.Helper()
	b, err := d.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > size {
		t.Fatalf("AMF0 body of %d bytes, more than %d", len(b), size)
	}
	return append(b, bytes.Repeat([]byte{0x05}, size-len(b))...) // nulls: extra arguments
}

func filler(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)*7 + seed
	}
	return b
}

// readRaw reads data as MediaMTX's reader would (gortmplib rawmessage.Reader with Set
// Chunk Size and Abort applied, as its message reader applies them).
func readRaw(data []byte) ([]*rawmessage.Message, error) {
	r := rawmessage.NewReader(bytes.NewReader(data), bytecounter.NewReader(bytes.NewReader(nil)), nil)
	var msgs []*rawmessage.Message
	for {
		m, err := r.Read()
		if err != nil {
			return msgs, err
		}
		msgs = append(msgs, m)
		switch {
		case m.Type == 1 && len(m.Body) == 4:
			if err := r.SetChunkSize(binary.BigEndian.Uint32(m.Body)); err != nil {
				return msgs, err
			}
		case m.Type == 2 && len(m.Body) == 4:
			r.AbortChunkStream(binary.BigEndian.Uint32(m.Body))
		}
	}
}

// TestHeaderCompressionAcrossTheRewrite: clients compress headers against the commands
// the front rewrites (types 1, 2, 3 on the publish's chunk stream; media inheriting its
// length; extended timestamps; chunk size changes). MediaMTX's reader reads exactly the
// messages the client meant, the commands aside, and after the splice the client's bytes
// arrive unchanged.
func TestHeaderCompressionAcrossTheRewrite(t *testing.T) {
	forwardModes(t, headerCompressionAcrossTheRewrite)
}

func headerCompressionAcrossTheRewrite(t *testing.T, kernel *rtmpfront.KernelForward) {
	fp, f := newFrontPolicy(t)
	setPassword(t, f, "correct horse")
	const ext = 0x1000000 // a timestamp that needs the extended field
	for _, tt := range []struct {
		name  string
		tcURL string
		build func(c *chunks, tcURL string) (tailFrom int) // returns where the spliced tail starts
	}{
		{
			// librtmp's habit: commands and media on one chunk stream. The publish keeps its
			// length (the grant fills it), so the front splices right after it.
			"SameLengthPublishThenInheritedHeaders", "rtmp://h/live",
			func(c *chunks, tcURL string) int {
				c.msg(0, 3, 0, 20, 0, amf(t, amf0.Data{"connect", 1.0, amf0.Object{{Key: "app", Value: "live"}, {Key: "tcUrl", Value: tcURL}}}, 150), 128, 0)
				pub := amf(t, amf0.Data{"publish", 5.0, nil, f.ActiveKey, "live"}, 200) // two chunks
				// createStream padded to the publish's length, so that publish can inherit it.
				c.msg(1, 3, 10, 20, 0, amf(t, amf0.Data{"createStream", 4.0, nil}, len(pub)), 128, 0)
				c.msg(2, 3, 10, 0, 0, pub, 128, 0) // publish: type 2, delta 10
				tail := len(c.b)
				// Commands of the publish's length, inherited by type 3 headers.
				c.msg(3, 3, 0, 0, 0, amf(t, amf0.Data{"@noop", 0.0, nil}, len(pub)), 128, 0)
				c.msg(2, 3, 5, 0, 0, amf(t, amf0.Data{"@noop", 1.0, nil}, len(pub)), 128, 0)
				c.msg(1, 3, 40, 9, 0, filler(300, 1), 128, 0)
				c.msg(3, 3, 0, 0, 0, filler(300, 2), 128, 0)
				c.msg(0, 2, 0, 1, 0, []byte{0, 0, 16, 0}, 128, 0) // chunk size 4096
				c.msg(2, 3, 40, 0, 0, filler(300, 3), 4096, 0)
				c.msg(1, 3, 40, 9, 0, filler(9000, 4), 4096, 0)
				return tail
			},
		},
		{
			// ScaleEngine's two-part form: the forwarded publish is longer than the
			// client's, so MediaMTX's length for the chunk stream differs until the next
			// message on it, which the client sends with a type 3 header relying on the
			// length of its own publish. The front must not splice before that message.
			"LongerPublishThenTypeThree", "rtmp://h/live?user=benw&pass=correct+horse",
			func(c *chunks, tcURL string) int {
				c.msg(0, 3, 0, 20, 0, amf(t, amf0.Data{"connect", 1.0, amf0.Object{{Key: "app", Value: "live"}, {Key: "tcUrl", Value: tcURL}}}, 150), 128, 0)
				c.msg(0, 8, 0, 20, 1, amf(t, amf0.Data{"publish", 5.0, nil, "concert", "live"}, 40), 128, 0)
				c.msg(3, 8, 0, 0, 0, amf(t, amf0.Data{"@noop", 0.0, nil}, 40), 128, 0)
				tail := len(c.b)
				c.msg(3, 8, 0, 0, 0, amf(t, amf0.Data{"@noop", 1.0, nil}, 40), 128, 0)
				c.msg(1, 8, 40, 9, 0, filler(500, 5), 128, 0)
				c.msg(3, 8, 0, 0, 0, filler(500, 6), 128, 0)
				return tail
			},
		},
		{
			// Extended timestamps on the publish's chunk stream: type 3 chunks carry the
			// 4-byte field, which MediaMTX expects only if its own state says so.
			"ExtendedTimestampsAroundThePublish", "rtmp://h/live",
			func(c *chunks, tcURL string) int {
				c.msg(0, 3, 0, 20, 0, amf(t, amf0.Data{"connect", 1.0, amf0.Object{{Key: "app", Value: "live"}, {Key: "tcUrl", Value: tcURL}}}, 150), 128, 0)
				pub := amf(t, amf0.Data{"publish", 5.0, nil, f.ActiveKey, "live"}, 300)
				c.msg(0, 4, ext, 20, 1, amf(t, amf0.Data{"FCPublish", 3.0, nil, f.ActiveKey}, len(pub)), 128, ext)
				c.msg(3, 4, 0, 0, 0, pub, 128, ext) // publish: type 3, so delta 0, extended field on every chunk
				tail := len(c.b)
				c.msg(3, 4, 0, 0, 0, amf(t, amf0.Data{"@noop", 0.0, nil}, len(pub)), 128, ext)
				c.msg(1, 4, ext, 9, 0, filler(700, 7), 128, ext) // a delta that needs the field
				c.msg(3, 4, 0, 0, 0, filler(700, 8), 128, ext)
				c.msg(2, 4, 33, 0, 0, filler(700, 9), 128, 0)
				c.msg(3, 4, 0, 0, 0, filler(700, 10), 128, 0)
				return tail
			},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			upRaw := make(chan []byte, 1)
			up, _ := startUpstream(t, func(u upConn) {
				tc := &teeConn{r: u.r, w: u.conn}
				defer func() { upRaw <- tc.bytes() }()
				_ = u.conn.SetDeadline(time.Now().Add(waitLong))
				if _, _, err := rtmphs.DoServer(tc, false); err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, tc)
			})
			ln, logs := startFront(t, &rtmpfront.Proxy{Upstream: up, Decider: fp, Kernel: kernel})
			c := dial(t, ln.Addr().String(), "127.0.0.1")
			go func() { _, _ = io.Copy(io.Discard, c) }()
			var cs chunks
			tailFrom := tt.build(&cs, tt.tcURL)
			// The tail goes once the front has spliced (with the kernel forward, it
			// then passes the kernel only: a half-closed client is pumped).
			before := kernel.Forwarded()
			write(t, c, handshake(), cs.b[:tailFrom])
			for deadline := time.Now().Add(waitLong); kernel != nil && kernel.Forwarded() == before; {
				if time.Now().After(deadline) {
					t.Fatalf("not spliced into the kernel forward; front log:\n%s", logs.String())
				}
				time.Sleep(5 * time.Millisecond)
			}
			write(t, c, cs.b[tailFrom:])
			if tcp, ok := c.(*net.TCPConn); ok {
				_ = tcp.CloseWrite()
			}
			var got []byte
			select {
			case got = <-upRaw:
			case <-time.After(waitLong):
				t.Fatal("MediaMTX's connection never ended")
			}
			if len(got) < len(handshake()) {
				t.Fatalf("MediaMTX got %d bytes; front log:\n%s", len(got), logs.String())
			}
			got = got[len(handshake()):] // C0, C1, C2 pass as they are
			if bytes.Contains(got, []byte(f.ActiveKey)) || bytes.Contains(got, []byte("horse")) {
				t.Errorf("MediaMTX received a credential")
			}
			want, werr := readRaw(cs.b)
			have, herr := readRaw(got)
			if !errors.Is(werr, io.EOF) || !errors.Is(herr, io.EOF) {
				t.Fatalf("readers stopped at %v (client) and %v (MediaMTX), want io.EOF", werr, herr)
			}
			if len(have) != len(want) {
				t.Fatalf("MediaMTX read %d messages, the client sent %d", len(have), len(want))
			}
			for i := range want {
				w, h := want[i], have[i]
				if w.ChunkStreamID != h.ChunkStreamID || w.Timestamp != h.Timestamp || w.Type != h.Type || w.MessageStreamID != h.MessageStreamID {
					t.Errorf("message %d: MediaMTX read csid %d ts %v type %d sid %d; client sent csid %d ts %v type %d sid %d",
						i, h.ChunkStreamID, h.Timestamp, h.Type, h.MessageStreamID, w.ChunkStreamID, w.Timestamp, w.Type, w.MessageStreamID)
				}
				if w.Type == 20 {
					checkCommand(t, fp, i, w.Body, h.Body, have)
				} else if !bytes.Equal(w.Body, h.Body) {
					t.Errorf("message %d: body differs", i)
				}
			}
			if tail := cs.b[tailFrom:]; !bytes.HasSuffix(got, tail) {
				t.Errorf("the %d bytes after the splice point did not arrive unchanged", len(tail))
			}
		})
	}
}

// checkCommand compares a command MediaMTX read with the client's: the names agree, and
// the rewritten ones say what MediaMTX must see.
func checkCommand(t *testing.T, fp frontPolicy, i int, want, have []byte, all []*rawmessage.Message) {
	t.Helper()
	w, err1 := amf0.Unmarshal(want)
	h, err2 := amf0.Unmarshal(have)
	if err1 != nil || err2 != nil || len(w) < 2 || len(h) < 2 || w[0] != h[0] || w[1] != h[1] {
		t.Errorf("message %d: command %v read as %v", i, w, h)
		return
	}
	switch w[0] {
	case "connect":
		obj := h[2].(amf0.Object)
		if tc, _ := obj.GetString("tcUrl"); tc != "rtmp://h/live" {
			t.Errorf("connect's tcUrl reached MediaMTX as %q", tc)
		}
	case "publish":
		name, _ := h[3].(string)
		u, err := url.Parse("rtmp://h/live/" + name)
		if err != nil {
			t.Fatal(err)
		}
		if v := fp.mtxAuth(t, "PROXY TCP4 127.0.0.1 127.0.0.1 1 2", u); !v.Allow || v.User != "benw" {
			t.Errorf("MediaMTX's auth call for the forwarded publish: %+v", v)
		}
	case "FCPublish":
		if h[3] != "" {
			t.Errorf("FCPublish names %q", h[3])
		}
	default:
		if !bytes.Equal(want, have) {
			t.Errorf("message %d: command %v changed", i, w[0])
		}
	}
}

// TestKickClosesSplicedClient: once spliced, the client is disconnected as soon as
// MediaMTX ends the connection (a kick through its API).
func TestKickClosesSplicedClient(t *testing.T) { forwardModes(t, kickClosesSplicedClient) }

func kickClosesSplicedClient(t *testing.T, kernel *rtmpfront.KernelForward) {
	fp, f := newFrontPolicy(t)
	kick := make(chan struct{})
	up, _ := startUpstream(t, func(u upConn) {
		tc := &teeConn{r: u.r, w: u.conn}
		sc := &gortmplib.ServerConn{RW: tc}
		if sc.Initialize() != nil || sc.AcceptConn() != nil || sc.AcceptAction() != nil {
			return
		}
		<-kick
		u.conn.Close()
	})
	ln, _ := startFront(t, &rtmpfront.Proxy{Upstream: up, Decider: fp, Kernel: kernel})
	pu, _ := url.Parse("rtmp://" + ln.Addr().String() + "/live#" + f.ActiveKey)
	c := &gortmplib.Client{URL: pu, Publish: true}
	if err := c.Initialize(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var once sync.Once
	kicked := func() { once.Do(func() { close(kick) }) }
	defer kicked()
	spliceable(t, c)
	if kernel != nil {
		waitActive(t, kernel, 1)
	}
	kicked()
	if !closedByFront(c.NetConn(), waitLong) {
		t.Errorf("client still connected %v after MediaMTX closed", waitLong)
	}
}

// TestDisconnectClosesPublisherAtFront: a kick through the front's Publishers closes the
// publisher's connection although MediaMTX keeps its end open (its API kick failed or
// never came), and only the kicked key's publish: another name's stays.
func TestDisconnectClosesPublisherAtFront(t *testing.T) {
	forwardModes(t, disconnectClosesPublisherAtFront)
}

func disconnectClosesPublisherAtFront(t *testing.T, kernel *rtmpfront.KernelForward) {
	fp, f := newFrontPolicy(t)
	alice, err := f.DB.CreateUser(t.Context(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	up, _ := startUpstream(t, func(u upConn) {
		tc := &teeConn{r: u.r, w: u.conn}
		sc := &gortmplib.ServerConn{RW: tc}
		if sc.Initialize() != nil || sc.AcceptConn() != nil || sc.AcceptAction() != nil {
			return
		}
		_, _ = io.Copy(io.Discard, u.r) // MediaMTX never closes
	})
	pubs := rtmpfront.NewPublishers()
	ln, _ := startFront(t, &rtmpfront.Proxy{Upstream: up, Decider: fp, Publishers: pubs, Kernel: kernel})
	publish := func(stream string) *gortmplib.Client {
		pu, _ := url.Parse("rtmp://" + ln.Addr().String() + "/live#" + stream)
		c := &gortmplib.Client{URL: pu, Publish: true}
		if err := c.Initialize(t.Context()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		spliceable(t, c)
		return c
	}
	kicked := publish(f.ActiveKey)
	seenBefore := time.Now()
	other := publish("alice?key=" + alice.StreamKey)
	deadline := time.Now().Add(waitLong)
	for pubs.Len() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if pubs.Len() != 2 {
		t.Fatalf("the front holds %d publishes, want 2", pubs.Len())
	}
	if kernel != nil {
		waitActive(t, kernel, 2)
	}
	if n := pubs.Disconnect("benw", "00000000", time.Now()); n != 0 {
		t.Fatalf("a kick of another key closed %d publishes", n)
	}
	if n := pubs.Disconnect("benw", stagedoor.KeyDigest(f.ActiveKey).Fingerprint(), time.Now()); n != 1 {
		t.Fatalf("the key's kick closed %d publishes, want 1", n)
	}
	if !closedByFront(kicked.NetConn(), waitLong) {
		t.Errorf("the kicked publisher is still connected %v later", waitLong)
	}
	if closedByFront(other.NetConn(), 300*time.Millisecond) {
		t.Error("the other name's publisher was disconnected too")
	}
	// A kick of what was live before alice published spares her publish: it came since.
	if n := pubs.Disconnect("alice", "", seenBefore); n != 0 {
		t.Fatalf("a kick of an earlier publisher of the name closed %d newer publishes", n)
	}
	if n := pubs.Disconnect("alice", "", time.Now()); n != 1 {
		t.Fatalf("a channel-wide kick of the other name closed %d publishes, want 1", n)
	}
	if !closedByFront(other.NetConn(), waitLong) {
		t.Errorf("the other publisher is still connected %v after its channel's kick", waitLong)
	}
	if kernel != nil {
		waitActive(t, kernel, 0)
	}
}

// spliceable writes media on the chunk stream gortmplib's client sent its commands on
// (as ffmpeg does), with a header that sets the length: once MediaMTX has read it, its
// reader and the front's agree on that stream again (the rewritten publish's length
// differs), and the front splices.
func spliceable(t *testing.T, c *gortmplib.Client) {
	t.Helper()
	if err := c.Write(&message.DataAMF0{ChunkStreamID: 3, MessageStreamID: 0x1000000,
		Payload: amf0.Data{"@setDataFrame", "onMetaData", amf0.Object{}}}); err != nil {
		t.Fatal(err)
	}
}

// waitActive waits until the kernel forwards n connections.
func waitActive(t *testing.T, kernel *rtmpfront.KernelForward, n int) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for kernel.Active() != n {
		if time.Now().After(deadline) {
			t.Fatalf("the kernel forwards %d connections, want %d", kernel.Active(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
