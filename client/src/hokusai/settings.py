"""The client's settings: one frozen object from ``setup()``'s arguments and the environment.

| argument   | variable                  | meaning                                               |
|------------|---------------------------|-------------------------------------------------------|
| api_key    | HOKUSAI_API_KEY           | the key (``hk_live_…``); surrounding whitespace ignored |
| url        | HOKUSAI_GATEWAY_URL       | the gateway, ``https://host[:port][/prefix]``         |
| ca_cert    | HOKUSAI_CA_CERT           | CA certificate (PEM) to trust; else                   |
|            | MLFLOW_TRACKING_SERVER_CERT_PATH, else the system store                          |
| mock       | HOKUSAI_MOCK_MODE         | in-memory tracking, no server at all                  |
| fallback   | HOKUSAI_MLFLOW_FALLBACK   | gateway or MLflow unavailable → local store           |
| optional   | HOKUSAI_MLFLOW_OPTIONAL   | gateway or MLflow unavailable → tracking calls no-ops |

An argument wins over its variable. Everything is validated here, before any network I/O: a
malformed key or URL is one ``ConfigurationError`` naming the argument or variable — showing the
key's display prefix at most. ``os.environ`` is read only by ``Settings.resolve``.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from hokusai import keyformat, variables
from hokusai.errors import ConfigurationError
from hokusai.reasons import Names
from hokusai.redact import scrub

MLFLOW_PATH = "/api/mlflow"
OLD_MLFLOW_PATH = "/mlflow"  # the path of earlier instructions
TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"", "0", "false", "no", "off"})


@dataclass(frozen=True, slots=True)
class Settings:
    """Validated settings. ``key`` never appears in a ``repr``."""

    url: str | None  # the gateway's base URL, no trailing slash
    key: str | None = field(default=None, repr=False)
    ca_cert: str | None = None  # an absolute path
    mock: bool = False
    fallback: bool = False
    optional: bool = False
    data_dir: Path = field(default_factory=lambda: default_data_dir({}))
    names: Names = field(default_factory=Names)

    @property
    def tracking_uri(self) -> str | None:
        return None if self.url is None else self.url + MLFLOW_PATH

    @property
    def parsed_key(self) -> keyformat.ParsedKey | None:
        return None if self.key is None else keyformat.parse(self.key)

    @property
    def key_label(self) -> str | None:
        parsed = self.parsed_key
        return None if parsed is None else parsed.display_prefix

    @classmethod
    def resolve(
        cls,
        api_key: str | None = None,
        url: str | None = None,
        *,
        fallback: bool | None = None,
        mock: bool | None = None,
        optional: bool | None = None,
        ca_cert: str | os.PathLike[str] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        """Arguments first, then the environment; raises ``ConfigurationError``."""
        env = os.environ if environ is None else environ
        names = Names(
            key="setup(api_key=…)" if api_key is not None else variables.API_KEY,
            url="setup(url=…)" if url is not None else variables.GATEWAY_URL,
            ca=_ca_name(ca_cert, env),
        )
        mocked = _flag(mock, variables.MOCK_MODE, env)
        common = {
            "mock": mocked,
            "fallback": _flag(fallback, variables.MLFLOW_FALLBACK, env),
            "optional": _flag(optional, variables.MLFLOW_OPTIONAL, env),
            "data_dir": default_data_dir(env),
            "names": names,
        }
        if mocked:  # no server at all: a missing or odd key must not break a test run
            return cls(url=None, **common)  # type: ignore[arg-type]
        raw_key = api_key if api_key is not None else env.get(variables.API_KEY)
        raw_url = url if url is not None else env.get(variables.GATEWAY_URL)
        raw_ca = (
            ca_cert
            if ca_cert is not None
            else (env.get(variables.CA_CERT) or env.get("MLFLOW_TRACKING_SERVER_CERT_PATH"))
        )
        key = check_key(raw_key, names.key)  # the key first: the most likely mistake
        return cls(
            url=check_url(raw_url, names.url, key),
            key=key,
            ca_cert=check_ca(raw_ca, names.ca),
            **common,  # type: ignore[arg-type]
        )


def default_data_dir(env: Mapping[str, str]) -> Path:
    """Where fallback mode keeps its MLflow store: ``$XDG_DATA_HOME/hokusai/mlflow``."""
    base = env.get("XDG_DATA_HOME") or str(
        Path(env.get("HOME") or Path.home()) / ".local" / "share"
    )
    return Path(base).expanduser() / "hokusai" / "mlflow"


def _ca_name(given: object, env: Mapping[str, str]) -> str:
    if given is not None:
        return "setup(ca_cert=…)"
    if env.get(variables.CA_CERT) or not env.get("MLFLOW_TRACKING_SERVER_CERT_PATH"):
        return variables.CA_CERT
    return "MLFLOW_TRACKING_SERVER_CERT_PATH"


def _flag(given: bool | None, name: str, env: Mapping[str, str]) -> bool:
    if given is not None:
        return bool(given)
    value = env.get(name, "").strip().lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise ConfigurationError(
        f"{name} must be true or false (1/0, yes/no, on/off)",
        reason="configuration",
        steps=(f"Set {name}=true or unset it.",),
    )


def check_key(raw: str | None, name: str) -> str:
    """The key, stripped; a missing or malformed one is an error naming ``name``."""
    if not raw or not raw.strip():
        raise ConfigurationError(
            f"no API key: {name} is not set",
            reason="configuration",
            steps=(
                f"Set {name} to your key (hk_live_…); an administrator creates one with "
                "`hokusai auth create-key`.",
            ),
        )
    key = raw.strip()
    if keyformat.parse(key) is None:
        raise ConfigurationError(
            f"{name}: {keyformat.label(key)} is malformed: {keyformat.problem(key)}",
            reason="malformed_key",
            steps=("Copy the key again exactly as it was shown when it was created or rotated.",),
        )
    return key


def check_url(raw: str | None, name: str, key: str | None = None) -> str:
    """The gateway's base URL (``https://host[:port][/prefix]``, no trailing slash). Messages
    show the URL scrubbed: a key pasted into the wrong variable must not be echoed."""
    advice = (
        f"Set {name} to the gateway's address, like https://gateway.example.com or "
        "https://localhost:8443.",
    )
    if not raw or not raw.strip():
        raise ConfigurationError(
            f"no gateway URL: {name} is not set", reason="configuration", steps=advice
        )
    parts = urlsplit(raw.strip())
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ConfigurationError(
            f"{name} must not carry credentials, a query or a fragment (the key goes in "
            "HOKUSAI_API_KEY)",
            reason="configuration",
            steps=advice,
        )
    shown = scrub(f"{parts.scheme}://{parts.netloc}{parts.path}", key)
    if parts.scheme != "https" or not parts.hostname:
        raise ConfigurationError(
            f"{name}: {shown}: the gateway is reached over https only",
            reason="configuration",
            steps=advice,
        )
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise ConfigurationError(
            f"{name}: {shown}: the port is not a number", reason="configuration", steps=advice
        ) from None
    path = parts.path.rstrip("/")
    path = path.removesuffix(MLFLOW_PATH)  # the tracking URI form is accepted too
    if path.endswith(OLD_MLFLOW_PATH):
        raise ConfigurationError(
            f"{name}: {shown}: {OLD_MLFLOW_PATH} is the old MLflow path; give the gateway itself",
            reason="configuration",
            steps=(
                scrub(
                    f"Set {name} to https://{parts.netloc}{path.removesuffix(OLD_MLFLOW_PATH)}", key
                ),
            ),
        )
    return f"https://{parts.netloc}{path}"


def check_ca(raw: str | os.PathLike[str] | None, name: str) -> str | None:
    """An absolute path to a readable PEM bundle, or None for the system store."""
    if raw is None or str(raw).strip() == "":
        return None
    path = Path(str(raw)).expanduser().resolve()
    if not path.is_file():
        raise ConfigurationError(
            f"{name}: the CA file {path} does not exist",
            reason="configuration",
            steps=(f"Set {name} to the gateway's CA certificate (PEM).",),
        )
    try:
        ssl.create_default_context(cafile=str(path))
    except (ssl.SSLError, OSError) as exc:
        raise ConfigurationError(
            f"{name}: {path} is not a PEM certificate ({exc})",
            reason="configuration",
            steps=(f"Set {name} to the gateway's CA certificate (PEM).",),
        ) from None
    return str(path)
