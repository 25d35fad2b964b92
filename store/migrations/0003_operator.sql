-- Keys revoked while their stream may still be live: `--keep-live` lets that stream
-- finish (the reconciler does not kick it); a reconnect is refused like any unknown key.
CREATE TABLE revoked_keys (
	digest      BLOB    PRIMARY KEY CHECK (length(digest) = 32),
	user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	fingerprint TEXT    NOT NULL,
	keep_live   INTEGER NOT NULL CHECK (keep_live IN (0, 1)),
	revoked_at  INTEGER NOT NULL
);

-- Audit trail: every publish decision, kick, admin change and webhook delivery. Never a
-- secret: keys appear only as fingerprints.
CREATE TABLE audit (
	id       INTEGER PRIMARY KEY,
	at       INTEGER NOT NULL,
	kind     TEXT    NOT NULL,
	username TEXT    NOT NULL DEFAULT '',
	key_fp   TEXT    NOT NULL DEFAULT '',
	ip       TEXT    NOT NULL DEFAULT '',
	protocol TEXT    NOT NULL DEFAULT '',
	decision TEXT    NOT NULL DEFAULT '',
	reason   TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX audit_at ON audit (at);
CREATE INDEX audit_user_at ON audit (username, at);

-- Events for webhooks, written in the same transaction as the change they describe
-- (transactional outbox), so a CLI ban in another process is never lost.
CREATE TABLE outbox (
	id        INTEGER PRIMARY KEY,
	at        INTEGER NOT NULL,
	event     TEXT    NOT NULL,
	username  TEXT    NOT NULL,
	channel   TEXT    NOT NULL DEFAULT '',
	attempts  INTEGER NOT NULL DEFAULT 0,
	next_at   INTEGER NOT NULL DEFAULT 0,
	done      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX outbox_pending ON outbox (done, next_at);

-- Policy generation: bumped by triggers on every change that can turn an allowed
-- credential into a refused one, so a running service notices CLI changes at once.
CREATE TABLE policy_generation (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL);
INSERT INTO policy_generation (id, value) VALUES (1, 0);
CREATE TRIGGER users_policy AFTER UPDATE OF active, password_hash ON users
	BEGIN UPDATE policy_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER users_delete_policy AFTER DELETE ON users
	BEGIN UPDATE policy_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER keys_delete_policy AFTER DELETE ON stream_keys
	BEGIN UPDATE policy_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER keys_insert_policy AFTER INSERT ON stream_keys
	BEGIN UPDATE policy_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER streams_delete_policy AFTER DELETE ON streams
	BEGIN UPDATE policy_generation SET value = value + 1 WHERE id = 1; END;
-- Inserts too: the auth path caches "no such stream" and "no such key" answers.
CREATE TRIGGER streams_insert_policy AFTER INSERT ON streams
	BEGIN UPDATE policy_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER users_insert_policy AFTER INSERT ON users
	BEGIN UPDATE policy_generation SET value = value + 1 WHERE id = 1; END;

-- The digest of the key a direct-ingest stream (live/<name>?key=…) used, so that revoking
-- that key can kick it too. Key-path streams carry the key in their path.
ALTER TABLE live_state ADD COLUMN key_digest BLOB;
