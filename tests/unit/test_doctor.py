"""``hokusai doctor`` with no network: URL parsing, the advice table, keys, scrubbing."""

from __future__ import annotations

import ssl
from collections.abc import Mapping

import pytest

from authz.check.reasons import Reason, denial_body
from authz.keys import format as keys
from cli import doctor
from cli.main import main

TOKEN = keys.generate("live").token
PARSED = keys.ParsedKey("live", TOKEN[8:20], TOKEN[21:64])
assert keys.parse(TOKEN) == PARSED
SECRET = PARSED.secret


@pytest.fixture(autouse=True)
def _no_mlflow_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("URI", "TOKEN", "SERVER_CERT_PATH", "INSECURE_TLS", "USERNAME", "PASSWORD"):
        monkeypatch.delenv(f"MLFLOW_TRACKING_{name}", raising=False)


# --- URL ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "host", "port", "gateway"),
    [
        ("https://gw.example.com/api/mlflow", "gw.example.com", 443, "https://gw.example.com"),
        ("https://localhost:8443/api/mlflow/", "localhost", 8443, "https://localhost:8443"),
        ("https://gw:9/team/api/mlflow", "gw", 9, "https://gw:9/team"),
        ("https://u:p@gw/api/mlflow", "gw", 443, "https://gw"),
    ],
)
def test_good_urls(url: str, host: str, port: int, gateway: str) -> None:
    result, endpoint = doctor.check_url(url)
    assert result.status == "ok"
    assert endpoint == doctor.Endpoint(host, port, gateway)
    assert "u:p" not in result.detail


@pytest.mark.parametrize(
    ("url", "advice"),
    [
        (None, "export MLFLOW_TRACKING_URI=https://"),
        ("", "export MLFLOW_TRACKING_URI=https://"),
        ("http://gw:8080/api/mlflow", "MLFLOW_TRACKING_URI=https://gw:<https port>/api/mlflow"),
        ("http://gw/api/mlflow", "MLFLOW_TRACKING_URI=https://gw/api/mlflow"),
        ("https://gw:8443", "MLFLOW_TRACKING_URI=https://gw:8443/api/mlflow"),
        ("https://gw:8443/mlflow", "MLFLOW_TRACKING_URI=https://gw:8443/api/mlflow"),
        ("https://gw:port/api/mlflow", "https://<host>:<port>/api/mlflow"),
        ("gw:8443/api/mlflow", "https://"),
    ],
)
def test_bad_urls_say_what_to_set(url: str | None, advice: str) -> None:
    result, endpoint = doctor.check_url(url)
    assert endpoint is None
    assert result.status == "FAIL"
    assert advice in result.advice


def test_endpoint_paths() -> None:
    endpoint = doctor.Endpoint("gw", 443, "https://gw/team")
    assert endpoint.tracking_path == "/team/api/mlflow"
    assert endpoint.path("/health") == "/team/health"


# --- the environment accessor -----------------------------------------------------------------


def test_mlflow_env_reads_the_client_variables() -> None:
    target = doctor.mlflow_env(
        {
            "MLFLOW_TRACKING_URI": "https://gw/api/mlflow",
            "MLFLOW_TRACKING_TOKEN": TOKEN,
            "MLFLOW_TRACKING_SERVER_CERT_PATH": "/ca.pem",
            "MLFLOW_TRACKING_INSECURE_TLS": "false",
        }
    )
    assert (target.url, target.key, target.ca, target.insecure, target.basic_auth) == (
        "https://gw/api/mlflow",
        TOKEN,
        "/ca.pem",
        "false",
        False,
    )
    assert SECRET not in repr(target)
    both = doctor.mlflow_env({"MLFLOW_TRACKING_USERNAME": "u", "MLFLOW_TRACKING_PASSWORD": "p"})
    assert both.basic_auth


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, False),
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("false", False),
        ("0", False),
        ("yes", None),
        ("", None),
    ],
)
def test_insecure_flag_parses_like_mlflow(value: str | None, expected: bool | None) -> None:
    assert doctor.insecure_flag(value) is expected


def test_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://from-env/api/mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "not-a-key-from-env")
    assert main(["doctor", "--url", "http://from-flag:1/api/mlflow", "--key", TOKEN]) == 1
    out = capsys.readouterr().out
    assert "from-flag" in out and "from-env" not in out
    assert f"ok key: {PARSED.display_prefix}: well-formed" in out


def test_bad_usage_exits_2(capsys) -> None:
    assert main(["doctor", "--timeout", "soon"]) == 2
    assert main(["doctor", "--bogus"]) == 2


# --- the key, offline ---------------------------------------------------------------------------


def _mutated(token: str) -> str:
    last = "A" if token[-1] != "A" else "B"
    return token[:-1] + last


@pytest.mark.parametrize(
    ("key", "why"),
    [
        (TOKEN + "\n", "whitespace"),
        (" " + TOKEN, "whitespace"),
        ("Bearer " + TOKEN, "'Bearer '"),
        ("sk_live_" + TOKEN[8:], "does not start with hk_live_ or hk_test_"),
        (TOKEN[:-3], "67 characters long"),
        (TOKEN + "x", "71 characters long"),
        (TOKEN[:40] + "-" + TOKEN[41:], "characters other than"),
        (_mutated(TOKEN), "checksum does not match"),
    ],
)
def test_malformed_keys_are_explained(key: str, why: str) -> None:
    result, parsed = doctor.check_key(doctor.Target(url=None, key=key))
    assert parsed is None
    assert result.status == "FAIL"
    assert why in result.detail
    assert SECRET not in result.detail + result.advice


def test_basic_auth_variables_shadow_the_token() -> None:
    result, _ = doctor.check_key(doctor.Target(url=None, key=TOKEN, basic_auth=True))
    assert result.status == "FAIL"
    assert "unset MLFLOW_TRACKING_USERNAME" in result.advice


def test_good_key_shows_only_its_prefix() -> None:
    result, parsed = doctor.check_key(doctor.Target(url=None, key=TOKEN))
    assert parsed == PARSED
    assert result.detail == f"{PARSED.display_prefix}: well-formed, checksum ok, environment live"


# --- the advice table -------------------------------------------------------------------------


def test_advice_covers_every_reason() -> None:
    assert set(doctor.ADVICE) == set(Reason)
    for reason in Reason:
        text = doctor.advice_for(reason.value, PARSED)
        assert text and "{" not in text
        assert SECRET not in text


def test_specific_advice() -> None:
    assert "rotate" in doctor.advice_for("expired", PARSED)
    assert "allowlist" in doctor.advice_for("ip_not_allowed", PARSED)
    assert "mlflow:write" in doctor.advice_for("insufficient_scope", PARSED)
    assert "revoked" in doctor.advice_for("revoked", PARSED)
    assert "unexpected" in doctor.advice_for("no_such_code", PARSED)


# --- access and scopes over a fake transport ------------------------------------------------------

CONN = doctor.Connection(
    doctor.Endpoint("gw", 443, "https://gw"), ssl.create_default_context(), 1.0
)


def _replying(status: int, body: bytes, seen: list[str] | None = None) -> doctor.Fetch:
    def fetch(conn: doctor.Connection, path: str, headers: Mapping[str, str]) -> doctor.Reply:
        if seen is not None:
            seen.append(path)
        return doctor.Reply(status, body)

    return fetch


@pytest.mark.parametrize("reason", [r for r in Reason if r.value != "allowed"])
def test_denials_map_to_the_table(reason: Reason) -> None:
    seen: list[str] = []
    result = doctor.check_access(CONN, _replying(401, denial_body(reason), seen), PARSED, TOKEN)
    assert result.status == "FAIL"
    assert reason.value in result.detail
    assert result.advice == doctor.advice_for(reason.value, PARSED)
    assert seen == ["/api/mlflow" + doctor.SEARCH_PATH]


def test_access_ok_and_unexpected_answers() -> None:
    assert doctor.check_access(CONN, _replying(200, b"{}"), PARSED, TOKEN).status == "ok"
    odd = doctor.check_access(CONN, _replying(502, b"<html>"), PARSED, TOKEN)
    assert odd.status == "FAIL" and "502" in odd.detail


def test_transport_errors_are_scrubbed() -> None:
    def broken(conn: doctor.Connection, path: str, headers: Mapping[str, str]) -> doctor.Reply:
        raise OSError(f"boom at https://u:{TOKEN}@gw{path}?api_key={TOKEN} {headers}")

    result = doctor.check_access(CONN, broken, PARSED, TOKEN)
    shown = doctor.Scrubber(TOKEN).result(result)
    assert SECRET not in shown.detail + shown.advice
    assert "api_key=***" in shown.detail


@pytest.mark.parametrize(
    ("status", "body", "detail"),
    [
        (404, b'{"error": "not_found"}', "read access verified"),
        (200, b'{"scopes": ["mlflow:read"]}', "mlflow:read: read only"),
        (200, b'{"key": {"scopes": ["mlflow:read", "mlflow:write"]}}', "can read and write"),
        (200, b'{"scopes": ["admin"]}', "admin: can read and write"),
        (200, b"not json", "read access verified"),
    ],
)
def test_scopes(status: int, body: bytes, detail: str) -> None:
    result = doctor.check_scopes(CONN, _replying(status, body), PARSED, TOKEN)
    assert result.status == "ok"
    assert detail in result.detail


# --- scrubbing and the whole command offline -----------------------------------------------------


def test_scrubber() -> None:
    other = keys.generate("test").token
    scrub = doctor.Scrubber(TOKEN)
    text = scrub(f"a {TOKEN} b {other} https://me:pw@h/x?token=abc&api_key=def")
    assert TOKEN not in text and other[20:] not in text
    assert "me:pw" not in text and "abc" not in text and "def" not in text
    assert keys.display_prefix("test", other[8:20]) + "_***" in text
    assert doctor.Scrubber("short")("short stays") == "short stays"


@pytest.mark.parametrize(
    "key", [TOKEN, TOKEN[:-1], "Bearer " + TOKEN, TOKEN + "\n", _mutated(TOKEN)]
)
@pytest.mark.parametrize("as_json", [False, True])
def test_the_key_is_never_printed(key: str, as_json: bool, capsys) -> None:
    url = f"http://me:{key.strip()}@gw:1/api/mlflow?api_key={key.strip()}"
    argv = ["doctor", "--url", url, "--key", key] + (["--json"] if as_json else [])
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert SECRET not in out + err
    assert SECRET[:12] not in out + err


def test_output_lines(capsys) -> None:
    assert main(["doctor", "--url", "https://gw/api/mlflow/x", "--key", "nope"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("FAIL url: ")
    assert lines[1].startswith("  → set MLFLOW_TRACKING_URI=")
    checks = [line.split(":")[0] for line in lines if not line.startswith("  → ")]
    assert checks == [
        "FAIL url",
        "skip dns",
        "skip tcp",
        "skip tls",
        "skip gateway",
        "skip mlflow",
        "FAIL key",
        "skip access",
        "skip scopes",
    ]
