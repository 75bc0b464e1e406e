"""How the key reaches MLflow: MLflow's request-auth plugin hook, selected by
``MLFLOW_TRACKING_AUTH=hokusai`` (entry point ``mlflow.request_auth_provider``).

Why this hook and not ``MLFLOW_TRACKING_TOKEN``:

* **One copy of the key.** MLflow reads its token only from the environment, so the token route
  would copy the key into ``MLFLOW_TRACKING_TOKEN`` — inherited by every child process, and a
  second place to rotate. Here the key stays where the user put it: in memory when passed to
  ``setup(api_key=…)``, or in ``HOKUSAI_API_KEY``, which the provider reads per request.
* **Nothing shadows it.** MLflow turns ``MLFLOW_TRACKING_USERNAME``/``PASSWORD`` (or a stale
  ``MLFLOW_TRACKING_TOKEN``) into an ``Authorization`` header first; requests applies an ``auth``
  object after the headers, so the gateway always gets this key — the classic "basic-auth
  variables left over" failure cannot happen.
* **It is the documented extension point** (``@developer_stable`` in MLflow) and is called per
  request, so a rotated key passed to a new ``setup()`` takes effect at once.

The costs, handled: it needs this distribution installed (entry points are metadata) —
``setup()`` checks that and says so; a child process without ``HOKUSAI_API_KEY`` in its
environment has no key (documented); ``MLFLOW_TRACKING_AUTH`` is one slot, so ``setup()`` warns
when it replaces another provider.

MLflow finds this module through the entry point only; it imports nothing of MLflow.
"""

from __future__ import annotations

import os
import threading

import requests
from requests.auth import AuthBase

from hokusai import variables

NAME = "hokusai"
_lock = threading.Lock()
_key: str | None = None


def use_key(key: str | None) -> None:
    """The key for MLflow's requests from now on (None: fall back to ``HOKUSAI_API_KEY``)."""
    global _key
    with _lock:
        _key = key


def configured_key() -> str | None:
    """The key given to ``use_key`` (no environment fallback)."""
    with _lock:
        return _key


def current_key() -> str | None:
    with _lock:
        key = _key
    if key is None:
        key = (os.environ.get(variables.API_KEY) or "").strip() or None
    return key


class BearerKey(AuthBase):
    """Sets ``Authorization: Bearer <key>`` on each request; its ``repr`` shows no key."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        key = current_key()
        if key is not None:
            request.headers["Authorization"] = f"Bearer {key}"
        return request

    def __repr__(self) -> str:
        return "BearerKey(<hokusai key>)"


class HokusaiAuthProvider:
    """MLflow's ``RequestAuthProvider`` interface (duck-typed: MLflow calls these two)."""

    def get_name(self) -> str:
        return NAME

    def get_auth(self) -> BearerKey:
        return BearerKey()
