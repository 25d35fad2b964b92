package rtmpfront

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib/pkg/bytecounter"
	"github.com/bluenviron/gortmplib/pkg/rawmessage"
)

// encode is what gortmplib's writer sends for msgs: the stream a real client sends, with
// its header compression (types 1, 2, 3) and extended timestamps.
func encode(t testing.TB, msgs ...*rawmessage.Message) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := rawmessage.NewWriter(&buf, bytecounter.NewWriter(&buf), false)
	for _, m := range msgs {
		if err := w.Write(m); err != nil {
			t.Fatal(err)
		}
		if m.Type == chunkSizeMessage && len(m.Body) == 4 {
			w.SetChunkSize(binary.BigEndian.Uint32(m.Body))
		}
	}
	return buf.Bytes()
}

func chunkSizeMsg(v uint32) *rawmessage.Message {
	return &rawmessage.Message{ChunkStreamID: 2, Type: chunkSizeMessage, Body: binary.BigEndian.AppendUint32(nil, v)}
}

func media(csid byte, typ uint8, ts time.Duration, size int) *rawmessage.Message {
	body := make([]byte, size)
	for i := range body {
		body[i] = byte(i*7 + size)
	}
	return &rawmessage.Message{ChunkStreamID: csid, Timestamp: ts, Type: typ, MessageStreamID: 1, Body: body}
}

// compareReaders reads data with chunkReader (under MediaMTX's own limits) and with
// gortmplib's rawmessage.Reader side by side, applying Set Chunk Size and Abort as
// MediaMTX's message reader does, and fails t where they differ. It returns what
// chunkReader read and the error it stopped at.
func compareReaders(t testing.TB, data []byte) ([]*rawmessage.Message, error) {
	t.Helper()
	ours := newChunkReader(bytes.NewReader(data))
	ours.limit(maxMessageSize, math.MaxInt, 0)
	theirs := rawmessage.NewReader(bytes.NewReader(data), bytecounter.NewReader(bytes.NewReader(nil)), nil)
	var got []*rawmessage.Message
	for {
		m1, err1 := ours.Read()
		if _, isLimit := errors.AsType[*limitError](err1); isLimit {
			return got, err1 // ours stops where gortmplib may go on
		}
		m2, err2 := theirs.Read()
		switch {
		case err1 != nil && err2 != nil:
			return got, err1
		case err1 != nil:
			t.Fatalf("message %d: chunkReader failed (%v), gortmplib read %+v", len(got), err1, m2)
		case err2 != nil:
			t.Fatalf("message %d: gortmplib failed (%v), chunkReader read %+v", len(got), err2, m1)
		}
		if m1.ChunkStreamID != m2.ChunkStreamID || m1.Timestamp != m2.Timestamp || m1.Type != m2.Type ||
			m1.MessageStreamID != m2.MessageStreamID || !bytes.Equal(m1.Body, m2.Body) {
			t.Fatalf("message %d differs:\nchunkReader %+v\ngortmplib   %+v", len(got), m1, m2)
		}
		got = append(got, m1)
		switch {
		case m1.Type == chunkSizeMessage:
			v, err := ours.setChunkSize(m1.Body)
			if err != nil {
				return got, err
			}
			if err := theirs.SetChunkSize(v); err != nil {
				t.Fatalf("gortmplib refused chunk size %d, which chunkReader accepted", v)
			}
		case m1.Type == abortMessage && len(m1.Body) == 4:
			ours.abort(m1.Body)
			theirs.AbortChunkStream(binary.BigEndian.Uint32(m1.Body))
		}
	}
}

// chunkSeeds are streams real clients send, and a few they could.
func chunkSeeds(t testing.TB) map[string][]byte {
	ext := time.Duration(0x1000000) * time.Millisecond // needs the extended timestamp field
	return map[string][]byte{
		"OneSmallMessage":   encode(t, media(3, commandAMF0Message, 0, 40)),
		"MultiChunkMessage": encode(t, media(3, commandAMF0Message, 0, 300)),
		"EmptyBody":         encode(t, media(3, 4, 0, 0), media(3, 4, 0, 0)),
		"ChunkSize4096ThenMedia": encode(t, chunkSizeMsg(4096),
			media(6, 9, 0, 9000), media(4, 8, 0, 300), media(6, 9, 33*time.Millisecond, 9000),
			media(4, 8, 23*time.Millisecond, 300), media(6, 9, 66*time.Millisecond, 5000)),
		"ChunkSize65536LargeFrame": encode(t, chunkSizeMsg(65536), media(6, 9, 0, 215_000), media(6, 9, 40*time.Millisecond, 70_000)),
		// Equal lengths and deltas: the writer falls back to type 2 and type 3 headers.
		"HeaderCompression": encode(t, media(4, 8, 0, 200), media(4, 8, 20*time.Millisecond, 200),
			media(4, 8, 40*time.Millisecond, 200), media(4, 8, 60*time.Millisecond, 200)),
		"ExtendedTimestamps": encode(t, media(6, 9, ext, 500), media(6, 9, ext+time.Hour, 500), media(6, 9, ext+2*time.Hour, 300)),
		"TimestampGoesBack":  encode(t, media(6, 9, time.Second, 10), media(6, 9, 0, 10)),
		// Two messages whose chunks alternate between chunk streams.
		"InterleavedChunkStreams": append(append(append(
			[]byte{0x04, 0, 0, 0, 0, 1, 0, 9, 0, 0, 0, 1}, bytes.Repeat([]byte{1}, 128)...),
			append([]byte{0x06, 0, 0, 5, 0, 0, 10, 8, 0, 0, 0, 1}, bytes.Repeat([]byte{2}, 10)...)...),
			append([]byte{0xC4}, bytes.Repeat([]byte{3}, 128)...)...),
		// Half a message on chunk stream 4, an Abort Message for it, then a new message.
		"AbortDropsUnfinished": append(append(append(
			[]byte{0x04, 0, 0, 0, 0, 1, 0, 9, 0, 0, 0, 1}, bytes.Repeat([]byte{1}, 128)...),
			encode(t, &rawmessage.Message{ChunkStreamID: 2, Type: abortMessage, Body: []byte{0, 0, 0, 4}})...),
			encode(t, media(4, 9, 0, 20))...),
		// The same, then a type 3 chunk: gortmplib forgot the length, and reads an empty
		// message.
		"AbortThenTypeThree": append(append(append(
			[]byte{0x04, 0, 0, 0, 0, 1, 0, 9, 0, 0, 0, 1}, bytes.Repeat([]byte{1}, 128)...),
			encode(t, &rawmessage.Message{ChunkStreamID: 2, Type: abortMessage, Body: []byte{0, 0, 0, 4}})...),
			0xC4, 0x04, 0, 0, 0, 0, 0, 5, 9, 0, 0, 0, 1, 1, 2, 3, 4, 5),
	}
}

// TestChunkReaderMatchesGortmplib: on real streams, and on many corrupted ones, chunkReader
// frames exactly the messages gortmplib's reader frames.
func TestChunkReaderMatchesGortmplib(t *testing.T) {
	seeds := chunkSeeds(t)
	for name, data := range seeds {
		t.Run(name, func(t *testing.T) {
			got, err := compareReaders(t, data)
			if !errors.Is(err, io.EOF) {
				t.Errorf("stopped at %v after %d messages, want io.EOF at the end", err, len(got))
			}
			if len(got) == 0 {
				t.Errorf("read no message")
			}
		})
	}
	t.Run("CorruptedStreamsAgree", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(1, 2))
		for _, data := range seeds {
			for range 300 {
				b := bytes.Clone(data)
				for range 1 + rng.IntN(4) {
					b[rng.IntN(len(b))] = byte(rng.Uint32())
				}
				b = b[:rng.IntN(len(b)+1)]
				compareReaders(t, b)
			}
		}
	})
}

// FuzzChunkReader: chunkReader and gortmplib's reader agree on any input.
func FuzzChunkReader(f *testing.F) {
	for _, data := range chunkSeeds(f) {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) { compareReaders(t, data) })
}

// TestChunkReaderLimits: each limit stops the reader at the chunk header that would break
// it, having consumed no more than the header.
func TestChunkReaderLimits(t *testing.T) {
	type0 := func(csid byte, typ uint8, bodyLen uint32) []byte {
		return []byte{csid, 0, 0, 0, byte(bodyLen >> 16), byte(bodyLen >> 8), byte(bodyLen), typ, 0, 0, 0, 0}
	}
	ack := encode(t, &rawmessage.Message{ChunkStreamID: 2, Type: 3, Body: []byte{0, 0, 0, 1}})
	for _, tt := range []struct {
		name       string
		data       []byte
		maxMessage int
		maxUnfin   int
		maxRead    int64
		wantLimit  bool
		wantMsgs   int   // messages framed, a refused Set Chunk Size included
		maxRead2   int64 // bytes consumed at most, a header byte that never came included
	}{
		{"ChunkSizeZeroRefused", encode(t, chunkSizeMsg(0)), 1 << 20, 1 << 20, 0, true, 1, 16},
		{"ChunkSize127Refused", encode(t, chunkSizeMsg(127)), 1 << 20, 1 << 20, 0, true, 1, 16},
		{"ChunkSizeOverMediaMTXMaxRefused", encode(t, chunkSizeMsg(maxChunkSize+1)), 1 << 20, 1 << 20, 0, true, 1, 16},
		{"ChunkSizeTopBitRefused", encode(t, chunkSizeMsg(0x80001000)), 1 << 20, 1 << 20, 0, true, 1, 16},
		{"ChunkSizeBadLengthRefused", encode(t, &rawmessage.Message{ChunkStreamID: 2, Type: chunkSizeMessage, Body: []byte{0, 0, 16}}), 1 << 20, 1 << 20, 0, true, 1, 15},
		{"ChunkSize128Accepted", encode(t, chunkSizeMsg(128)), 1 << 20, 1 << 20, 0, false, 1, 17},
		{"ChunkSize4096Accepted", encode(t, chunkSizeMsg(4096)), 1 << 20, 1 << 20, 0, false, 1, 17},
		{"ChunkSize65536Accepted", encode(t, chunkSizeMsg(65536)), 1 << 20, 1 << 20, 0, false, 1, 17},
		{"ChunkSizeMediaMTXMaxAccepted", encode(t, chunkSizeMsg(maxChunkSize)), 1 << 20, 1 << 20, 0, false, 1, 17},
		{"MessageOverLimitCutAtHeader", append(type0(3, commandAMF0Message, 0xFFFFFF), make([]byte, 4096)...), 32 << 10, 32 << 10, 0, true, 0, 12},
		{"MessageAtLimitAccepted", encode(t, media(3, commandAMF0Message, 0, 1000)), 1000, 1000, 0, false, 1, 1100},
		{"ByteBudgetCutsManyMessages", bytes.Repeat(ack, 1000), 1 << 20, 1 << 20, 1600, true, 100, 1600},
		// Three streams each half way through a 300-byte message.
		{"UnfinishedBoundOverStreams", append(append(append(type0(4, 9, 300), make([]byte, 128)...),
			append(type0(5, 9, 300), make([]byte, 128)...)...), append(type0(6, 9, 300), make([]byte, 128)...)...),
			1 << 20, 300, 0, true, 0, 2*140 + 12},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newChunkReader(bytes.NewReader(tt.data))
			r.limit(tt.maxMessage, tt.maxUnfin, tt.maxRead)
			var msgs int
			var err error
			for {
				var m *rawmessage.Message
				if m, err = r.Read(); err != nil {
					break
				}
				msgs++
				if m.Type == chunkSizeMessage {
					if _, err = r.setChunkSize(m.Body); err != nil {
						break
					}
				}
			}
			_, isLimit := errors.AsType[*limitError](err)
			if isLimit != tt.wantLimit {
				t.Errorf("stopped at %v; want a limit error: %v", err, tt.wantLimit)
			}
			if msgs != tt.wantMsgs {
				t.Errorf("read %d messages, want %d", msgs, tt.wantMsgs)
			}
			if r.read > tt.maxRead2 {
				t.Errorf("consumed %d bytes, want at most %d", r.read, tt.maxRead2)
			}
		})
	}
}

// TestChunkReaderAllocatesWhatArrives: a header announcing a large message with a large
// chunk size costs nothing until the bytes come.
func TestChunkReaderAllocatesWhatArrives(t *testing.T) {
	data := append(encode(t, chunkSizeMsg(maxChunkSize)),
		append([]byte{0x06, 0, 0, 0, 0x9F, 0xFF, 0xFF, 9, 0, 0, 0, 1}, make([]byte, 1000)...)...)
	r := newChunkReader(bytes.NewReader(data))
	r.limit(maxMessageSize, maxUnfinished, 0)
	if m, err := r.Read(); err != nil {
		t.Fatal(err)
	} else if _, err := r.setChunkSize(m.Body); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Read(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("Read = %v, want io.ErrUnexpectedEOF", err)
	}
	if got := cap(r.streams[6].body); got > 2*readStep {
		t.Errorf("body capacity %d after 1000 bytes of a 10 MiB message, want at most %d", got, 2*readStep)
	}
}

func TestClientKey(t *testing.T) {
	tcp := func(ip string) net.Addr { return &net.TCPAddr{IP: net.ParseIP(ip), Port: 1} }
	for _, tt := range []struct {
		name string
		a, b net.Addr
		same bool
	}{
		{"IPv4DifferentHostsDiffer", tcp("198.51.100.1"), tcp("198.51.100.2"), false},
		{"IPv4MappedIsIPv4", tcp("::ffff:198.51.100.1"), tcp("198.51.100.1"), true},
		{"IPv6SameSlash64Shares", tcp("2001:db8:1:2::1"), tcp("2001:db8:1:2:ffff::9"), true},
		{"IPv6OtherSlash64Differs", tcp("2001:db8:1:2::1"), tcp("2001:db8:1:3::1"), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := clientKey(tt.a) == clientKey(tt.b); got != tt.same {
				t.Errorf("clientKey(%v) = %q, clientKey(%v) = %q; same = %v, want %v",
					tt.a, clientKey(tt.a), tt.b, clientKey(tt.b), got, tt.same)
			}
		})
	}
}
