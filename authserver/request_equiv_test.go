package authserver_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stagedoor/stagedoor/authserver"
	"github.com/stagedoor/stagedoor/internal/testutil"
)

var referenceFields = []string{"user", "password", "token", "ip", "action", "path", "protocol", "id", "query", "userAgent"}

// decodeReference is the decoder DecodeRequest replaced, built on encoding/json: a scan
// for duplicate and case-variant security keys, then a decode, then nothing after it.
// DecodeRequest must accept and reject exactly what it does, with the same fields.
func decodeReference(body []byte) (authserver.Request, error) {
	if !utf8.Valid(body) {
		return authserver.Request{}, errors.New("invalid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil {
		return authserver.Request{}, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return authserver.Request{}, errors.New("not an object")
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return authserver.Request{}, err
		}
		key, _ := tok.(string)
		for _, f := range referenceFields {
			if !strings.EqualFold(key, f) {
				continue
			}
			if key != f || seen[f] {
				return authserver.Request{}, errors.New("ambiguous")
			}
			seen[f] = true
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return authserver.Request{}, err
		}
	}
	var r authserver.Request
	dec = json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&r); err != nil {
		return authserver.Request{}, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return authserver.Request{}, errors.New("trailing data")
	}
	return r, nil
}

func sameDecoding(t *testing.T, body []byte) {
	t.Helper()
	got, gotErr := authserver.DecodeRequest(body)
	want, wantErr := decodeReference(body)
	if (gotErr == nil) != (wantErr == nil) {
		t.Fatalf("DecodeRequest(%.200q): error %v, encoding/json: %v", body, gotErr, wantErr)
	}
	if gotErr != nil {
		return
	}
	if (got.ID == nil) != (want.ID == nil) || got.ID != nil && *got.ID != *want.ID {
		t.Fatalf("DecodeRequest(%.200q): id %v, encoding/json %v", body, got.ID, want.ID)
	}
	got.ID, want.ID = nil, nil
	if got != want {
		t.Fatalf("DecodeRequest(%.200q) = %+v, encoding/json %+v", body, got, want)
	}
}

func equivalenceSeeds() []string {
	s := []string{
		testutil.MediaMTXAuthBody("publish", "live/benw", "rtmp"),
		`{"action":"read","path":"live/benw","protocol":"hls","newField":{"a":[1,2.5e-3,-0,true,false,null,"x"]},"other":true}`,
		`{"action":"read","x":1,"x":2}`, `{"action":null,"id":null}`, `{"id":"abc"}`, `{}`, ` { } `, `{"a":[]}`, `{"a":{}}`,
		`{"path":"live/benw\u0000\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"}`, `{"path":"\ud800"}`, `{"path":"\ud800\u0041"}`,
		`{"path":"\udc00\ud800"}`, `{"path":"\ud800\ud800\udc00"}`, `{"path":"\u12"}`, `{"path":"\x"}`, `{"p\u0061th":"x"}`,
		`{"path":"a","p\u0061th":"b"}`, `{"Action":"x"}`, `{"u\u017fer":"x"}`, `{"to\u212aen":"x"}`, "{\"u\u017fer\":1}",
		`{"action":1}`, `{"action":true}`, `{"action":[1}`, `{"action":{"a":1}}`, `{"id":5}`, `{"id":{}}`,
		`{"a":01}`, `{"a":-}`, `{"a":1.}`, `{"a":1e}`, `{"a":1e+}`, `{"a":.5}`, `{"a":-0.0E-0}`, `{"a":tru}`, `{"a":nul}`,
		`{"a":1,}`, `{,}`, `{"a"}`, `{"a":}`, `{"a" 1}`, `{"a":1 "b":2}`, `[1]`, `"x"`, `null`, `1`, ``, ` `,
		`{"action":"read"}x`, `{"action":"read"}{}`, `{"action":"read"} `, "{\"a\":\"\x01\"}", "{\"a\":\"\t\"}",
		"{\"a\":\"\xff\"}", `{"a":"unterminated`, `{"a":"x\`, `{"a":"\u00"}`, "{\"a\":1}\n\r\t ",
		`{"action":"x","action":null}`, `{"id":null,"id":null}`, `{"a":[[[[]]]],"b":{"c":{"d":[{}]}}}`,
	}
	for _, n := range []int{9997, 9998, 9999, 10000, 10001} {
		s = append(s, `{"a":`+strings.Repeat("[", n)+strings.Repeat("]", n)+`}`)
		s = append(s, `{"a":`+strings.Repeat(`{"b":`, n)+"1"+strings.Repeat("}", n)+`}`)
	}
	return s
}

// TestDecodeRequestMatchesEncodingJSON: the one-pass decoder accepts and rejects what
// encoding/json with the key scan did, and returns the same fields.
func TestDecodeRequestMatchesEncodingJSON(t *testing.T) {
	for _, body := range equivalenceSeeds() {
		sameDecoding(t, []byte(body))
	}
}

func FuzzDecodeRequestMatchesEncodingJSON(f *testing.F) {
	for _, s := range equivalenceSeeds() {
		if len(s) < 1024 { // the deep nesting cases stay in the test: they slow mutation
			f.Add([]byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) { sameDecoding(t, body) })
}

func BenchmarkDecodeRequest(b *testing.B) {
	body := []byte(testutil.MediaMTXAuthBody("publish", "live/sk_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "rtmp"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := authserver.DecodeRequest(body); err != nil {
			b.Fatal(err)
		}
	}
}
