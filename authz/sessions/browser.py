"""What a browser request tells the gateway, and the rules it is judged by (pure, no I/O).

* ``BrowserSignals``: the headers only a browser sends. The transports build them only for a
  request that carries no key, so the key path never pays for them.
* ``same_origin``: the CSRF rule for cookie-authenticated changes — ``Sec-Fetch-Site:
  same-origin`` when the browser sends it (every current browser does); otherwise ``Origin``
  equal to ``https://`` + the ``Host`` Envoy received; neither → not same-origin.
* ``is_navigation``: a top-level page load (``Sec-Fetch-Dest: document``, or ``Sec-Fetch-Mode:
  navigate`` when the destination is absent) by GET or HEAD. Without any ``Sec-Fetch-*`` header
  the request is treated as a program's, whatever its ``Accept`` says: programs keep their 401
  JSON, and every browser that runs MLflow's UI sends ``Sec-Fetch-*``.
* ``safe_next`` / ``safe_fragment``: where a person returns after signing in. ``next`` must be a
  path on this gateway: one leading ``/`` and not ``//`` or ``/\\``, no backslash, no control
  character or whitespace (browsers drop tabs and newlines from URLs, so ``/\\t/evil`` would turn
  into ``//evil``), percent-decoded once for this check, at most ``MAX_NEXT`` characters;
  anything else becomes ``DEFAULT_NEXT``. The fragment (MLflow's ``#/experiments/1/runs/…``)
  never reaches a server: the sign-in page's script sends it along, and it is kept only when it
  is printable ASCII without spaces.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple
from urllib.parse import quote, unquote, urlencode

from authz.transports import wire

DEFAULT_NEXT = wire.MLFLOW_PREFIX
SIGNIN_PATH = wire.SIGNIN_PATH
MAX_NEXT = 2048
MAX_FRAGMENT = 2048
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

HEADERS = wire.BROWSER_HEADERS  # besides the host
COOKIE, ORIGIN, FETCH_SITE, FETCH_MODE, FETCH_DEST = HEADERS


class BrowserSignals(NamedTuple):
    cookie: str | None
    origin: str | None
    host: str | None
    fetch_site: str | None
    fetch_mode: str | None
    fetch_dest: str | None

    @classmethod
    def read(cls, get: Callable[[str], str | None], host: str | None) -> BrowserSignals | None:
        """From a header lookup (lower-case names) and the request's host; None when no
        browser header is present."""
        cookie, site, mode = get(COOKIE), get(FETCH_SITE), get(FETCH_MODE)
        origin, dest = get(ORIGIN), get(FETCH_DEST)
        if cookie is None and site is None and mode is None and origin is None and dest is None:
            return None
        return cls(cookie, origin, host, site, mode, dest)


def gateway_origin(host: str) -> str:
    """The origin a page of this gateway has, from the ``Host`` Envoy received."""
    return "https://" + host.lower().removesuffix(":443")


def same_origin(signals: BrowserSignals) -> bool:
    if signals.fetch_site is not None:
        return signals.fetch_site == "same-origin"
    if signals.origin is None or not signals.host:
        return False
    return signals.origin.lower() == gateway_origin(signals.host)


def is_navigation(method: str, signals: BrowserSignals | None) -> bool:
    if signals is None or method not in ("GET", "HEAD"):
        return False
    if signals.fetch_dest is not None:
        return signals.fetch_dest == "document"
    return signals.fetch_mode == "navigate"


def _printable(text: str, lowest: str = "!") -> bool:
    return all(lowest <= ch <= "~" for ch in text)


def safe_next(raw: str | None) -> str:
    """``raw`` when it is a path on this gateway (see the module doc), else ``DEFAULT_NEXT``."""
    if not raw or len(raw) > MAX_NEXT or not _printable(raw):
        return DEFAULT_NEXT
    decoded = unquote(raw)  # an encoded space (%20) is fine; an encoded control character is not
    for text in (raw, decoded):
        if not text.startswith("/") or text[1:2] in ("/", "\\") or "\\" in text:
            return DEFAULT_NEXT
    return raw if _printable(decoded, lowest=" ") else DEFAULT_NEXT


def safe_fragment(raw: str | None) -> str:
    """The fragment to restore after signing in (without ``#``); "" when unusable."""
    fragment = (raw or "").removeprefix("#")
    if len(fragment) > MAX_FRAGMENT or not _printable(fragment):
        return ""
    return fragment


def signin_location(path: str, reason: str) -> str:
    """Where a refused navigation to ``path`` (query included) is sent: the sign-in page, with
    the way back. ``reason`` is a check reason (the page says what happened)."""
    return SIGNIN_PATH + "?" + urlencode({"next": safe_next(path), "reason": reason})


def return_location(next_path: str | None, fragment: str | None) -> str:
    """Where a successful sign-in sends the person: ``next`` and the fragment, both re-checked."""
    target = safe_next(next_path)
    kept = safe_fragment(fragment)
    return f"{target}#{quote(kept, safe=_FRAGMENT_SAFE)}" if kept else target


# Characters kept as they are in a restored fragment (RFC 3986 fragment = pchar / "/" / "?"),
# plus what MLflow's own fragments use; everything else is percent-encoded.
_FRAGMENT_SAFE = "/?:@!$&'()*+,;=-._~%[]\""
