-- Turning a stream's authentication on or off changes who may publish to it (off admits
-- publishes with no credentials; on refuses them), so it moves the policy generation
-- like every other credential change.
CREATE TRIGGER streams_auth_policy AFTER UPDATE OF auth_required ON streams
	BEGIN UPDATE policy_generation SET value = value + 1 WHERE id = 1; END;
