package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/stagedoor/stagedoor"
)

const usage = `usage: stagedoor COMMAND [flags]

commands:
  run                       run the whole stack: the service and MediaMTX
  serve                     run the service only (MediaMTX started elsewhere;
                            --no-mediamtx: a control-plane replica, no MediaMTX)
  hook available|unavailable  what MediaMTX executes on runOnAvailable/runOnUnavailable
  user add|list|ban|unban   manage users (channels)
  user passwd NAME          set a user's publishing password
  user invite NAME          a single-use link (24 h) where the streamer sets a panel password
  operator add NAME         a control-panel operator (panel password on stdin)
  stream add|list|rm        manage user/password stream names
  key add|list|revoke|reset manage a user's labelled stream keys (reset --all: every user)
  audit                     the audit trail (--user, --since, --json)

Every command takes -h for its flags.`

// usageError is bad input on the command line: exit code 2, nothing changed.
type usageError string

func (e usageError) Error() string { return string(e) }

func exitCode(err error) int {
	if _, ok := errors.AsType[usageError](err); ok {
		return 2
	}
	if _, ok := errors.AsType[*stagedoor.InvalidError](err); ok {
		return 2
	}
	if errors.Is(err, stagedoor.ErrNotFound) || errors.Is(err, stagedoor.ErrConflict) || errors.Is(err, flag.ErrHelp) {
		return 2
	}
	return 1
}

func run(ctx context.Context, args []string, getenv func(string) string,
	stdin io.Reader, stdout, stderr io.Writer,
) error {
	if len(args) < 2 {
		fmt.Fprintln(stderr, usage)
		return usageError("missing command")
	}
	rest := args[2:]
	switch args[1] {
	case "run":
		return cmdRun(ctx, rest, getenv, stdout, stderr)
	case "serve":
		return cmdServe(ctx, rest, getenv, stderr)
	case "hook":
		return cmdHook(ctx, rest, getenv, stderr)
	case "user":
		return cmdUser(ctx, rest, getenv, stdin, stdout, stderr)
	case "operator":
		return cmdOperator(ctx, rest, getenv, stdin, stdout, stderr)
	case "stream":
		return cmdStream(ctx, rest, getenv, stdout, stderr)
	case "key":
		return cmdKey(ctx, rest, getenv, stdout, stderr)
	case "audit":
		return cmdAudit(ctx, rest, getenv, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	fmt.Fprintln(stderr, usage)
	return usageError(fmt.Sprintf("unknown command %q", args[1]))
}

// envOr returns getenv(key), or def when it is empty.
func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}

// parseFlags parses fs, allowing flags after positional arguments (`user add benw --json`),
// and returns the positional arguments. A flag error is a usageError (exit 2).
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError(err.Error())
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// oneName expects exactly one positional argument: a user name.
func oneName(pos []string, what string) (string, error) {
	if len(pos) != 1 {
		return "", usageError(fmt.Sprintf("%s: expected exactly one NAME, got %d arguments", what, len(pos)))
	}
	return pos[0], nil
}
