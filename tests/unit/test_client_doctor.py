"""The connection doctor (hokusai.doctor) with no network: URL forms of both kinds, the
environment, keys, the advice table, access and scopes over a fake transport, scrubbing, and the
whole command — as ``hokusai-doctor`` and as the ops CLI's ``hokusai doctor``, which is the same
code (cli/doctor.py, its earlier copy, is gone; its tests' assertions live on here)."""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable, Mapping

import pytest

from authz.check.reasons import Reason, denial_body
from cli.main import main as ops_main
from hokusai import doctor, keyformat, reasons
from hokusai.doctor import cli, network, probes
from hokusai.doctor.target import HOKUSAI_NAMES, MLFLOW_NAMES, Target
from hokusai.redact import Scrubber

NEW = keyformat.generate("live")
TOKEN, PARSED = NEW.token, NEW.parsed
SECRET = PARSED.secret
VARIABLES = (
    "HOKUSAI_API_KEY",
    "HOKUSAI_GATEWAY_URL",
    "HOKUSAI_CA_CERT",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_SERVER_CERT_PATH",
    "MLFLOW_TRACKING_INSECURE_TLS",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
)


@pytest.fixture(autouse=True)
def _no_client_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


Command = Callable[[list[str]], int]
COMMANDS: dict[str, Command] = {
    "hokusai-doctor": cli.main,
    "hokusai doctor": lambda argv: ops_main(["doctor", *argv]),
}
both_commands = pytest.mark.parametrize("command", list(COMMANDS.values()), ids=list(COMMANDS))


# --- URL ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "kind", "host", "port", "gateway"),
    [
        (
            "https://gw.example.com/api/mlflow",
            "tracking",
            "gw.example.com",
            443,
            "https://gw.example.com",
        ),
        (
            "https://localhost:8443/api/mlflow/",
            "tracking",
            "localhost",
            8443,
            "https://localhost:8443",
        ),
        ("https://gw:9/team/api/mlflow", "tracking", "gw", 9, "https://gw:9/team"),
        ("https://u:p@gw/api/mlflow", "tracking", "gw", 443, "https://gw"),
        ("https://gw:8443", "gateway", "gw", 8443, "https://gw:8443"),
        ("https://gw/team/", "gateway", "gw", 443, "https://gw/team"),
        ("https://gw/api/mlflow", "gateway", "gw", 443, "https://gw"),
    ],
)
def test_good_urls(url: str, kind: str, host: str, port: int, gateway: str) -> None:
    result, endpoint = doctor.check_url(url, kind)  # type: ignore[arg-type]
    assert result.status == "ok"
    assert endpoint == network.Endpoint(host, port, gateway)
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
def test_tracking_uris_say_what_to_set(url: str | None, advice: str) -> None:
    result, endpoint = doctor.check_url(url, "tracking", MLFLOW_NAMES)
    assert endpoint is None and result.status == "FAIL"
    assert advice in result.advice


@pytest.mark.parametrize(
    ("url", "advice"),
    [
        (None, "export HOKUSAI_GATEWAY_URL=https://<gateway host>:<port>"),
        ("http://gw:8080", "HOKUSAI_GATEWAY_URL=https://gw:<https port>"),
        ("https://gw:8443/mlflow", "HOKUSAI_GATEWAY_URL=https://gw:8443 "),
    ],
)
def test_gateway_urls_say_what_to_set(url: str | None, advice: str) -> None:
    result, endpoint = doctor.check_url(url, "gateway", HOKUSAI_NAMES)
    assert endpoint is None and advice in result.advice + " "


def test_endpoint_paths() -> None:
    endpoint = network.Endpoint("gw", 443, "https://gw/team")
    assert endpoint.tracking_path == "/team/api/mlflow"
    assert endpoint.path("/health") == "/team/health"


# --- where the configuration comes from -------------------------------------------------------


def test_the_client_variables_come_first() -> None:
    target = doctor.from_env(
        {
            "HOKUSAI_GATEWAY_URL": "https://gw",
            "HOKUSAI_API_KEY": TOKEN,
            "MLFLOW_TRACKING_URI": "https://other/api/mlflow",
            "MLFLOW_TRACKING_TOKEN": "old",
            "MLFLOW_TRACKING_SERVER_CERT_PATH": "/ca.pem",
            "MLFLOW_TRACKING_USERNAME": "u",
            "MLFLOW_TRACKING_PASSWORD": "p",
        }
    )
    assert (target.url, target.key, target.ca) == ("https://gw", TOKEN, "/ca.pem")
    assert target.names == reasons.Names(
        "HOKUSAI_API_KEY", "HOKUSAI_GATEWAY_URL", "MLFLOW_TRACKING_SERVER_CERT_PATH"
    )
    assert target.url_kind == "gateway"
    assert not target.basic_auth  # the client's auth plugin wins over basic-auth variables
    assert SECRET not in repr(target)


def test_a_stock_client_s_key_means_the_stock_client_s_variables() -> None:
    """``hokusai gateway env`` exports both kinds; with the key in MLFLOW_TRACKING_TOKEN only,
    MLflow uses MLFLOW_* alone, so the doctor checks exactly that."""
    env = {
        "HOKUSAI_GATEWAY_URL": "https://gw",
        "HOKUSAI_CA_CERT": "/client-ca.pem",
        "MLFLOW_TRACKING_URI": "https://gw",  # the /api/mlflow suffix forgotten
        "MLFLOW_TRACKING_TOKEN": TOKEN,
    }
    target = doctor.from_env(env)
    assert (target.url, target.key, target.ca) == ("https://gw", TOKEN, None)
    assert target.names == MLFLOW_NAMES and target.url_kind == "tracking"
    result, endpoint = doctor.check_url(target.url, target.url_kind, target.names)
    assert endpoint is None and "MLFLOW_TRACKING_URI=https://gw/api/mlflow" in result.advice


def test_mlflow_env_reads_the_stock_client_s_variables() -> None:
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


def test_a_stock_mlflow_setup() -> None:
    env = {
        "MLFLOW_TRACKING_URI": "https://gw/api/mlflow",
        "MLFLOW_TRACKING_TOKEN": TOKEN,
        "MLFLOW_TRACKING_USERNAME": "u",
        "MLFLOW_TRACKING_PASSWORD": "p",
    }
    for target in (doctor.from_env(env), doctor.mlflow_env(env)):
        assert target.names == MLFLOW_NAMES and target.url_kind == "tracking"
        assert target.basic_auth


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


# --- the key, offline ---------------------------------------------------------------------------


def _mutated(token: str) -> str:
    return token[:-1] + ("A" if token[-1] != "A" else "B")


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
    result, parsed = probes.check_key(Target(url=None, key=key))
    assert parsed is None and result.status == "FAIL"
    assert why in result.detail
    assert SECRET not in result.detail + result.advice


def test_basic_auth_variables_shadow_a_stock_client_s_token() -> None:
    result, _ = probes.check_key(Target(url=None, key=TOKEN, basic_auth=True))
    assert result.status == "FAIL" and "unset MLFLOW_TRACKING_USERNAME" in result.advice


def test_good_key_shows_only_its_prefix() -> None:
    result, parsed = probes.check_key(Target(url=None, key=TOKEN))
    assert parsed == PARSED
    assert result.detail == f"{PARSED.display_prefix}: well-formed, checksum ok, environment live"


# --- the advice table -------------------------------------------------------------------------


def test_advice_covers_every_reason() -> None:
    for reason in Reason:
        text = doctor.advice_for(reason.value, PARSED)
        assert text and "{" not in text and SECRET not in text


def test_specific_advice() -> None:
    assert "rotate" in doctor.advice_for("expired", PARSED)
    assert "allowlist" in doctor.advice_for("ip_not_allowed", PARSED)
    assert "mlflow:write" in doctor.advice_for("insufficient_scope", PARSED)
    assert "revoked" in doctor.advice_for("revoked", PARSED)
    assert "unexpected" in doctor.advice_for("no_such_code", PARSED)
    assert "MLFLOW_TRACKING_TOKEN" in doctor.advice_for("expired", PARSED, MLFLOW_NAMES)


# --- access and scopes over a fake transport ------------------------------------------------------

CONN = probes.Connection(
    network.Endpoint("gw", 443, "https://gw"), ssl.create_default_context(), 1.0
)


def _replying(status: int, body: bytes, seen: list[str] | None = None) -> doctor.Fetch:
    def fetch(conn: probes.Connection, path: str, headers: Mapping[str, str]) -> doctor.Reply:
        if seen is not None:
            seen.append(path)
        return doctor.Reply(status, body)

    return fetch


@pytest.mark.parametrize("reason", [r for r in Reason if r.value != "allowed"])
def test_denials_map_to_the_table(reason: Reason) -> None:
    seen: list[str] = []
    result = probes.check_access(CONN, _replying(401, denial_body(reason), seen), PARSED, TOKEN)
    assert result.status == "FAIL" and reason.value in result.detail
    assert result.advice == doctor.advice_for(reason.value, PARSED)
    assert seen == ["/api/mlflow" + probes.SEARCH_PATH]


def test_access_ok_and_unexpected_answers() -> None:
    assert probes.check_access(CONN, _replying(200, b"{}"), PARSED, TOKEN).status == "ok"
    odd = probes.check_access(CONN, _replying(502, b"<html>"), PARSED, TOKEN)
    assert odd.status == "FAIL" and "502" in odd.detail


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
    result = probes.check_scopes(CONN, _replying(status, body), PARSED, TOKEN)
    assert result.status == "ok" and detail in result.detail


def test_scrubber() -> None:
    other = keyformat.generate("test").token
    scrub = Scrubber([TOKEN])
    text = scrub(f"a {TOKEN} b {other} https://me:pw@h/x?token=abc&api_key=def")
    assert TOKEN not in text and other[20:] not in text
    assert "me:pw" not in text and "abc" not in text and "def" not in text
    assert keyformat.display_prefix("test", other[8:20]) + "_***" in text
    assert Scrubber(["short"])("short stays") == "short stays"


def test_transport_errors_are_scrubbed() -> None:
    def broken(conn: probes.Connection, path: str, headers: Mapping[str, str]) -> doctor.Reply:
        raise OSError(f"boom at https://u:{TOKEN}@gw{path}?api_key={TOKEN} {headers}")

    result = probes.check_access(CONN, broken, PARSED, TOKEN)
    shown = Scrubber([TOKEN])(result.detail)
    assert SECRET not in shown and "api_key=***" in shown


# --- the whole command offline ---------------------------------------------------------------


@pytest.mark.parametrize(
    "key", [TOKEN, TOKEN[:-1], "Bearer " + TOKEN, TOKEN + "\n", _mutated(TOKEN)]
)
@pytest.mark.parametrize("as_json", [False, True])
@both_commands
def test_the_key_is_never_printed(command: Command, key: str, as_json: bool, capsys) -> None:
    url = f"http://me:{key.strip()}@gw:1/api/mlflow?api_key={key.strip()}"
    argv = ["--url", url, "--key", key] + (["--json"] if as_json else [])
    assert command(argv) == 1
    out, err = capsys.readouterr()
    assert SECRET not in out + err and SECRET[:12] not in out + err


@both_commands
def test_output_lines(command: Command, capsys) -> None:
    assert command(["--url", "http://gw/api/mlflow", "--key", "nope"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("FAIL url: ")
    assert lines[1].startswith("  → set --url=https://gw/api/mlflow")
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


@both_commands
def test_write_adds_its_checks_to_the_plan(command: Command, capsys) -> None:
    assert command(["--url", "https://gw.invalid", "--key", TOKEN, "--write", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    checks = [c["check"] for c in report["checks"]]
    assert checks[-6:] == ["experiment", "run", "log", "upload", "download", "delete"]
    assert all(c["status"] == "skip" for c in report["checks"][-6:])


@both_commands
def test_bad_usage_exits_2(command: Command) -> None:
    assert command(["--timeout", "soon"]) == 2
    assert command(["--bogus"]) == 2


@both_commands
def test_flags_override_the_environment(
    command: Command, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://from-env/api/mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "not-a-key-from-env")
    monkeypatch.setenv("HOKUSAI_GATEWAY_URL", "http://from-client-env")
    assert command(["--url", "http://from-flag:1/api/mlflow", "--key", TOKEN]) == 1
    out = capsys.readouterr().out
    assert "from-flag" in out and "from-env" not in out and "from-client-env" not in out
    assert f"ok key: {PARSED.display_prefix}: well-formed" in out
