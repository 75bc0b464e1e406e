"""What MLflow's UI asks about the signed-in person, answered from the gateway's identity.

MLflow's UI asks ``ajax-api/2.0/mlflow/users/current`` on every page load (MLflow's own
basic-auth app answers it; without one it is a 404 and the UI shows no user). Answering it turns
on the UI's account features, which then also ask ``ajax-api/3.0/mlflow/users/roles/list`` and
``…/users/current/permissions`` (permission-gated controls stay hidden while those are missing), so
all three are answered, in MLflow's shapes, from the identity headers authz added (Envoy's
ext_authz is on for these routes): the user's id and email, ``is_admin`` from the ``admin``
scope, and one permission on every experiment from the scopes (``READ``, ``EDIT`` with
``mlflow:write``, ``MANAGE`` with ``admin``). ``is_basic_auth`` is false: the UI then offers no
basic-auth "Logout" of its own (sign out is ``/logout``).
"""

from __future__ import annotations

from typing import Any

from authz.keys import scopes
from authz.transports import wire

CURRENT_USER, ROLES, PERMISSIONS = wire.MLFLOW_ACCOUNT_PATHS


def held(scope_header: str | None) -> frozenset[str]:
    return frozenset(s for s in (scope_header or "").split(",") if s)


def permission(granted: frozenset[str]) -> str | None:
    if scopes.grants(granted, scopes.ADMIN):
        return "MANAGE"
    if scopes.grants(granted, scopes.MLFLOW_WRITE):
        return "EDIT"
    return "READ" if scopes.grants(granted, scopes.MLFLOW_READ) else None


def current_user(user_id: int, email: str, granted: frozenset[str]) -> dict[str, Any]:
    return {
        "user": {"id": user_id, "username": email, "is_admin": scopes.ADMIN in granted},
        "is_basic_auth": False,
    }


def permissions(granted: frozenset[str]) -> dict[str, Any]:
    level = permission(granted)
    rules = (
        []
        if level is None
        else [
            {
                "role_id": None,
                "role_name": None,
                "workspace": None,
                "resource_type": "experiment",
                "resource_pattern": "*",
                "permission": level,
            }
        ]
    )
    return {"is_admin": scopes.ADMIN in granted, "permissions": rules}


def roles() -> dict[str, Any]:
    return {"roles": []}
