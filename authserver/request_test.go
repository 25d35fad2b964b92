package authserver_test

import (
	"strings"
	"testing"

	"github.com/stagedoor/stagedoor"

	"github.com/stagedoor/stagedoor/authserver"
	"github.com/stagedoor/stagedoor/internal/testutil"
)

func TestDecodeRequestMediaMTXBody(t *testing.T) {
	key := stagedoor.NewKey()
	got, err := authserver.DecodeRequest([]byte(testutil.MediaMTXAuthBody("publish", "live/"+key, "rtmp")))
	if err != nil {
		t.Fatalf("DecodeRequest: %v", err)
	}
	id := testutil.MediaMTXID
	want := authserver.Request{
		IP: "127.0.0.1", Action: "publish", Path: "live/" + key, Protocol: "rtmp",
		ID: &id, UserAgent: "FMLE/3.0 (compatible; Lavf59.27.100)",
	}
	if got.ID == nil || *got.ID != *want.ID {
		t.Fatalf("ID = %v, want %q", got.ID, *want.ID)
	}
	got.ID, want.ID = nil, nil
	if got != want {
		t.Errorf("request = %+v, want %+v", got, want)
	}
}

func TestDecodeRequest(t *testing.T) {
	for _, tt := range []struct {
		name   string
		body   string
		wantOK bool
		check  func(authserver.Request) bool // for accepted bodies
	}{
		{"MediaMTXBodyAccepted", testutil.MediaMTXAuthBody("read", "live/benw", "hls"), true,
			func(r authserver.Request) bool {
				return r.Action == "read" && r.Path == "live/benw" && r.Protocol == "hls"
			}},
		{"UnknownFieldsAccepted", `{"action":"read","path":"live/benw","protocol":"hls","newField":{"a":[1,2]},"other":true}`, true,
			func(r authserver.Request) bool { return r.Action == "read" && r.Path == "live/benw" }},
		{"DuplicateUnknownFieldAccepted", `{"action":"read","x":1,"x":2}`, true,
			func(r authserver.Request) bool { return r.Action == "read" }},
		{"NullIDAccepted", `{"action":"read","id":null}`, true,
			func(r authserver.Request) bool { return r.ID == nil }},
		{"NullStringLeavesEmpty", `{"action":null,"path":null}`, true,
			func(r authserver.Request) bool { return r.Action == "" && r.Path == "" }},
		{"EscapedNULKept", `{"action":"read","path":"live/benw\u0000"}`, true,
			func(r authserver.Request) bool { return r.Path == "live/benw\x00" }},
		{"EscapedKeyNameAccepted", `{"p\u0061th":"live/benw"}`, true,
			func(r authserver.Request) bool { return r.Path == "live/benw" }},
		{"NestedSecurityNameAccepted", `{"action":"read","extra":{"action":"publish","ACTION":"x"}}`, true,
			func(r authserver.Request) bool { return r.Action == "read" }},
		{"TrailingWhitespaceAccepted", `{"action":"read"}` + " \n\t", true,
			func(r authserver.Request) bool { return r.Action == "read" }},
		{"EmptyObjectAccepted", `{}`, true,
			func(r authserver.Request) bool { return r == authserver.Request{} }},

		{"EmptyBodyRejected", ``, false, nil},
		{"WhitespaceBodyRejected", `   `, false, nil},
		{"TruncatedRejected", `{"action":"publish","path":"live/`, false, nil},
		{"TruncatedAfterObjectKeyRejected", `{"action"`, false, nil},
		{"TrailingGarbageRejected", `{"action":"read"}garbage`, false, nil},
		{"SecondObjectRejected", `{"action":"read"}{"action":"publish"}`, false, nil},
		{"CaseVariantActionRejected", `{"action":"read","ACTION":"publish","path":"live/benw","protocol":"hls"}`, false, nil},
		{"CaseVariantAloneRejected", `{"Action":"publish"}`, false, nil},
		{"CaseVariantUserAgentRejected", `{"useragent":"x"}`, false, nil},
		{"UnicodeFoldUserRejected", `{"u\u017fer":"admin"}`, false, nil},            // ſ folds to s
		{"UnicodeFoldTokenRejected", `{"to\u212aen":"x"}`, false, nil},              // Kelvin sign folds to k
		{"UnicodeFoldLiteralUserRejected", "{\"u\u017fer\":\"admin\"}", false, nil}, // raw UTF-8, not an escape
		{"DuplicatePathRejected", `{"action":"read","path":"live/benw","path":"live/sk_x"}`, false, nil},
		{"DuplicateEscapedPathRejected", `{"path":"live/benw","p\u0061th":"live/x"}`, false, nil},
		{"DuplicatePasswordRejected", `{"password":"a","password":"b"}`, false, nil},
		{"NumberActionRejected", `{"action":1}`, false, nil},
		{"BoolPathRejected", `{"path":true}`, false, nil},
		{"ObjectUserRejected", `{"user":{"a":1}}`, false, nil},
		{"ArrayProtocolRejected", `{"protocol":["rtmp"]}`, false, nil},
		{"NumberIDRejected", `{"id":5}`, false, nil},
		{"InvalidUTF8Rejected", "{\"action\":\"read\",\"path\":\"live/\xff\xfe\"}", false, nil},
		{"InvalidUTF8InKeyRejected", "{\"\xc3\":1}", false, nil},
		{"TopLevelArrayRejected", `[{"action":"publish"}]`, false, nil},
		{"TopLevelStringRejected", `"publish"`, false, nil},
		{"TopLevelNullRejected", `null`, false, nil},
		{"TopLevelNumberRejected", `1`, false, nil},
		{"NestedBracketsRejected", strings.Repeat("[", 10000), false, nil},
		{"SingleQuotesRejected", `{'action':'read'}`, false, nil},
		{"UnquotedKeyRejected", `{action:"read"}`, false, nil},
		{"TrailingCommaRejected", `{"action":"read",}`, false, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, err := authserver.DecodeRequest([]byte(tt.body))
			if gotOK := err == nil; gotOK != tt.wantOK {
				t.Fatalf("DecodeRequest(%.80q) error = %v, want ok=%v", tt.body, err, tt.wantOK)
			}
			if !tt.wantOK {
				if r != (authserver.Request{}) {
					t.Errorf("rejected body returned a non-zero request %+v", r)
				}
				return
			}
			if !tt.check(r) {
				t.Errorf("DecodeRequest(%.80q) = %+v, not what the body says", tt.body, r)
			}
		})
	}
}
