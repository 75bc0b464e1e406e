"""Key operations — create, list, show, update, revoke, rotate, usage, audit — for the CLI and the
REST API.

Every business rule of key management is applied here, once: validation (``validation.py``), the
expiry policy (``expiry.py``), scopes (``authz.keys.scopes``) and rotation. Front ends parse their
own syntax (argparse, JSON) into the typed arguments below and map ``authz.errors`` to exit codes
or HTTP statuses; what a calling key may delegate is ``delegation.py``'s.

Each operation is one transaction (``repository.transaction``) that first sets ``hokusai.actor``,
so the audit rows the database triggers write name who did it; the same triggers ``NOTIFY`` the
gateways. A failed operation writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, closing
from datetime import UTC, datetime, timedelta
from typing import Any

from authz.errors import Conflict, InvalidInput, NotFound
from authz.keys import durations
from authz.keys import format as key_format
from authz.keys import scopes as scope_rules
from authz.keys.policy import KeyPolicy
from authz.management import policy as policy_rules
from authz.management.events import DeliveryView, EventView
from authz.management.expiry import ExpiryPolicy
from authz.management.repository import KeyRepository, transaction
from authz.management.validation import (
    MAX_REASON_LENGTH,
    parse_key_ref,
    validate_cidrs,
    validate_email,
    validate_env,
    validate_limit,
    validate_metadata,
    validate_name,
)
from authz.management.views import (
    AuditEntry,
    AuditVerification,
    KeyChanges,
    KeyView,
    Rotation,
    UserView,
    status_of,
)
from authz.settings import Settings
from authz.storage.db import ConnectionFactory, connector
from authz.usage import reports

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


def open_key_service(database_url: str, settings: Settings, actor: str) -> KeyService:
    """The service on ``database_url``, one connection per operation (the CLI's and tools')."""
    return KeyService(connector(database_url), settings, actor)


class KeyService:
    """Key operations for one actor (``cli:alice``, ``api:<key id>``); cheap to build."""

    def __init__(
        self, connect: ConnectionFactory, settings: Settings, actor: str, clock: Clock = utcnow
    ) -> None:
        self._connect = connect
        self._settings = settings
        self._actor = actor
        self._clock = clock

    def _expiry(self, repo: KeyRepository) -> ExpiryPolicy:
        """The expiry rules of the central policy, read in the operation's transaction."""
        return ExpiryPolicy(repo.policy(), self._clock)

    def _transaction(self) -> AbstractContextManager[KeyRepository]:
        return transaction(self._connect, self._actor)

    def _view(self, fields: Mapping[str, Any]) -> KeyView:
        status = status_of(fields["expires_at"], fields["revoked_at"], self._clock())
        return KeyView(**fields, status=status)

    def _fetch(self, repo: KeyRepository, key_id: str, *, lock: bool = False) -> KeyView:
        fields = repo.key(key_id, lock=lock)
        if fields is None:
            raise NotFound(f"no key with id {key_id}")
        return self._view(fields)

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
        if expires_at is not None and expires_in is not None:
            raise InvalidInput("give an expiry time or a lifetime, not both")
        fields: dict[str, Any] = {
            "name": validate_name(name),
            "env": validate_env(env),
            "scopes": list(scope_rules.normalize(scopes)),
            "rate_limit_per_hour": validate_limit(rate_limit_per_hour, "the rate limit"),
            "burst": validate_limit(burst, "the burst"),
            "allowed_ips": list(validate_cidrs(allowed_ips)),
            "metadata": validate_metadata(metadata or {}),
        }
        new = key_format.generate(validate_env(env))
        with self._transaction() as repo:
            fields["expires_at"] = self._expiry(repo).resolve(
                expires_at, expires_in, scopes=fields["scopes"], env=env
            )
            user_id, disabled = repo.user(email)
            if disabled:
                raise Conflict(f"user {email} is disabled")
            self._insert(repo, new, user_id, fields, rotated_from=None)
            return self._fetch(repo, new.parsed.key_id), new

    def _insert(
        self,
        repo: KeyRepository,
        new: key_format.NewKey,
        user_id: int,
        fields: Mapping[str, Any],
        rotated_from: str | None,
    ) -> None:
        secret_hash = key_format.hash_secret(new.parsed.secret, self._settings.bcrypt_cost)
        repo.insert(new.parsed, secret_hash, user_id, fields, rotated_from)

    # --- read ---------------------------------------------------------------------------------

    def get_key(self, key_id: str) -> KeyView:
        key_id = parse_key_ref(key_id)
        with self._transaction() as repo:
            return self._fetch(repo, key_id)

    def list_keys(
        self,
        *,
        user_email: str | None = None,
        include_inactive: bool = False,
        limit: int = 1000,
        offset: int = 0,
        expiring: timedelta | None = None,
    ) -> list[KeyView]:
        """Keys newest first; by default only usable ones (not revoked, not expired);
        ``expiring``: usable keys that expire within it, soonest first."""
        if not 1 <= limit <= 10_000 or offset < 0:
            raise InvalidInput("limit must be 1-10000 and offset not negative")
        if expiring is not None and expiring <= timedelta(0):
            raise InvalidInput("the expiring period must be positive")
        email = None if user_email is None else validate_email(user_email)
        before = None if expiring is None else self._clock() + expiring
        with self._transaction() as repo:
            rows = repo.keys(email, include_inactive, limit, offset, before)
        return [self._view(fields) for fields in rows]

    # --- change -------------------------------------------------------------------------------

    def update_key(self, key_id: str, changes: KeyChanges) -> KeyView:
        """Apply ``changes`` with the same validation as ``create_key``; a revoked key is final."""
        key_id = parse_key_ref(key_id)
        columns = self._validated_changes(changes)
        with self._transaction() as repo:
            current = self._fetch(repo, key_id, lock=True)
            if current.status == "revoked":
                raise Conflict(f"key {key_id} is revoked; a revoked key cannot be changed")
            expiry = self._changed_expiry(repo, changes, current, columns.get("scopes"))
            if expiry is not None:
                columns["expires_at"] = expiry[0]
            repo.update(key_id, columns)
            return self._fetch(repo, key_id)

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
            columns["metadata"] = validate_metadata(changes.metadata)
        return columns

    def _changed_expiry(
        self,
        repo: KeyRepository,
        changes: KeyChanges,
        current: KeyView,
        new_scopes: Sequence[str] | None,
    ) -> tuple[datetime | None] | None:
        """``(new expiry,)`` when the update touches it (or new scopes shorten the maximum
        lifetime below the current expiry: then an error), else None."""
        wants = changes.expires_at is not None or changes.expires_in is not None
        expiry = self._expiry(repo)
        scopes = current.scopes if new_scopes is None else new_scopes
        if changes.clear_expiry:
            if wants:
                raise InvalidInput("give a new expiry or remove it, not both")
            expiry.require_expiry(current.env, scopes)
            return (None,)
        if wants:
            return (
                expiry.resolve(
                    changes.expires_at,
                    changes.expires_in,
                    scopes=scopes,
                    env=current.env,
                    born=current.created_at,
                ),
            )
        most = expiry.maximum(scopes, current.env)
        if new_scopes is not None and most is not None:
            latest = current.created_at + most
            if current.expires_at is None or current.expires_at > latest:
                raise InvalidInput(
                    "with these scopes the key may live at most "
                    f"{durations.format_duration(most)}: give an expiry within it too"
                )
        return None

    def revoke_key(self, key_id: str, reason: str | None = None) -> tuple[KeyView, bool]:
        """Revoke now; idempotent. Returns the key and whether it was already revoked."""
        key_id = parse_key_ref(key_id)
        if reason is not None and len(reason) > MAX_REASON_LENGTH:
            raise InvalidInput(f"the reason is longer than {MAX_REASON_LENGTH} characters")
        with self._transaction() as repo:
            current = self._fetch(repo, key_id, lock=True)
            if current.revoked_at is not None:
                return current, True
            repo.revoke(key_id, reason)
            return self._fetch(repo, key_id), False

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
        with self._transaction() as repo:
            old = self._fetch(repo, key_id, lock=True)
            if old.status in {"revoked", "expired"}:
                raise Conflict(f"key {key_id} is {old.status}; create a new key instead")
            lifetime = None if old.expires_at is None else old.expires_at - old.created_at
            expiry = self._expiry(repo)
            fields = {
                "name": old.name,
                "scopes": old.scopes,
                "rate_limit_per_hour": old.rate_limit_per_hour,
                "burst": old.burst,
                "allowed_ips": old.allowed_ips,
                "metadata": old.metadata,
                "expires_at": expiry.resolve(
                    None,
                    expiry.capped(lifetime, old.scopes, old.env),
                    scopes=old.scopes,
                    env=old.env,
                ),
            }
            new = key_format.generate(old.env)
            self._insert(repo, new, old.user_id, fields, rotated_from=key_id)
            grace_end = self._clock() + grace
            old_end = grace_end if old.expires_at is None else min(old.expires_at, grace_end)
            repo.update(key_id, {"expires_at": old_end})
            return Rotation(self._fetch(repo, new.parsed.key_id), new, self._fetch(repo, key_id))

    # --- users ---------------------------------------------------------------------------------

    def disable_user(self, email: str, reason: str | None = None) -> UserView:
        """Disable a user now: every key and session of the user is refused within a second
        everywhere (``user_disabled``); keys stay as they are, for ``enable_user``."""
        return self._set_disabled(email, reason, disable=True)

    def enable_user(self, email: str) -> UserView:
        return self._set_disabled(email, None, disable=False)

    def _set_disabled(self, email: str, reason: str | None, disable: bool) -> UserView:
        address = validate_email(email)
        if reason is not None and len(reason) > MAX_REASON_LENGTH:
            raise InvalidInput(f"the reason is longer than {MAX_REASON_LENGTH} characters")
        with self._transaction() as repo:
            row = repo.set_disabled(address, reason, disable)
        if row is None:
            raise NotFound(f"no user {address}")
        return UserView(
            user_id=row["id"],
            email=row["email"],
            disabled_at=row["disabled_at"],
            disabled_reason=row["disabled_reason"],
        )

    def user_email(self, user_id: int) -> str:
        with self._transaction() as repo:
            email = repo.user_email(user_id)
        if email is None:
            raise NotFound(f"no user with id {user_id}")
        return email

    # --- usage (the REST API's /usage: the same report as `hokusai auth usage`) -------------

    def key_usage(self, key_id: str, since: timedelta) -> reports.KeyReport:
        """Usage of one key over the last ``since``: 404 for an unknown key, zeros when unused."""
        key_id = parse_key_ref(key_id)
        if since <= timedelta(0):
            raise InvalidInput("the period must be positive")
        with self._transaction() as repo:
            self._fetch(repo, key_id)
            now = self._clock()
            return repo.usage(key_id, now - since, now)

    # --- central policy, authentication events, expiry-warning deliveries ---------------------

    def policy(self) -> KeyPolicy:
        with self._transaction() as repo:
            return repo.policy()

    def set_policy(self, update: policy_rules.PolicyUpdate) -> KeyPolicy:
        """Change the policy (audited as ``policy.update``; every instance reloads it)."""
        with self._transaction() as repo:
            repo.set_policy(policy_rules.columns(update, repo.policy()))
            return repo.policy()

    def events(
        self,
        *,
        key_id: str | None = None,
        user_email: str | None = None,
        reason: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[EventView]:
        """Authentication events newest first (``hokusai auth events``, the REST API)."""
        if not 1 <= limit <= 10_000 or not 0 <= offset <= 1_000_000:
            raise InvalidInput("limit must be 1-10000 and offset 0-1000000")
        filters = {
            "key_id": None if key_id is None else parse_key_ref(key_id),
            "user_email": None if user_email is None else validate_email(user_email),
            "reason": reason,
        }
        with self._transaction() as repo:
            rows = repo.events(filters, since, limit, offset)
        return [EventView(**row) for row in rows]

    def deliveries(self, key_id: str | None = None, limit: int = 100) -> list[DeliveryView]:
        """The expiry-warning delivery log, newest first."""
        if not 1 <= limit <= 10_000:
            raise InvalidInput("limit must be 1-10000")
        key = None if key_id is None else parse_key_ref(key_id)
        with self._transaction() as repo:
            return [DeliveryView(**row) for row in repo.deliveries(key, limit)]

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
        key = None if key_id is None else parse_key_ref(key_id)
        filters = {"key_id": key, "actor": actor, "action": action}
        with self._transaction() as repo:
            rows = repo.audit(filters, since, limit)
        return [AuditEntry(**row) for row in rows]

    def verify_audit_chain(self) -> AuditVerification:
        """Walk the log in id order, recomputing each hash in SQL (``hokusai_audit_hash``, the one
        definition) and checking each ``prev_hash`` link; report the first broken row.

        Catches modified, inserted and deleted rows, except deletion of the newest rows.
        """
        with self._transaction() as repo, closing(repo.audit_chain()) as rows:
            return _verify_chain(rows)


def _verify_chain(rows: Iterable[Mapping[str, Any]]) -> AuditVerification:
    expected_prev, checked = "0" * 64, 0
    for row in rows:
        checked += 1
        if row["prev_hash"] != expected_prev:
            return AuditVerification(
                False, checked, row["id"], "its prev_hash does not match the previous row's hash"
            )
        if row["computed"] != row["hash"]:
            return AuditVerification(
                False, checked, row["id"], "its contents do not match its hash"
            )
        expected_prev = row["hash"]
    return AuditVerification(True, checked)
