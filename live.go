package stagedoor

import "time"

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
}
