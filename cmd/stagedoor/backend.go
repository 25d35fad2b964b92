package main

import (
	"context"
	"database/sql"
	"time"

	"github.com/stagedoor/stagedoor"
	"github.com/stagedoor/stagedoor/audit"
	"github.com/stagedoor/stagedoor/health"
	"github.com/stagedoor/stagedoor/manage"
	"github.com/stagedoor/stagedoor/panel"
	"github.com/stagedoor/stagedoor/plugin"
	"github.com/stagedoor/stagedoor/policy"
	"github.com/stagedoor/stagedoor/store"
	"github.com/stagedoor/stagedoor/web"
	"github.com/stagedoor/stagedoor/webhook"
)

// backend is everything the service and the CLI need of a database: the union of what
// each consumer declares, plus the service's own needs. A second backend (PostgreSQL)
// slots in by satisfying it; openBackend chooses.
type backend interface {
	policy.Credentials
	plugin.Store
	manage.Store
	audit.Store
	webhook.Store
	web.Channels
	panel.Store
	health.Pinger
	// ProbeWrite renews this node's lease; stagedoor.ErrProbeInconclusive when this
	// process's own writers kept it waiting.
	ProbeWrite(ctx context.Context, node string) error
	// ClearLive marks every name of this node offline (run's MediaMTX starts empty).
	ClearLive(ctx context.Context, node string) error
	// RegisterNode records this node (its id and RTSP address for peers) with a lease.
	RegisterNode(ctx context.Context, id, rtspAddr string) error
	// SetLeaseTTL sets how long this node's lease lasts after each renewal.
	SetLeaseTTL(d time.Duration)
	// Nodes lists the nodes sharing the database, with their leases.
	Nodes(ctx context.Context) ([]stagedoor.Node, error)
	// SweepExpired frees the live names of nodes whose lease ran out.
	SweepExpired(ctx context.Context) (int64, error)
	// Listen reports the database's change notifications (PostgreSQL; none on SQLite).
	Listen(ctx context.Context, changed func(payload string)) error
	// AppendAudit writes audit entries at once (the CLI's, before it exits).
	AppendAudit(ctx context.Context, entries []stagedoor.AuditEntry) error
	// Stats reports the connection pool.
	Stats() sql.DBStats
	Close() error
}

var _ backend = (*store.DB)(nil)

// openBackend opens the database dsn names: a SQLite file or a PostgreSQL database.
func openBackend(ctx context.Context, dsn string) (backend, error) {
	return store.Open(ctx, dsn)
}
