package health_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stagedoor/stagedoor/internal/testdb"

	"github.com/stagedoor/stagedoor"
	"github.com/stagedoor/stagedoor/health"
)

func TestHealthHandler(t *testing.T) {
	db := testdb.MustOpen(t)
	srv := httptest.NewServer(health.Handler(db))
	t.Cleanup(srv.Close)
	get := func(t *testing.T) (int, string) {
		t.Helper()
		r, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/healthz", nil)
		if err != nil {
			t.Fatalf("NewRequest: %v", err)
		}
		resp, err := srv.Client().Do(r)
		if err != nil {
			t.Fatalf("GET /healthz: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	if status, body := get(t); status != http.StatusOK || !strings.Contains(body, `"ok"`) {
		t.Errorf("open DB: %d %q, want 200 ok", status, body)
	}
	_ = db.Close()
	if status, body := get(t); status != http.StatusServiceUnavailable || !strings.Contains(body, "unhealthy") {
		t.Errorf("closed DB: %d %q, want 503 unhealthy", status, body)
	}
}

// TestBeforeFirstProbe: a Health that has not probed yet is unhealthy.
func TestBeforeFirstProbe(t *testing.T) {
	h := health.New(slog.New(slog.DiscardHandler), func(context.Context) error { return nil }, pingOK{})
	if h.Err() == nil {
		t.Error("Err() before the first probe = nil, want an error")
	}
	if h.Ping(t.Context()) == nil {
		t.Error("Ping() before the first probe = nil, want an error")
	}
}

type pingOK struct{}

func (pingOK) Ping(context.Context) error { return nil }

// TestInconclusiveAndShutdown: an inconclusive probe (a busy write queue) and a
// probe cut short by shutdown leave the health as it was.
func TestInconclusiveAndShutdown(t *testing.T) {
	var next atomic.Pointer[error]
	set := func(err error) { next.Store(&err) }
	h := health.New(slog.New(slog.DiscardHandler), func(ctx context.Context) error {
		if err := *next.Load(); err != nil {
			return err
		}
		return ctx.Err()
	}, pingOK{})
	set(nil)
	if err := h.Check(t.Context()); err != nil {
		t.Fatalf("first probe: %v", err)
	}
	set(stagedoor.ErrProbeInconclusive)
	_ = h.Check(t.Context())
	if err := h.Err(); err != nil {
		t.Errorf("after an inconclusive probe Err() = %v, want nil (unchanged)", err)
	}
	set(nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_ = h.Check(ctx)
	if err := h.Err(); err != nil {
		t.Errorf("after a probe cut short by shutdown Err() = %v, want nil (unchanged)", err)
	}
	set(errors.New("disk I/O error"))
	_ = h.Check(t.Context())
	if h.Err() == nil {
		t.Error("after a failing probe Err() = nil, want the error")
	}
	set(stagedoor.ErrProbeInconclusive)
	_ = h.Check(t.Context())
	if h.Err() == nil {
		t.Error("an inconclusive probe cleared a failure")
	}
}
