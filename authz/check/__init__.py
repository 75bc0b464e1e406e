"""The Check pipeline: ``checker.py`` reads top to bottom as its numbered phases.

Credentials (phase 1), the route → scope table (``routes.py``, phase 7), the closed set of outcomes
(``reasons.py``) and the secret verifier (``verify.py``, phase 4). No transport and no I/O client is
defined here: records come through the lookup seam (``authz.storage.lookup``).
"""
