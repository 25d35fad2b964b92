-- An operator's kick asked on one service (a node, or a replica without MediaMTX) of a
-- stream live on another node: only the holder's MediaMTX can end it. A request moves the
-- policy generation, so every service reconciles at once (its 250 ms poll; on PostgreSQL
-- the notification), and the holder takes the requests naming it and kicks the publisher
-- if it still carries that source. (The others only drop their auth caches: kicks are
-- rare.)
CREATE TABLE kick_requests (
	id           INTEGER PRIMARY KEY AUTOINCREMENT,
	name         TEXT    NOT NULL,
	node_id      TEXT    NOT NULL,
	source_id    TEXT    NOT NULL,
	requested_by TEXT    NOT NULL,
	requested_at INTEGER NOT NULL
);
CREATE INDEX kick_requests_node_id ON kick_requests (node_id);
CREATE TRIGGER kick_requests_policy AFTER INSERT ON kick_requests
	BEGIN UPDATE policy_generation SET value = value + 1 WHERE id = 1; END;
