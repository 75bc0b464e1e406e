"""The one exception tree of authz, documented in one place.

Every failure that crosses a module boundary as an exception is a ``HokusaiError``. Each class
carries a stable machine ``code``, the CLI exit code and the HTTP status the REST API answers with,
so every front end maps failures the same way and nothing is decided twice:

======================  ======================  ========  =====  ==============================
class                   code                    CLI exit  HTTP   when
======================  ======================  ========  =====  ==============================
``InvalidInput``        ``invalid_input``       2         422    bad scope, CIDR, expiry, limit,
                                                                 name, e-mail, metadata, key id,
                                                                 duration, rate or timestamp
``NotFound``            ``not_found``           1         404    no key (or user) with that id
``Conflict``            ``conflict``            1         409    the key's state forbids it
                                                                 (rotating a revoked key)
``Forbidden``           ``forbidden``           1         403    the caller may not do this
``StoreUnavailable``    ``store_unavailable``   1         503    Postgres (or a store in front of
                                                                 it) cannot answer: the check path
                                                                 fails closed, management stops
``DatabaseUnavailable`` ``store_unavailable``   1         503    a connection could not be opened
                                                                 (a ``StoreUnavailable``)
``MigrationError``      ``migration_failed``    1         500    a migration could not be found,
                                                                 applied or undone
======================  ======================  ========  =====  ==============================

A denial of the Check is not an exception: it is a returned ``Decision`` (``authz.check``).

``message`` is always one line, safe to print and to return to a client: it never contains key
material (the secret part of a key or a whole key) or a database password.
"""

from __future__ import annotations

import re
from typing import ClassVar

_KEYLIKE = re.compile(r"(hk_[A-Za-z]+_[0-9A-Za-z]{1,12})_[0-9A-Za-z]*")


class HokusaiError(Exception):
    """Base of every service failure: ``code``, one-line ``message``, CLI exit code, HTTP status."""

    code: ClassVar[str] = "error"
    exit_code: ClassVar[int] = 1
    http_status: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        # One line, always: the CLI prints exactly this on stderr. Anything shaped like a key
        # (whole or truncated) loses its secret part: messages quote user input.
        self.message = _KEYLIKE.sub(r"\1_[redacted]", " ".join(message.split()))
        super().__init__(self.message)

    def to_json(self) -> dict[str, str]:
        return {"error": self.code, "message": self.message}


class InvalidInput(HokusaiError, ValueError):
    """The request is malformed or breaks a policy (CLI exit 2, HTTP 422)."""

    code = "invalid_input"
    exit_code = 2
    http_status = 422


class NotFound(HokusaiError):
    """The key (or user) does not exist (CLI exit 1, HTTP 404)."""

    code = "not_found"
    http_status = 404


class Conflict(HokusaiError):
    """The key's current state forbids the operation, e.g. rotating a revoked key (HTTP 409)."""

    code = "conflict"
    http_status = 409


class Forbidden(HokusaiError):
    """The caller lacks the scope for the operation (HTTP 403)."""

    code = "forbidden"
    http_status = 403


class StoreUnavailable(HokusaiError):
    """A store could not answer (down, slow, pool exhausted, circuit open): the check path fails
    closed, an operation writes nothing. The message names host:port, never a password (503)."""

    code = "store_unavailable"
    http_status = 503


class DatabaseUnavailable(StoreUnavailable):
    """A Postgres connection could not be opened (``authz.storage.db.connect``)."""


class MigrationError(HokusaiError):
    """A migration could not be found, applied or undone (one line, no password)."""

    code = "migration_failed"
