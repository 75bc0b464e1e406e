"""Key operations — create, list, show, update, revoke, rotate, audit — for the CLI and REST API.

Every validation and business rule of key management lives here, once: scopes, the expiry policy,
CIDRs, limits, names, e-mails, metadata and rotation. Front ends parse their own syntax (argparse,
JSON) into the typed arguments below and map ``authz.errors`` to exit codes or HTTP statuses.

Each operation is one transaction that first sets ``hokusai.actor`` (transaction-local), so the
audit rows the database triggers write name who did it; the same triggers ``NOTIFY`` the gateways.
A failed operation writes nothing.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from authz.errors import Conflict, Forbidden, InvalidInput, NotFound, StoreUnavailable
from authz.keys import format as key_format
from authz.keys import scopes as scope_rules
from authz.settings import Settings
from authz.storage.db import Connection, ConnectionFactory
from authz.usage import reports

Clock = Callable[[], datetime]

EXPIRING_SOON = timedelta(days=7)
MAX_NAME_LENGTH = 200
MAX_EMAIL_LENGTH = 320
MAX_ALLOWED_IPS = 64
MAX_METADATA_ENTRIES = 32
MAX_METADATA_VALUE = 256
MAX_LIMIT = 2**31 - 1  # the columns are integers
MAX_REASON_LENGTH = 500
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_METADATA_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_DISPLAY_PREFIX = re.compile(r"hk_(?:live|test)_([0-9A-Za-z]{12})")


def utcnow() -> datetime:
    return datetime.now(UTC)


# --- what callers see ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyView:
    """Every public field of a key; there is no hash or secret to leak."""

    key_id: str
    display_prefix: str
    user_email: str
    user_id: int
    name: str
    env: str
    scopes: tuple[str, ...]
    status: str  # active | expiring_soon | expired | revoked
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    revoked_reason: str | None
    rate_limit_per_hour: int | None
    burst: int | None
    allowed_ips: tuple[str, ...]
    rotated_from: str | None
    metadata: Mapping[str, str]

    def to_json(self) -> dict[str, Any]:
        """The stable JSON form (documented in docs/cli.md): timestamps ISO-8601 UTC or null."""
        return {
            "key_id": self.key_id,
            "display_prefix": self.display_prefix,
            "user_email": self.user_email,
            "user_id": self.user_id,
            "name": self.name,
            "env": self.env,
            "scopes": list(self.scopes),
            "status": self.status,
            "created_at": _iso(self.created_at),
            "expires_at": _iso(self.expires_at),
            "last_used_at": _iso(self.last_used_at),
            "revoked_at": _iso(self.revoked_at),
            "revoked_reason": self.revoked_reason,
            "rate_limit_per_hour": self.rate_limit_per_hour,
            "burst": self.burst,
            "allowed_ips": list(self.allowed_ips),
            "rotated_from": self.rotated_from,
            "metadata": dict(self.metadata),
        }


@dataclass(frozen=True, slots=True)
class KeyChanges:
    """An update: ``None`` leaves a field alone; ``clear_expiry`` removes the expiry;
    an empty ``allowed_ips`` or ``metadata`` clears it (lists replace, they do not merge)."""

    name: str | None = None
    scopes: Sequence[str] | None = None
    expires_at: datetime | None = None
    expires_in: timedelta | None = None
    clear_expiry: bool = False
    rate_limit_per_hour: int | None = None
    burst: int | None = None
    allowed_ips: Sequence[str] | None = None
    metadata: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Rotation:
    new: KeyView
    token: key_format.NewKey  # shown once
    old: KeyView  # with its shortened expiry


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    action: str
    key_id: str | None
    actor: str
    changes: Mapping[str, Any]
    hash: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": _iso(self.at),
            "action": self.action,
            "key_id": self.key_id,
            "actor": self.actor,
            "changes": dict(self.changes),
            "hash": self.hash,
        }


@dataclass(frozen=True, slots=True)
class AuditVerification:
    ok: bool
    rows_checked: int
    first_broken_id: int | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "rows_checked": self.rows_checked,
            "first_broken_id": self.first_broken_id,
            "reason": self.reason,
        }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- validation: the one place each rule is written -------------------------------------------


def parse_key_ref(text: str) -> str:
    """A key id from a 12-character id or a display prefix ``hk_live_<id>``; no I/O.

    The input is never echoed: someone may paste a whole key by mistake.
    """
    raw = text.strip()
    if key_format.KEY_ID_PATTERN.fullmatch(raw):
        return raw
    match = _DISPLAY_PREFIX.fullmatch(raw)
    if match:
        return match[1]
    if key_format.parse(raw) is not None:
        raise InvalidInput("that is a whole key, not a key id: pass its id (hk_live_<id>) only")
    raise InvalidInput("malformed key id: expected 12 base62 characters or hk_<env>_<id>")


def validate_email(email: str) -> str:
    value = email.strip().lower()
    if len(value) > MAX_EMAIL_LENGTH or not _EMAIL.fullmatch(value):
        raise InvalidInput(f"malformed e-mail address {email.strip()[:60]!r}")
    return value


def validate_name(name: str) -> str:
    value = name.strip()
    if not value:
        raise InvalidInput("the key name must not be empty")
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidInput(f"the key name is longer than {MAX_NAME_LENGTH} characters")
    if any(not ch.isprintable() for ch in value):
        raise InvalidInput("the key name contains control characters")
    return value


def validate_env(env: str) -> str:
    if env not in key_format.ENVIRONMENTS:
        raise InvalidInput(f"unknown key environment {env[:20]!r}: expected live or test")
    return env


def validate_limit(value: int | None, what: str) -> int | None:
    """``None`` means the gateway default; 0 means unlimited (rate) or no burst."""
    if value is not None and not 0 <= value <= MAX_LIMIT:
        raise InvalidInput(f"{what} must be between 0 and {MAX_LIMIT}, not {value}")
    return value


def validate_cidrs(values: Sequence[str]) -> tuple[str, ...]:
    """Normalised networks; a bare address is a /32 (/128). Host bits set is an error, not
    silently masked: ``10.0.0.1/8`` would widen access to the whole /8."""
    result: list[str] = []
    for raw in values:
        text = raw.strip()
        try:
            network = ipaddress.ip_network(text, strict=True)
        except ValueError:
            hint = _host_bits_hint(text)
            raise InvalidInput(f"bad CIDR {text[:50]!r}{hint}") from None
        if str(network) not in result:
            result.append(str(network))
    if len(result) > MAX_ALLOWED_IPS:
        raise InvalidInput(f"at most {MAX_ALLOWED_IPS} allowed networks per key")
    return tuple(result)


def _host_bits_hint(text: str) -> str:
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return ""
    return f": host bits are set (did you mean {network}?)"


def parse_metadata(items: Sequence[str]) -> dict[str, str]:
    """``k=v`` pairs into a mapping (the last of a repeated key wins), then validated."""
    result: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise InvalidInput(f"bad metadata {item[:60]!r}: expected key=value")
        result[name.strip()] = value
    return validate_metadata(result)


def validate_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    if len(metadata) > MAX_METADATA_ENTRIES:
        raise InvalidInput(f"at most {MAX_METADATA_ENTRIES} metadata entries per key")
    for name, value in metadata.items():
        if not isinstance(name, str) or not _METADATA_KEY.fullmatch(name):
            raise InvalidInput(
                f"bad metadata key {str(name)[:60]!r}: use 1-64 of A-Z a-z 0-9 _ . : -"
            )
        if not isinstance(value, str) or len(value) > MAX_METADATA_VALUE:
            raise InvalidInput(
                f"metadata {name!r}: value must be text of at most {MAX_METADATA_VALUE} characters"
            )
    return dict(metadata)


class ExpiryPolicy:
    """Expiry rules: never in the past, never beyond ``max_key_lifetime`` when it is set (and
    then a key without an expiry gets the maximum)."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        lifetime = settings.max_key_lifetime
        self._max = timedelta(seconds=lifetime) if lifetime else None
        self._clock = clock

    def resolve(
        self,
        expires_at: datetime | None,
        expires_in: timedelta | None,
        born: datetime | None = None,
    ) -> datetime | None:
        """The expiry for a key created at ``born`` (now for a new key)."""
        if expires_at is not None and expires_in is not None:
            raise InvalidInput("give an expiry time or a lifetime, not both")
        now = self._clock()
        if expires_in is not None:
            if expires_in <= timedelta(0):
                raise InvalidInput("the lifetime must be positive")
            expires_at = now + expires_in
        born = born or now
        if expires_at is None:
            return born + self._max if self._max else None
        expires_at = expires_at if expires_at.tzinfo else expires_at.replace(tzinfo=UTC)
        if expires_at <= now:
            raise InvalidInput(f"the expiry {_iso(expires_at)} is in the past")
        if self._max and expires_at > born + self._max:
            raise InvalidInput(
                f"the expiry {_iso(expires_at)} is beyond the maximum key lifetime "
                f"of {self._max.days} days (HOKUSAI_MAX_KEY_LIFETIME)"
            )
        return expires_at

    def capped(self, lifetime: timedelta | None) -> timedelta | None:
        """A lifetime held to the maximum (a key made before the policy may be longer-lived)."""
        if self._max is None or lifetime is None:
            return lifetime
        return min(lifetime, self._max)

    def require_expiry(self) -> None:
        if self._max:
            raise InvalidInput("keys must expire: a maximum key lifetime is set")


def status_of(expires_at: datetime | None, revoked_at: datetime | None, now: datetime) -> str:
    if revoked_at is not None:
        return "revoked"
    if expires_at is not None and expires_at <= now:
        return "expired"
    if expires_at is not None and expires_at - now <= EXPIRING_SOON:
        return "expiring_soon"
    return "active"


# --- the service ------------------------------------------------------------------------------

_SELECT = """
SELECT k.key_id, k.display_prefix, u.email AS user_email, k.user_id, k.name, k.env, k.scopes,
       k.created_at, k.expires_at, k.last_used_at, k.revoked_at, k.revoked_reason,
       k.rate_limit_per_hour, k.burst, k.allowed_ips, k.rotated_from, k.metadata
  FROM api_keys k JOIN users u ON u.id = k.user_id
"""
_ACTIVE = "k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())"


class KeyService:
    """Key operations for one actor (``cli:alice``, ``api:<key id>``); cheap to build."""

    def __init__(
        self, connect: ConnectionFactory, settings: Settings, actor: str, clock: Clock = utcnow
    ) -> None:
        self._connect = connect
        self._settings = settings
        self._actor = actor
        self._clock = clock
        self.expiry = ExpiryPolicy(settings, clock)

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """One connection, one transaction, the actor set; driver errors become HokusaiErrors."""
        conn = self._connect()
        where = f"{conn.info.host}:{conn.info.port}"
        try:
            with conn, conn.transaction():
                conn.row_factory = dict_row  # type: ignore[assignment]
                conn.execute("SELECT set_config('hokusai.actor', %s, true)", [self._actor])
                yield conn
        except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedFunction):
            raise StoreUnavailable(
                f"the database at {where} has no key tables: run `hokusai db migrate`"
            ) from None
        except psycopg.errors.IntegrityError as exc:
            # message_primary only: the detail line quotes the row, hash included.
            raise Conflict(f"the database refused the change: {exc.diag.message_primary}") from None
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"database at {where} failed: {type(exc).__name__}") from None

    def _view(self, row: Mapping[str, Any]) -> KeyView:
        return KeyView(
            key_id=row["key_id"],
            display_prefix=row["display_prefix"],
            user_email=row["user_email"],
            user_id=row["user_id"],
            name=row["name"],
            env=row["env"],
            scopes=tuple(row["scopes"]),
            status=status_of(row["expires_at"], row["revoked_at"], self._clock()),
            created_at=row["created_at"],
            expires_at=row["expires_at"],
            last_used_at=row["last_used_at"],
            revoked_at=row["revoked_at"],
            revoked_reason=row["revoked_reason"],
            rate_limit_per_hour=row["rate_limit_per_hour"],
            burst=row["burst"],
            allowed_ips=tuple(str(n) for n in row["allowed_ips"] or ()),
            rotated_from=row["rotated_from"],
            metadata=dict(row["metadata"] or {}),
        )

    def _fetch(self, conn: Connection, key_id: str, *, lock: bool = False) -> KeyView:
        sql = _SELECT + " WHERE k.key_id = %s" + (" FOR UPDATE OF k" if lock else "")
        row = conn.execute(sql, [key_id]).fetchone()
        if row is None:
            raise NotFound(f"no key with id {key_id}")
        return self._view(row)

    # --- create -------------------------------------------------------------------------------

    def create_key(
        self,
        *,
        user_email: str,
        name: str,
        env: str = "live",
        scopes: Sequence[str] = scope_rules.DEFAULT_SCOPES,
        expires_at: datetime | None = None,
        expires_in: timedelta | None = None,
        rate_limit_per_hour: int | None = None,
        burst: int | None = None,
        allowed_ips: Sequence[str] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> tuple[KeyView, key_format.NewKey]:
        """A new key (its user is created on first use); the ``NewKey`` token is shown once."""
        email = validate_email(user_email)
        fields = {
            "name": validate_name(name),
            "env": validate_env(env),
            "scopes": list(scope_rules.normalize(scopes)),
            "expires_at": self.expiry.resolve(expires_at, expires_in),
            "rate_limit_per_hour": validate_limit(rate_limit_per_hour, "the rate limit"),
            "burst": validate_limit(burst, "the burst"),
            "allowed_ips": list(validate_cidrs(allowed_ips)),
            "metadata": validate_metadata(metadata or {}),
        }
        new = key_format.generate(validate_env(env))
        with self._transaction() as conn:
            user_id = self._user_id(conn, email)
            self._insert(conn, new, user_id, fields, rotated_from=None)
            return self._fetch(conn, new.parsed.key_id), new

    def _user_id(self, conn: Connection, email: str) -> int:
        conn.execute(
            "INSERT INTO users (email) VALUES (%s) ON CONFLICT ((lower(email))) DO NOTHING", [email]
        )
        row = conn.execute(
            "SELECT id, disabled_at FROM users WHERE lower(email) = %s", [email]
        ).fetchone()
        assert row is not None  # inserted or already there, in this transaction
        if row["disabled_at"] is not None:
            raise Conflict(f"user {email} is disabled")
        return int(row["id"])

    def _insert(
        self,
        conn: Connection,
        new: key_format.NewKey,
        user_id: int,
        fields: Mapping[str, Any],
        rotated_from: str | None,
    ) -> None:
        parsed = new.parsed
        conn.execute(
            """INSERT INTO api_keys (key_id, secret_hash, display_prefix, user_id, name, env,
                   scopes, expires_at, rate_limit_per_hour, burst, allowed_ips, rotated_from,
                   metadata)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::text[]::cidr[], %s, %s)""",
            [
                parsed.key_id,
                key_format.hash_secret(parsed.secret, self._settings.bcrypt_cost),
                parsed.display_prefix,
                user_id,
                fields["name"],
                parsed.env,
                list(fields["scopes"]),
                fields["expires_at"],
                fields["rate_limit_per_hour"],
                fields["burst"],
                list(fields["allowed_ips"]),
                rotated_from,
                Jsonb(dict(fields["metadata"])),
            ],
        )

    # --- read ---------------------------------------------------------------------------------

    def get_key(self, key_id: str) -> KeyView:
        key_id = parse_key_ref(key_id)
        with self._transaction() as conn:
            return self._fetch(conn, key_id)

    def list_keys(
        self,
        *,
        user_email: str | None = None,
        include_inactive: bool = False,
        limit: int = 1000,
        offset: int = 0,
    ) -> list[KeyView]:
        """Keys newest first; by default only usable ones (not revoked, not expired)."""
        if not 1 <= limit <= 10_000 or offset < 0:
            raise InvalidInput("limit must be 1-10000 and offset not negative")
        where, params = ["TRUE"], []
        if user_email is not None:
            where.append("lower(u.email) = %s")
            params.append(validate_email(user_email))
        if not include_inactive:
            where.append(_ACTIVE)
        sql = (
            _SELECT
            + " WHERE "
            + " AND ".join(where)
            + " ORDER BY k.created_at DESC, k.key_id LIMIT %s OFFSET %s"
        )
        with self._transaction() as conn:
            rows = conn.execute(sql, [*params, limit, offset]).fetchall()
        return [self._view(row) for row in rows]

    # --- change -------------------------------------------------------------------------------

    def update_key(self, key_id: str, changes: KeyChanges) -> KeyView:
        """Apply ``changes`` with the same validation as ``create_key``; a revoked key is final."""
        key_id = parse_key_ref(key_id)
        columns = self._validated_changes(changes)
        with self._transaction() as conn:
            current = self._fetch(conn, key_id, lock=True)
            if current.status == "revoked":
                raise Conflict(f"key {key_id} is revoked; a revoked key cannot be changed")
            expiry = self._changed_expiry(changes, current)
            if expiry is not None:
                columns["expires_at"] = expiry[0]
            if columns:
                sets = ", ".join(
                    f"{name} = %s" + ("::text[]::cidr[]" if name == "allowed_ips" else "")
                    for name in columns
                )
                conn.execute(
                    f"UPDATE api_keys SET {sets} WHERE key_id = %s", [*columns.values(), key_id]
                )
            return self._fetch(conn, key_id)

    def _validated_changes(self, changes: KeyChanges) -> dict[str, Any]:
        columns: dict[str, Any] = {}
        if changes.name is not None:
            columns["name"] = validate_name(changes.name)
        if changes.scopes is not None:
            columns["scopes"] = list(scope_rules.normalize(changes.scopes))
        if changes.rate_limit_per_hour is not None:
            columns["rate_limit_per_hour"] = validate_limit(
                changes.rate_limit_per_hour, "the rate limit"
            )
        if changes.burst is not None:
            columns["burst"] = validate_limit(changes.burst, "the burst")
        if changes.allowed_ips is not None:
            columns["allowed_ips"] = list(validate_cidrs(changes.allowed_ips))
        if changes.metadata is not None:
            columns["metadata"] = Jsonb(validate_metadata(changes.metadata))
        return columns

    def _changed_expiry(
        self, changes: KeyChanges, current: KeyView
    ) -> tuple[datetime | None] | None:
        """``(new expiry,)`` when the update touches it, else None."""
        wants = changes.expires_at is not None or changes.expires_in is not None
        if changes.clear_expiry:
            if wants:
                raise InvalidInput("give a new expiry or remove it, not both")
            self.expiry.require_expiry()
            return (None,)
        if not wants:
            return None
        return (self.expiry.resolve(changes.expires_at, changes.expires_in, current.created_at),)

    def revoke_key(self, key_id: str, reason: str | None = None) -> tuple[KeyView, bool]:
        """Revoke now; idempotent. Returns the key and whether it was already revoked."""
        key_id = parse_key_ref(key_id)
        if reason is not None and len(reason) > MAX_REASON_LENGTH:
            raise InvalidInput(f"the reason is longer than {MAX_REASON_LENGTH} characters")
        with self._transaction() as conn:
            current = self._fetch(conn, key_id, lock=True)
            if current.revoked_at is not None:
                return current, True
            conn.execute(
                "UPDATE api_keys SET revoked_at = now(), revoked_reason = %s WHERE key_id = %s",
                [reason, key_id],
            )
            return self._fetch(conn, key_id), False

    def rotate_key(self, key_id: str, grace: timedelta | None = None) -> Rotation:
        """A new key with the old one's user, env, scopes, limits, networks and metadata; the old
        key keeps working for ``grace`` (default ``settings.default_rotation_grace``).

        The new key's lifetime equals the old key's (created → expires), restarted now and held
        to the maximum lifetime; a key without an expiry yields one without (unless policy sets
        one). Revoked and expired keys cannot be rotated.
        """
        key_id = parse_key_ref(key_id)
        if grace is None:
            grace = timedelta(seconds=self._settings.default_rotation_grace)
        if grace < timedelta(0):
            raise InvalidInput("the grace period must not be negative")
        with self._transaction() as conn:
            old = self._fetch(conn, key_id, lock=True)
            if old.status in {"revoked", "expired"}:
                raise Conflict(f"key {key_id} is {old.status}; create a new key instead")
            lifetime = None if old.expires_at is None else old.expires_at - old.created_at
            fields = {
                "name": old.name,
                "scopes": old.scopes,
                "rate_limit_per_hour": old.rate_limit_per_hour,
                "burst": old.burst,
                "allowed_ips": old.allowed_ips,
                "metadata": old.metadata,
                "expires_at": self.expiry.resolve(None, self.expiry.capped(lifetime)),
            }
            new = key_format.generate(old.env)
            self._insert(conn, new, old.user_id, fields, rotated_from=key_id)
            grace_end = self._clock() + grace
            old_end = grace_end if old.expires_at is None else min(old.expires_at, grace_end)
            conn.execute("UPDATE api_keys SET expires_at = %s WHERE key_id = %s", [old_end, key_id])
            return Rotation(self._fetch(conn, new.parsed.key_id), new, self._fetch(conn, key_id))

    # --- usage (the REST API's /usage: the same report as `hokusai auth usage`) -------------

    def key_usage(self, key_id: str, since: timedelta) -> reports.KeyReport:
        """Usage of one key over the last ``since``: 404 for an unknown key, zeros when unused."""
        key_id = parse_key_ref(key_id)
        if since <= timedelta(0):
            raise InvalidInput("the period must be positive")
        with self._transaction() as conn:
            self._fetch(conn, key_id)
            now = self._clock()
            return reports.key_report(conn, key_id, now - since, now)

    # --- audit --------------------------------------------------------------------------------

    def audit_entries(
        self,
        *,
        key_id: str | None = None,
        since: datetime | None = None,
        actor: str | None = None,
        action: str | None = None,
        limit: int = 1000,
    ) -> list[AuditEntry]:
        """Audit rows oldest first (the newest ``limit`` of those that match)."""
        if not 1 <= limit <= 100_000:
            raise InvalidInput("limit must be 1-100000")
        where: list[str] = ["TRUE"]
        params: list[Any] = []
        for column, value in (
            ("key_id", None if key_id is None else parse_key_ref(key_id)),
            ("actor", actor),
            ("action", action),
        ):
            if value is not None:
                where.append(f"{column} = %s")
                params.append(value)
        if since is not None:
            where.append("at >= %s")
            params.append(since)
        sql = (
            "SELECT * FROM (SELECT id, at, action, key_id, actor, changes, hash FROM audit_log"
            f" WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT %s) AS recent ORDER BY id"
        )
        with self._transaction() as conn:
            rows = conn.execute(sql, [*params, limit]).fetchall()
        return [AuditEntry(**row) for row in rows]

    def verify_audit_chain(self) -> AuditVerification:
        """Walk the log in id order, recomputing each hash in SQL (``hokusai_audit_hash``, the one
        definition) and checking each ``prev_hash`` link; report the first broken row.

        Catches modified, inserted and deleted rows, except deletion of the newest rows.
        """
        expected_prev, checked = "0" * 64, 0
        with self._transaction() as conn, conn.cursor(name="hokusai_audit_verify") as cursor:
            cursor.execute("""SELECT id, prev_hash, hash,
                                     hokusai_audit_hash(id, at, action, key_id, actor, changes,
                                                        prev_hash) AS computed
                                FROM audit_log ORDER BY id""")
            for row in cursor:
                checked += 1
                if row["prev_hash"] != expected_prev:
                    return AuditVerification(
                        False,
                        checked,
                        row["id"],
                        "its prev_hash does not match the previous row's hash",
                    )
                if row["computed"] != row["hash"]:
                    return AuditVerification(
                        False, checked, row["id"], "its contents do not match its hash"
                    )
                expected_prev = row["hash"]
        return AuditVerification(True, checked)


# --- delegation: what a calling key may do (the REST API; the CLI is the operator) ------------
# Added for the keys REST API (issue 6). A key with ``keys:manage`` manages its own user's keys,
# ``admin`` anyone's; neither may hand out more than it holds.


@dataclass(frozen=True, slots=True)
class Principal:
    """A verified calling key: whose it is and what it holds (from ``authz.records.KeyRecord``)."""

    key_id: str
    user_id: int
    scopes: frozenset[str]
    networks: tuple[str, ...]  # empty: unrestricted

    @property
    def is_admin(self) -> bool:
        return scope_rules.ADMIN in self.scopes

    @property
    def actor(self) -> str:
        """How the audit log names changes made with this key."""
        return f"api:{self.key_id}"


def require_scope(principal: Principal, scope: str) -> None:
    if not scope_rules.grants(principal.scopes, scope):
        raise Forbidden(f"this key lacks the {scope} scope")


def require_manager(principal: Principal, owner_user_id: int | None = None) -> None:
    """``keys:manage`` for the caller's own keys (``owner_user_id``), ``admin`` for anyone's."""
    require_scope(principal, scope_rules.KEYS_MANAGE)
    if owner_user_id is not None and owner_user_id != principal.user_id and not principal.is_admin:
        raise Forbidden("only an admin key may manage another user's keys")


def check_delegation(
    principal: Principal, scopes: Sequence[str] | None, allowed_ips: Sequence[str] | None
) -> None:
    """A key may grant only scopes it holds, and — when it is itself IP-restricted — only
    networks inside its own (an empty list, unrestricted, is wider than any)."""
    if scopes is not None:
        wanted = scope_rules.normalize(scopes)
        if not scope_rules.is_subset(wanted, principal.scopes):
            extra = sorted(set(wanted) - principal.scopes)
            raise Forbidden(f"a key cannot grant scopes it does not hold: {', '.join(extra)}")
    if allowed_ips is None or not principal.networks:
        return
    mine = [ipaddress.ip_network(n) for n in principal.networks]
    wanted_networks = [ipaddress.ip_network(n) for n in validate_cidrs(allowed_ips)]
    if not wanted_networks:
        raise Forbidden("an IP-restricted key cannot create or widen a key to any address")
    for network in wanted_networks:
        if not any(
            network.version == own.version and network.subnet_of(own)  # type: ignore[arg-type]
            for own in mine
        ):
            raise Forbidden(f"{network} is outside this key's own allowed networks")


def owner_for(principal: Principal, caller_email: str, requested: str | None) -> str:
    """Whose keys a call is about: the caller's own user, or (admin keys only) another."""
    if requested is None:
        return caller_email
    email = validate_email(requested)
    if email != caller_email.lower() and not principal.is_admin:
        raise Forbidden("only an admin key may manage another user's keys")
    return email


def check_change(
    principal: Principal,
    current: KeyView,
    scopes: Sequence[str] | None,
    allowed_ips: Sequence[str] | None,
) -> None:
    """A key may change or rotate only a key whose resulting grants it could create itself."""
    require_manager(principal, current.user_id)
    check_delegation(
        principal,
        current.scopes if scopes is None else scopes,
        current.allowed_ips if allowed_ips is None else allowed_ips,
    )
