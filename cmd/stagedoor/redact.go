package main

import (
	"bytes"
	"io"
	"regexp"
	"strings"
	"sync"

	"github.com/stagedoor/stagedoor"
)

var (
	keyInText = regexp.MustCompile(`sk_[A-Za-z0-9_-]{43}`)
	// A mangled key (truncated, one character short, its prefix cut) is still most of a
	// secret: MediaMTX logs the path of a refused or unconfigured publish. Any run of the
	// key alphabet longer than a username (25) goes, UUIDs (MediaMTX's ids) excepted,
	// and so does anything that starts like a key.
	keyLikeRun   = regexp.MustCompile(`[A-Za-z0-9_-]{26,}`)
	keyPrefix    = regexp.MustCompile(`sk_[A-Za-z0-9_-]{4,}`)
	uuidShape    = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	credInQuery  = regexp.MustCompile(`(?i)\b(pass|password|token|jwt|key)=[^&\s"']+`)
	credInURL    = regexp.MustCompile(`([a-z]+://[^:/@\s]+:)[^@\s]+@`)
	redactedMark = "[redacted]"
)

// redactor passes another process's output through line by line with stream keys
// replaced by their fingerprints and every known secret, URL password or credential
// query value removed. MediaMTX names key paths in its logs; this keeps them out of ours.
type redactor struct {
	mu      sync.Mutex
	out     io.Writer
	secrets []string
	buf     []byte
}

func newRedactor(out io.Writer, secrets []string) *redactor {
	var s []string
	for _, x := range secrets {
		if x != "" {
			s = append(s, x)
		}
	}
	return &redactor{out: out, secrets: s}
}

func (r *redactor) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf = append(r.buf, p...)
	for {
		i := bytes.IndexByte(r.buf, '\n')
		if i < 0 {
			break
		}
		if _, err := io.WriteString(r.out, r.redact(string(r.buf[:i+1]))); err != nil {
			return len(p), err
		}
		r.buf = r.buf[i+1:]
	}
	// A line with no end for 64 KiB is flushed so that memory stays bounded.
	if len(r.buf) > 64<<10 {
		_, _ = io.WriteString(r.out, r.redact(string(r.buf))+"\n")
		r.buf = r.buf[:0]
	}
	return len(p), nil
}

// Flush writes any partial last line.
func (r *redactor) Flush() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.buf) > 0 {
		_, _ = io.WriteString(r.out, r.redact(string(r.buf))+"\n")
		r.buf = r.buf[:0]
	}
}

// redact runs each pattern only on a line that could match it: under `run` every line
// of ours passes through here too (one per auth decision), and most match none.
func (r *redactor) redact(line string) string {
	for _, s := range r.secrets {
		line = strings.ReplaceAll(line, s, redactedMark)
	}
	if strings.Contains(line, "sk_") {
		line = keyInText.ReplaceAllStringFunc(line, func(k string) string { return "key:" + stagedoor.Fingerprint(k) })
	}
	if hasKeyLikeRun(line) {
		line = keyLikeRun.ReplaceAllStringFunc(line, func(run string) string {
			if uuidShape.MatchString(run) {
				return run
			}
			return redactedMark
		})
	}
	if strings.Contains(line, "sk_") {
		line = keyPrefix.ReplaceAllString(line, "sk_"+redactedMark)
	}
	if strings.Contains(line, "://") {
		line = credInURL.ReplaceAllString(line, "${1}"+redactedMark+"@")
	}
	if strings.IndexByte(line, '=') >= 0 {
		line = credInQuery.ReplaceAllString(line, "${1}="+redactedMark)
	}
	return line
}

// hasKeyLikeRun reports whether line has what keyLikeRun matches: 26 or more characters
// of the key alphabet in a row.
func hasKeyLikeRun(line string) bool {
	n := 0
	for i := 0; i < len(line); i++ {
		c := line[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' {
			if n++; n >= 26 {
				return true
			}
		} else {
			n = 0
		}
	}
	return false
}
