package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/stagedoor/stagedoor/manage"
	"github.com/stagedoor/stagedoor/panel"
)

// envPanelURL is the public address of the control panel, printed in invite links.
const envPanelURL = "STAGEDOOR_PANEL_URL"

// cmdOperator is `stagedoor operator add NAME`: a control-panel operator, with the panel
// password read from stdin (never from argv, where ps shows it).
func cmdOperator(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "add" {
		return usageError("usage: stagedoor operator add NAME   (the panel password on stdin)")
	}
	fs, c := newCLIFlags("operator add", getenv, stderr)
	pos, err := parseFlags(fs, args[1:])
	if err != nil {
		return err
	}
	name, err := oneName(pos, "operator add")
	if err != nil {
		return err
	}
	line, err := bufio.NewReader(io.LimitReader(stdin, 4096)).ReadString('\n')
	if err != nil && line == "" {
		return usageError("operator add: give the panel password on stdin (at least 10 characters)")
	}
	pw := strings.TrimRight(line, "\r\n")
	if err := manage.ValidOperator(name, pw); err != nil {
		return err // before the database is created
	}
	op, done, err := c.operator(ctx)
	if err != nil {
		return err
	}
	defer done()
	a, err := op.CreateOperator(ctx, cliActor, name, pw)
	if err != nil {
		return err
	}
	if c.json {
		return writeJSON(stdout, map[string]any{"name": a.Name, "role": a.Role})
	}
	fmt.Fprintf(stdout, "Created panel operator %s. Sign in at /panel/login on the public listener.\n", a.Name)
	return nil
}

// cmdInvite is `stagedoor user invite NAME`: a single-use link, valid 24 h, where the
// channel's streamer sets a panel password (or replaces a forgotten one).
func cmdInvite(ctx context.Context, c *cliFlags, pos []string, stdout io.Writer) error {
	name, err := oneName(pos, "user invite")
	if err != nil {
		return err
	}
	base, err := panelBase(c.panelURL)
	if err != nil {
		return err
	}
	op, done, err := c.operator(ctx)
	if err != nil {
		return err
	}
	defer done()
	token, expires, err := op.Invite(ctx, cliActor, name)
	if err != nil {
		return err
	}
	link := panel.InviteURL(base, token)
	if c.json {
		return writeJSON(stdout, map[string]any{"url": link, "channel": name, "expires_at": expires.UTC()})
	}
	fmt.Fprintf(stdout, "Panel invite for %s (single use, expires %s):\n  %s\n", name, expires.UTC().Format(time.RFC3339), link)
	return nil
}

// panelBase checks --panel-url and returns it with one trailing slash.
func panelBase(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", usageError("-panel-url must be an absolute http(s) URL without a user, query or fragment, e.g. https://HOST/panel/")
	}
	return strings.TrimRight(s, "/") + "/", nil
}
