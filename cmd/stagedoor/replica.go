package main

import (
	"context"
	"flag"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/stagedoor/stagedoor"
	"github.com/stagedoor/stagedoor/panel"
	"github.com/stagedoor/stagedoor/plugin"
)

// A control-plane replica (`serve --no-mediamtx`, cluster.md §0, §2) serves the public
// listener (pages, status API, admin API, the panel), delivers webhooks, sweeps dead
// nodes' names and keeps its node's lease, on the database the nodes share. It has no
// MediaMTX: no reconciler, no RTMP or RTMPS front, no call to a MediaMTX API, no live
// numbers in the panel. Its internal listener is bound for /healthz, /metrics and the
// CLI's policy-changed notification, and denies everything else: a MediaMTX pointed at a
// replica by mistake is refused every auth and hook, never allowed.

// mediamtxOnlyFlags configure a MediaMTX, the fronts that feed one, or the auth it asks;
// given with --no-mediamtx they are a usage error. Their environment variables (and
// STAGEDOOR_CLUSTER_SECRET, for peer pulls) are ignored, so one environment file can
// serve nodes and replicas.
var mediamtxOnlyFlags = []string{
	"mediamtx-api", "mediamtx-rtsp", "mediamtx-rtmp", "rtmp-addr", "rtmp-batch", "rtmp-forward",
	"rtmps-addr", "rtmps-cert", "rtmps-key", "advertise-rtsp", "public-read", "cluster-key-takeover",
	"cluster-cidrs",
}

// replicaNodeSuffix makes a replica's default node id differ from the host's MediaMTX
// node's, so that the two on one host never share a node row and lease.
const replicaNodeSuffix = "-replica"

// registerNoMediaMTX adds serve's --no-mediamtx (run starts MediaMTX by definition).
func (c *serviceConfig) registerNoMediaMTX(fs *flag.FlagSet) {
	fs.BoolVar(&c.noMediaMTX, "no-mediamtx", false,
		"a control-plane replica without a MediaMTX: the panel, admin API, pages and webhooks on the shared database; "+
			"no auth, hooks, reconciler or RTMP front (default node id: the host name + \""+replicaNodeSuffix+"\")")
}

// checkNoMediaMTX runs after parsing: with --no-mediamtx, a MediaMTX-only flag given
// explicitly is a usage error, what their environment variables set is dropped, and the
// node id defaults to the host name + replicaNodeSuffix.
func (c *serviceConfig) checkNoMediaMTX(fs *flag.FlagSet) error {
	if !c.noMediaMTX {
		return nil
	}
	var given []string
	// Only --node-id names a replica: STAGEDOOR_NODE_ID may come from an env file shared
	// with the node beside it, whose row and lease the replica would then take over.
	nodeIDGiven := false
	fs.Visit(func(f *flag.Flag) {
		if slices.Contains(mediamtxOnlyFlags, f.Name) {
			given = append(given, "-"+f.Name)
		}
		nodeIDGiven = nodeIDGiven || f.Name == "node-id"
	})
	if len(given) > 0 {
		return usageError("-no-mediamtx: no MediaMTX here, so no " + strings.Join(given, ", "))
	}
	c.rtmpAddr, c.rtmps, c.advertiseRTSP = "", rtmpsConfig{}, ""
	if !nodeIDGiven {
		c.nodeID = replicaNodeID(defaultNodeID())
	}
	return nil
}

// replicaNodeID is host + replicaNodeSuffix, within a node id's 63 characters.
func replicaNodeID(host string) string {
	return host[:min(len(host), 63-len(replicaNodeSuffix))] + replicaNodeSuffix
}

// asReplica turns the service built by newService into a replica's: kicks are asked of
// the node holding the name (no MediaMTX here to kick through).
func (s *service) asReplica() {
	s.ops.Kicker = s.kickElsewhere
	s.logger.Info("control-plane replica: no MediaMTX, no auth, hooks or reconciler", "node", s.cfg.nodeID)
}

// kickElsewhere is a replica's kick: a name live anywhere is live on a node, which kicks
// it when it takes the request (plugin.RequestKick); a name live nowhere was not kicked.
func (s *service) kickElsewhere(ctx context.Context, name string) (bool, error) {
	states, err := s.db.LiveStates(ctx)
	if err != nil {
		return false, err
	}
	for _, l := range states {
		if l.Name == name {
			return plugin.RequestKick(ctx, s.db, s.cfg.nodeID, l)
		}
	}
	return false, nil
}

// replicaInternal are the internal routes a replica serves; everything else is denied.
var replicaInternal = []string{"GET /healthz", "GET /metrics", "POST /internal/policy-changed"}

// internalHandler is the internal listener's handler: internalRoutes, or on a replica
// only its replicaInternal routes, with 403 for the rest (MediaMTX's auth and hooks).
func (s *service) internalHandler() http.Handler {
	h := s.internalRoutes()
	if !s.cfg.noMediaMTX {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		method := r.Method
		if method == http.MethodHead {
			method = http.MethodGet // as the mux's GET patterns do: a balancer's HEAD /healthz
		}
		if !slices.Contains(replicaInternal, method+" "+r.URL.Path) {
			http.Error(w, "denied: this Stagedoor has no MediaMTX (serve --no-mediamtx)", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// meter is the panel's source of live numbers: MediaMTX's API, or none on a replica (the
// panel then shows live state and uptime from the database, without viewers or bitrate).
func (s *service) meter() panel.Meter {
	if s.cfg.noMediaMTX {
		return nil
	}
	return &liveMeter{api: s.api}
}

// checkReplicaID refuses a replica whose node id names a media node (one with an RTSP
// address) whose lease still runs: registering would blank that node's address and renew
// its lease, so its peers would stop serving its names, and its death would never free them.
func checkReplicaID(ctx context.Context, db interface {
	Nodes(ctx context.Context) ([]stagedoor.Node, error)
}, id string) error {
	nodes, err := db.Nodes(ctx)
	if err != nil {
		return err
	}
	for _, n := range nodes {
		if n.ID == id && n.RTSPAddr != "" && time.Now().Before(n.LeaseUntil) {
			return usageError("-node-id " + id + " is a running node's with a MediaMTX: give the replica an id of its own")
		}
	}
	return nil
}
