package authserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/stagedoor/stagedoor/policy"
)

// Request mirrors the JSON body of MediaMTX v1.21.0's external HTTP auth
// (internal/auth/manager.go). Unknown fields are tolerated: MediaMTX keeps adding them.
type Request struct {
	User      string  `json:"user"`
	Password  string  `json:"password"`
	Token     string  `json:"token"`
	IP        string  `json:"ip"`
	Action    string  `json:"action"`
	Path      string  `json:"path"`
	Protocol  string  `json:"protocol"`
	ID        *string `json:"id"`
	Query     string  `json:"query"`
	UserAgent string  `json:"userAgent"`
}

// securityFields are the keys whose duplicates or case variants make a body ambiguous:
// encoding/json matches keys case-insensitively and keeps the last duplicate, so
// {"action":"read","ACTION":"publish"} would decode as publish.
var securityFields = []string{"user", "password", "token", "ip", "action", "path", "protocol", "id", "query", "userAgent"}

// Attempt is the request as the policy sees it.
func (r Request) Attempt() policy.Attempt {
	a := policy.Attempt{Action: r.Action, Path: r.Path, Protocol: r.Protocol, User: r.User,
		Password: r.Password, Token: r.Token, Query: r.Query, IP: r.IP}
	if r.ID != nil {
		a.SessionID = *r.ID
	}
	return a
}

var errAmbiguous = errors.New("ambiguous request body")

// DecodeRequest parses a MediaMTX auth body strictly: one JSON object, valid UTF-8,
// no duplicate or case-variant security fields, string-typed fields, nothing after it.
func DecodeRequest(body []byte) (Request, error) {
	if !utf8.Valid(body) {
		return Request{}, errors.New("body is not valid UTF-8")
	}
	if err := scanKeys(body); err != nil {
		return Request{}, err
	}
	var r Request
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&r); err != nil {
		return Request{}, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Request{}, errors.New("trailing data after the JSON object")
	}
	return r, nil
}

// scanKeys walks the top-level object and rejects duplicate or case-variant security keys.
func scanKeys(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errors.New("body is not a JSON object")
	}
	seen := make(map[string]bool, len(securityFields))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		for _, f := range securityFields {
			if !strings.EqualFold(key, f) {
				continue
			}
			if key != f || seen[f] {
				return errAmbiguous
			}
			seen[f] = true
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return err
		}
	}
	return nil
}
