-- Publishing passwords (ScaleEngine style): only the bcrypt hash is kept. It is also a
-- publish credential itself (hash-as-password), so this column is as secret as a key.
ALTER TABLE users ADD COLUMN password_hash TEXT;

-- Stream names a user may publish to with user/password (or with no auth). They share the
-- public namespace live/<name> with user names.
CREATE TABLE streams (
	id            INTEGER PRIMARY KEY,
	name          TEXT    NOT NULL UNIQUE,
	user_id       INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	auth_required INTEGER NOT NULL DEFAULT 1 CHECK (auth_required IN (0, 1)),
	created_at    INTEGER NOT NULL
);
CREATE INDEX streams_user_id ON streams (user_id);

-- Live state moves from one row per user to one row per public name: a user may be live
-- on several streams at once. Live state is rebuilt by the reconciler, so nothing is lost.
DROP TABLE live_state;
CREATE TABLE live_state (
	name        TEXT    PRIMARY KEY,
	user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	key_id      INTEGER REFERENCES stream_keys (id) ON DELETE SET NULL,
	source_id   TEXT    NOT NULL,
	source_type TEXT    NOT NULL,
	live_since  INTEGER NOT NULL
);
CREATE INDEX live_state_user_id ON live_state (user_id);
