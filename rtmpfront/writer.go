package rtmpfront

import (
	"encoding/binary"
	"errors"
	"io"
)

// chunkWriter writes whole messages to MediaMTX, in chunks of the client's chunk size, with
// headers chosen so that MediaMTX's reader ends each message in the state the client's own
// headers put the front's reader in (headerState, field for field; the length aside when
// the front changed the body). That is what lets the front stop parsing: once every chunk
// stream's state is equal on both sides and no message is half read, the client's next
// bytes mean to MediaMTX exactly what they meant to the front, whatever header compression
// (types 1, 2, 3) they use.
//
// gortmplib's own writer cannot do this: it chooses headers from the messages it has
// written, so a type 3 chunk of the client's that relies on a delta or an extended
// timestamp field the writer never sent would be misread.
type chunkWriter struct {
	w         io.Writer
	chunkSize uint32
	streams   [64]headerState // what MediaMTX's reader holds, by chunk stream ID
	buf       []byte
}

func newChunkWriter(w io.Writer) *chunkWriter {
	return &chunkWriter{w: w, chunkSize: 128}
}

// write sends body as one message on chunk stream id, where want is the client's state of
// that chunk stream after the message (its timestamp, delta, type, message stream ID and
// extended-timestamp flag are reproduced; its length is len(body)). The first chunk has a
// type 1 header when adding want's delta to what MediaMTX holds gives want's timestamp and
// flag, else a type 0 header; the rest are type 3 chunks. It is one Write.
func (w *chunkWriter) write(id byte, want headerState, body []byte) error {
	if len(body) > 0xFFFFFF {
		return errors.New("message longer than a chunk header can say") // never: limits are 10 MiB
	}
	s := &w.streams[id]
	n := uint32(len(body)) //nolint:gosec // checked above
	b := w.buf[:0]
	var field uint32 // the timestamp field: absolute (type 0) or delta (type 1)
	if s.started && s.streamID == want.streamID && s.timestamp+want.delta == want.timestamp &&
		want.extended == (want.delta >= 0xFFFFFF) {
		field = want.delta
		b = append(b, 1<<6|id)
		b = appendTimestamp24(b, field)
		b = append(appendBE24(b, n), want.typ)
		s.timestamp += field
		s.delta = field
	} else {
		field = want.timestamp
		b = append(b, id)
		b = appendTimestamp24(b, field)
		b = appendBE32(append(appendBE24(b, n), want.typ), want.streamID)
		s.started, s.timestamp, s.delta, s.streamID = true, field, 0, want.streamID
	}
	s.typ, s.bodyLen, s.extended = want.typ, n, field >= 0xFFFFFF
	if s.extended {
		b = appendBE32(b, field)
	}
	for first := true; first || len(body) > 0; first = false {
		if !first {
			b = append(b, 3<<6|id)
			if s.extended {
				// gortmplib's reader expects the field on every type 3 chunk of a
				// message whose header had it, and skips its value.
				b = appendBE32(b, field)
			}
		}
		k := min(len(body), int(w.chunkSize))
		b = append(b, body[:k]...)
		body = body[k:]
	}
	w.buf = b
	if cap(w.buf) > 1<<20 {
		w.buf = nil // a keyframe's buffer is not kept for the acknowledgements after it
	}
	_, err := w.w.Write(b)
	return err
}

// inSync reports whether MediaMTX's reader holds, on every chunk stream, the state the
// client's headers have given r's: then the client's next chunk means the same to both.
func (w *chunkWriter) inSync(r *chunkReader) bool {
	for id, cs := range r.streams {
		if cs != nil && cs.headerState != w.streams[id] {
			return false
		}
	}
	return true
}

// appendTimestamp24 appends a header's timestamp field: 0xFFFFFF when the extended field
// follows.
func appendTimestamp24(b []byte, v uint32) []byte { return appendBE24(b, min(v, 0xFFFFFF)) }

func appendBE24(b []byte, v uint32) []byte {
	var t [4]byte
	binary.BigEndian.PutUint32(t[:], v)
	return append(b, t[1:]...)
}

func appendBE32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }
