package main

import (
	"context"
	"fmt"
	"io"

	"github.com/stagedoor/stagedoor/store"
)

func cmdKey(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError("usage: stagedoor key reset [flags] NAME")
	}
	sub := args[0]
	fs, c := newCLIFlags("key "+sub, getenv, stderr)
	pos, err := parseFlags(fs, args[1:])
	if err != nil {
		return err
	}
	switch sub {
	case "reset":
		name, err := oneName(pos, "key reset")
		if err != nil {
			return err
		}
		db, err := c.open(ctx)
		if err != nil {
			return err
		}
		defer db.Close()
		key, err := db.ResetKeys(ctx, name)
		if err != nil {
			return err
		}
		return printNewKey(stdout, c, "New stream key for", name, key, store.Fingerprint(key))
	}
	return usageError(fmt.Sprintf("unknown key command %q (reset)", sub))
}
