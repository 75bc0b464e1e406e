DROP TRIGGER IF EXISTS users_disabled ON users;
DROP FUNCTION IF EXISTS hokusai_users_disabled();
DROP FUNCTION IF EXISTS hokusai_session_live(sessions);
DROP FUNCTION IF EXISTS hokusai_session_summary(sessions);
DROP TABLE IF EXISTS sessions;
DROP FUNCTION IF EXISTS hokusai_sessions_changed();
ALTER TABLE users DROP COLUMN IF EXISTS disabled_reason;
