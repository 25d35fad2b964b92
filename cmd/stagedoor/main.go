// Command stagedoor is the stream-key gate for MediaMTX: it answers MediaMTX's HTTP auth,
// runs as its availability hooks, aliases key paths to public channel names, and
// manages users and keys.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/gin-gonic/gin"
)

func main() {
	// gin's debug mode prints every route at start; the process sets release mode once.
	gin.SetMode(gin.ReleaseMode)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "stagedoor:", err)
		os.Exit(exitCode(err))
	}
}
