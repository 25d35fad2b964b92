package store_test

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stagedoor/stagedoor"
	"github.com/stagedoor/stagedoor/internal/testdb"
	"github.com/stagedoor/stagedoor/store"
	"github.com/stagedoor/stagedoor/store/pgtest"
)

// The tests here check what the two backends share beyond the conformance suite: how a
// DSN chooses one, that the schemas are the same, and opening one database twice at once.

func TestParseDSN(t *testing.T) {
	for _, tt := range []struct {
		dsn  string
		want store.Backend
		ok   bool
	}{
		{"data/stagedoor.db", store.SQLite, true},
		{"/var/lib/stagedoor/stagedoor.db", store.SQLite, true},
		{"./odd:name.db", store.SQLite, true},
		{"host=db.example dbname=stagedoor password=hunter2hunter2", 0, false},
		{"password=hunter2hunter2", 0, false},
		{"postgres://db.example/stagedoor", store.Postgres, true},
		{"postgresql://u@db.example:5432/stagedoor?sslmode=verify-full", store.Postgres, true},
		{"", 0, false},
		{"postgres:stagedoor", 0, false},
		{"Postgres:/x", 0, false},
		{"mysql://db.example/stagedoor", 0, false},
		{"file:stagedoor.db", 0, false},
		{"odd:name.db", 0, false},
		{" postgres://db.example/x", 0, false},
	} {
		got, err := store.ParseDSN(tt.dsn)
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("ParseDSN(%q): the error quotes the password: %v", tt.dsn, err)
		}
		if tt.ok && (err != nil || got != tt.want) {
			t.Errorf("ParseDSN(%q) = %v, %v; want %v", tt.dsn, got, err, tt.want)
		}
		if !tt.ok {
			if _, isInvalid := errors.AsType[*stagedoor.InvalidError](err); !isInvalid {
				t.Errorf("ParseDSN(%q) = %v, %v; want an *InvalidError", tt.dsn, got, err)
			}
		}
	}
}

// TestOpenPostgresRedactsPassword: a server that cannot be reached fails Open with an
// error that does not quote the DSN's password, in either place a URL can carry one.
func TestOpenPostgresRedactsPassword(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	_ = l.Close()
	const secret = "pw-0123456789-secret"
	for _, dsn := range []string{
		"postgres://stagedoor:" + secret + "@" + closed + "/db?sslmode=disable&connect_timeout=5",
		"postgres://stagedoor@" + closed + "/db?sslmode=disable&connect_timeout=5&password=" + secret,
		"postgres://stagedoor:" + secret + "@" + closed + "/db?sslmode=bogus",
	} {
		db, err := store.Open(t.Context(), dsn)
		if err == nil {
			_ = db.Close()
			t.Fatalf("Open(%s) succeeded, want an error", store.RedactDSN(dsn))
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("Open error quotes the password: %v", err)
		}
		if got := store.RedactDSN(dsn); strings.Contains(got, secret) || !strings.Contains(got, "[redacted]") {
			t.Errorf("RedactDSN = %q, want the password replaced", got)
		}
	}
}

// TestOpenUnknownSchemeCreatesNothing: a DSN naming neither backend creates no file.
func TestOpenUnknownSchemeCreatesNothing(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	for _, dsn := range []string{"postgres:x/stagedoor.db", "mysql://db.example/x", "file:stagedoor.db"} {
		if db, err := store.Open(t.Context(), dsn); err == nil {
			_ = db.Close()
			t.Errorf("Open(%q) succeeded, want an error", dsn)
		}
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*")); len(m) > 0 {
		t.Errorf("Open created %v", m)
	}
}

// schemaOf lists "table.column" of every table, and the recorded migration names.
func schemaOf(t *testing.T, db *store.DB, columnsQuery string) (columns, migrations []string) {
	t.Helper()
	read := func(q string) []string {
		rows, err := db.SQLForTest().QueryContext(t.Context(), q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			out = append(out, s)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		slices.Sort(out)
		return out
	}
	return read(columnsQuery), read(`SELECT name FROM schema_migrations`)
}

// TestSchemaParity: the SQLite and the PostgreSQL migrations give the same tables with
// the same columns, recorded under the same migration names.
func TestSchemaParity(t *testing.T) {
	lite := testdb.MustOpen(t)
	pg := testdb.MustOpenPostgres(t)
	lc, lm := schemaOf(t, lite, `SELECT m.name || '.' || p.name FROM sqlite_master m, pragma_table_info(m.name) p
		WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'`)
	pc, pm := schemaOf(t, pg, `SELECT table_name || '.' || column_name FROM information_schema.columns
		WHERE table_schema = current_schema()`)
	if !slices.Equal(lc, pc) {
		t.Errorf("columns differ:\n\tsqlite   %v\n\tpostgres %v", lc, pc)
	}
	files, _ := filepath.Glob("migrations/*.sql")
	if len(lm) != len(files) || !slices.Equal(lm, pm) {
		t.Errorf("recorded migrations differ:\n\tsqlite   %v\n\tpostgres %v\n\tfiles    %v", lm, pm, files)
	}
	for _, name := range lm {
		if !strings.HasPrefix(name, "migrations/") || strings.Contains(name, "postgres") {
			t.Errorf("migration recorded as %q, want migrations/NNNN_x.sql", name)
		}
	}
}

// TestOpenPostgresTwiceAtOnce: two replicas opening one new database at the same moment
// apply each migration once (the advisory lock), and see each other's writes.
func TestOpenPostgresTwiceAtOnce(t *testing.T) {
	dsn := pgtest.DSN(t)
	dbs := make([]*store.DB, 4)
	errs := make([]error, len(dbs))
	var wg sync.WaitGroup
	for i := range dbs {
		wg.Go(func() { dbs[i], errs[i] = store.Open(context.Background(), dsn) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Open %d: %v", i, err)
		}
		t.Cleanup(func() { _ = dbs[i].Close() })
	}
	_, names := schemaOf(t, dbs[0], `SELECT 'x'`)
	files, _ := filepath.Glob("migrations/*.sql")
	if len(names) != len(files) {
		t.Errorf("schema_migrations = %v, want each of %d migrations once", names, len(files))
	}
	nu := mustCreate(t, dbs[1], "benw")
	if o, err := dbs[2].UserByKeyDigest(t.Context(), stagedoor.KeyDigest(nu.StreamKey)); err != nil || o.UserName != "benw" {
		t.Errorf("another handle: UserByKeyDigest = %+v, %v; want benw", o, err)
	}
	gen := policyGen(t, dbs[0])
	if err := dbs[3].SetActive(t.Context(), "benw", false); err != nil {
		t.Fatal(err)
	}
	if got := policyGen(t, dbs[0]); got == gen {
		t.Errorf("generation = %d after a ban through another handle, want it moved", got)
	}
}

// TestPingBothBackends: Ping answers nil on an open database and an error once closed.
func TestPingBothBackends(t *testing.T) {
	testdb.Each(t, func(t *testing.T, b testdb.Backend) {
		db := b.Open(t)
		if err := db.Ping(t.Context()); err != nil {
			t.Fatalf("Ping(open): %v", err)
		}
		_ = db.Close()
		if err := db.Ping(t.Context()); err == nil {
			t.Error("Ping(closed) = nil, want an error")
		}
	})
}

// TestPostgresSessionDefaults: every pooled connection ends a transaction left idle
// (which would hold the write turn) and names itself, unless the DSN says otherwise.
func TestPostgresSessionDefaults(t *testing.T) {
	check := func(db *store.DB, want map[string]string) {
		t.Helper()
		for k, v := range want {
			var got string
			if err := db.SQLForTest().QueryRowContext(t.Context(), `SELECT current_setting($1)`, k).Scan(&got); err != nil {
				t.Fatalf("current_setting(%s): %v", k, err)
			}
			if got != v {
				t.Errorf("%s = %q, want %q", k, got, v)
			}
		}
	}
	dsn := pgtest.DSN(t)
	db, err := store.Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	check(db, map[string]string{"idle_in_transaction_session_timeout": "30s", "application_name": "stagedoor"})
	if got := db.Stats().MaxOpenConnections; got != 8 {
		t.Errorf("pool size = %d, want 8 (the connection budget per replica)", got)
	}

	own, err := store.Open(t.Context(), dsn+"&application_name=mine&idle_in_transaction_session_timeout=1min")
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	check(own, map[string]string{"idle_in_transaction_session_timeout": "1min", "application_name": "mine"})
}
