package main

import (
	"bytes"
	"io"
	"regexp"
	"strings"
	"sync"

	"github.com/stagedoor/stagedoor/store"
)

var (
	keyInText    = regexp.MustCompile(`sk_[A-Za-z0-9_-]{43}`)
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

func (r *redactor) redact(line string) string {
	for _, s := range r.secrets {
		line = strings.ReplaceAll(line, s, redactedMark)
	}
	line = keyInText.ReplaceAllStringFunc(line, func(k string) string { return "key:" + store.Fingerprint(k) })
	line = credInURL.ReplaceAllString(line, "${1}"+redactedMark+"@")
	return credInQuery.ReplaceAllString(line, "${1}="+redactedMark)
}
