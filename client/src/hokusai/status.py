"""What ``setup()`` chose and why: the mode, where tracking goes, who the key belongs to."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hokusai import localstore

WRITE_SCOPES = frozenset({"mlflow:write", "admin"})


class Mode(enum.StrEnum):
    REMOTE = "remote"  # MLflow through the gateway, with the key
    FALLBACK = "fallback"  # the gateway or MLflow was unavailable: a local store on this machine
    MOCK = "mock"  # in-memory tracking for tests (HOKUSAI_MOCK_MODE); MLflow on a throwaway store
    DISABLED = "disabled"  # optional mode and unavailable: tracking calls are no-ops


@dataclass(frozen=True, slots=True)
class Identity:
    """The key as the gateway knows it (from ``GET /api/v1/auth/whoami``)."""

    key: str  # display prefix hk_<env>_<id>, never the key
    user_email: str | None = None
    scopes: tuple[str, ...] = ()
    expires_at: str | None = None

    @property
    def can_write(self) -> bool:
        return bool(WRITE_SCOPES & set(self.scopes))

    @classmethod
    def from_whoami(cls, body: Mapping[str, object], fallback_key: str) -> Identity:
        env, key_id = body.get("env"), body.get("key_id")
        key = (
            f"hk_{env}_{key_id}"
            if isinstance(env, str) and isinstance(key_id, str)
            else fallback_key
        )
        scopes = body.get("scopes")
        email, expires = body.get("user_email"), body.get("expires_at")
        return cls(
            key=key,
            user_email=email if isinstance(email, str) else None,
            scopes=tuple(str(s) for s in scopes) if isinstance(scopes, list) else (),
            expires_at=expires if isinstance(expires, str) else None,
        )


@dataclass(frozen=True, slots=True)
class Status:
    """The outcome of ``setup()``: frozen, and safe to print or log (it holds no key)."""

    mode: Mode
    tracking_uri: str | None  # what MLflow now uses; None when disabled
    reason: str  # one sentence: why this mode
    identity: Identity | None = None
    warnings: tuple[str, ...] = ()
    gateway_url: str | None = None
    optional: bool = False  # remote, but a later outage turns tracking calls into no-ops

    @property
    def remote(self) -> bool:
        return self.mode is Mode.REMOTE

    @property
    def local_store(self) -> Path | None:
        """The directory of the local store (fallback, mock, disabled), else None."""
        if self.tracking_uri is None or not self.tracking_uri.startswith(localstore.SCHEME):
            return None
        return localstore.directory_of(self.tracking_uri)
