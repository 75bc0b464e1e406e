"""``hokusai doctor`` — the Python client's doctor (``hokusai.doctor``) in the ops CLI — against
the real gateway (Envoy, authz, Postgres, Redis, MLflow).

Every case also asserts that the key's secret appears nowhere in stdout or stderr. The examples of
docs/troubleshooting.md are executed here too.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from authz.keys import format as keys
from cli.main import main
from cli.servers import free_port
from cli.tls import ensure_certificates
from hokusai import doctor
from hokusai.doctor import probes
from hokusai.variables import CLIENT_VARIABLES
from tests.e2e.conftest import Gateway
from tests.support.authz import poll

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "troubleshooting.md"
MLFLOW_VARS = ("URI", "TOKEN", "SERVER_CERT_PATH", "INSECURE_TLS", "USERNAME", "PASSWORD")
SCOPES = ["mlflow:read", "mlflow:write"]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in MLFLOW_VARS:
        monkeypatch.delenv(f"MLFLOW_TRACKING_{name}", raising=False)
    for name in CLIENT_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def stock_mlflow_env(
    monkeypatch: pytest.MonkeyPatch, gateway: Gateway, token: str, ca: str | None
) -> None:
    """What a stock MLflow client is configured with (no HOKUSAI_* variables)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", gateway.mlflow_uri)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token)
    if ca is not None:
        monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", ca)


@pytest.fixture
def one(gateways: dict[str, Gateway]) -> Gateway:
    """Checks that do not depend on the ext_authz transport run against one gateway."""
    return gateways["http"]


def new_key(gateway: Gateway, scopes: list[str] = SCOPES) -> keys.NewKey:
    _, new = gateway.service().create_key(
        user_email="doctor@example.com", name="doctor", scopes=scopes
    )
    return new


def secret_of(token: str) -> str:
    return token[len("hk_live_") + keys.ID_LENGTH + 1 :]


def doctor_run(capsys: pytest.CaptureFixture[str], token: str, *argv: str) -> tuple[int, str]:
    """Runs ``hokusai doctor`` in-process; fails if any part of the secret is printed."""
    capsys.readouterr()
    code = main(["doctor", *argv])
    out, err = capsys.readouterr()
    for part in (token, secret_of(token), secret_of(token)[:16]):
        assert part not in out + err
    return code, out


def line(out: str, check: str) -> str:
    found = [text for text in out.splitlines() if re.match(rf"(ok|FAIL|skip) {check}: ", text)]
    assert len(found) == 1, out
    return found[0]


def advice(out: str, check: str) -> str:
    lines = out.splitlines()
    following = lines[lines.index(line(out, check)) + 1]
    assert following.startswith("  → "), out
    return following


def test_all_ok(gateway: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    token = new_key(gateway).token
    code, out = doctor_run(
        capsys, token, "--url", gateway.mlflow_uri, "--key", token, "--ca", gateway.ca
    )
    assert code == 0, out
    statuses = [text.split(":")[0] for text in out.splitlines()]
    assert statuses == [
        "ok url",
        "ok dns",
        "ok tcp",
        "ok tls",
        "ok gateway",
        "ok mlflow",
        "ok key",
        "ok access",
        "ok scopes",
    ]
    assert f"{token[:20]}: well-formed" in line(out, "key")
    assert "trusted via CA file" in line(out, "tls")


def test_read_only_key_still_passes(one: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    token = new_key(one, ["mlflow:read"]).token
    code, out = doctor_run(capsys, token, "--url", one.mlflow_uri, "--key", token, "--ca", one.ca)
    assert code == 0, out
    assert re.search(r"read (only|access verified)", line(out, "scopes"))


def test_wrong_ca(
    one: Gateway,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    other = ensure_certificates(tmp_path / "other").ca_cert
    token = new_key(one).token
    stock_mlflow_env(monkeypatch, one, token, str(other))
    code, out = doctor_run(capsys, token)
    assert code == 1
    assert line(out, "tls").startswith(f"FAIL tls: certificate not trusted by the CA file {other}")
    assert "MLFLOW_TRACKING_SERVER_CERT_PATH" in advice(out, "tls")
    assert "hokusai gateway env" in advice(out, "tls")
    assert line(out, "gateway").startswith("skip")
    assert line(out, "access").startswith("skip")
    # Given as a flag, the advice names the flag.
    code, out = doctor_run(capsys, token, "--ca", str(other))
    assert code == 1 and "set --ca to the gateway's CA" in advice(out, "tls")


def test_no_ca_uses_the_system_store(
    one: Gateway, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    token = new_key(one).token
    stock_mlflow_env(monkeypatch, one, token, None)
    code, out = doctor_run(capsys, token)
    assert code == 1
    assert "not trusted by the system's trusted CAs" in line(out, "tls")
    assert "MLFLOW_TRACKING_SERVER_CERT_PATH" in advice(out, "tls")
    # The client's variables come first, and the advice names the client's CA variable.
    monkeypatch.setenv("HOKUSAI_GATEWAY_URL", one.url)
    monkeypatch.setenv("HOKUSAI_API_KEY", token)
    code, out = doctor_run(capsys, token)
    assert code == 1 and line(out, "url") == f"ok url: {one.url}"
    assert "set HOKUSAI_CA_CERT to the gateway's CA" in advice(out, "tls")


def test_insecure_tls_is_reported(
    one: Gateway, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_INSECURE_TLS", "true")
    token = new_key(one).token
    code, out = doctor_run(capsys, token, "--url", one.mlflow_uri, "--key", token)
    assert code == 0, out
    assert line(out, "tls").startswith("ok tls: NOT verified")


def test_nothing_listening(one: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    token = new_key(one).token
    code, out = doctor_run(
        capsys,
        token,
        "--url",
        f"https://127.0.0.1:{free_port()}/api/mlflow",
        "--key",
        token,
        "--ca",
        one.ca,
    )
    assert code == 1
    assert line(out, "tcp").startswith("FAIL tcp: cannot connect")
    assert "nothing listens" in advice(out, "tcp")
    assert line(out, "tls").startswith("skip")


def test_plain_http_port(one: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    token = new_key(one).token
    url = f"https://localhost:{one.record.http_port}/api/mlflow"
    code, out = doctor_run(capsys, token, "--url", url, "--key", token, "--ca", one.ca)
    assert code == 1
    assert "does not speak TLS" in line(out, "tls")


def test_unresolvable_host(one: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    token = new_key(one).token
    code, out = doctor_run(
        capsys,
        token,
        "--url",
        "https://no-such-host.invalid/api/mlflow",
        "--key",
        token,
        "--ca",
        one.ca,
    )
    assert code == 1
    assert line(out, "dns").startswith("FAIL dns: no-such-host.invalid does not resolve")
    assert line(out, "key").startswith("ok key")  # the offline check still runs
    assert line(out, "access") == "skip access: needs a connection"


def test_revoked_key(gateway: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    new = new_key(gateway)
    gateway.service().revoke_key(new.parsed.key_id, reason="doctor test")
    code, out = doctor_run(
        capsys, new.token, "--url", gateway.mlflow_uri, "--key", new.token, "--ca", gateway.ca
    )
    assert code == 1
    assert line(out, "access") == (
        f"FAIL access: {new.parsed.display_prefix} refused: experiments/search → 401 revoked"
    )
    assert advice(out, "access") == "  → " + doctor.advice_for("revoked", new.parsed)
    assert line(out, "scopes").startswith("skip")


@pytest.fixture
def fetched(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every path doctor GETs over HTTPS during the test."""
    paths: list[str] = []
    real = probes.https_get

    def recording(conn: doctor.Connection, path: str, headers: Mapping[str, str]) -> doctor.Reply:
        paths.append(path)
        return real(conn, path, headers)

    monkeypatch.setattr(probes, "https_get", recording)
    yield paths


def test_malformed_key_never_goes_on_the_wire(
    one: Gateway, fetched: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    token = new_key(one).token
    typo = token[:30] + ("A" if token[30] != "A" else "B") + token[31:]
    code, out = doctor_run(capsys, typo, "--url", one.mlflow_uri, "--key", typo, "--ca", one.ca)
    assert code == 1
    assert line(out, "key").startswith(f"FAIL key: {token[:20]} is malformed: its checksum")
    assert line(out, "access") == "skip access: needs a well-formed key"
    assert fetched == ["/health", "/api/mlflow/health/mlflow"]  # health only, no key check


def test_console_script_with_the_mlflow_environment(one: Gateway) -> None:
    """Once as a real process, configured only by the MLflow variables (no flags)."""
    token = new_key(one).token
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": one.mlflow_uri,
        "MLFLOW_TRACKING_TOKEN": token,
        "MLFLOW_TRACKING_SERVER_CERT_PATH": one.ca,
    }
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "doctor", "--json"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert secret_of(token) not in done.stdout + done.stderr
    assert '"ok": true' in done.stdout


# --- docs/troubleshooting.md, executed ---------------------------------------------------------

STATUS_LINE = re.compile(r"(ok|FAIL|skip) [a-z]+:")
EXPECTED_EXIT = re.compile(r"#\s*exit\s+(\d+)\s*$")


def doc_blocks() -> list[list[tuple[int, str]]]:
    """The lines of every ```console block, with their line numbers."""
    blocks: list[list[tuple[int, str]]] = []
    inside = False
    for number, text in enumerate(DOC.read_text().splitlines(), start=1):
        if text.startswith("```"):
            inside = text.strip() == "```console"
            if inside:
                blocks.append([])
        elif inside:
            blocks[-1].append((number, text))
    return blocks


class DocRunner:
    """Executes ``$ export``, ``$ unset`` and ``$ hokusai`` lines; checks documented output."""

    def __init__(
        self, gateway: Gateway, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        self.gateway, self.monkeypatch, self.capsys = gateway, monkeypatch, capsys
        self.names = {"https://localhost:8443": gateway.url, "~/.hokusai/tls/ca.crt": gateway.ca}
        self.tokens: list[str] = []
        self.last_out = ""
        self.revoked = False

    def substitute(self, text: str) -> str:
        for placeholder, value in self.names.items():
            text = text.replace(placeholder, value)
        return text

    def command(self, number: int, text: str) -> None:
        words = shlex.split(self.substitute(text), comments=True)
        if words[0] == "export":
            name, _, value = words[1].partition("=")
            self.monkeypatch.setenv(name, value)
        elif words[0] == "unset":
            self.monkeypatch.delenv(words[1], raising=False)
        else:
            self.hokusai(number, text, words[1:])

    def hokusai(self, number: int, text: str, argv: list[str]) -> None:
        match = EXPECTED_EXIT.search(text)
        expected = int(match[1]) if match else 0
        code, out, err = self.run(argv)
        if code != expected and self.revoked:
            # A revocation reaches every cache by NOTIFY within a second: poll, don't sleep.
            poll(lambda: self.run(argv)[0] == expected, timeout=5, interval=0.2)
            code, out, err = self.run(argv)
        assert code == expected, f"{DOC.name}:{number}: {text}\n{out}{err}"
        self.revoked = "revoke-key" in argv
        for token in self.tokens:
            assert secret_of(token) not in out + err, f"{DOC.name}:{number}"
        created = re.search(keys.KEY_PATTERN, out)
        if created and "create-key" in argv:
            self.tokens.append(created[0])
            self.names["KEY_ID"] = created[0][8:20]
            self.names["KEY"] = created[0]
        self.last_out = out

    def run(self, argv: list[str]) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main(argv)
        out, err = self.capsys.readouterr()
        return code, out, err

    def output(self, number: int, text: str) -> None:
        """A documented output line: its status and check name must be in the real output."""
        prefix = STATUS_LINE.match(text)
        if prefix:
            assert any(real.startswith(prefix[0]) for real in self.last_out.splitlines()), (
                f"{DOC.name}:{number}: documented {prefix[0]!r} not in:\n{self.last_out}"
            )


def test_the_troubleshooting_doc_runs(
    one: Gateway, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOKUSAI_DATABASE_URL", one.database_url)
    runner = DocRunner(one, monkeypatch, capsys)
    commands = 0
    for block in doc_blocks():
        for number, text in block:
            if text.startswith("$ "):
                runner.command(number, text[2:])
                commands += 1
            else:
                runner.output(number, text)
    assert commands >= 8
