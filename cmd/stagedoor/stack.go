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
	"strings"
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
	// MediaMTX's addresses and environment are checked before anything starts: a bad
	// address is a usage error that creates no database.
	if err := cfg.resolveMediaMTXAddrs(ctx); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own binary: %w", err)
	}
	env, err := mediamtxEnv(cfg, sec, os.Environ(), self)
	if err != nil {
		return err
	}
	logOut := newDelayedWriter(stderr)
	defer logOut.Close() // after out.Flush: deferred calls run last first
	out := newRedactor(logOut, sec.list())
	defer out.Flush()
	logger := cfg.log.newLogger(out, stderr, isTerminal)

	svc, err := startService(ctx, cfg, sec, logger)
	if err != nil {
		return err
	}
	// MediaMTX is our child and starts empty: nobody can be live yet.
	if err := svc.db.ClearLive(ctx, cfg.nodeID); err != nil {
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

// mediamtxEnv is MediaMTX's environment, built from an allow-list of ours (environ)
// and what Stagedoor sets: the addresses it listens on (MTX_* overrides of mediamtx.yml)
// and what its hooks need. Hooks inherit it, and /proc/<pid>/environ shows it to anyone
// with MediaMTX's uid, so it holds no secret but the hook secret: never the admin token,
// the webhook or relay secret, the admin password or the database path.
//
// Allowed from ours: PATH (behind the directory of our own binary, for `stagedoor hook`),
// HOME, TZ, TMPDIR, LANG, LC_*, SSL_CERT_FILE, SSL_CERT_DIR and the operator's MTX_*
// overrides, except those Stagedoor sets itself (ours win, in the environment and not by
// the order of duplicates). An MTX_* value that holds one of our secrets is refused: it
// would smuggle that secret into MediaMTX, its hooks and its API's config listing. The
// legacy RTSP_* prefix MediaMTX also reads is not passed.
//
// cfg.mediamtxAPI and cfg.mediamtxRTMP must have been through resolveLoopback.
func mediamtxEnv(cfg serviceConfig, sec secrets, environ []string, self string) ([]string, error) {
	api, err := url.Parse(cfg.mediamtxAPI)
	if err != nil || api.Host == "" {
		return nil, usageError("-mediamtx-api must be a URL like http://127.0.0.1:9997")
	}
	internal := cfg.internalAddr
	if host, port, err := net.SplitHostPort(internal); err == nil && host == "" {
		internal = net.JoinHostPort("127.0.0.1", port)
	}
	var path string
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	ours := []string{
		"PATH=" + filepath.Dir(self) + string(os.PathListSeparator) + path,
		"MTX_AUTHHTTPADDRESS=http://" + internal + "/mediamtx/auth",
		"MTX_APIADDRESS=" + api.Host,
		plugin.EnvHookURL + "=http://" + internal + "/internal/hook",
		plugin.EnvHookSecret + "=" + sec.hook,
	}
	if cfg.frontOn() {
		// Behind the RTMP front: MediaMTX listens on loopback and takes the streamer's
		// address from the front's PROXY protocol header, trusted from this IP only.
		host, _, err := net.SplitHostPort(cfg.mediamtxRTMP)
		if err != nil || net.ParseIP(host) == nil || !net.ParseIP(host).IsLoopback() {
			return nil, usageError("-mediamtx-rtmp must be a loopback IP address and port")
		}
		ours = append(ours, "MTX_RTMPADDRESS="+cfg.mediamtxRTMP, "MTX_RTMPTRUSTEDPROXIES="+host)
	}
	set := make(map[string]bool, len(ours))
	for _, kv := range ours {
		name, _, _ := strings.Cut(kv, "=")
		set[name] = true
	}
	var env []string
	for _, kv := range environ {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || set[name] || !passedToMediaMTX(name) {
			continue
		}
		if strings.HasPrefix(name, "MTX_") && holdsSecret(value, sec) {
			return nil, usageError(name + " holds one of Stagedoor's secrets; MediaMTX's environment must not")
		}
		env = append(env, kv)
	}
	return append(env, ours...), nil
}

// passedToMediaMTX is the allow-list of inherited variables: what MediaMTX and a hook
// process need to run, and the operator's MTX_* overrides of mediamtx.yml.
func passedToMediaMTX(name string) bool {
	switch name {
	case "HOME", "TZ", "TMPDIR", "LANG", "SSL_CERT_FILE", "SSL_CERT_DIR":
		return true
	}
	return strings.HasPrefix(name, "LC_") || strings.HasPrefix(name, "MTX_")
}

// holdsSecret reports whether v contains one of Stagedoor's secrets other than the hook
// secret, which MediaMTX's environment carries on purpose. Secrets shorter than 8
// characters are not looked for: they would match innocent values.
func holdsSecret(v string, sec secrets) bool {
	for _, s := range sec.list() {
		if s != sec.hook && len(s) >= 8 && strings.Contains(v, s) {
			return true
		}
	}
	return false
}

// resolveLoopback checks that addr (host:port) names a loopback host and returns it with
// the host as an IP: MediaMTX takes only IPs where Stagedoor sets trusted proxies
// (`localhost` there makes it refuse its configuration, and `run` would restart it for
// ever), and a name could resolve to ::1 for one side and 127.0.0.1 for the other.
// `localhost` resolves to its first IPv4 loopback address (else IPv6); what
// it resolves to must all be loopback. flag names the flag in the error.
func resolveLoopback(ctx context.Context, addr, flag string) (string, error) {
	bad := usageError(flag + " must be a loopback IP address (or localhost) and a port")
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return "", bad
	}
	if ip := net.ParseIP(host); ip != nil {
		if !ip.IsLoopback() {
			return "", bad
		}
		return net.JoinHostPort(ip.String(), port), nil
	}
	if host != "localhost" {
		return "", bad
	}
	ips, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil || len(ips) == 0 {
		return "", usageError(fmt.Sprintf("%s: cannot resolve %s to a loopback IP (%v); give an IP such as 127.0.0.1", flag, host, err))
	}
	var pick net.IP
	for _, a := range ips {
		if !a.IP.IsLoopback() {
			return "", usageError(fmt.Sprintf("%s: %s resolves to %s, which is not loopback; give an IP such as 127.0.0.1", flag, host, a.IP))
		}
		if pick == nil || (pick.To4() == nil && a.IP.To4() != nil) {
			pick = a.IP
		}
	}
	return net.JoinHostPort(pick.String(), port), nil
}

// resolveMediaMTXAddrs turns the addresses `run` binds MediaMTX to into loopback IPs
// (resolveLoopback), so that MediaMTX, the front and Stagedoor's API client agree on one
// address, and refuses anything else: MediaMTX's API lists every live key path.
func (c *serviceConfig) resolveMediaMTXAddrs(ctx context.Context) error {
	api, err := url.Parse(c.mediamtxAPI)
	if err != nil || api.Host == "" || (api.Scheme != "http" && api.Scheme != "https") {
		return usageError("-mediamtx-api must be a URL like http://127.0.0.1:9997")
	}
	if api.Port() == "" {
		return usageError("-mediamtx-api must name a port, like http://127.0.0.1:9997: `run` binds MediaMTX's API there")
	}
	if api.Host, err = resolveLoopback(ctx, api.Host, "-mediamtx-api"); err != nil {
		return usageError(err.Error() + ": `run` binds MediaMTX's API there")
	}
	c.mediamtxAPI = api.String()
	if c.frontOn() {
		if c.mediamtxRTMP, err = resolveLoopback(ctx, c.mediamtxRTMP, "-mediamtx-rtmp"); err != nil {
			return err
		}
	}
	return nil
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
