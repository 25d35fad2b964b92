package main

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stagedoor/stagedoor/store/pgtest"
)

// dbSecret is the password of the DSNs below: it must appear in no output and no error.
const dbSecret = "s3cret-db-pw"

// emptyDir fails t unless dir holds nothing: the command created no file or folder.
func emptyDir(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("created %q in the working directory, want nothing", e.Name())
	}
}

// noSecret fails t when the password shows in r.
func noSecret(t *testing.T, r cliResult) {
	t.Helper()
	for _, s := range []string{r.stdout, r.stderr, errText(r.err)} {
		if strings.Contains(s, dbSecret) {
			t.Errorf("the DSN's password is in the output: %q", s)
		}
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestDBRefusesOtherSchemes: a --db value with a URL scheme other than postgres:// is
// refused with exit code 2, quoting neither the value nor its password, and creates
// nothing. Before, `--db postgres:…` (a typo) or `mysql://…` silently created a SQLite
// file under a folder named after the scheme.
func TestDBRefusesOtherSchemes(t *testing.T) {
	for _, dsn := range []string{
		"mysql://u:" + dbSecret + "@db.example/stagedoor",
		"postgres:" + dbSecret + "@db.example/stagedoor",
		" postgres://u:" + dbSecret + "@db.example/stagedoor",
		"postgresql:/db.example/stagedoor",
		"file:stagedoor.db",
		"sqlite:///var/lib/stagedoor.db",
	} {
		for _, via := range []string{"flag", "env"} {
			t.Run(via+"/"+strings.TrimSpace(strings.SplitN(dsn, ":", 2)[0]), func(t *testing.T) {
				dir := t.TempDir()
				t.Chdir(dir)
				env := newEnv(t)
				args := []string{"user", "list"}
				if via == "flag" {
					args = append(args, "--db", dsn)
				} else {
					env["STAGEDOOR_DB"] = dsn
				}
				r := runCLI(t, env, args...)
				if r.err == nil || exitCode(r.err) != 2 {
					t.Fatalf("user list with --db %s: err %v (exit %d), want a usage error", via, r.err, exitCode(r.err))
				}
				if !strings.Contains(r.err.Error(), "scheme") && !strings.Contains(r.err.Error(), "postgres://") {
					t.Errorf("error %q does not say what is wrong", r.err)
				}
				noSecret(t, r)
				emptyDir(t, dir)
			})
		}
	}
}

// TestDBRefusesPasswordInArgv: a PostgreSQL URL with a password in --db (visible to
// every local user in ps) is refused before any connection, saying where to put it;
// the same URL in STAGEDOOR_DB is accepted (here it then fails to connect to a closed
// port), and no error quotes the password.
func TestDBRefusesPasswordInArgv(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	_ = l.Close()
	for _, dsn := range []string{
		"postgres://stagedoor:" + dbSecret + "@" + closed + "/stagedoor?sslmode=disable&connect_timeout=5",
		"postgresql://stagedoor@" + closed + "/stagedoor?sslmode=disable&connect_timeout=5&password=" + dbSecret,
	} {
		t.Run("flag", func(t *testing.T) {
			dir := t.TempDir()
			t.Chdir(dir)
			r := runCLI(t, newEnv(t), "user", "list", "--db", dsn)
			if r.err == nil || exitCode(r.err) != 2 || !strings.Contains(r.err.Error(), "STAGEDOOR_DB") ||
				!strings.Contains(r.err.Error(), "PGPASSFILE") {
				t.Errorf("user list --db URL-with-password: %v (exit %d), want a usage error naming STAGEDOOR_DB and PGPASSFILE",
					r.err, exitCode(r.err))
			}
			noSecret(t, r)
			emptyDir(t, dir)
		})
		t.Run("env", func(t *testing.T) {
			dir := t.TempDir()
			t.Chdir(dir)
			env := newEnv(t)
			env["STAGEDOOR_DB"] = dsn
			r := runCLI(t, env, "user", "list")
			if r.err == nil || exitCode(r.err) == 2 {
				t.Errorf("user list with the URL in STAGEDOOR_DB and no server: %v (exit %d), want a connection error",
					r.err, exitCode(r.err))
			}
			noSecret(t, r)
			emptyDir(t, dir)
			// -h prints the default, which comes from the environment.
			r = runCLI(t, env, "user", "list", "-h")
			if !strings.Contains(r.stderr, "-db") {
				t.Errorf("user list -h does not list -db:\n%s", r.stderr)
			}
			noSecret(t, r)
		})
	}
}

// TestCLIOnPostgres: the CLI works on a PostgreSQL URL, from the flag (no password:
// the test server trusts loopback) and from the environment.
func TestCLIOnPostgres(t *testing.T) {
	dsn := pgtest.DSN(t)
	dir := t.TempDir()
	t.Chdir(dir)
	env := newEnv(t)
	if r := runCLI(t, env, "user", "add", "benw", "--db", dsn); r.err != nil {
		t.Fatalf("user add --db postgres://…: %v\n%s", r.err, r.stderr)
	}
	env["STAGEDOOR_DB"] = dsn
	r := runCLI(t, env, "user", "list")
	if r.err != nil || !strings.Contains(r.stdout, "benw") {
		t.Fatalf("user list with STAGEDOOR_DB=postgres://…: %v, stdout %q", r.err, r.stdout)
	}
	if us := users(t, env); len(us) != 1 || us[0].Name != "benw" {
		t.Errorf("users in PostgreSQL = %+v, want benw", us)
	}
	emptyDir(t, dir)
}

// TestServeOnPostgres: the service starts on PostgreSQL, and /healthz answers 200, so
// its write probe (the node lease) and its read both work there.
func TestServeOnPostgres(t *testing.T) {
	s := startTestService(t, "--db", pgtest.DSN(t))
	s.stop()
}

// TestNodeIDRefused: a --node-id outside the grammar is a usage error before anything is
// created.
func TestNodeIDRefused(t *testing.T) {
	for _, id := range []string{"", "two words", "a/b", strings.Repeat("x", 64)} {
		dbPath := filepath.Join(t.TempDir(), "stagedoor.db")
		err := run(t.Context(), []string{"stagedoor", "serve", "--node-id", id, "--db", dbPath,
			"--internal-addr", "127.0.0.1:0", "--public-addr", "127.0.0.1:0"}, serveEnv, strings.NewReader(""), io.Discard, io.Discard)
		if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), "node id") {
			t.Errorf("serve --node-id %q: %v (exit %d), want a usage error about the node id", id, err, exitCode(err))
		}
		if _, statErr := os.Stat(dbPath); !errors.Is(statErr, os.ErrNotExist) {
			t.Errorf("--node-id %q: database file after refusal: stat err = %v, want not exist", id, statErr)
		}
	}
}
