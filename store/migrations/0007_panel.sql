-- Control-panel accounts, separate from publishing credentials: an operator (every
-- channel) or a streamer bound to one channel and named after it. Only the bcrypt hash
-- of the panel password is kept.
CREATE TABLE panel_accounts (
	id            INTEGER PRIMARY KEY,
	name          TEXT    NOT NULL UNIQUE,
	role          TEXT    NOT NULL CHECK (role IN ('operator', 'streamer')),
	user_id       INTEGER REFERENCES users (id) ON DELETE CASCADE,
	password_hash TEXT    NOT NULL,
	created_at    INTEGER NOT NULL,
	CHECK ((role = 'operator') = (user_id IS NULL))
);
CREATE UNIQUE INDEX panel_accounts_user ON panel_accounts (user_id) WHERE user_id IS NOT NULL;

-- Signed-in browsers. The session id is only in the cookie; this is its digest. Idle and
-- absolute timeouts are checked against seen_at and created_at.
CREATE TABLE panel_sessions (
	digest     BLOB    PRIMARY KEY CHECK (length(digest) = 32),
	account_id INTEGER NOT NULL REFERENCES panel_accounts (id) ON DELETE CASCADE,
	created_at INTEGER NOT NULL,
	seen_at    INTEGER NOT NULL
);
CREATE INDEX panel_sessions_account ON panel_sessions (account_id);

-- Single-use invites for a channel's streamer to set a panel password (the digest of
-- the token in the link).
CREATE TABLE panel_invites (
	digest     BLOB    PRIMARY KEY CHECK (length(digest) = 32),
	user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL,
	used_at    INTEGER
);

-- A ban signs the channel's streamer out everywhere, whoever bans (CLI, API, panel).
CREATE TRIGGER users_ban_panel_sessions AFTER UPDATE OF active ON users WHEN NEW.active = 0
	BEGIN DELETE FROM panel_sessions WHERE account_id IN (SELECT id FROM panel_accounts WHERE user_id = NEW.id); END;
