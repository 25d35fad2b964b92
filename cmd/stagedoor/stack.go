package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/stagedoor/stagedoor/plugin"
)

// cmdRun runs the whole stack: the service, and MediaMTX as a supervised child.
func cmdRun(ctx context.Context, args []string, getenv func(string) string, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg serviceConfig
	cfg.register(fs, getenv, ":1935")
	bin := fs.String("mediamtx", envOr(getenv, "STAGEDOOR_MEDIAMTX", "bin/mediamtx"), "MediaMTX binary (env STAGEDOOR_MEDIAMTX)")
	conf := fs.String("mediamtx-config", envOr(getenv, "STAGEDOOR_MEDIAMTX_CONFIG", "mediamtx.yml"),
		"MediaMTX configuration (env STAGEDOOR_MEDIAMTX_CONFIG)")
	if pos, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usageError(fmt.Sprintf("unexpected argument %q", pos[0]))
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	for _, f := range []string{*bin, *conf} {
		if _, err := os.Stat(f); err != nil {
			return usageError(fmt.Sprintf("run: %s not found (run `make build` first)", f))
		}
	}
	sec, err := loadSecrets(getenv)
	if err != nil {
		return err
	}
	// MediaMTX's environment is checked before anything starts: a bad address is a usage
	// error that creates no database.
	env, err := mediamtxEnv(cfg, sec)
	if err != nil {
		return err
	}
	out := newRedactor(stderr, sec.list())
	defer out.Flush()
	logger := slog.New(slog.NewJSONHandler(out, nil))

	svc, err := startService(ctx, cfg, sec, logger)
	if err != nil {
		return err
	}
	// MediaMTX is our child and starts empty: nobody can be live yet.
	if err := svc.db.ClearLive(ctx); err != nil {
		_ = svc.close()
		return err
	}
	// A listener that fails for good stops the stack with its error, as it stops `serve`:
	// MediaMTX is stopped too, so that the operator's supervisor restarts both.
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	failed := make(chan error, 1)
	go func() {
		failed <- svc.wait(runCtx)
		stop()
	}()
	superviseErr := supervise(runCtx, logger, *bin, *conf, env, out, svc.manager.ReconcileSoon)
	stop()
	return errors.Join(<-failed, superviseErr, svc.close())
}

// mediamtxEnv is MediaMTX's environment: ours, plus the addresses Stagedoor listens on
// (MTX_* overrides of mediamtx.yml) and what its hooks need. Secrets go only here,
// never into argv; hooks inherit this environment.
func mediamtxEnv(cfg serviceConfig, sec secrets) ([]string, error) {
	api, err := url.Parse(cfg.mediamtxAPI)
	if err != nil || api.Host == "" {
		return nil, usageError("-mediamtx-api must be a URL like http://127.0.0.1:9997")
	}
	// `run` binds MediaMTX's API where this URL points; it lists every live key path, so
	// it never listens beyond loopback.
	if !isLoopbackHost(api.Hostname()) {
		return nil, usageError("-mediamtx-api must be a loopback address: `run` binds MediaMTX's API there")
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own binary: %w", err)
	}
	internal := cfg.internalAddr
	if host, port, err := net.SplitHostPort(internal); err == nil && host == "" {
		internal = net.JoinHostPort("127.0.0.1", port)
	}
	env := append(os.Environ(), // the child needs PATH, HOME and the operator's MTX_* overrides
		"PATH="+filepath.Dir(self)+string(os.PathListSeparator)+os.Getenv("PATH"),
		"MTX_AUTHHTTPADDRESS=http://"+internal+"/mediamtx/auth",
		"MTX_APIADDRESS="+api.Host,
		plugin.EnvHookURL+"=http://"+internal+"/internal/hook",
		plugin.EnvHookSecret+"="+sec.hook,
	)
	if cfg.rtmpAddr != "" {
		// Behind the RTMP front: MediaMTX listens on loopback and takes the streamer's
		// address from the front's PROXY protocol header.
		host, _, err := net.SplitHostPort(cfg.mediamtxRTMP)
		if err != nil || !isLoopbackHost(host) {
			return nil, usageError("-mediamtx-rtmp must be a loopback address")
		}
		env = append(env, "MTX_RTMPADDRESS="+cfg.mediamtxRTMP, "MTX_RTMPTRUSTEDPROXIES="+host)
	}
	return env, nil
}

// supervise runs MediaMTX until ctx ends, restarting it with backoff when it exits.
// On ctx end it sends SIGINT (MediaMTX then stops its hooks) and waits, killing the
// process group only if MediaMTX has not exited after 20 s.
//
// If Stagedoor itself dies (SIGKILL, OOM), the kernel sends MediaMTX SIGTERM
// (Pdeathsig): an orphan would hold every port, so the restarted `run` could not start
// its own (it would die only at its next log line into our closed pipe). Streams that
// must outlive a Stagedoor crash need MediaMTX run on its own beside `serve`.
func supervise(ctx context.Context, logger *slog.Logger, bin, conf string, env []string, out io.Writer, restarted func()) error {
	logger = logger.With("component", "supervisor")
	// Pdeathsig fires when the thread that started the child exits; keep this goroutine
	// on one thread for as long as it supervises.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	backoff := time.Second
	for {
		cmd := exec.Command(bin, conf) // #nosec G204 -- operator-chosen binary and config
		cmd.Env, cmd.Stdout, cmd.Stderr = env, out, out
		// Own process group: our own SIGINT handling decides when MediaMTX stops.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start mediamtx: %w", err)
		}
		logger.Info("mediamtx started", "pid", cmd.Process.Pid)
		started := time.Now()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		restarted()

		select {
		case <-ctx.Done():
			_ = cmd.Process.Signal(os.Interrupt)
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				logger.Warn("mediamtx did not stop after SIGINT; killing")
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				<-done
			}
			logger.Info("mediamtx stopped")
			return nil
		case err := <-done:
			logger.Error("mediamtx exited; restarting", "err", fmt.Sprint(err), "after", backoff.String())
			if time.Since(started) > time.Minute {
				backoff = time.Second
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 30*time.Second)
		}
	}
}
