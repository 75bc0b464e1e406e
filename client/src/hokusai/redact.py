"""The redactor every text passes before a person or a log sees it.

Messages the client writes itself never contain a key (they name it by its display prefix). Texts
it did not write — exception messages from requests, urllib3, ssl or MLflow — may embed URLs,
headers or a configured value; ``Scrubber`` removes the configured key (whole or stripped), any
key-shaped text, URL user-info and credential query parameters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

KEY_SHAPED = re.compile(r"\b(hk_(?:live|test)_[0-9A-Za-z]{12})_[0-9A-Za-z]*")
URL_USERINFO = re.compile(r"(\w+://)[^/\s@]+@")
QUERY_SECRET = re.compile(r"([?&](?:api_key|token|access_token)=)[^&\s'\"]*", re.IGNORECASE)
BEARER = re.compile(r"(Bearer\s+)\S+", re.IGNORECASE)
MIN_SECRET = 8  # very short "keys" would mangle every line; they are never echoed anyway


class Scrubber:
    """Removes ``secrets`` (and the usual credential shapes) from any text."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        found = {variant for s in secrets if s for variant in (s, s.strip())}
        # Longest first: a stripped key is a substring of the unstripped one.
        self.secrets = sorted((s for s in found if len(s) >= MIN_SECRET), key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        text = KEY_SHAPED.sub(r"\1_***", text)
        text = BEARER.sub(r"\1***", text)
        text = URL_USERINFO.sub(r"\1***@", text)
        return QUERY_SECRET.sub(r"\1***", text)


def scrub(text: str, *secrets: str | None) -> str:
    return Scrubber(secrets)(text)
