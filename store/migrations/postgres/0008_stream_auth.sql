-- PostgreSQL DDL of migrations/0008_stream_auth.sql: every update of streams sets
-- auth_required.
CREATE TRIGGER streams_auth_policy AFTER UPDATE ON streams
	REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION stagedoor_policy();
