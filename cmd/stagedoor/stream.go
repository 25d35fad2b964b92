package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/stagedoor/stagedoor"
)

func printForms(w io.Writer, f stagedoor.EncoderForms, auth bool) {
	fmt.Fprintf(w, `
Stream %s
  OBS (two fields): Server     %s
                    Stream Key %s
  One field (ffmpeg and others): %s
  SRT:  %s
  RTSP: %s
  WHIP: %s
`, f.Stream, f.TwoPart.Server, f.TwoPart.StreamKey, f.OneField, f.SRT, f.RTSP, f.WHIP)
	if f.RTMPSServer != "" {
		fmt.Fprintf(w, "  RTMPS: Server %s (same Stream Key); one field %s\n", f.RTMPSServer, f.RTMPSOneField)
	}
	if auth {
		fmt.Fprintln(w, "  The pass value is your password's bcrypt hash; your plaintext password works too (use it if your encoder rejects $).")
	}
}

func cmdPasswd(ctx context.Context, c *cliFlags, pos []string, stdin io.Reader, stdout io.Writer) error {
	name, err := oneName(pos, "user passwd")
	if err != nil {
		return err
	}
	pw := c.password
	if pw == "" {
		line, err := bufio.NewReader(io.LimitReader(stdin, 4096)).ReadString('\n')
		if err != nil && line == "" {
			return usageError("user passwd: give the password with --password or on stdin")
		}
		pw = strings.TrimRight(line, "\r\n")
	}
	if err := stagedoor.ValidPassword(pw); err != nil {
		return err // before the database is created
	}
	op, done, err := c.operator(ctx)
	if err != nil {
		return err
	}
	defer done()
	hash, err := op.SetPassword(ctx, cliActor, name, pw, c.cost)
	if err != nil {
		return err
	}
	streams, err := op.Streams(ctx, name)
	if err != nil {
		return err
	}
	var forms []stagedoor.EncoderForms
	for _, s := range streams {
		if s.AuthRequired {
			forms = append(forms, c.urls.Forms(s.Name, name, hash, true))
		}
	}
	if c.json {
		if forms == nil {
			forms = []stagedoor.EncoderForms{}
		}
		return writeJSON(stdout, map[string]any{"name": name, "password_hash": hash, "encoder_urls": forms})
	}
	fmt.Fprintf(stdout, "Password set for %s. Old encoder URLs stop working now.\nPassword hash (a publish credential: keep it secret):\n  %s\n", name, hash)
	if len(forms) == 0 {
		fmt.Fprintf(stdout, "\n%s has no password streams yet: stagedoor stream add NAME --user %s\n", name, name)
	}
	for _, f := range forms {
		printForms(stdout, f, true)
	}
	return nil
}

func cmdStream(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError("usage: stagedoor stream add NAME --user USER [--no-auth] | list [--user USER] | rm NAME")
	}
	sub := args[0]
	fs, c := newCLIFlags("stream "+sub, getenv, stderr)
	fs.StringVar(&c.user, "user", "", "the owner of the stream")
	if sub == "add" {
		fs.BoolVar(&c.noAuth, "no-auth", false, "accept publishes with no credentials (the name must still exist)")
	}
	pos, err := parseFlags(fs, args[1:])
	if err != nil {
		return err
	}
	switch sub {
	case "add":
		name, err := oneName(pos, "stream add")
		if err != nil {
			return err
		}
		if c.user == "" {
			return usageError("stream add: --user is required")
		}
		op, done, err := c.operator(ctx)
		if err != nil {
			return err
		}
		defer done()
		s, err := op.CreateStream(ctx, cliActor, name, c.user, !c.noAuth)
		if err != nil {
			return err
		}
		secret := s.PasswordHash
		if secret == "" {
			secret = "<password>"
		}
		f := c.urls.Forms(s.Name, s.UserName, secret, s.AuthRequired)
		if c.json {
			return writeJSON(stdout, map[string]any{
				"name": s.Name, "user": s.UserName, "auth_required": s.AuthRequired,
				"hls_url": c.urls.HLSFor(s.Name), "encoder_urls": []stagedoor.EncoderForms{f},
			})
		}
		fmt.Fprintf(stdout, "Created stream %s for %s.\nPublic playback (HLS): %s\n", s.Name, s.UserName, c.urls.HLSFor(s.Name))
		if s.AuthRequired && s.PasswordHash == "" {
			fmt.Fprintf(stdout, "No password is set yet: stagedoor user passwd %s\n", s.UserName)
		}
		printForms(stdout, f, s.AuthRequired && s.PasswordHash != "")
		return nil
	case "list":
		if len(pos) != 0 {
			return usageError("stream list takes no arguments")
		}
		op, done, err := c.operator(ctx)
		if err != nil {
			return err
		}
		defer done()
		streams, err := op.Streams(ctx, c.user)
		if err != nil {
			return err
		}
		type row struct {
			Name         string     `json:"name"`
			User         string     `json:"user"`
			AuthRequired bool       `json:"auth_required"`
			Live         bool       `json:"live"`
			LiveSince    *time.Time `json:"live_since"`
			HLSURL       string     `json:"hls_url"`
		}
		rows := make([]row, 0, len(streams))
		table := make([][]string, 0, len(streams))
		for _, s := range streams {
			r := row{Name: s.Name, User: s.UserName, AuthRequired: s.AuthRequired, HLSURL: c.urls.HLSFor(s.Name)}
			r.Live, r.LiveSince = liveFields(s.Live)
			rows = append(rows, r)
			auth := "password"
			if !s.AuthRequired {
				auth = "none"
			}
			table = append(table, []string{s.Name, s.UserName, auth, liveText(s.Live)})
		}
		if c.json {
			return writeJSON(stdout, rows)
		}
		return writeTable(stdout, []string{"NAME", "USER", "AUTH", "LIVE"}, table)
	case "rm":
		name, err := oneName(pos, "stream rm")
		if err != nil {
			return err
		}
		op, done, err := c.operator(ctx)
		if err != nil {
			return err
		}
		defer done()
		if err := op.DeleteStream(ctx, cliActor, name); err != nil {
			return err
		}
		if c.json {
			return writeJSON(stdout, map[string]any{"name": name, "removed": true})
		}
		fmt.Fprintf(stdout, "Removed stream %s.\n", name)
		return nil
	}
	return usageError(fmt.Sprintf("unknown stream command %q (add, list, rm)", sub))
}
