-- Users, keys, usage rollups and the tamper-evident audit log.

CREATE TABLE users (
    id          bigserial PRIMARY KEY,
    email       text NOT NULL CHECK (length(email) BETWEEN 3 AND 320 AND position('@' IN email) > 1),
    created_at  timestamptz NOT NULL DEFAULT now(),
    disabled_at timestamptz
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE api_keys (
    id                  bigserial PRIMARY KEY,
    key_id              text NOT NULL UNIQUE CHECK (key_id ~ '^[0-9A-Za-z]{12}$'),
    secret_hash         text NOT NULL,
    display_prefix      text NOT NULL,
    user_id             bigint NOT NULL REFERENCES users (id),
    name                text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    env                 text NOT NULL CHECK (env IN ('live', 'test')),
    scopes              text[] NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now(),
    expires_at          timestamptz,
    last_used_at        timestamptz,
    revoked_at          timestamptz,
    revoked_reason      text,
    rate_limit_per_hour integer CHECK (rate_limit_per_hour >= 0),
    burst               integer CHECK (burst >= 0),
    allowed_ips         cidr[] NOT NULL DEFAULT '{}',
    rotated_from        text REFERENCES api_keys (key_id),
    metadata            jsonb NOT NULL DEFAULT '{}',
    -- Bumped by every change: caches compare it so a stale copy is never trusted.
    version             bigint NOT NULL DEFAULT 1
);
CREATE INDEX api_keys_user_id ON api_keys (user_id);
CREATE INDEX api_keys_active_expiry ON api_keys (expires_at) WHERE revoked_at IS NULL;
CREATE INDEX api_keys_rotated_from ON api_keys (rotated_from) WHERE rotated_from IS NOT NULL;

CREATE TABLE api_key_usage (
    key_id         text NOT NULL,
    minute         timestamptz NOT NULL,
    route          text NOT NULL,
    method         text NOT NULL,
    status_class   smallint NOT NULL CHECK (status_class BETWEEN 1 AND 5),
    count          bigint NOT NULL DEFAULT 0,
    errors         bigint NOT NULL DEFAULT 0,
    latency_sum_ms double precision NOT NULL DEFAULT 0,
    latency_max_ms double precision NOT NULL DEFAULT 0,
    -- Counts per latency bucket; the bucket bounds live in authz/usage.py.
    latency_buckets bigint[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (key_id, minute, route, method, status_class)
);
CREATE INDEX api_key_usage_minute ON api_key_usage (minute);

CREATE TABLE audit_log (
    id        bigserial PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    action    text NOT NULL,
    key_id    text,
    actor     text NOT NULL,
    changes   jsonb NOT NULL,
    prev_hash text NOT NULL,
    hash      text NOT NULL
);
CREATE INDEX audit_log_key_id ON audit_log (key_id, at);
CREATE INDEX audit_log_at ON audit_log (at);

-- The one definition of an audit row's hash: used by the trigger and by `hokusai auth audit --verify`.
CREATE FUNCTION hokusai_audit_hash(
    p_id bigint, p_at timestamptz, p_action text, p_key_id text, p_actor text, p_changes jsonb,
    p_prev_hash text
) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT encode(sha256(convert_to(concat_ws('|',
        p_id::text,
        to_char(p_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'),
        p_action, coalesce(p_key_id, ''), p_actor, p_changes::text, p_prev_hash), 'UTF8')), 'hex')
$$;

-- Who made the change: the CLI and the REST API set hokusai.actor for their transaction;
-- anyone else (raw SQL) is recorded as the database user.
CREATE FUNCTION hokusai_actor() RETURNS text LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('hokusai.actor', true), ''), 'db:' || session_user)
$$;

CREATE FUNCTION hokusai_audit_append(p_action text, p_key_id text, p_changes jsonb)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_prev text;
    v_id bigint;
    v_at timestamptz := clock_timestamp();
    v_actor text := hokusai_actor();
BEGIN
    -- Serialise appends so the chain has exactly one successor per row.
    PERFORM pg_advisory_xact_lock(7355608001);
    SELECT hash INTO v_prev FROM audit_log ORDER BY id DESC LIMIT 1;
    v_prev := coalesce(v_prev, repeat('0', 64));
    v_id := nextval(pg_get_serial_sequence('audit_log', 'id'));
    INSERT INTO audit_log (id, at, action, key_id, actor, changes, prev_hash, hash)
    VALUES (v_id, v_at, p_action, p_key_id, v_actor, p_changes, v_prev,
            hokusai_audit_hash(v_id, v_at, p_action, p_key_id, v_actor, p_changes, v_prev));
END
$$;

-- Every insert or update of a key is audited (secrets never) and announced to the gateways.
CREATE FUNCTION hokusai_api_keys_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_new jsonb := to_jsonb(NEW) - 'secret_hash' - 'id' - 'version';
    v_old jsonb;
    v_changes jsonb;
    v_action text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        v_changes := v_new;
        v_action := CASE WHEN NEW.rotated_from IS NULL THEN 'create' ELSE 'rotate' END;
    ELSE
        v_old := to_jsonb(OLD) - 'secret_hash' - 'id' - 'version';
        SELECT coalesce(jsonb_object_agg(n.key, jsonb_build_object('old', v_old -> n.key, 'new', n.value)), '{}')
          INTO v_changes
          FROM jsonb_each(v_new) AS n
         WHERE n.value IS DISTINCT FROM v_old -> n.key;
        IF NEW.secret_hash IS DISTINCT FROM OLD.secret_hash THEN
            v_changes := v_changes || '{"secret_hash": "changed"}';
        END IF;
        -- Usage bookkeeping is not a change to the key: neither audited nor announced.
        IF v_changes = '{}' OR (v_changes - 'last_used_at') = '{}' THEN
            RETURN NULL;
        END IF;
        v_action := CASE
            WHEN OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL THEN 'revoke'
            ELSE 'update' END;
    END IF;
    PERFORM hokusai_audit_append(v_action, NEW.key_id, v_changes);
    PERFORM pg_notify('hokusai_keys', NEW.key_id);
    RETURN NULL;
END
$$;

CREATE TRIGGER api_keys_audit AFTER INSERT OR UPDATE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION hokusai_api_keys_changed();

-- Each change bumps the version the caches compare.
CREATE FUNCTION hokusai_api_keys_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (to_jsonb(NEW) - 'last_used_at' - 'version') IS DISTINCT FROM (to_jsonb(OLD) - 'last_used_at' - 'version') THEN
        NEW.version := OLD.version + 1;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER api_keys_version BEFORE UPDATE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION hokusai_api_keys_version();

CREATE FUNCTION hokusai_api_keys_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM hokusai_audit_append('delete', OLD.key_id, to_jsonb(OLD) - 'secret_hash' - 'id' - 'version');
    PERFORM pg_notify('hokusai_keys', OLD.key_id);
    RETURN NULL;
END
$$;

CREATE TRIGGER api_keys_delete_audit AFTER DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION hokusai_api_keys_deleted();

-- The audit log is append-only for everyone who does not disable triggers; the hash chain
-- catches those who do.
CREATE FUNCTION hokusai_audit_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END
$$;

CREATE TRIGGER audit_log_immutable BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION hokusai_audit_immutable();

-- TRUNCATE fires no row triggers: refuse it separately.
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION hokusai_audit_immutable();
