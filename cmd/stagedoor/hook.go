package main

import (
	"context"
	"io"

	"github.com/stagedoor/stagedoor/plugin"
)

// cmdHook is what MediaMTX executes as runOnAvailable / runOnUnavailable:
// `stagedoor hook available|unavailable`, with no variables in argv. It reads MTX_PATH,
// MTX_SOURCE_ID and MTX_SOURCE_TYPE and the service's address and secret from its
// environment, posts the event and exits. MediaMTX stops hooks with SIGINT; a SIGINT
// before the post finished is a normal stop, not an error.
func cmdHook(ctx context.Context, args []string, getenv func(string) string, _ io.Writer) error {
	if len(args) != 1 || (args[0] != plugin.EventAvailable && args[0] != plugin.EventUnavailable) {
		return usageError("usage: stagedoor hook available|unavailable")
	}
	ev, err := plugin.EventFromEnv(args[0], getenv)
	if err != nil {
		return usageError("hook: " + err.Error())
	}
	hookURL, secret := getenv(plugin.EnvHookURL), getenv(plugin.EnvHookSecret)
	if hookURL == "" || secret == "" {
		return usageError("hook: " + plugin.EnvHookURL + " and " + plugin.EnvHookSecret + " must be set (stagedoor run sets them)")
	}
	err = plugin.Notify(ctx, hookURL, secret, ev)
	if ctx.Err() != nil {
		return nil //nolint:nilerr // MediaMTX stopped the hook with SIGINT: a normal stop
	}
	return err
}
