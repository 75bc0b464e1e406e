DROP TABLE IF EXISTS webhook_deliveries;
DROP TABLE IF EXISTS key_policy;
DROP FUNCTION IF EXISTS hokusai_key_policy_changed();
DROP TABLE IF EXISTS auth_events;
