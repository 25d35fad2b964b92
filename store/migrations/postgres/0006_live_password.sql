-- PostgreSQL DDL of migrations/0006_live_password.sql.
ALTER TABLE live_state ADD COLUMN password_digest BYTEA CHECK (password_digest IS NULL OR length(password_digest) = 32);
