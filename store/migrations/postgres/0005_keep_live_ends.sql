-- PostgreSQL DDL of migrations/0005_keep_live_ends.sql: every update of revoked_keys sets
-- keep_live (endKeepLive, and the upsert of a revocation).
CREATE TRIGGER revoked_keys_keep_live_policy AFTER UPDATE ON revoked_keys
	REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION stagedoor_policy();
