package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/stagedoor/stagedoor"
)

const keyUsage = "usage: stagedoor key add NAME [--label L] | list NAME | revoke NAME FINGERPRINT [--keep-live] | reset NAME|--all [--keep-live]"

func cmdKey(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError(keyUsage)
	}
	sub := args[0]
	fs, c := newCLIFlags("key "+sub, getenv, stderr)
	label := fs.String("label", "", "a label for the key, e.g. obs-home (key add)")
	keepLive := fs.Bool("keep-live", false, "let a stream live on a revoked key finish instead of kicking it")
	all := fs.Bool("all", false, "reset every user's keys in one transaction (key reset)")
	pos, err := parseFlags(fs, args[1:])
	if err != nil {
		return err
	}
	rev := stagedoor.Revocation{KeepLive: *keepLive}
	switch sub {
	case "add":
		name, err := oneName(pos, "key add")
		if err != nil {
			return err
		}
		op, done, err := c.operator(ctx)
		if err != nil {
			return err
		}
		defer done()
		k, err := op.AddKey(ctx, cliActor, name, *label)
		if err != nil {
			return err
		}
		if c.json {
			return writeJSON(stdout, map[string]string{"stream_key": k.StreamKey, "fingerprint": k.Fingerprint, "label": k.Label})
		}
		return printNewKey(stdout, c, "New stream key for", name, k.StreamKey, k.Fingerprint)
	case "list":
		name, err := oneName(pos, "key list")
		if err != nil {
			return err
		}
		op, done, err := c.operator(ctx)
		if err != nil {
			return err
		}
		defer done()
		ks, err := op.Keys(ctx, name)
		if err != nil {
			return err
		}
		type row struct {
			Fingerprint string     `json:"fingerprint"`
			Label       string     `json:"label"`
			CreatedAt   time.Time  `json:"created_at"`
			LastUsedAt  *time.Time `json:"last_used_at"`
		}
		rows := make([]row, 0, len(ks))
		for _, k := range ks {
			rows = append(rows, row{k.Fingerprint, k.Label, k.CreatedAt, k.LastUsedAt})
		}
		if c.json {
			return writeJSON(stdout, rows)
		}
		table := make([][]string, 0, len(rows))
		for _, r := range rows {
			used := "never"
			if r.LastUsedAt != nil {
				used = r.LastUsedAt.Format(time.RFC3339)
			}
			table = append(table, []string{r.Fingerprint, strconv.Quote(r.Label), r.CreatedAt.Format(time.RFC3339), used})
		}
		return writeTable(stdout, []string{"FINGERPRINT", "LABEL", "CREATED", "LAST USED"}, table)
	case "revoke":
		if len(pos) != 2 {
			return usageError("key revoke: expected NAME FINGERPRINT")
		}
		op, done, err := c.operator(ctx)
		if err != nil {
			return err
		}
		defer done()
		if err := op.RevokeKey(ctx, cliActor, pos[0], pos[1], rev); err != nil {
			return err
		}
		if c.json {
			return writeJSON(stdout, map[string]any{"name": pos[0], "fingerprint": pos[1], "revoked": true, "keep_live": rev.KeepLive})
		}
		fmt.Fprintf(stdout, "Revoked key %s of %s.%s\n", pos[1], pos[0], liveNote(rev))
		return nil
	case "reset":
		if *all && len(pos) != 0 {
			return usageError("key reset --all takes no NAME")
		}
		var name string
		if !*all {
			if name, err = oneName(pos, "key reset"); err != nil {
				return err
			}
		}
		op, done, err := c.operator(ctx)
		if err != nil {
			return err
		}
		defer done()
		if !*all {
			k, err := op.ResetKeys(ctx, cliActor, name, rev)
			if err != nil {
				return err
			}
			return printNewKey(stdout, c, "New stream key for", name, k.StreamKey, k.Fingerprint)
		}
		ks, err := op.ResetAllKeys(ctx, cliActor, rev)
		if err != nil {
			return err
		}
		out := make([]map[string]string, 0, len(ks))
		for _, k := range ks {
			out = append(out, map[string]string{"name": k.UserName, "stream_key": k.StreamKey, "fingerprint": k.Fingerprint})
		}
		if c.json {
			return writeJSON(stdout, out)
		}
		fmt.Fprintf(stdout, "Reset the keys of %d users.%s New keys (shown only now):\n", len(ks), liveNote(rev))
		for _, k := range ks {
			fmt.Fprintf(stdout, "%s\t%s\n", k.UserName, k.StreamKey)
		}
		return nil
	}
	return usageError(fmt.Sprintf("unknown key command %q (add, list, revoke, reset)", sub))
}

func liveNote(r stagedoor.Revocation) string {
	if r.KeepLive {
		return " A stream live on an old key may finish; reconnects are refused."
	}
	return " A running Stagedoor kicks streams live on old keys."
}

func cmdAudit(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs, c := newCLIFlags("audit", getenv, stderr)
	user := fs.String("user", "", "only entries of this user")
	since := fs.Duration("since", 24*time.Hour, "only entries newer than this")
	limit := fs.Int("limit", 1000, "at most this many entries, newest first")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageError("audit takes no arguments")
	}
	if *since <= 0 || *limit <= 0 {
		return usageError("audit: --since and --limit must be positive")
	}
	op, done, err := c.operator(ctx)
	if err != nil {
		return err
	}
	defer done()
	es, err := op.Audit(ctx, stagedoor.AuditFilter{User: *user, Since: time.Now().Add(-*since), Limit: *limit})
	if err != nil {
		return err
	}
	if c.json {
		return writeJSON(stdout, es)
	}
	table := make([][]string, 0, len(es))
	for _, e := range es {
		table = append(table, []string{e.At.Format(time.RFC3339), e.Kind, dash(e.User), dash(e.KeyFP),
			dash(e.IP), dash(e.Protocol), e.Decision, strconv.Quote(e.Reason)})
	}
	return writeTable(stdout, []string{"TIME", "KIND", "USER", "KEY", "IP", "PROTOCOL", "DECISION", "REASON"}, table)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
