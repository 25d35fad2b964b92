package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/stagedoor/stagedoor"

	"github.com/stagedoor/stagedoor/manage"
)

// cliFlags are the flags every user/key command shares.
type cliFlags struct {
	db   dbFlag
	json bool
	urls stagedoor.URLs
	// internal is the running service's internal address, told about policy changes.
	internal string
	// user passwd
	password string
	cost     int
	// stream add / list
	user   string
	noAuth bool
	// user invite
	panelURL string
	stderr   io.Writer
}

func newCLIFlags(name string, getenv func(string) string, stderr io.Writer) (*flag.FlagSet, *cliFlags) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &cliFlags{stderr: stderr}
	dbVar(fs, &c.db, getenv)
	fs.BoolVar(&c.json, "json", false, "machine-readable output")
	fs.StringVar(&c.internal, "internal-addr", envOr(getenv, envInternalAddr, "127.0.0.1:9090"),
		"the running service's internal address, told at once about bans and key changes (env "+envInternalAddr+")")
	registerURLs(fs, getenv, &c.urls)
	return fs, c
}

func (c *cliFlags) open(ctx context.Context) (backend, error) { return c.db.open(ctx) }

// cliActor is the operator at the command line, for the audit trail.
var cliActor = manage.Actor{Via: manage.ViaCLI}

// operator opens the database and the operator-action service on it: every change the
// CLI makes is audited (written before the command exits) and signalled to a running
// service. Call the returned close when done.
func (c *cliFlags) operator(ctx context.Context) (*manage.Service, func(), error) {
	db, err := c.open(ctx)
	if err != nil {
		return nil, nil, err
	}
	op := &manage.Service{
		Store: db,
		URLs:  c.urls,
		Record: func(ctx context.Context, e stagedoor.AuditEntry) error {
			return db.AppendAudit(ctx, []stagedoor.AuditEntry{e})
		},
		Changed: c.notify,
		Logger:  slog.New(slog.NewTextHandler(c.stderr, nil)),
	}
	return op, func() { _ = db.Close() }, nil
}

// notify tells a running service that credentials changed, so that its auth cache drops
// what it knew and live streams are re-checked before this command returns. It is best
// effort: with no service running there is nothing to tell, and a service that cannot be
// reached notices the change itself within 250 ms.
func (c *cliFlags) notify(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+c.internal+"/internal/policy-changed", nil)
	if err != nil {
		return
	}
	req.Header.Set(policyNotifyHeader, "1")
	if res, err := http.DefaultClient.Do(req); err == nil {
		res.Body.Close()
	}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func cmdUser(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError("usage: stagedoor user add|list|ban|unban|passwd|invite [flags] [NAME]")
	}
	sub := args[0]
	fs, c := newCLIFlags("user "+sub, getenv, stderr)
	if sub == "passwd" {
		fs.StringVar(&c.password, "password", "", "the new password (visible in ps while the command runs: prefer stdin, the default)")
		fs.IntVar(&c.cost, "cost", stagedoor.DefaultCost, "bcrypt cost, 10 to 12")
	}
	if sub == "invite" {
		fs.StringVar(&c.panelURL, "panel-url", envOr(getenv, envPanelURL, "http://localhost:8080/panel/"),
			"the control panel's public address, printed in the link (env "+envPanelURL+")")
	}
	pos, err := parseFlags(fs, args[1:])
	if err != nil {
		return err
	}
	switch sub {
	case "add":
		name, err := oneName(pos, "user add")
		if err != nil {
			return err
		}
		if err := stagedoor.ValidUsername(name); err != nil {
			return err // before the database is created
		}
		op, done, err := c.operator(ctx)
		if err != nil {
			return err
		}
		defer done()
		nu, err := op.CreateUser(ctx, cliActor, name)
		if err != nil {
			return err
		}
		return printNewKey(stdout, c, "Created channel", nu.Name, nu.StreamKey, nu.Fingerprint)
	case "list":
		if len(pos) != 0 {
			return usageError("user list takes no arguments")
		}
		op, done, err := c.operator(ctx)
		if err != nil {
			return err
		}
		defer done()
		users, err := op.Users(ctx)
		if err != nil {
			return err
		}
		return printUsers(stdout, c, users)
	case "ban", "unban":
		name, err := oneName(pos, "user "+sub)
		if err != nil {
			return err
		}
		op, done, err := c.operator(ctx)
		if err != nil {
			return err
		}
		defer done()
		if err := op.SetActive(ctx, cliActor, name, sub == "unban"); err != nil {
			return err
		}
		if c.json {
			return writeJSON(stdout, map[string]any{"name": name, "active": sub == "unban"})
		}
		if sub == "ban" {
			fmt.Fprintf(stdout, "Banned %s: new publishes are refused.\n", name)
		} else {
			fmt.Fprintf(stdout, "Unbanned %s: publishing is allowed again.\n", name)
		}
		return nil
	case "passwd":
		return cmdPasswd(ctx, c, pos, stdin, stdout)
	case "invite":
		return cmdInvite(ctx, c, pos, stdout)
	}
	return usageError(fmt.Sprintf("unknown user command %q (add, list, ban, unban, passwd, invite)", sub))
}

// printNewKey shows a new stream key, once, with the encoder settings for it.
func printNewKey(w io.Writer, c *cliFlags, what, name, key, fp string) error {
	if c.json {
		v := map[string]string{
			"name": name, "stream_key": key, "fingerprint": fp,
			"server_url": c.urls.RTMP, "hls_url": c.urls.HLSFor(name),
		}
		if c.urls.RTMPS != "" {
			v["rtmps_server_url"] = c.urls.RTMPS
		}
		return writeJSON(w, v)
	}
	rtmps := ""
	if c.urls.RTMPS != "" {
		rtmps = "  Or over TLS, Server: " + c.urls.RTMPS + " (same Stream Key)\n"
	}
	fmt.Fprintf(w, `%s %s.

Stream key (shown only now; keep it secret; fingerprint %s):
  %s

OBS: Settings > Stream > Service "Custom..."
  Server:     %s
  Stream Key: %s
%s
Public playback (HLS):
  %s
`, what, name, fp, key, c.urls.RTMP, key, rtmps, c.urls.HLSFor(name))
	return nil
}

type userJSON struct {
	Name      string     `json:"name"`
	Active    bool       `json:"active"`
	Live      bool       `json:"live"`
	LiveSince *time.Time `json:"live_since"`
	CreatedAt time.Time  `json:"created_at"`
	HLSURL    string     `json:"hls_url"`
}

func printUsers(w io.Writer, c *cliFlags, users []stagedoor.User) error {
	out := make([]userJSON, 0, len(users))
	rows := make([][]string, 0, len(users))
	for _, u := range users {
		j := userJSON{Name: u.Name, Active: u.Active, CreatedAt: u.CreatedAt, HLSURL: c.urls.HLSFor(u.Name)}
		j.Live, j.LiveSince = liveFields(u.Live)
		out = append(out, j)
		status := "active"
		if !u.Active {
			status = "banned"
		}
		rows = append(rows, []string{u.Name, status, liveText(u.Live), u.CreatedAt.Format(time.RFC3339)})
	}
	if c.json {
		return writeJSON(w, out)
	}
	return writeTable(w, []string{"NAME", "STATUS", "LIVE", "CREATED"}, rows)
}

// liveFields is the JSON view of a live state: live and live_since (null when offline).
func liveFields(l *stagedoor.LiveState) (bool, *time.Time) {
	if l == nil {
		return false, nil
	}
	since := l.Since
	return true, &since
}

// liveText is the table view of a live state.
func liveText(l *stagedoor.LiveState) string {
	if l == nil {
		return "-"
	}
	return "since " + l.Since.Format(time.RFC3339)
}

// writeTable prints aligned columns for people; --json is for programs.
func writeTable(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}
