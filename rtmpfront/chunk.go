package rtmpfront

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/bluenviron/gortmplib/pkg/rawmessage"
)

// Limits of the chunk stream (RTMP spec §5.3, §5.4.1) that hold for every connection.
const (
	// minChunkSize is the spec's "SHOULD be at least 128 bytes", which SRS enforces too
	// (ossrs/srs#541). Smaller chunks cost no memory here, but the front passes the
	// client's chunk size on to MediaMTX, whose reader allocates per chunk.
	minChunkSize = 128
	// maxChunkSize is the largest chunk size MediaMTX v1.21.0 accepts (gortmplib's
	// rawmessage.Reader): it would close the connection on anything larger. The spec allows
	// up to 0x7FFFFFFF; OBS and ffmpeg send 4096. A large chunk size costs nothing up front
	// here: a body grows with the bytes that arrive.
	maxChunkSize = 10 << 20
	// maxMessageSize is the largest message after publish: MediaMTX's own limit
	// (gortmplib's maxBodySize), room for any keyframe.
	maxMessageSize = 10 << 20
	// maxUnfinished bounds the bytes of unfinished messages over all chunk streams after
	// publish: one message of the largest size and room for audio around it. Encoders
	// send each message's chunks back to back, so they keep at most one unfinished;
	// without a bound, 62 chunk streams could hold 620 MiB.
	maxUnfinished = 16 << 20
	// readStep is the most a body grows by before its bytes have arrived.
	readStep = 64 << 10
)

// limitError is a client breaking one of the front's limits. The connection is closed and
// a warning logged; other read errors are the client's or the network's business.
type limitError struct{ msg string }

func (e *limitError) Error() string { return e.msg }

func limitf(format string, args ...any) error {
	return &limitError{msg: fmt.Sprintf(format, args...)}
}

// chunkReader reads a client's RTMP messages. Its framing is that of gortmplib's
// rawmessage.Reader, message for message (TestChunkReaderMatchesGortmplib holds it to
// that), so MediaMTX is sent the messages it would have read from the client itself. It
// differs in what it costs: every limit is checked at a chunk's header, before the chunk is
// read, and a body grows with the bytes that arrive, never to what a header announces.
// gortmplib allocates each chunk whole as its header arrives and keeps every chunk as a
// separate slice until the message is complete: with chunk size 0 a 1-byte chunk header
// costs it a slice header, and a message never completes.
type chunkReader struct {
	br        *bufio.Reader
	chunkSize uint32
	streams   [64]*chunkStream // by chunk stream ID; 0 and 1 are the extended forms, refused

	// Limits, set by limit as the connection moves on.
	maxMessage    int   // the largest body a message may have
	maxUnfinished int   // bytes of unfinished messages over all chunk streams
	maxRead       int64 // bytes the reader may consume in all; 0: no limit

	read       int64 // bytes consumed
	unfinished int   // bytes of unfinished messages held
	hdr        [11]byte
}

// headerState is what one chunk stream's headers have said so far: the state, field for
// field, that gortmplib's reader keeps per chunk stream. The front reads it for each
// client chunk stream and keeps it for what it has written to MediaMTX (chunkWriter); where
// the two are equal, MediaMTX would read the client's next chunk on that stream as the
// client meant it.
type headerState struct {
	started   bool // a type 0 chunk has set every field
	timestamp uint32
	delta     uint32 // the timestamp delta a type 3 chunk starting a message adds
	typ       uint8
	streamID  uint32
	bodyLen   uint32
	extended  bool // its type 3 chunks carry an extended timestamp
}

// chunkStream is one chunk stream of the client's.
type chunkStream struct {
	headerState
	body []byte // of the message being received; empty between messages
}

func newChunkReader(r io.Reader) *chunkReader {
	return &chunkReader{br: bufio.NewReaderSize(r, 4096), chunkSize: 128}
}

// limit sets the largest message, the unfinished bytes held and the bytes the reader may
// consume in all (0: no limit).
func (r *chunkReader) limit(maxMessage, maxUnfinished int, maxRead int64) {
	r.maxMessage, r.maxUnfinished, r.maxRead = maxMessage, maxUnfinished, maxRead
}

// take counts n more bytes against maxRead before they are read.
func (r *chunkReader) take(n int) error {
	if r.maxRead > 0 && r.read+int64(n) > r.maxRead {
		return limitf("more than %d bytes before publish or play", r.maxRead)
	}
	r.read += int64(n)
	return nil
}

func (r *chunkReader) header(n int) ([]byte, error) {
	if err := r.take(n); err != nil {
		return nil, err
	}
	_, err := io.ReadFull(r.br, r.hdr[:n])
	return r.hdr[:n], err
}

// timestampField reads an extended timestamp when the 24-bit field v says one follows.
func (r *chunkReader) timestampField(v uint32) (uint32, error) {
	if v < 0xFFFFFF {
		return v, nil
	}
	h, err := r.header(4)
	if err != nil {
		return 0, err
	}
	return be32(h), nil
}

// Read returns the next complete message.
func (r *chunkReader) Read() (*rawmessage.Message, error) {
	for {
		h, err := r.header(1)
		if err != nil {
			return nil, err
		}
		format, id := h[0]>>6, h[0]&0x3F
		if id < 2 {
			return nil, errors.New("extended chunk stream IDs are not supported") // nor by MediaMTX
		}
		cs := r.streams[id]
		if cs == nil {
			cs = &chunkStream{}
			r.streams[id] = cs
		}
		if err := r.readHeader(cs, format); err != nil {
			return nil, err
		}
		if msg, err := r.readBody(cs); msg != nil || err != nil {
			if msg != nil {
				msg.ChunkStreamID = id
			}
			return msg, err
		}
	}
}

// readHeader reads the rest of a chunk's header (spec §5.3.1.2) into cs.
func (r *chunkReader) readHeader(cs *chunkStream, format byte) error {
	inProgress := len(cs.body) > 0
	if format != 3 && inProgress {
		return fmt.Errorf("received type %d chunk but expected type 3 chunk", format)
	}
	if format != 0 && !inProgress && !cs.started {
		return fmt.Errorf("received type %d chunk without previous chunk", format)
	}
	switch format {
	case 0:
		h, err := r.header(11)
		if err != nil {
			return err
		}
		ts := be24(h)
		cs.bodyLen, cs.typ, cs.streamID = be24(h[3:]), h[6], be32(h[7:])
		if ts, err = r.timestampField(ts); err != nil {
			return err
		}
		cs.started, cs.timestamp, cs.delta, cs.extended = true, ts, 0, ts >= 0xFFFFFF
	case 1, 2:
		n := 7
		if format == 2 {
			n = 3
		}
		h, err := r.header(n)
		if err != nil {
			return err
		}
		delta := be24(h)
		if format == 1 {
			cs.bodyLen, cs.typ = be24(h[3:]), h[6]
		}
		if delta, err = r.timestampField(delta); err != nil {
			return err
		}
		cs.timestamp += delta
		cs.delta, cs.extended = delta, delta >= 0xFFFFFF
	default:
		if cs.extended {
			if _, err := r.header(4); err != nil {
				return err
			}
		}
		if !inProgress {
			cs.timestamp += cs.delta
		}
	}
	if !inProgress && int(cs.bodyLen) > r.maxMessage {
		return limitf("message of %d bytes, more than %d", cs.bodyLen, r.maxMessage)
	}
	return nil
}

// readBody reads one chunk's part of cs's message, and returns the message once it is
// complete.
func (r *chunkReader) readBody(cs *chunkStream) (*rawmessage.Message, error) {
	n := min(int(cs.bodyLen)-len(cs.body), int(r.chunkSize))
	if r.unfinished+n > r.maxUnfinished {
		return nil, limitf("more than %d bytes of unfinished messages", r.maxUnfinished)
	}
	if err := r.take(n); err != nil {
		return nil, err
	}
	r.unfinished += n
	for n > 0 {
		step := min(n, readStep)
		cs.body = grow(cs.body, step, int(cs.bodyLen))
		got, err := io.ReadFull(r.br, cs.body[len(cs.body):len(cs.body)+step])
		cs.body = cs.body[:len(cs.body)+got]
		if err != nil {
			return nil, err
		}
		n -= step
	}
	if len(cs.body) < int(cs.bodyLen) {
		return nil, nil
	}
	r.unfinished -= len(cs.body)
	msg := &rawmessage.Message{
		Timestamp:       time.Duration(cs.timestamp) * time.Millisecond,
		Type:            cs.typ,
		MessageStreamID: cs.streamID,
		Body:            cs.body,
	}
	cs.body = nil
	return msg, nil
}

// grow makes room for n more bytes in b, doubling up to total so that a body costs at most
// twice what has arrived.
func grow(b []byte, n, total int) []byte {
	if cap(b)-len(b) >= n {
		return b
	}
	nb := make([]byte, len(b), min(max(2*cap(b), len(b)+n, 4096), total))
	copy(nb, b)
	return nb
}

// setChunkSize applies a Set Chunk Size message (spec §5.4.1) to the chunks that follow
// it and returns the new size.
func (r *chunkReader) setChunkSize(body []byte) (uint32, error) {
	if len(body) != 4 {
		return 0, limitf("set chunk size message of %d bytes", len(body)) // MediaMTX refuses it too
	}
	v := be32(body)
	if v < minChunkSize || v > maxChunkSize {
		return 0, limitf("chunk size %d outside [%d, %d]", v, minChunkSize, maxChunkSize)
	}
	r.chunkSize = v
	return v, nil
}

// abort applies an Abort Message (spec §5.4.2): the chunk stream's unfinished message is
// dropped, and its length forgotten, as gortmplib's reader does (a type 3 chunk starting
// the next message then starts an empty one).
func (r *chunkReader) abort(body []byte) {
	if len(body) != 4 {
		return
	}
	id := be32(body)
	if id < 2 || id > 63 || r.streams[id] == nil || len(r.streams[id].body) == 0 {
		return
	}
	cs := r.streams[id]
	r.unfinished -= len(cs.body)
	cs.body, cs.bodyLen = nil, 0
}

func be24(b []byte) uint32 { return uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2]) }

func be32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}
