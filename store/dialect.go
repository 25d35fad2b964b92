package store

import (
	"errors"
	"net/url"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stagedoor/stagedoor"
)

// The two dialects share every query text (database/sql, $n placeholders, RETURNING,
// upserts); what differs is here and in the DDL: how a DSN names its backend, how errors
// are classified, and the few fragments a query adds on one side only.

// Backend is the database a DSN names.
type Backend int

// The backends Open knows.
const (
	SQLite Backend = iota
	Postgres
)

func (b Backend) String() string {
	if b == Postgres {
		return "postgres"
	}
	return "sqlite"
}

// urlScheme matches a leading URL scheme (RFC 3986: a letter, then letters, digits, +, -
// or .), followed by a colon.
var urlScheme = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*:`)

// libpqKeywords matches a libpq keyword=value connection string (host=… dbname=…).
var libpqKeywords = regexp.MustCompile(`(^|\s)(host|hostaddr|port|dbname|user|password|sslmode|passfile|service)=`)

// ParseDSN says which backend dsn names: a postgres:// or postgresql:// URL is
// PostgreSQL; anything else without a URL scheme is the path of a SQLite file. Any other
// scheme (mysql://, file:, a mistyped postgres:) is an *InvalidError that quotes only the
// scheme, so that a password in the DSN never reaches an error.
func ParseDSN(dsn string) (Backend, error) {
	switch {
	case dsn == "":
		return 0, &stagedoor.InvalidError{Field: "database", Reason: "empty"}
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		if _, err := url.Parse(dsn); err != nil {
			return 0, &stagedoor.InvalidError{Field: "database", Reason: "not a valid postgres:// URL"}
		}
		return Postgres, nil
	}
	if m := urlScheme.FindString(dsn); m != "" {
		return 0, &stagedoor.InvalidError{Field: "database", Reason: "unsupported scheme " + strings.TrimSuffix(m, ":") +
			": give a SQLite file path or a postgres:// URL (for a file whose name holds a colon, write ./NAME)"}
	}
	if libpqKeywords.MatchString(dsn) {
		// host=… password=…: libpq's keyword form, which would otherwise become a SQLite file
		// whose name holds the password. The value is not quoted: it may hold one.
		return 0, &stagedoor.InvalidError{Field: "database", Reason: "looks like a libpq keyword=value string: " +
			"give a postgres:// URL (or a SQLite file path)"}
	}
	if strings.Contains(dsn, "://") {
		return 0, &stagedoor.InvalidError{Field: "database", Reason: "a URL, but not postgres:// (no space before it?): " +
			"give a SQLite file path or a postgres:// URL"}
	}
	return SQLite, nil
}

// HasPassword reports whether a PostgreSQL DSN carries a password, in its user info or
// as a password= parameter. The CLI refuses one in argv, which every local user can read.
func HasPassword(dsn string) bool {
	u, err := url.Parse(dsn)
	if err != nil {
		return false
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			return true
		}
	}
	return u.Query().Has("password")
}

// dsnSecrets are the forms in which dsn's password could appear in a driver's message.
func dsnSecrets(dsn string) []string {
	u, err := url.Parse(dsn)
	if err != nil {
		return nil
	}
	var out []string
	if u.User != nil {
		if p, ok := u.User.Password(); ok && p != "" {
			out = append(out, p, url.QueryEscape(p), url.PathEscape(p))
		}
	}
	if p := u.Query().Get("password"); p != "" {
		out = append(out, p, url.QueryEscape(p))
	}
	return out
}

// RedactDSN is dsn with every form of its password replaced, for messages and -h output.
func RedactDSN(dsn string) string {
	for _, s := range dsnSecrets(dsn) {
		dsn = strings.ReplaceAll(dsn, s, "[redacted]")
	}
	return dsn
}

// redactedError is an error whose text had the DSN's password cut out; errors.Is and
// errors.As still see the driver's error.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redact replaces every form of dsn's password in err's text.
func redact(err error, dsn string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	for _, s := range dsnSecrets(dsn) {
		msg = strings.ReplaceAll(msg, s, "[redacted]")
	}
	if msg == err.Error() {
		return err
	}
	return &redactedError{msg: msg, err: err}
}

// isUniqueViolation recognises a unique-constraint failure of either backend.
func isUniqueViolation(err error) bool {
	if err == nil {
		return false
	}
	if pe, ok := errors.AsType[*pgconn.PgError](err); ok {
		return pe.Code == "23505"
	}
	return strings.Contains(err.Error(), "UNIQUE constraint failed")
}

// retryable reports a PostgreSQL serialization failure (40001) or deadlock (40P01): the
// transaction changed nothing and may simply run again.
func retryable(err error) bool {
	pe, ok := errors.AsType[*pgconn.PgError](err)
	return ok && (pe.Code == "40001" || pe.Code == "40P01")
}
