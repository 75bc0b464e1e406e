"""The guides in docs/, executed against the real gateway: every ``$`` line of their ```console
blocks (in one bash session per page, exported variables carried from line to line), every
```python block and every ```javascript block, in page order.

A command ending in ``# exit N`` must exit with N, every other one 0. A documented output line
under a command must appear in what the command printed (``…`` stands for anything; runs of spaces
count as one). Placeholders: ``https://localhost:8443`` is the gateway, ``~/.hokusai`` its data
directory, ``KEY_ID`` the id of the first key a page's commands create and ``NEW_ID`` the id of the
key its first ``rotate-key`` issues. Pages other than getting-started.md start with the variables
that page sets: ``MLFLOW_TRACKING_URI``, ``MLFLOW_TRACKING_SERVER_CERT_PATH`` and a fresh
``MLFLOW_TRACKING_TOKEN`` (mlflow:read, mlflow:write).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from authz.check import routes as policy
from authz.check.reasons import OUTCOMES, Reason, denial_body
from authz.keys import format as keys
from authz.transports import wire
from tests.e2e.conftest import Gateway
from tests.support import docs
from tests.support.authz import poll

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
GUIDES = (
    "getting-started.md",
    "authentication.md",
    "security.md",
    "mlflow.md",
    "migrating-from-basic-auth.md",
)
CREATED = re.compile(r"created hk_(?:live|test)_([0-9A-Za-z]{12})\b")
ROTATED = re.compile(r"→ hk_(?:live|test)_([0-9A-Za-z]{12})\b")
RUNNABLE = {"console", "python", "javascript"}


@pytest.fixture(scope="module")
def one(gateways: dict[str, Gateway]) -> Gateway:
    """The guides do not depend on the ext_authz transport: one gateway is enough."""
    return gateways["http"]


def base_env(gateway: Gateway) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOKUSAI_", "MLFLOW_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["HOKUSAI_DATA_DIR"] = str(gateway.data_dir)
    env["HOKUSAI_BCRYPT_COST"] = "4"  # keys the pages create verify fast
    return env


def mlflow_env(gateway: Gateway) -> dict[str, str]:
    """What getting-started.md leaves behind: the gateway, its CA and a read-write key."""
    _view, new = gateway.service("test:docs").create_key(
        user_email="alice@example.com", name="docs", scopes=["mlflow:read", "mlflow:write"]
    )
    return {
        "MLFLOW_TRACKING_URI": gateway.mlflow_uri,
        "MLFLOW_TRACKING_SERVER_CERT_PATH": gateway.ca,
        "MLFLOW_TRACKING_TOKEN": new.token,
    }


@dataclass
class PageRun:
    """Executes one page's runnable blocks, in order, in one shell session."""

    page: str
    gateway: Gateway
    shell: docs.Shell
    names: dict[str, str] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.names.update(
            {"https://localhost:8443": self.gateway.url, "~/.hokusai": str(self.gateway.data_dir)}
        )

    def run(self) -> None:
        for block in docs.blocks(DOCS / self.page):
            if block.lang == "console":
                for command in docs.commands(block):
                    self.command(command)
            elif block.lang in ("python", "javascript"):
                self.program(block)

    def command(self, command: docs.Command) -> None:
        where = f"docs/{self.page}:{command.line}: {command.text}"
        done = self.shell.run(docs.substitute(command.text, self.names))
        printed = done.stdout + done.stderr
        assert done.returncode == command.expected_exit, f"{where}\n{printed[-3000:]}"
        self.learn(printed)
        self.check_secrets(done.stderr, where)
        for documented in command.output:
            expected = docs.substitute(documented, self.names)
            assert docs.output_matches(expected, printed), (
                f"{where}\ndocumented: {expected}\nprinted:\n{printed[-3000:]}"
            )
        self.outputs.append(printed)

    def program(self, block: docs.Block) -> None:
        where = f"docs/{self.page}:{block.line} ({block.lang})"
        suffix = ".py" if block.lang == "python" else ".mjs"
        path = self.shell.cwd / f"block-{block.line}{suffix}"
        path.write_text(block.text)
        if block.lang == "python":
            line = f"python {path}"
        else:
            if shutil.which("node") is None:
                pytest.skip("node is not installed")
            line = f'NODE_EXTRA_CA_CERTS="$MLFLOW_TRACKING_SERVER_CERT_PATH" node {path}'
        done = self.shell.run(line)
        assert done.returncode == 0, f"{where}\n{done.stdout[-2000:]}{done.stderr[-3000:]}"
        self.check_secrets(done.stderr, where)
        self.outputs.append(done.stdout + done.stderr)

    def learn(self, printed: str) -> None:
        created, rotated = CREATED.search(printed), ROTATED.search(printed)
        if created:
            self.names.setdefault("KEY_ID", created[1])
        if rotated:
            self.names.setdefault("NEW_ID", rotated[1])

    def check_secrets(self, stderr: str, where: str) -> None:
        """Keys go to stdout only, and only where a command prints one on purpose."""
        assert re.search(keys.KEY_PATTERN, stderr) is None, where


def run_page(page: str, gateway: Gateway, tmp_path: Path, env: dict[str, str]) -> PageRun:
    runner = PageRun(page, gateway, docs.Shell(tmp_path, env))
    runner.run()
    return runner


def test_every_guide_has_runnable_examples() -> None:
    for page in GUIDES:
        langs = {block.lang for block in docs.blocks(DOCS / page)}
        assert "console" in langs or "python" in langs, page
        for block in docs.blocks(DOCS / page):
            assert block.lang, f"docs/{page}:{block.line}: a block without a language"


def test_getting_started(one: Gateway, tmp_path: Path) -> None:
    run = run_page("getting-started.md", one, tmp_path, base_env(one))
    assert re.search(r"artifacts \['results/summary.csv'\]", "".join(run.outputs))
    # The run's requests reach the usage tables (flushed every 0.5 s by the e2e fixture).
    usage = f"hokusai auth usage {run.names['KEY_ID']} --since 1h --json"

    def counted() -> bool:
        done = run.shell.run(usage)
        total = json.loads(done.stdout)["total"] if done.returncode == 0 else None
        return bool(total and total["requests"] > 0)

    poll(counted, timeout=10, interval=0.3)


@pytest.mark.parametrize("page", ["authentication.md", "security.md", "mlflow.md"])
def test_guide_runs(page: str, one: Gateway, tmp_path: Path) -> None:
    run_page(page, one, tmp_path, {**base_env(one), **mlflow_env(one)})


def basic_auth_db(directory: Path) -> None:
    """A sample MLflow basic-auth database, made with MLflow's own store."""
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore()
    store.init_db(f"sqlite:///{directory / 'basic_auth.db'}")
    store.create_user("admin", "password1234", is_admin=True)
    for user, permission in (("carol", "EDIT"), ("dave", "READ"), ("erin", "DENY")):
        store.create_user(user, "password1234")
        store.create_experiment_permission("0", user, permission)


def test_migration_guide_runs(one: Gateway, tmp_path: Path) -> None:
    basic_auth_db(tmp_path)
    run = run_page(
        "migrating-from-basic-auth.md", one, tmp_path, {**base_env(one), **mlflow_env(one)}
    )
    printed = "".join(run.outputs)
    assert "--user admin@example.com --name migrated-from-basic-auth --scopes admin" in printed
    for user, scopes in (("carol", "mlflow:read,mlflow:write"), ("dave", "mlflow:read")):
        line = f"--user {user}@example.com --name migrated-from-basic-auth --scopes {scopes} "
        assert line in printed
    assert "erin@" not in printed


# --- what the pages must say, kept in step with the code ------------------------------------


def section(page: str, heading: str) -> str:
    text = (DOCS / page).read_text()
    return text.split(heading, 1)[1].split("\n#", 1)[0]


def test_authentication_lists_exactly_the_read_only_posts() -> None:
    listed = re.findall(
        r"`POST /api/2\.0/(mlflow/[^`]+)`",
        section("authentication.md", "### `POST` endpoints that only read"),
    )
    assert sorted(listed) == sorted(policy.READ_ONLY_POSTS)


def test_authentication_lists_every_reason_with_its_status() -> None:
    table = section("authentication.md", "## Errors")
    for reason, outcome in OUTCOMES.items():
        if reason is Reason.ALLOWED:
            continue
        assert re.search(rf"`{reason.value}`.*\| {outcome.status} \|", table), reason


def test_authentication_names_the_identity_headers() -> None:
    text = section("authentication.md", "## What the upstream receives")
    assert set(re.findall(r"`(x-hokusai-[a-z-]+)`", text)) == set(wire.IDENTITY_HEADERS)


def test_errors_page_has_an_anchor_per_reason() -> None:
    text = (DOCS / "errors.md").read_text()
    for reason, outcome in OUTCOMES.items():
        if reason is Reason.ALLOWED:
            continue
        anchor = json.loads(denial_body(reason))["docs"].split("#", 1)[1]
        assert re.search(rf"^#+ {re.escape(anchor)}$", text, re.M), anchor
        body = section("errors.md", f" {anchor}\n")
        assert f"**{outcome.status}**" in body and outcome.message in body, anchor


def test_security_publishes_the_key_pattern() -> None:
    text = (DOCS / "security.md").read_text()
    assert f"```text\n{keys.KEY_PATTERN}\n```" in text
    assert keys.KEY_PATTERN.replace("(?:", "(") in text  # the grep form


def test_index_links_every_page() -> None:
    index = (DOCS / "index.md").read_text()
    pages = {p.name for p in DOCS.glob("*.md")} - {"index.md"}
    assert pages <= set(re.findall(r"\]\(([a-z-]+\.md)\)", index)), pages


def test_links_between_pages_resolve() -> None:
    for page in DOCS.glob("*.md"):
        for target in re.findall(r"\]\(([a-z-]+\.md)(?:#[^)]*)?\)", page.read_text()):
            assert (DOCS / target).exists(), f"{page.name} → {target}"
