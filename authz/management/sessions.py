"""Browser sessions as the keys API's pages make and end them: sign-in, sign-out, refused
sign-ins, pruning — each one transaction whose audit rows (written by the triggers) name the actor.

Who may sign in is the Check's business (``authz.pages.signin`` runs it); this only records the
outcome. The session id is made here and returned once, for the cookie: only its SHA-256 is
written (``authz.sessions.cookie.id_hash``).
"""

from __future__ import annotations

from dataclasses import dataclass

from authz.management.repository import transaction_of
from authz.sessions import cookie
from authz.settings import Settings
from authz.storage.db import ConnectionFactory
from authz.storage.sessions import NewSession, SessionOwner, SessionRepository

MAX_USER_AGENT = 200
SIGNED_OUT = "signed_out"
REPLACED = "replaced"  # the same browser signed in again


@dataclass(frozen=True, slots=True)
class StartedSession:
    session_id: str  # for the cookie only; never stored, logged or cached
    max_age: int  # seconds until the absolute expiry (the cookie's Max-Age)


class SessionService:
    def __init__(self, connect: ConnectionFactory, settings: Settings) -> None:
        self._connect, self._settings = connect, settings

    def start(
        self, key_id: str, user_id: int, client: str | None, user_agent: str | None
    ) -> StartedSession:
        """A new session for a key that just passed the Check (a fresh id every time)."""
        session_id = cookie.new_session_id()
        lifetime = self._settings.session_absolute_timeout
        session = NewSession(
            id_hash=cookie.id_hash(session_id),
            key_id=key_id,
            user_id=user_id,
            idle_timeout=self._settings.session_idle_timeout,
            lifetime=lifetime,
            client_address=client or None,
            user_agent=(user_agent or "")[:MAX_USER_AGENT] or None,
        )
        with transaction_of(self._connect, f"web:{key_id}", SessionRepository) as repo:
            repo.insert(session)
        return StartedSession(session_id, int(lifetime))

    def end(self, session_id: str, reason: str = SIGNED_OUT) -> SessionOwner | None:
        """End a session (idempotent); whose it was (key id, user), or None when none was live."""
        id_hash = cookie.id_hash(session_id)
        with transaction_of(self._connect, "web:session", SessionRepository) as repo:
            return repo.revoke(id_hash, reason)

    def refused(self, key_id: str, reason: str, client: str | None) -> None:
        """Audit a refused sign-in whose key parsed to ``key_id`` (never the key itself)."""
        changes = {"reason": reason, "client": client} if client else {"reason": reason}
        with transaction_of(self._connect, "web:signin", SessionRepository) as repo:
            repo.audit_refused(key_id, changes)

    def prune(self, actor: str = "system:prune") -> int:
        """Delete sessions that can no longer work; returns how many."""
        with transaction_of(self._connect, actor, SessionRepository) as repo:
            return repo.prune()

    def prune_exclusively(self) -> int | None:
        """``prune`` by one instance at a time (a transaction-scoped advisory lock); None when
        another instance holds it."""
        with transaction_of(self._connect, "system:prune", SessionRepository) as repo:
            if not repo.try_lock():
                return None
            return repo.prune()
