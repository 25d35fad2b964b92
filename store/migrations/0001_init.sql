-- Users are public channels; the name is the public path live/<name>.
CREATE TABLE users (
	id         INTEGER PRIMARY KEY,
	name       TEXT    NOT NULL UNIQUE,
	active     INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
	created_at INTEGER NOT NULL
);

-- Stream keys are kept only as SHA-256 digests; the key itself is shown once.
CREATE TABLE stream_keys (
	id           INTEGER PRIMARY KEY,
	user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	digest       BLOB    NOT NULL UNIQUE CHECK (length(digest) = 32),
	fingerprint  TEXT    NOT NULL,
	label        TEXT    NOT NULL DEFAULT '',
	created_at   INTEGER NOT NULL,
	last_used_at INTEGER
);
CREATE INDEX stream_keys_user_id ON stream_keys (user_id);

-- One row per live channel: which MediaMTX source (the kick id) carries it.
CREATE TABLE live_state (
	user_id     INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
	key_id      INTEGER REFERENCES stream_keys (id) ON DELETE SET NULL,
	source_id   TEXT    NOT NULL,
	source_type TEXT    NOT NULL,
	live_since  INTEGER NOT NULL
);
