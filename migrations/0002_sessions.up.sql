-- Browser sessions (issue 13): sessions bound to the key that signed in, their audit and NOTIFY
-- triggers, and disabling a user (which ends their keys and sessions everywhere within a second).

ALTER TABLE users ADD COLUMN disabled_reason text CHECK (length(disabled_reason) <= 500);

-- The cookie value is never stored: only its SHA-256 (id_hash). A session of kind 'key' uses the
-- live record of its key (never a copy of its scopes); kind 'oidc' (next) carries the scopes its
-- sign-in mapped to.
CREATE TABLE sessions (
    id_hash        bytea PRIMARY KEY CHECK (length(id_hash) = 32),
    kind           text NOT NULL CHECK (kind IN ('key', 'oidc')),
    key_id         text REFERENCES api_keys (key_id) ON DELETE CASCADE,
    user_id        bigint NOT NULL REFERENCES users (id),
    scopes         text[],
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_seen_at   timestamptz NOT NULL DEFAULT now(),
    idle_timeout   interval NOT NULL CHECK (idle_timeout > interval '0'),
    expires_at     timestamptz NOT NULL,
    revoked_at     timestamptz,
    revoked_reason text CHECK (length(revoked_reason) <= 200),
    client_address inet,
    user_agent     text CHECK (length(user_agent) <= 200),
    -- Bumped by every change but last_seen_at (the writes in authz/storage/sessions.py do it).
    version        bigint NOT NULL DEFAULT 1,
    CHECK ((kind = 'key') = (key_id IS NOT NULL)),
    CHECK ((kind = 'oidc') = (scopes IS NOT NULL))
);
CREATE INDEX sessions_key_id ON sessions (key_id);
CREATE INDEX sessions_user_id ON sessions (user_id);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

-- What an audit row says about a session: never its id or hash.
CREATE FUNCTION hokusai_session_summary(s sessions) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'kind', s.kind, 'user_id', s.user_id, 'client', host(s.client_address),
        'user_agent', s.user_agent, 'expires_at', s.expires_at, 'reason', s.revoked_reason))
$$;

-- Whether a session still worked (a pruned dead row is not a revocation).
CREATE FUNCTION hokusai_session_live(s sessions) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT s.revoked_at IS NULL AND s.expires_at > now() AND s.last_seen_at + s.idle_timeout > now()
$$;

-- Sign-in, sign-out and revocation are audited with the key id, and every change is announced
-- (NOTIFY hokusai_sessions <hex id_hash>) so every instance drops its cached copy. last_seen_at
-- bookkeeping is neither audited nor announced (as api_keys.last_used_at).
CREATE FUNCTION hokusai_sessions_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM hokusai_audit_append('session.signin', NEW.key_id, hokusai_session_summary(NEW));
    ELSIF TG_OP = 'UPDATE' THEN
        IF (to_jsonb(NEW) - 'last_seen_at' - 'version') = (to_jsonb(OLD) - 'last_seen_at' - 'version') THEN
            RETURN NULL;
        END IF;
        IF OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL THEN
            PERFORM hokusai_audit_append(
                CASE WHEN NEW.revoked_reason = 'signed_out' THEN 'session.signout' ELSE 'session.revoke' END,
                NEW.key_id, hokusai_session_summary(NEW));
        END IF;
    ELSE
        IF hokusai_session_live(OLD) THEN
            PERFORM hokusai_audit_append('session.revoke', OLD.key_id, hokusai_session_summary(OLD));
        END IF;
        PERFORM pg_notify('hokusai_sessions', encode(OLD.id_hash, 'hex'));
        RETURN NULL;
    END IF;
    PERFORM pg_notify('hokusai_sessions', encode(NEW.id_hash, 'hex'));
    RETURN NULL;
END
$$;

CREATE TRIGGER sessions_audit AFTER INSERT OR UPDATE OR DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION hokusai_sessions_changed();

-- Disabling (or enabling) a user is audited and announced for every key of the user (their
-- records carry disabled_at) and every live session (kind 'oidc' reads it from its own record).
CREATE FUNCTION hokusai_users_disabled() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_key text;
    v_session bytea;
BEGIN
    IF NEW.disabled_at IS NOT DISTINCT FROM OLD.disabled_at THEN
        RETURN NULL;
    END IF;
    PERFORM hokusai_audit_append(
        CASE WHEN NEW.disabled_at IS NULL THEN 'user.enable' ELSE 'user.disable' END, NULL,
        jsonb_strip_nulls(jsonb_build_object('user_id', NEW.id, 'email', NEW.email,
                                             'reason', NEW.disabled_reason)));
    FOR v_key IN SELECT key_id FROM api_keys WHERE user_id = NEW.id LOOP
        PERFORM pg_notify('hokusai_keys', v_key);
    END LOOP;
    FOR v_session IN SELECT id_hash FROM sessions s WHERE s.user_id = NEW.id AND hokusai_session_live(s) LOOP
        PERFORM pg_notify('hokusai_sessions', encode(v_session, 'hex'));
    END LOOP;
    RETURN NULL;
END
$$;

CREATE TRIGGER users_disabled AFTER UPDATE OF disabled_at ON users
    FOR EACH ROW EXECUTE FUNCTION hokusai_users_disabled();
