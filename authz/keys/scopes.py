"""The closed set of scopes a key can hold, and what each grants.

``admin`` implies every other scope, and ``mlflow:write`` implies ``mlflow:read`` (the MLflow
client reads while it logs: a write-only key would be useless). ``keys:manage`` implies nothing
else. Scopes are stored sorted and de-duplicated, so two keys with the same grants compare equal.
``grants`` is the one definition of these implications: the check path and the key service
(delegation: a key never hands out more than it holds) both use it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from authz.errors import InvalidInput

MLFLOW_READ = "mlflow:read"
MLFLOW_WRITE = "mlflow:write"
KEYS_MANAGE = "keys:manage"
ADMIN = "admin"
SCOPES: tuple[str, ...] = (MLFLOW_READ, MLFLOW_WRITE, KEYS_MANAGE, ADMIN)
DEFAULT_SCOPES: tuple[str, ...] = (MLFLOW_READ,)  # least privilege when none are asked for


def normalize(scopes: Iterable[str]) -> tuple[str, ...]:
    """Sorted, de-duplicated scopes; ``InvalidInput`` names the first unknown one."""
    result = set()
    for raw in scopes:
        scope = raw.strip()
        if scope not in SCOPES:
            shown = scope[:40]
            raise InvalidInput(f"unknown scope {shown!r}: expected some of {', '.join(SCOPES)}")
        result.add(scope)
    if not result:
        raise InvalidInput(f"at least one scope is required: {', '.join(SCOPES)}")
    return tuple(sorted(result))


def parse(text: str) -> tuple[str, ...]:
    """Parse a comma-separated list such as ``"mlflow:read,mlflow:write"``."""
    return normalize(part for part in text.split(",") if part.strip())


def grants(held: Collection[str], required: str) -> bool:
    """Whether a key holding ``held`` may do what ``required`` allows (hot path: no allocation)."""
    return required in held or ADMIN in held or (required == MLFLOW_READ and MLFLOW_WRITE in held)


def is_subset(wanted: Iterable[str], held: Iterable[str]) -> bool:
    """``wanted ⊆ held`` where ``admin`` in ``held`` implies everything (e.g. for delegation)."""
    held_set = frozenset(held)
    return all(grants(held_set, scope) for scope in wanted)
