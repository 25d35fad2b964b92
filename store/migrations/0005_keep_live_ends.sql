-- A reset without keep-live lifts earlier keep-live graces (see ResetKeysWith): that turns
-- an allowed running stream into a refused one, so it moves the policy generation like
-- every other such change, whichever method makes it.
CREATE TRIGGER revoked_keys_keep_live_policy AFTER UPDATE OF keep_live ON revoked_keys
	BEGIN UPDATE policy_generation SET value = value + 1 WHERE id = 1; END;
