// Package plugin is the MediaMTX-facing glue: the availability hooks MediaMTX executes,
// the alias that republishes live/<key> as live/<name>, and the reconciler that keeps
// live state and aliases equal to what MediaMTX really carries.
package plugin

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"time"

	"github.com/stagedoor/stagedoor"
)

// Event kinds, named after MediaMTX v1.21.0's runOnAvailable / runOnUnavailable.
const (
	EventAvailable   = "available"
	EventUnavailable = "unavailable"
)

// Environment read by `stagedoor hook`. MediaMTX sets the MTX_* variables; `stagedoor run`
// sets the STAGEDOOR_* ones in MediaMTX's environment, which hooks inherit. Nothing
// secret is ever passed in argv.
const (
	EnvHookURL    = "STAGEDOOR_HOOK_URL"
	EnvHookSecret = "STAGEDOOR_HOOK_SECRET" //nolint:gosec // the variable's name, not a secret
)

// HookSecretHeader carries the shared secret from the hook process to the service.
const HookSecretHeader = "X-Stagedoor-Hook-Secret" //nolint:gosec // a header name, not a secret

// Event is one availability change of a MediaMTX path.
type Event struct {
	Kind       string `json:"event"`
	Path       string `json:"path"`
	SourceID   string `json:"source_id"`
	SourceType string `json:"source_type"`
	// KeyDigest is the hex SHA-256 of a stream key given in the publisher's query
	// (live/<name>?key=…), computed by the hook process so the key never leaves it.
	KeyDigest string `json:"key_digest,omitempty"`
}

func (e Event) keyDigest() (stagedoor.Digest, bool) {
	var d stagedoor.Digest
	b, err := hex.DecodeString(e.KeyDigest)
	if err != nil || len(b) != len(d) {
		return d, false
	}
	copy(d[:], b)
	return d, true
}

// Validate checks the event's shape; its errors never name the path.
func (e Event) Validate() error {
	switch {
	case e.Kind != EventAvailable && e.Kind != EventUnavailable:
		return errors.New("unknown hook event")
	case len(e.Path) > 256:
		return errors.New("path too long")
	case len(e.SourceID) > 128 || len(e.SourceType) > 64:
		return errors.New("source too long")
	case e.KeyDigest != "" && len(e.KeyDigest) != 64:
		return errors.New("malformed key digest")
	}
	if kind, _ := stagedoor.ParsePath(e.Path); kind == stagedoor.PathOther {
		return errors.New("path is not a Stagedoor path")
	}
	return nil
}

// EventFromEnv builds the event of `stagedoor hook KIND` from MediaMTX's hook environment.
func EventFromEnv(kind string, getenv func(string) string) (Event, error) {
	ev := Event{
		Kind:       kind,
		Path:       getenv("MTX_PATH"),
		SourceID:   getenv("MTX_SOURCE_ID"),
		SourceType: getenv("MTX_SOURCE_TYPE"),
	}
	// MTX_QUERY is url.QueryEscape(raw query) since MediaMTX v1.18.1.
	if raw, err := url.QueryUnescape(getenv("MTX_QUERY")); err == nil {
		if q, err := url.ParseQuery(raw); err == nil && stagedoor.IsKey(q.Get("key")) {
			d := stagedoor.KeyDigest(q.Get("key"))
			ev.KeyDigest = hex.EncodeToString(d[:])
		}
	}
	return ev, ev.Validate()
}

// Notify posts ev to the service's hook endpoint and returns once it was accepted.
func Notify(ctx context.Context, hookURL, secret string, ev Event) error {
	body, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, hookURL, bytes.NewReader(body))
	if err != nil {
		return errors.New("bad hook url")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HookSecretHeader, secret)
	res, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("post hook event: %w", err)
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 4096))
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("post hook event: status %d", res.StatusCode)
	}
	return nil
}

// EventHandler receives validated hook events.
type EventHandler interface {
	HandleEvent(ctx context.Context, ev Event) error
}

// NewHookHandler serves POST hook events from `stagedoor hook` on the internal listener.
// It requires the shared secret, a JSON body and no Origin header (no drive-by posts
// from a browser tab), and treats the event only as a hint (see Manager.HandleEvent).
func NewHookHandler(logger *slog.Logger, secret string, h EventHandler) http.Handler {
	logger = logger.With("component", "hook")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		switch {
		case r.Method != http.MethodPost:
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		case r.Header.Get("Origin") != "":
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		case secret == "" || subtle.ConstantTimeCompare([]byte(r.Header.Get(HookSecretHeader)), []byte(secret)) != 1:
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		case mt != "application/json":
			http.Error(w, "unsupported media type", http.StatusUnsupportedMediaType)
			return
		}
		var ev Event
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
		if err := dec.Decode(&ev); err != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		if err := ev.Validate(); err != nil {
			logger.Warn("hook event refused", "err", err)
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		if err := h.HandleEvent(r.Context(), ev); err != nil {
			logger.Error("hook event failed", "event", ev.Kind, "err", err)
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}
