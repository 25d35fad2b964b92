-- The SHA-256 of the password hash that was current when a password admitted a stream on
-- a public name, so that changing the password can kick it (the hash itself stays only in
-- users). NULL for streams a key or nothing admitted.
ALTER TABLE live_state ADD COLUMN password_digest BLOB CHECK (password_digest IS NULL OR length(password_digest) = 32);
