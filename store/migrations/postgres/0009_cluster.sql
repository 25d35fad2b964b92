-- PostgreSQL DDL of migrations/0009_cluster.sql.
CREATE TABLE nodes (
	id          TEXT   COLLATE "C" PRIMARY KEY,
	rtsp_addr   TEXT   NOT NULL DEFAULT '',
	started_at  BIGINT NOT NULL,
	lease_until BIGINT NOT NULL
);

DROP TABLE live_state;
CREATE TABLE live_state (
	name            TEXT   COLLATE "C" PRIMARY KEY,
	user_id         BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	key_id          BIGINT REFERENCES stream_keys (id) ON DELETE SET NULL,
	key_digest      BYTEA,
	password_digest BYTEA  CHECK (password_digest IS NULL OR length(password_digest) = 32),
	source_id       TEXT   NOT NULL,
	source_type     TEXT   NOT NULL,
	live_since      BIGINT NOT NULL,
	node_id         TEXT   COLLATE "C" NOT NULL,
	kind            TEXT   NOT NULL CHECK (kind IN ('key', 'direct')),
	epoch           BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX live_state_user_id ON live_state (user_id);
CREATE INDEX live_state_node_id ON live_state (node_id);

ALTER TABLE outbox ADD COLUMN claimed_by TEXT COLLATE "C";
ALTER TABLE outbox ADD COLUMN claimed_until BIGINT;

DROP TABLE heartbeat;

-- Notifications for the listener to come: 'live' on every change of live state, 'nodes'
-- when a node appears, goes or moves its RTSP address, never on a lease renewal (the
-- probe's upsert updates lease_until only, and row-level INSERT triggers do not fire for
-- a row that conflicted). PostgreSQL folds the notifications of one transaction.
CREATE FUNCTION stagedoor_notify() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
	PERFORM pg_notify('stagedoor_' || current_schema(), TG_ARGV[0]);
	RETURN NULL;
END
$$;
CREATE TRIGGER live_state_notify AFTER INSERT OR UPDATE OR DELETE ON live_state
	FOR EACH ROW EXECUTE FUNCTION stagedoor_notify('live');
CREATE TRIGGER nodes_notify AFTER INSERT OR DELETE ON nodes
	FOR EACH ROW EXECUTE FUNCTION stagedoor_notify('nodes');
CREATE TRIGGER nodes_addr_notify AFTER UPDATE OF rtsp_addr ON nodes
	FOR EACH ROW EXECUTE FUNCTION stagedoor_notify('nodes');
