"""The gateway's own pages through real Envoy: their headers (CSP without inline script,
frame-ancestors 'none', HSTS…), nothing from another origin (recorded in a real browser), every
``docs`` link of every denial (both transports and Envoy's own local replies) and every link of
every page resolving on the gateway, the sign-in form's rate limit and its lack of an oracle, and
the API path unchanged for programs."""

from __future__ import annotations

import json
import re
import statistics
import time
from collections.abc import Iterator
from urllib.parse import urljoin, urlsplit

import pytest
import redis
import requests

from authz.check.reasons import Reason, denial_body
from authz.keys import format as keys
from authz.pages import signin
from authz.pages.render import CSP
from authz.ratelimit.lease_bucket import LEASE_PREFIX
from cli import envoy_config
from tests.e2e.conftest import Gateway
from tests.e2e.ui import PAGE_LOAD, UiKeys, settle, ui_page
from tests.support.browser import require_chromium, screenshot

PAGES = ("/login", "/logout", "/docs/errors", "/docs/mlflow", "/_hokusai/static/login.js")
SAME_ORIGIN = {"sec-fetch-site": "same-origin", "sec-fetch-mode": "navigate"}
# Following a link is a page load: a browser says so (MLflow's UI then sends it to sign in).
NAVIGATION = {**PAGE_LOAD, "sec-fetch-site": "same-origin"}
SIGNIN_LIMITS = LEASE_PREFIX + signin.LIMIT_PREFIX + "*"  # the limiter's buckets, per address


@pytest.fixture
def fresh_signin_limit(e2e_redis_url: str) -> Iterator[None]:
    """Sign-ins from this machine start from a full bucket, and leave one for the next test."""
    client = redis.Redis.from_url(e2e_redis_url)

    def reset() -> None:
        for name in client.scan_iter(match=SIGNIN_LIMITS, count=1000):
            client.delete(name)

    reset()
    yield
    reset()
    client.close()


def test_our_pages_carry_the_security_headers(gateways: dict[str, Gateway]) -> None:
    for gateway in gateways.values():
        for path in PAGES:
            answer = gateway.get(path, allow_redirects=False)
            assert answer.status_code == 200, path
            headers = answer.headers
            assert headers["content-security-policy"] == CSP, path
            assert "frame-ancestors 'none'" in CSP and "unsafe-inline" not in CSP
            assert headers["x-frame-options"] == "DENY"
            assert headers["referrer-policy"] == "no-referrer"
            assert headers["x-content-type-options"] == "nosniff"
            assert headers["strict-transport-security"].startswith("max-age=")
        assert gateway.get("/login").headers["cache-control"] == "no-store"


def test_our_pages_load_nothing_from_another_origin(
    gateways: dict[str, Gateway], ui_keys: UiKeys
) -> None:
    require_chromium()
    gateway = gateways["http"]
    with ui_page(gateway) as (page, recorder):
        page.goto(f"{gateway.url}/login?next=%2Fapi%2Fmlflow%2F", wait_until="load")
        page.locator("#key").fill("hk_live_not_a_real_key")
        with page.expect_navigation():
            page.get_by_role("button", name="Sign in").click()
        assert page.get_by_text("That key was not accepted").is_visible()
        screenshot(page, "signin-error")
        page.goto(f"{gateway.url}/docs/errors#cross-site-request", wait_until="load")
        screenshot(page, "errors-docs")
        page.goto(f"{gateway.url}/logout", wait_until="load")
        settle(page, recorder)
        assert recorder.origins() == {gateway.url}
        assert not recorder.failures() or {r.status for r in recorder.failures()} == {401}
        violations: list[str] = []
        page.on(
            "console", lambda m: violations.append(m.text) if "Content Security" in m.text else None
        )
        page.goto(f"{gateway.url}/login", wait_until="load")
        assert not violations


def docs_links(body: str) -> list[str]:
    return [str(json.loads(body)["docs"])] if body.strip().startswith("{") else []


def denial_bodies(gateway: Gateway, ui_keys: UiKeys) -> dict[str, str]:
    """Denials as Envoy sends them: the Check's (every reason), the ones reached for real here,
    and Envoy's own local replies (404, 431, 503, 429)."""
    bodies = {r.value: denial_body(r).decode() for r in Reason if r is not Reason.ALLOWED}
    get = gateway.get
    search = "/api/mlflow/api/2.0/mlflow/experiments/search?max_results=1"
    bodies["live missing_key"] = get(search).text
    bodies["live unknown_key"] = get(
        search, headers={"Authorization": f"Bearer {keys.generate('live').token}"}
    ).text
    bodies["live insufficient_scope"] = gateway.post(
        "/api/mlflow/api/2.0/mlflow/experiments/create",
        json={"name": "x"},
        headers={"Authorization": f"Bearer {ui_keys.reader}"},
    ).text
    bodies["live not_found"] = get("/nowhere").text
    bodies["live request_too_large"] = get("/api/mlflow/", headers={"x-big": "a" * 70_000}).text
    for mapper in envoy_config.local_reply_config(envoy_config.EnvoyOptions())["mappers"]:
        bodies[f"local reply {mapper['filter']}"] = mapper["body"]["inline_string"]
    return bodies


def anchors(html: str) -> set[str]:
    return set(re.findall(r'\bid="([^"]+)"', html))


def test_every_docs_link_of_every_denial_resolves_on_the_gateway(
    gateways: dict[str, Gateway], ui_keys: UiKeys
) -> None:
    for gateway in gateways.values():
        for name, body in denial_bodies(gateway, ui_keys).items():
            links = docs_links(body)
            assert links, name
            for link in links:
                path, _, anchor = link.partition("#")
                page = gateway.get(path)
                assert page.status_code == 200, (name, link)
                assert anchor in anchors(page.text), (name, link)


def crawl(gateway: Gateway, start: tuple[str, ...]) -> dict[str, str]:
    """Every page of ours reachable from ``start`` (links under /docs/, /login, /logout)."""
    seen: dict[str, str] = {}
    queue = list(start)
    for _ in range(500):  # bounded: the docs are a few dozen pages
        if not queue:
            break
        path = queue.pop()
        if path in seen:
            continue
        page = gateway.get(path)
        assert page.status_code == 200, path
        seen[path] = page.text
        for href in re.findall(r'href="([^"#][^"]*)"', page.text):
            target = urlsplit(urljoin(gateway.url + path, href))
            if target.netloc == urlsplit(gateway.url).netloc and target.path.startswith(
                ("/docs", "/login", "/logout")
            ):
                queue.append(target.path)
    assert not queue, "more pages than expected"
    return seen


def test_every_link_of_every_page_resolves(gateways: dict[str, Gateway]) -> None:
    gateway = gateways["http"]
    pages = crawl(gateway, ("/login", "/logout", "/docs/", "/docs/errors"))
    assert len(pages) > 15
    for path, html in pages.items():
        for href in re.findall(r'(?:href|src)="([^"]+)"', html):
            target = urlsplit(urljoin(gateway.url + path, href))
            if target.netloc != urlsplit(gateway.url).netloc:
                continue  # a link elsewhere (GitHub, MLflow's docs): nothing loads from it
            query = f"?{target.query}" if target.query else ""
            answer = gateway.get(target.path + query, headers=NAVIGATION)
            assert answer.status_code == 200, (path, href)
            if target.fragment and target.path in pages:
                assert target.fragment in anchors(pages[target.path]), (path, href)


def attempt(gateway: Gateway, key: str) -> requests.Response:
    return gateway.post("/login", data={"key": key}, headers=SAME_ORIGIN, allow_redirects=False)


@pytest.mark.usefixtures("fresh_signin_limit")
def test_sign_in_is_rate_limited_from_one_address(
    gateways: dict[str, Gateway], ui_keys: UiKeys
) -> None:
    gateway = gateways["http"]
    statuses = []
    for _ in range(60):  # the e2e stack allows a burst of 30 from one address
        statuses.append(attempt(gateway, keys.generate("live").token).status_code)
        if statuses[-1] == 429:
            break
    assert statuses[-1] == 429 and set(statuses[:-1]) == {401}
    limited = attempt(gateway, ui_keys.reader)  # even the right key waits
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert "Too many sign-in attempts from your address" in limited.text
    # The keys API's limiter (leases) remembers the refusal until Redis's next token, whatever
    # the fixture deletes in Redis: let that pass, so the next test starts from a full bucket.
    time.sleep(min(5, int(limited.headers["retry-after"])))


@pytest.mark.usefixtures("fresh_signin_limit")
def test_sign_in_is_no_key_existence_oracle(gateways: dict[str, Gateway], ui_keys: UiKeys) -> None:
    gateway = gateways["http"]
    parsed = keys.parse(ui_keys.reader)
    assert parsed is not None
    names = ("unknown id", "known id, wrong secret")
    timings: dict[str, list[float]] = {name: [] for name in names}
    pages: dict[str, set[str]] = {name: set() for name in names}
    for _ in range(12):  # interleaved, so both see the same machine
        for name in names:
            key = keys.generate("live", None if name == "unknown id" else parsed.key_id).token
            started = time.perf_counter()
            answer = attempt(gateway, key)
            timings[name].append(time.perf_counter() - started)
            assert answer.status_code == 401, (answer.status_code, answer.text[:200])
            pages[name].add(re.sub(r'value="[^"]*"', "", answer.text))
    assert pages["unknown id"] == pages["known id, wrong secret"]  # word for word
    assert len(pages["unknown id"]) == 1
    assert "That key was not accepted" in next(iter(pages["unknown id"]))
    medians = [statistics.median(times) for times in timings.values()]
    assert max(medians) < 3 * min(medians), timings  # generous: no gross gap, no wall clock


def test_programs_keep_the_json_and_no_redirect(gateways: dict[str, Gateway]) -> None:
    for gateway in gateways.values():
        page = gateway.get("/api/mlflow/", headers={"Accept": "text/html"}, allow_redirects=False)
        assert page.status_code == 401 and page.json()["error"] == "missing_key"
        assert "location" not in page.headers
        unknown = f"Bearer {keys.generate('live').token}"
        bad_key = gateway.get(
            "/api/mlflow/", headers={"Authorization": unknown, **PAGE_LOAD}, allow_redirects=False
        )
        assert bad_key.status_code == 401 and bad_key.json()["error"] == "unknown_key"
        browser = gateway.get("/api/mlflow/", headers=PAGE_LOAD, allow_redirects=False)
        assert browser.status_code == 302
        assert browser.headers["location"] == "/login?next=%2Fapi%2Fmlflow%2F&reason=missing_key"
        assert browser.headers["cache-control"] == "no-store"
        slashless = gateway.get("/api/mlflow", allow_redirects=False)
        assert slashless.status_code == 308 and slashless.headers["location"].endswith(
            "/api/mlflow/"
        )
