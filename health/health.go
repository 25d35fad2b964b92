// Package health knows whether the database takes writes: a probe loop in the
// background, so that neither auth nor GET /healthz ever waits on a sick database.
package health

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/stagedoor/stagedoor"
)

// errNotProbed is the health before the first probe finishes: unknown reads as unhealthy.
var errNotProbed = errors.New("database not probed yet")

// Health tracks whether the database takes writes, by probing it in the background so
// that neither auth nor /healthz ever waits on a sick database. While a probe fails,
// every auth is denied (fail closed) and /healthz answers 503; the first probe that
// succeeds again restores both, with no restart.
type Health struct {
	logger *slog.Logger
	probe  func(context.Context) error
	read   Pinger
	// Timeout bounds one probe. Default 3 s.
	Timeout time.Duration
	last    atomic.Pointer[error]
}

// New returns a Health that probes with probe and pings read on /healthz.
func New(logger *slog.Logger, probe func(context.Context) error, read Pinger) *Health {
	h := &Health{logger: logger.With("component", "health"), probe: probe, read: read, Timeout: 3 * time.Second}
	h.set(errNotProbed)
	return h
}

func (h *Health) set(err error) { h.last.Store(&err) }

// Err is the result of the last probe: nil when the database took a write.
func (h *Health) Err() error { return *h.last.Load() }

// Check runs one probe now and records its result, logging every change of state.
func (h *Health) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, h.Timeout)
	defer cancel()
	err := h.probe(ctx)
	switch {
	case err != nil && errors.Is(ctx.Err(), context.Canceled):
		return err // shutting down: says nothing about the database (a deadline would)
	case errors.Is(err, stagedoor.ErrProbeInconclusive):
		h.logger.Debug("health probe inconclusive")
		return nil
	}
	prev := h.Err()
	h.set(err)
	switch {
	case err != nil && (prev == nil || errors.Is(prev, errNotProbed)):
		h.logger.Error("database unhealthy: denying every auth until it recovers", "err", err)
	case err == nil && prev != nil && !errors.Is(prev, errNotProbed):
		h.logger.Info("database healthy again")
	}
	return err
}

// Run probes every interval until ctx ends.
func (h *Health) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = h.Check(ctx)
		}
	}
}

// Ping makes Health the Pinger of Handler: the last write probe, then a read.
func (h *Health) Ping(ctx context.Context) error {
	if err := h.Err(); err != nil {
		return err
	}
	return h.read.Ping(ctx)
}

// Pinger is what the health check needs of the database for reads.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Handler answers GET /healthz: 200 when p answers within 2 s, else 503.
func Handler(p Pinger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		w.Header().Set("Content-Type", "application/json")
		if err := p.Ping(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"status":"unhealthy"}` + "\n"))
			return
		}
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
}
