-- Cluster mode: several Stagedoor nodes share one database (PostgreSQL; SQLite gets the
-- same schema). One row per node; its lease (Unix milliseconds) is renewed by the node's
-- health probe, and a node whose lease ran out is dead: its live names are freed.
CREATE TABLE nodes (
	id          TEXT    PRIMARY KEY,
	rtsp_addr   TEXT    NOT NULL DEFAULT '',
	started_at  INTEGER NOT NULL,
	lease_until INTEGER NOT NULL
);

-- Live state gains the node that carries each name, how it was published (a key path:
-- the newest publish wins; the public name: the first wins) and a claim epoch. It is
-- derived state that the reconcilers rebuild, so it is recreated, as 0002 did. node_id
-- has no foreign key: a name whose node row is missing counts as held by a dead node.
DROP TABLE live_state;
CREATE TABLE live_state (
	name            TEXT    PRIMARY KEY,
	user_id         INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	key_id          INTEGER REFERENCES stream_keys (id) ON DELETE SET NULL,
	key_digest      BLOB,
	password_digest BLOB    CHECK (password_digest IS NULL OR length(password_digest) = 32),
	source_id       TEXT    NOT NULL,
	source_type     TEXT    NOT NULL,
	live_since      INTEGER NOT NULL,
	node_id         TEXT    NOT NULL,
	kind            TEXT    NOT NULL CHECK (kind IN ('key', 'direct')),
	epoch           INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX live_state_user_id ON live_state (user_id);
CREATE INDEX live_state_node_id ON live_state (node_id);

-- Webhook deliveries are claimed, so that several replicas deliver each event once.
ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
ALTER TABLE outbox ADD COLUMN claimed_until INTEGER;

-- The heartbeat is the node's lease now.
DROP TABLE heartbeat;
