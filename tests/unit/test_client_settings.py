"""hokusai.settings: arguments win over variables; every mistake is one ConfigurationError naming
what to fix, raised offline and showing at most the key's display prefix."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from hokusai import keyformat, variables
from hokusai.errors import ConfigurationError
from hokusai.settings import Settings, default_data_dir

KEY = keyformat.generate("live").token
SECRET = KEY[21:64]
URL = "https://gw.example.com"


def resolve(env: dict[str, str] | None = None, **kwargs: object) -> Settings:
    return Settings.resolve(environ=env or {}, **kwargs)  # type: ignore[arg-type]


def refused(env: dict[str, str] | None = None, **kwargs: object) -> str:
    with pytest.raises(ConfigurationError) as caught:
        resolve(env, **kwargs)
    text = str(caught.value) + repr(caught.value)
    assert SECRET not in text and SECRET[:12] not in text
    return text


def test_variables_alone_are_enough() -> None:
    settings = resolve({"HOKUSAI_API_KEY": KEY, "HOKUSAI_GATEWAY_URL": URL})
    assert (settings.url, settings.key, settings.ca_cert) == (URL, KEY, None)
    assert settings.tracking_uri == URL + "/api/mlflow"
    assert not (settings.mock or settings.fallback or settings.optional)
    assert SECRET not in repr(settings)


def test_arguments_win(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text(Path(__import__("certifi").where()).read_text())
    other = keyformat.generate("test").token
    settings = resolve(
        {
            "HOKUSAI_API_KEY": "garbage",
            "HOKUSAI_GATEWAY_URL": "http://nope",
            "HOKUSAI_MLFLOW_FALLBACK": "maybe",
        },
        api_key=other,
        url="https://arg.example:8443/",
        ca_cert=ca,
        fallback=True,
    )
    assert (settings.key, settings.url, settings.ca_cert) == (
        other,
        "https://arg.example:8443",
        str(ca),
    )
    assert settings.fallback
    assert settings.names.key == "setup(api_key=…)"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://gw", "https://gw"),
        ("https://gw:8443/", "https://gw:8443"),
        ("https://gw/team/", "https://gw/team"),
        ("https://gw:8443/api/mlflow", "https://gw:8443"),
        ("https://gw/team/api/mlflow/", "https://gw/team"),
    ],
)
def test_url_forms(url: str, expected: str) -> None:
    assert resolve({"HOKUSAI_API_KEY": KEY, "HOKUSAI_GATEWAY_URL": url}).url == expected


@pytest.mark.parametrize(
    ("url", "said"),
    [
        (None, "HOKUSAI_GATEWAY_URL is not set"),
        ("", "is not set"),
        ("http://gw:8080", "https only"),
        ("gw:8443", "https only"),
        ("https://gw:port", "port is not a number"),
        ("https://gw:8443/mlflow", "old MLflow path"),
        (f"https://u:{KEY}@gw", "must not carry credentials"),
        (f"https://gw/?api_key={KEY}", "must not carry credentials"),
    ],
)
def test_bad_urls(url: str | None, said: str) -> None:
    env = {"HOKUSAI_API_KEY": KEY} | ({"HOKUSAI_GATEWAY_URL": url} if url is not None else {})
    assert said in refused(env)


@pytest.mark.parametrize(
    ("key", "said"),
    [
        (None, "HOKUSAI_API_KEY is not set"),
        ("  ", "is not set"),
        (KEY[:-1], "69 characters"),
        ("Bearer " + KEY, "'Bearer '"),
        (KEY[:30] + ("A" if KEY[30] != "A" else "B") + KEY[31:], "checksum does not match"),
        ("sk_live_" + KEY[8:], "does not start with"),
    ],
)
def test_bad_keys_name_the_variable_and_show_the_prefix_at_most(key: str | None, said: str) -> None:
    env = {"HOKUSAI_GATEWAY_URL": URL} | ({"HOKUSAI_API_KEY": key} if key is not None else {})
    text = refused(env)
    assert said in text and "HOKUSAI_API_KEY" in text


def test_the_key_is_checked_before_the_url() -> None:
    assert "malformed" in refused({"HOKUSAI_API_KEY": KEY[:-1]})


def test_surrounding_whitespace_is_ignored() -> None:
    assert resolve({"HOKUSAI_API_KEY": f"  {KEY}\n", "HOKUSAI_GATEWAY_URL": URL}).key == KEY


def test_ca_file_must_exist_and_be_pem(tmp_path: Path) -> None:
    env = {"HOKUSAI_API_KEY": KEY, "HOKUSAI_GATEWAY_URL": URL}
    assert "does not exist" in refused(env | {"HOKUSAI_CA_CERT": str(tmp_path / "nope.pem")})
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    assert "not a PEM certificate" in refused(env | {"HOKUSAI_CA_CERT": str(junk)})
    assert "MLFLOW_TRACKING_SERVER_CERT_PATH" in refused(
        env | {"MLFLOW_TRACKING_SERVER_CERT_PATH": str(junk)}
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", True),
        ("true", True),
        ("YES", True),
        ("on", True),
        ("0", False),
        ("false", False),
        ("", False),
        ("no", False),
    ],
)
def test_flags(value: str, expected: bool) -> None:
    env = {
        "HOKUSAI_API_KEY": KEY,
        "HOKUSAI_GATEWAY_URL": URL,
        "HOKUSAI_MLFLOW_FALLBACK": value,
        "HOKUSAI_MLFLOW_OPTIONAL": value,
    }
    settings = resolve(env)
    assert settings.fallback is expected and settings.optional is expected


def test_a_bad_flag_names_its_variable() -> None:
    assert "HOKUSAI_MLFLOW_OPTIONAL must be true or false" in refused(
        {"HOKUSAI_API_KEY": KEY, "HOKUSAI_GATEWAY_URL": URL, "HOKUSAI_MLFLOW_OPTIONAL": "sure"}
    )


def test_mock_mode_needs_no_key_or_url() -> None:
    settings = resolve({"HOKUSAI_MOCK_MODE": "true", "HOKUSAI_API_KEY": "garbage"})
    assert settings.mock and settings.url is None and settings.key is None


def test_data_dir() -> None:
    assert default_data_dir({"XDG_DATA_HOME": "/x"}) == Path("/x/hokusai/mlflow")
    assert default_data_dir({"HOME": "/home/u"}) == Path("/home/u/.local/share/hokusai/mlflow")


def test_every_variable_the_client_reads_is_declared_once() -> None:
    """hokusai.variables is complete: the gateway skips exactly these (authz/settings.py), so a
    HOKUSAI_* name the client used without declaring it would make `hokusai auth` exit 2 again."""
    strings = [
        node.value
        for path in Path(variables.__file__).parent.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]
    named = {name for text in strings for name in re.findall(r"\bHOKUSAI_[A-Z_]+\b", text)}
    assert named == set(variables.CLIENT_VARIABLES)
