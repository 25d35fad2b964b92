package stagedoor

import (
	"strings"
	"time"
)

// LiveState says which MediaMTX source carries a live public name (a user's channel or
// one of their streams).
type LiveState struct {
	// Name is the public name: the stream plays at live/<Name>.
	Name     string
	UserID   int64
	UserName string
	// KeyID is the stream key that went live, 0 for password or no-auth ingest.
	KeyID int64
	// KeyDigest is the digest of the key that went live, nil for password or no-auth
	// ingest; unlike KeyID it survives the key's revocation, so the stream can be kicked.
	KeyDigest *Digest
	// PasswordDigest is, for a stream a password admitted, the SHA-256 of the user's
	// stored password hash at that time (HashDigest), so that a password change kicks it;
	// nil otherwise. It is not the hash, which is itself a publish credential.
	PasswordDigest *Digest
	// SourceID is MediaMTX's conn or session id (MTX_SOURCE_ID), also the kick id.
	SourceID   string
	SourceType string
	Since      time.Time
	// NodeID is the Stagedoor node whose MediaMTX carries the stream (ValidNodeID).
	NodeID string
	// Kind is how the stream was published (LiveKey or LiveDirect); it decides whether
	// another node's publish may take the name over.
	Kind string
	// Epoch counts the claims that changed this row since the name went live; set by the
	// store.
	Epoch int64
}

// Live kinds: how a live name was published.
const (
	// LiveKey is a publish on a stream-key path: the newest publish of a key wins the
	// name, across nodes too (an encoder reconnecting through another node gets on at once).
	LiveKey = "key"
	// LiveDirect is a publish on the public name itself (password, ?key=, no auth): the
	// first wins, cluster-wide.
	LiveDirect = "direct"
)

// Claim is the outcome of a node's claim of a live name.
type Claim struct {
	// Won: the claiming node holds the name now.
	Won bool
	// Holder is the node that holds the name after the claim (the claimer when Won).
	Holder string
	// Epoch is the holder's row's epoch.
	Epoch int64
}

// KickRequest is an operator's kick asked on one service of a stream live on another
// node, whose own service must carry it out (only its MediaMTX can end the stream).
type KickRequest struct {
	Name     string
	Node     string
	SourceID string
	// By says who asked, for the audit: the operator or API, and the service asked.
	By string
	At time.Time
}

// Node is one Stagedoor replica of a cluster that shares the database. Its lease is
// renewed by its health probe; a node whose lease ran out is dead, and its live names
// are freed.
type Node struct {
	ID string
	// RTSPAddr is where peers pull its live names from; "" for a replica without MediaMTX.
	RTSPAddr   string
	StartedAt  time.Time
	LeaseUntil time.Time
}

const nodeIDChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"

// ValidNodeID checks a node id (--node-id, by default the host name): 1 to 63 letters,
// digits, dots, underscores or hyphens.
func ValidNodeID(id string) error {
	if id == "" || len(id) > 63 {
		return &InvalidError{Field: "node id", Reason: "must be 1 to 63 characters"}
	}
	if strings.Trim(id, nodeIDChars) != "" {
		return &InvalidError{Field: "node id", Reason: "only letters, digits, '.', '_' and '-'"}
	}
	return nil
}
