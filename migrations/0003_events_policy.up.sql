-- Issue 15: authentication events, the central key policy, expiry-warning deliveries.
-- Independent of 0002 (sessions): it touches only its own tables and 0001's functions.

-- Refused checks whose credential parsed to a key id, and sign-ins (issue 13's keys-API process
-- calls the same recorder). Written in batches off the hot path; identical events of one second
-- (same key, reason, client, route, method, instance) are one row with their count, so a flood
-- of refusals costs the database rows per second, not per request. Not hash-chained (volume):
-- the audit log keeps key operations. Never a secret: the key id is public, the route has no
-- query string.
CREATE TABLE auth_events (
    id             bigserial PRIMARY KEY,
    at             timestamptz NOT NULL,  -- the second the events happened in
    count          integer NOT NULL DEFAULT 1 CHECK (count >= 1),
    kind           text NOT NULL CHECK (kind IN ('denied', 'signin', 'signin_refused', 'signout')),
    key_id         text,
    user_id        bigint,
    reason         text NOT NULL,
    client_address inet,
    route          text NOT NULL DEFAULT '',
    method         text NOT NULL DEFAULT '',
    instance       text NOT NULL DEFAULT ''
);
CREATE INDEX auth_events_key_at ON auth_events (key_id, at);
CREATE INDEX auth_events_user_at ON auth_events (user_id, at);
CREATE INDEX auth_events_at ON auth_events (at);

-- The key policy: one row (id is always true). Per-scope and per-env maxima are
-- {"scope or env": seconds} objects. Every change is audited and announced; hokusai's writes
-- bump version and updated_at (authz/storage/policy.py), for people: caches never compare them.
CREATE TABLE key_policy (
    id                  boolean PRIMARY KEY DEFAULT true CHECK (id),
    max_lifetime        interval CHECK (max_lifetime > interval '0'),
    max_lifetime_scope  jsonb NOT NULL DEFAULT '{}',
    max_lifetime_env    jsonb NOT NULL DEFAULT '{}',
    inactivity_expiry   interval CHECK (inactivity_expiry > interval '0'),
    require_expiry_live boolean NOT NULL DEFAULT false,
    version             bigint NOT NULL DEFAULT 1,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
INSERT INTO key_policy DEFAULT VALUES;

-- Audited like a key change (action policy.update, no key id) and announced on the keys
-- channel with the payload ':policy' (a key id is 12 base62 characters: never that).
CREATE FUNCTION hokusai_key_policy_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_new jsonb := to_jsonb(NEW) - 'id' - 'version' - 'updated_at';
    v_old jsonb := to_jsonb(OLD) - 'id' - 'version' - 'updated_at';
    v_changes jsonb;
BEGIN
    SELECT coalesce(jsonb_object_agg(n.key, jsonb_build_object('old', v_old -> n.key, 'new', n.value)), '{}')
      INTO v_changes
      FROM jsonb_each(v_new) AS n
     WHERE n.value IS DISTINCT FROM v_old -> n.key;
    IF v_changes = '{}' THEN
        RETURN NULL;
    END IF;
    PERFORM hokusai_audit_append('policy.update', NULL, v_changes);
    PERFORM pg_notify('hokusai_keys', ':policy');
    RETURN NULL;
END
$$;

CREATE TRIGGER key_policy_audit AFTER UPDATE ON key_policy
    FOR EACH ROW EXECUTE FUNCTION hokusai_key_policy_changed();

-- Expiry warnings: one row per key and threshold (the unique key makes "once" hold however
-- many instances race), with the delivery log. Never the webhook secret.
CREATE TABLE webhook_deliveries (
    id              bigserial PRIMARY KEY,
    key_id          text NOT NULL,
    threshold_s     bigint NOT NULL,
    expires_at      timestamptz NOT NULL,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'failed', 'superseded')),
    attempts        integer NOT NULL DEFAULT 0,
    last_status     integer,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    UNIQUE (key_id, threshold_s)
);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
