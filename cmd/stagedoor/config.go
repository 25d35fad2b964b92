package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/stagedoor/stagedoor"
	"github.com/stagedoor/stagedoor/plugin"
	"github.com/stagedoor/stagedoor/store"
)

// Environment variables with the defaults of the matching flags.
const (
	envDB            = "STAGEDOOR_DB"
	envInternalAddr  = "STAGEDOOR_INTERNAL_ADDR"
	envPublicAddr    = "STAGEDOOR_PUBLIC_ADDR"
	envMediaMTXAPI   = "STAGEDOOR_MEDIAMTX_API"
	envMediaMTXRTSP  = "STAGEDOOR_MEDIAMTX_RTSP"
	envHLSURL        = "STAGEDOOR_HLS_URL"
	envRTMPURL       = "STAGEDOOR_RTMP_URL"
	envPublicRead    = "STAGEDOOR_PUBLIC_READ"
	envAdminPassword = "STAGEDOOR_ADMIN_PASSWORD"
	envRelayPassword = "STAGEDOOR_RELAY_PASSWORD"
	envLogLevel      = "STAGEDOOR_LOG_LEVEL"
	envLogFormat     = "STAGEDOOR_LOG_FORMAT"
)

// Internal user names. Their passwords are secrets; the names are not.
const (
	adminUser = "stagedoor-admin"
	relayUser = "stagedoor-relay"
)

// registerURLs registers the flags of the public addresses printed for streamers and
// returned by the status API.
func registerURLs(fs *flag.FlagSet, getenv func(string) string, u *stagedoor.URLs) {
	fs.StringVar(&u.RTMP, "rtmp-url", envOr(getenv, envRTMPURL, "rtmp://localhost:1935/live"),
		"encoder server URL printed for streamers (env "+envRTMPURL+")")
	fs.StringVar(&u.RTMPS, "rtmps-url", getenv("STAGEDOOR_RTMPS_URL"),
		"RTMPS encoder server URL printed for streamers beside -rtmp-url, e.g. rtmps://HOST:1937/live; empty: none (env STAGEDOOR_RTMPS_URL)")
	fs.StringVar(&u.HLS, "hls-url", envOr(getenv, envHLSURL, "http://localhost:8888"),
		"public HLS base URL (env "+envHLSURL+")")
	fs.StringVar(&u.SRT, "srt-url", envOr(getenv, "STAGEDOOR_SRT_URL", "srt://localhost:8890"),
		"SRT ingest URL printed for streamers (env STAGEDOOR_SRT_URL)")
	fs.StringVar(&u.RTSP, "rtsp-url", envOr(getenv, "STAGEDOOR_RTSP_URL", "rtsp://localhost:8554"),
		"RTSP ingest URL printed for streamers (env STAGEDOOR_RTSP_URL)")
	fs.StringVar(&u.WHIP, "whip-url", envOr(getenv, "STAGEDOOR_WHIP_URL", "http://localhost:8889"),
		"WebRTC (WHIP) base URL printed for streamers (env STAGEDOOR_WHIP_URL)")
}

// dbFlag is --db: a SQLite file path or a postgres:// URL, from the flag or from
// STAGEDOOR_DB. It remembers whether the flag gave it, since a password is refused in
// argv (every local user can read it with ps) but welcome in the environment.
type dbFlag struct {
	dsn     string
	fromArg bool
}

// String is the -h default: never a password.
func (f *dbFlag) String() string {
	if f == nil {
		return ""
	}
	return store.RedactDSN(f.dsn)
}

// Set takes the flag's value. It never fails: the flag package would quote the value,
// password and all, in its error; open checks it instead.
func (f *dbFlag) Set(v string) error {
	f.dsn, f.fromArg = v, true
	return nil
}

func dbVar(fs *flag.FlagSet, p *dbFlag, getenv func(string) string) {
	p.dsn = envOr(getenv, envDB, "data/stagedoor.db")
	fs.Var(p, "db", "SQLite database file, or a postgres:// URL (its password only through env "+envDB+" or PGPASSFILE) (env "+envDB+")")
}

// open checks the database named by --db and opens it: a value that names no backend,
// or a PostgreSQL password given in argv, is refused before anything is created.
func (f dbFlag) open(ctx context.Context) (backend, error) {
	b, err := store.ParseDSN(f.dsn)
	if err != nil {
		return nil, err
	}
	if b == store.Postgres && f.fromArg && store.HasPassword(f.dsn) {
		return nil, usageError("-db: a PostgreSQL URL with a password is refused on the command line, where every " +
			"local user can read it (ps); set it in " + envDB + " or put the password in a PGPASSFILE")
	}
	return openBackend(ctx, f.dsn)
}

// defaultNodeID is the host name, or "stagedoor" when it has none usable as a node id.
func defaultNodeID() string {
	if h, err := os.Hostname(); err == nil && stagedoor.ValidNodeID(h) == nil {
		return h
	}
	return "stagedoor"
}

// serviceConfig is everything `serve` and `run` need.
type serviceConfig struct {
	db             dbFlag
	nodeID         string // this node in the live state and its lease; default the host name
	advertiseRTSP  string // where peers reach this node's MediaMTX RTSP; "" none
	leaseTTL       time.Duration
	keyTakeover    bool   // a stream key's newest publish takes its name from another node
	clusterCIDRs   string // comma-separated CIDRs the other nodes' peer pulls come from
	internalAddr   string
	publicAddr     string
	mediamtxAPI    string
	mediamtxRTSP   string
	rtmpAddr       string
	mediamtxRTMP   string
	rtmpBatch      time.Duration
	rtmpForward    string
	rtmps          rtmpsConfig
	publicRead     string
	reconcileEvery time.Duration
	auditRetention time.Duration
	webhookURLs    []string
	urls           stagedoor.URLs
	panelURL       string // the panel's public base URL for invite links; "" from the request
	panelAddr      string // the panel's own listener; "" on the public listener under /panel/
	trustedProxies string // comma-separated CIDRs whose X-Forwarded-For/-Proto the panel believes
	log            logConfig
	noMediaMTX     bool // serve --no-mediamtx: a control-plane replica (replica.go)
}

func (c *serviceConfig) register(fs *flag.FlagSet, getenv func(string) string, frontDefault string) {
	dbVar(fs, &c.db, getenv)
	fs.StringVar(&c.nodeID, "node-id", envOr(getenv, "STAGEDOOR_NODE_ID", defaultNodeID()),
		"this node's id in a cluster sharing one database: its live names and lease; stable across restarts (env STAGEDOOR_NODE_ID)")
	fs.StringVar(&c.advertiseRTSP, "advertise-rtsp", envOr(getenv, "STAGEDOOR_ADVERTISE_RTSP", ""),
		"host:port where the other nodes of a cluster reach this node's MediaMTX RTSP, recorded with its lease; empty: none (env STAGEDOOR_ADVERTISE_RTSP)")
	fs.BoolVar(&c.keyTakeover, "cluster-key-takeover", true,
		"a stream key's newest publish takes its name over from another node (an encoder reconnecting through another node gets back on); false: the first publish keeps the name, as for passwords")
	fs.StringVar(&c.clusterCIDRs, "cluster-cidrs", envOr(getenv, "STAGEDOOR_CLUSTER_CIDRS", "127.0.0.0/8,::1/128"),
		"comma-separated CIDRs the other nodes of a cluster pull this node's live names from, with STAGEDOOR_CLUSTER_SECRET (env STAGEDOOR_CLUSTER_CIDRS)")
	fs.DurationVar(&c.leaseTTL, "lease-ttl", store.DefaultLeaseTTL,
		"how long this node's lease lasts after each renewal (every 500 ms); after that the other nodes free its live names (2s to 5m)")
	fs.StringVar(&c.internalAddr, "internal-addr", envOr(getenv, envInternalAddr, "127.0.0.1:9090"),
		"loopback listener for MediaMTX auth and hooks (env "+envInternalAddr+")")
	fs.StringVar(&c.publicAddr, "public-addr", envOr(getenv, envPublicAddr, ":8080"),
		"public listener for the status API (env "+envPublicAddr+")")
	fs.StringVar(&c.mediamtxAPI, "mediamtx-api", envOr(getenv, envMediaMTXAPI, "http://127.0.0.1:9997"),
		"MediaMTX control API (env "+envMediaMTXAPI+")")
	fs.StringVar(&c.mediamtxRTSP, "mediamtx-rtsp", envOr(getenv, envMediaMTXRTSP, "127.0.0.1:8554"),
		"MediaMTX RTSP listener the alias relay pulls from (env "+envMediaMTXRTSP+")")
	fs.StringVar(&c.rtmpAddr, "rtmp-addr", envOr(getenv, "STAGEDOOR_RTMP_ADDR", frontDefault),
		"public RTMP listener of Stagedoor's RTMP front, which makes ScaleEngine URL forms routable; empty: no front (env STAGEDOOR_RTMP_ADDR)")
	fs.StringVar(&c.mediamtxRTMP, "mediamtx-rtmp", envOr(getenv, "STAGEDOOR_MEDIAMTX_RTMP", "127.0.0.1:1936"),
		"MediaMTX's RTMP listener behind the front, loopback (env STAGEDOOR_MEDIAMTX_RTMP)")
	fs.DurationVar(&c.rtmpBatch, "rtmp-batch", 50*time.Millisecond,
		"how often the RTMP front hands publishers' media to MediaMTX once it is spliced (0: as it arrives, at several times the CPU of MediaMTX and Stagedoor; max 200ms)")
	fs.StringVar(&c.rtmpForward, "rtmp-forward", envOr(getenv, "STAGEDOOR_RTMP_FORWARD", forwardAuto),
		"how the RTMP front hands publishers' media to MediaMTX once it is spliced: kernel (an eBPF sockmap redirect, no wake-ups; needs CAP_BPF and CAP_NET_ADMIN), pump (batches of -rtmp-batch), auto (kernel when allowed, else pump) (env STAGEDOOR_RTMP_FORWARD)")
	c.rtmps.register(fs, getenv)
	fs.StringVar(&c.publicRead, "public-read", envOr(getenv, envPublicRead, "hls"),
		"comma-separated protocols allowed to read public channels: hls,rtsp,rtmp,srt,webrtc,moq (env "+envPublicRead+")")
	fs.DurationVar(&c.reconcileEvery, "reconcile-interval", 10*time.Second, "how often live state is checked against MediaMTX (max 30s)")
	fs.DurationVar(&c.auditRetention, "audit-retention", 30*24*time.Hour, "how long audit entries are kept")
	for _, u := range strings.Split(getenv("STAGEDOOR_WEBHOOK_URLS"), ",") {
		if u = strings.TrimSpace(u); u != "" {
			c.webhookURLs = append(c.webhookURLs, u)
		}
	}
	fs.Func("webhook-url", "URL that receives signed events; repeatable (env STAGEDOOR_WEBHOOK_URLS, comma-separated)",
		func(u string) error {
			c.webhookURLs = append(c.webhookURLs, u)
			return nil
		})
	registerURLs(fs, getenv, &c.urls)
	fs.StringVar(&c.panelURL, "panel-url", getenv(envPanelURL),
		"the panel's public URL for invite links, e.g. https://HOST/panel/; empty: from each request (env "+envPanelURL+")")
	fs.StringVar(&c.panelAddr, "panel-addr", getenv("STAGEDOOR_PANEL_ADDR"),
		"a listener of its own for the control panel (at /panel/), e.g. 127.0.0.1:8081; empty: on the public listener under /panel/ (env STAGEDOOR_PANEL_ADDR)")
	fs.StringVar(&c.trustedProxies, "trusted-proxies", getenv("STAGEDOOR_TRUSTED_PROXIES"),
		"comma-separated CIDRs of reverse proxies whose X-Forwarded-For and X-Forwarded-Proto the panel believes, e.g. 127.0.0.1/32; empty: none (env STAGEDOOR_TRUSTED_PROXIES)")
	c.log.register(fs, getenv)
}

func (c *serviceConfig) validate() error {
	if err := stagedoor.ValidNodeID(c.nodeID); err != nil {
		return usageError("-node-id: " + err.Error())
	}
	if c.leaseTTL < 2*time.Second || c.leaseTTL > 5*time.Minute {
		return usageError("-lease-ttl must be between 2s and 5m")
	}
	if c.advertiseRTSP != "" {
		host, port, err := net.SplitHostPort(c.advertiseRTSP)
		if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			return usageError("-advertise-rtsp must be host:port")
		}
	}
	if c.reconcileEvery <= 0 || c.reconcileEvery > 30*time.Second {
		return usageError("-reconcile-interval must be between 0 and 30s")
	}
	if c.auditRetention < time.Hour {
		return usageError("-audit-retention must be at least 1h")
	}
	for _, u := range c.webhookURLs {
		if p, err := url.Parse(u); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return usageError("-webhook-url must be an http(s) URL")
		}
	}
	if c.panelURL != "" {
		base, err := panelBase(c.panelURL)
		if err != nil {
			return err
		}
		c.panelURL = base
	}
	if _, err := c.clusterNets(); err != nil {
		return err
	}
	if _, err := c.proxies(); err != nil {
		return err
	}
	if c.panelAddr != "" && c.panelAddr == c.publicAddr {
		return usageError("-panel-addr must differ from -public-addr (leave it empty to serve the panel there)")
	}
	if err := c.log.validate(); err != nil {
		return err
	}
	if c.rtmpBatch < 0 || c.rtmpBatch > 200*time.Millisecond {
		return usageError("-rtmp-batch must be between 0 and 200ms")
	}
	switch c.rtmpForward {
	case forwardAuto, forwardKernel, forwardPump:
	default:
		return usageError("-rtmp-forward must be auto, kernel or pump")
	}
	if err := c.rtmps.validate(c.rtmpAddr); err != nil {
		return err
	}
	for _, p := range c.publicReadProtocols() {
		switch p {
		case "hls", "rtsp", "rtmp", "srt", "webrtc", "moq":
		default:
			return usageError("-public-read: unknown protocol " + p)
		}
	}
	return nil
}

func (c *serviceConfig) publicReadProtocols() []string {
	var out []string
	for _, p := range strings.Split(c.publicRead, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// secrets are the credentials of Stagedoor's own clients: the hook processes, its calls
// to MediaMTX's API, and the alias relay. They come from the environment or are made
// fresh at start; they are never read from argv.
type secrets struct {
	hook  string
	admin string
	relay string
	// adminToken guards the admin HTTP API; "" disables it.
	adminToken string
	// webhook signs webhook deliveries.
	webhook string
	// cluster is the secret the nodes of a cluster pull each other's public names with
	// (peer aliases); "" disables them.
	cluster string
	// selfCheck marks the anonymous API probe (selfCheckNote); fresh at every start
	// and never given to MediaMTX or a client.
	selfCheck string
}

// loadSecrets reads secrets from the environment or from files named there
// (STAGEDOOR_ADMIN_TOKEN_FILE, STAGEDOOR_WEBHOOK_SECRET_FILE, STAGEDOOR_CLUSTER_SECRET_FILE), never from argv, and makes
// fresh internal ones where none is given.
func loadSecrets(getenv func(string) string) (secrets, error) {
	s := secrets{
		hook:  envOr(getenv, plugin.EnvHookSecret, newSecret()),
		admin: envOr(getenv, envAdminPassword, newSecret()),
		relay: envOr(getenv, envRelayPassword, newSecret()),

		selfCheck: newSecret(),
	}
	var err error
	if s.adminToken, err = secretFromEnv(getenv, "STAGEDOOR_ADMIN_TOKEN"); err != nil {
		return s, err
	}
	if s.webhook, err = secretFromEnv(getenv, "STAGEDOOR_WEBHOOK_SECRET"); err != nil {
		return s, err
	}
	if s.cluster, err = secretFromEnv(getenv, envClusterSecret); err != nil {
		return s, err
	}
	if strings.Trim(s.cluster, urlSafe) != "" {
		// It travels as the password of an RTSP URL in MediaMTX's path configuration.
		return s, usageError(envClusterSecret + ": use only letters, digits and - . _ ~")
	}
	return s, nil
}

// envClusterSecret names the cluster secret (or, with _FILE, the file holding it).
const envClusterSecret = "STAGEDOOR_CLUSTER_SECRET" // #nosec G101 -- the variable's name, not a secret

const urlSafe = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"

// secretFromEnv returns $NAME, or the first line of the file $NAME_FILE.
func secretFromEnv(getenv func(string) string, name string) (string, error) {
	v := getenv(name)
	if f := getenv(name + "_FILE"); v == "" && f != "" {
		b, err := os.ReadFile(f) // #nosec G304 -- operator-chosen secret file
		if err != nil {
			return "", usageError(fmt.Sprintf("read %s_FILE: %v", name, err))
		}
		v, _, _ = strings.Cut(string(b), "\n")
	}
	if v = strings.TrimSpace(v); v != "" && len(v) < 16 {
		return "", usageError(name + ": the secret must be at least 16 characters")
	}
	return v, nil
}

func (s secrets) list() []string {
	return []string{s.hook, s.admin, s.relay, s.adminToken, s.webhook, s.cluster, s.selfCheck}
}

func newSecret() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// proxies parses --trusted-proxies: CIDRs, or single addresses (a /32 or /128).
func (c *serviceConfig) proxies() ([]netip.Prefix, error) {
	return parseNets("-trusted-proxies", c.trustedProxies)
}

// clusterNets parses --cluster-cidrs: where the other nodes' peer pulls may come from.
func (c *serviceConfig) clusterNets() ([]netip.Prefix, error) {
	return parseNets("-cluster-cidrs", c.clusterCIDRs)
}

// parseNets parses flag's comma-separated CIDRs or single addresses (a /32 or /128).
func parseNets(flag, list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(list, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			a, aerr := netip.ParseAddr(f)
			if aerr != nil {
				return nil, usageError(flag + ": " + strconv.Quote(f) + " is neither a CIDR nor an IP address")
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// --rtmp-forward's values.
const (
	forwardAuto   = "auto"
	forwardKernel = "kernel"
	forwardPump   = "pump"
)
