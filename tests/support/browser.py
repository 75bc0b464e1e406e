"""A real browser for tests: Debian's Chromium driven by Playwright, request recording, screenshots.

Playwright's own browser download cannot work here (no network but the package registries), so
``launch`` always runs the system's ``chromium`` (``apt-get install chromium``; ``make test``
installs it through the Makefile's ``system-packages``). Tests that need it call
``require_chromium()``, which skips with the reason only when the binary is genuinely absent.

    with browser_page(headers={"Authorization": f"Bearer {token}"}, trust_ca=gateway.ca) as page:
        recorder = RequestRecorder.attach(page.context)
        page.goto(f"{gateway.mlflow_uri}/")
        ...
        screenshot(page, "experiment-list")
        assert not recorder.failures()

``trust_ca`` trusts one CA (Chromium's ``--ignore-certificate-errors-spki-list`` with that
certificate's key pin) rather than ignoring every TLS error: pages stay secure contexts, so
``Secure`` / ``__Host-`` cookies and ``Sec-Fetch-*`` headers behave as behind a real certificate.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from authz.check.graphql import GraphqlOperation
from authz.check.graphql import definitions as graphql_definitions

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page, Request

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/lib/chromium/chromium")
# Headless, no sandbox (root in CI), and no traffic of Chromium's own (updates, sync, QUIC).
CHROMIUM_FLAGS: tuple[str, ...] = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
ARTIFACTS_DIR = Path(__file__).resolve().parents[1] / "artifacts"
SCREENS_DIR = ARTIFACTS_DIR / "screens"
DEFAULT_TIMEOUT_MS = 30_000
VIEWPORT = {"width": 1280, "height": 800}


# --- finding and launching Chromium ---------------------------------------------------------
def find_chromium() -> Path | None:
    """Debian's Chromium (``HOKUSAI_CHROMIUM`` overrides), or None when it is not installed."""
    configured = os.environ.get("HOKUSAI_CHROMIUM")
    candidates = (configured,) if configured else (*CHROMIUM_CANDIDATES, shutil.which("chromium"))
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def require_chromium() -> Path:
    """The Chromium binary; skips the calling test, with the reason, when it is not installed."""
    path = find_chromium()
    if path is None:
        pytest.skip(
            "Debian's chromium is not installed (make test installs it: apt-get install chromium)"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:  # pragma: no cover - the dev extra has it
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    return path


def spki_pin(cert_pem: str | Path) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo)) of a PEM certificate: Chromium's key-pin format."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    cert = x509.load_pem_x509_certificate(Path(cert_pem).read_bytes())
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def chromium_args(trust_ca: str | Path | None = None, extra: Sequence[str] = ()) -> list[str]:
    args = list(CHROMIUM_FLAGS)
    if trust_ca is not None:
        args.append(f"--ignore-certificate-errors-spki-list={spki_pin(trust_ca)}")
    return [*args, *extra]


@contextmanager
def browser_context(
    *,
    headers: Mapping[str, str] | None = None,
    trust_ca: str | Path | None = None,
    ignore_https_errors: bool = False,
    extra_args: Sequence[str] = (),
    timeout_ms: int = DEFAULT_TIMEOUT_MS,
) -> Iterator[BrowserContext]:
    """A fresh Chromium (its own throw-away profile) and its one context.

    ``headers`` are added to every request of the context's pages (a forced ``Authorization``)
    but not to a shared worker's (the MLflow UI's telemetry worker asks
    ``ajax-api/3.0/mlflow/ui-telemetry`` without them; a cookie would go along). ``trust_ca``
    pins a private CA (see the module docstring); ``ignore_https_errors`` is the blunt
    alternative. Chromium is stopped and its profile removed on exit.
    """
    from playwright.sync_api import sync_playwright

    executable = require_chromium()
    profile = tempfile.mkdtemp(prefix="hokusai-chromium-")
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile,
                executable_path=str(executable),
                headless=True,
                args=chromium_args(trust_ca, extra_args),
                extra_http_headers=dict(headers or {}),
                ignore_https_errors=ignore_https_errors,
                viewport=VIEWPORT,  # type: ignore[arg-type]
                accept_downloads=True,
            )
            context.set_default_timeout(timeout_ms)
            context.set_default_navigation_timeout(timeout_ms)
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@contextmanager
def browser_page(**options: Any) -> Iterator[Page]:
    """A page in a fresh ``browser_context(**options)``."""
    with browser_context(**options) as context:
        pages = context.pages
        yield pages[0] if pages else context.new_page()


def screenshot(page: Page, name: str, *, full_page: bool = False) -> Path:
    """Save a PNG of ``page`` as ``tests/artifacts/screens/<name>.png`` (gitignored); its path.

    ``HOKUSAI_TEST_ARTIFACTS`` moves the artefacts folder (CI keeps it)."""
    configured = os.environ.get("HOKUSAI_TEST_ARTIFACTS")
    root = Path(configured) / "screens" if configured else SCREENS_DIR
    root.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "screen"
    path = root / f"{safe}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


# --- GraphQL operations in a request body ---------------------------------------------------
# The scanner is the gateway's own (authz/check/graphql.py, phase 7 of the Check).
@dataclass(frozen=True)
class GraphqlRequest:
    """A GraphQL HTTP request as sent: the body's ``operationName`` and the document's
    operations (a JSON list body is a batch: one entry per element)."""

    operation_name: str | None
    operations: tuple[GraphqlOperation, ...]
    variables: tuple[str, ...] = ()

    @property
    def selected(self) -> GraphqlOperation | None:
        """The operation a server would run: the named one, else the only one."""
        if self.operation_name is not None:
            return next((o for o in self.operations if o.name == self.operation_name), None)
        return self.operations[0] if len(self.operations) == 1 else None


def parse_graphql_body(body: str | bytes | None, query_string: str = "") -> list[GraphqlRequest]:
    """GraphQL requests in a POST body (JSON object or list) or a GET query string."""
    payloads: list[Any]
    if body:
        try:
            parsed = json.loads(body)
        except ValueError:
            return []
        payloads = parsed if isinstance(parsed, list) else [parsed]
    elif query_string:
        payloads = [dict(parse_qsl(query_string))]
    else:
        return []
    requests: list[GraphqlRequest] = []
    for payload in payloads:
        if not isinstance(payload, dict):
            continue
        query = payload.get("query")
        name = payload.get("operationName")
        variables = payload.get("variables")
        requests.append(
            GraphqlRequest(
                name if isinstance(name, str) else None,
                tuple(graphql_definitions(query)) if isinstance(query, str) else (),
                tuple(sorted(variables)) if isinstance(variables, dict) else (),
            )
        )
    return requests


# --- recording what the browser asks --------------------------------------------------------
@dataclass
class RecordedRequest:
    """One request the browser made and how it ended."""

    label: str  # what the test was doing (RequestRecorder.label)
    method: str
    url: str
    origin: str
    path: str
    query_keys: list[str]
    resource_type: str
    status: int | None = None
    failure: str | None = None
    request_content_type: str | None = None
    response_content_type: str | None = None
    accept: str | None = None
    sec_fetch_mode: str | None = None
    sec_fetch_dest: str | None = None
    sec_fetch_site: str | None = None
    origin_header: str | None = None
    graphql: list[dict[str, Any]] = field(default_factory=list)
    response_body: str | None = None  # kept for error answers (status >= 400), cut to 2 kB

    @property
    def ok(self) -> bool:
        return self.failure is None and self.status is not None and self.status < 400


class RequestRecorder:
    """Records every request of a browser context's pages: documents, scripts, styles, fetch/XHR
    (artifact downloads too: the UI fetches them). Shared workers' requests are not reported by
    Playwright (Envoy's access log has them), and a page with ``page.route`` handlers loses the
    ``Sec-Fetch-*`` headers in ``all_headers()``: record and route in separate contexts.

    ``label`` is stamped on each request: set it before each step (``recorder.label = "run
    page"``) to group what a page asked for."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.label = ""
        self.in_flight: dict[int, str] = {}  # id(request) → URL, for wait_quiet

    @classmethod
    def attach(cls, context: BrowserContext) -> RequestRecorder:
        recorder = cls()
        context.on("request", recorder._started)
        context.on("requestfinished", recorder._finished)
        context.on("requestfailed", recorder._failed)
        return recorder

    def _started(self, request: Request) -> None:
        self.in_flight[id(request)] = request.url

    def _record(self, request: Request, failure: str | None) -> None:
        parts = urlsplit(request.url)
        headers = request.all_headers()
        entry = RecordedRequest(
            label=self.label,
            method=request.method,
            url=request.url,
            origin=f"{parts.scheme}://{parts.netloc}",
            path=parts.path,
            query_keys=sorted({k for k, _ in parse_qsl(parts.query, keep_blank_values=True)}),
            resource_type=request.resource_type,
            failure=failure,
            request_content_type=headers.get("content-type"),
            accept=headers.get("accept"),
            sec_fetch_mode=headers.get("sec-fetch-mode"),
            sec_fetch_dest=headers.get("sec-fetch-dest"),
            sec_fetch_site=headers.get("sec-fetch-site"),
            origin_header=headers.get("origin"),
        )
        if parts.path.endswith("/graphql"):
            body = request.post_data if request.method != "GET" else None
            entry.graphql = [
                {
                    "operation_name": g.operation_name,
                    "operations": [asdict(o) for o in g.operations],
                    "variables": list(g.variables),
                }
                for g in parse_graphql_body(body, parts.query)
            ]
        response = request.response() if failure is None else None
        if response is not None:
            entry.status = response.status
            entry.response_content_type = response.header_value("content-type")
            if response.status >= 400:
                try:
                    entry.response_body = response.text()[:2000]
                except Exception:  # body already gone (redirect, navigation)
                    entry.response_body = None
        self.requests.append(entry)

    def _finished(self, request: Request) -> None:
        self.in_flight.pop(id(request), None)
        self._record(request, None)

    def _failed(self, request: Request) -> None:
        self.in_flight.pop(id(request), None)
        self._record(request, request.failure or "failed")

    def wait_quiet(
        self,
        page: Page,
        *,
        quiet_ms: int = 1000,
        timeout_ms: int = 20_000,
        ignore: Sequence[str] = (),
    ) -> bool:
        """Wait until no request (except URLs containing one of ``ignore``) has been in flight
        for ``quiet_ms``; False when ``timeout_ms`` ran out first. Playwright's ``networkidle``
        never comes for pages that keep a request open."""
        step = 100
        quiet = 0
        for _ in range(max(timeout_ms // step, 1)):
            busy = [u for u in self.in_flight.values() if not any(i in u for i in ignore)]
            quiet = 0 if busy else quiet + step
            if quiet >= quiet_ms:
                return True
            page.wait_for_timeout(step)
        return False

    def clear(self) -> None:
        self.requests.clear()

    def failures(self) -> list[RecordedRequest]:
        """Requests that did not end in a status below 400."""
        return [r for r in self.requests if not r.ok]

    def origins(self) -> set[str]:
        return {r.origin for r in self.requests}

    def to_json(self) -> list[dict[str, Any]]:
        return [
            {k: v for k, v in asdict(r).items() if v not in (None, [], "")} for r in self.requests
        ]

    def dump(self, path: str | Path) -> Path:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(self.to_json(), indent=1))
        return target
