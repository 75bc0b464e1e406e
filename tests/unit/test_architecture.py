"""The layout is the design (docs/architecture.md), and these tests keep the two in step:

* every folder and top-level module of ``authz/`` has a row in the module map;
* every import inside ``authz/`` is one its row allows (the doc's "what it may import" column);
* no protobuf or grpcio import outside ``authz/transports/``;
* no SQL outside ``authz/storage/`` and ``authz/management/``, and none in ``cli/``;
* ``authz`` never imports ``cli`` or ``bench``; ``cli`` never imports ``bench``;
* the client (``hokusai``) imports nothing of the server, its CLI, the benchmarks or the tests, and
  an ``authz`` file imports only the ``hokusai`` modules its row names;
* every ``file:function`` the two walks name exists.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
AUTHZ = REPO / "authz"
CLIENT = REPO / "client" / "src" / "hokusai"
DOC = REPO / "docs" / "architecture.md"
PROTOBUF = re.compile(
    r"(^|\.)\w+_pb2(_grpc)?$|^(grpc|grpc_health|envoy|google\.protobuf|google\.rpc)(\.|$)"
)
SQL = re.compile(
    r"\b(SELECT\s+[\w*(']|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+DATABASE"
    r"|LISTEN\s+\w)"
)


def sources(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def unit_of(path: Path) -> str:
    """The map's row of an ``authz`` file: ``check/`` for a folder's files, ``server.py`` …"""
    parts = path.relative_to(AUTHZ).parts
    return f"{parts[0]}/" if len(parts) > 1 else parts[0]


def imported(path: Path) -> Iterator[str]:
    """Every module ``path`` imports: ``from a import b`` is ``a.b`` when that is a module of
    ``authz`` (``from authz.transports import wire``), else ``a``."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                yield name if module_file(name) is not None else node.module


def root_of(dotted: str) -> Path | None:
    """The source folder of a first-party package: ``authz`` or the client's ``hokusai``."""
    return {"authz": AUTHZ, "hokusai": CLIENT}.get(dotted.split(".", maxsplit=1)[0])


def module_file(dotted: str) -> str | None:
    """``authz.storage.lookup`` → ``storage/lookup.py``, ``authz.check`` → ``check/``; a client
    module keeps its dotted name (``hokusai.keyformat``), as the map writes it; None for a name
    that is no module of either."""
    root, parts = root_of(dotted), dotted.split(".")[1:]
    if root is None:
        return None
    if root.joinpath(*parts).with_suffix(".py").is_file():
        return dotted if root == CLIENT else "/".join(parts) + ".py"
    if parts and (root.joinpath(*parts) / "__init__.py").is_file():
        return dotted if root == CLIENT else "/".join(parts) + "/"
    return None


def module_map() -> dict[str, list[str]]:
    """The doc's first table: row → the units it may import ([] for "—")."""
    lines = DOC.read_text().splitlines()
    start = lines.index("| folder or module | what it owns | what it may import |") + 2
    rows: dict[str, list[str]] = {}
    for line in lines[start : lines.index("", start)]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        name = re.fullmatch(r"`([\w./]+)`", cells[0])
        assert name, line
        rows[name[1]] = re.findall(r"`([\w./]+)`", cells[2]) if cells[2] != "—" else []
    return rows


def allowed(target: str, rules: list[str]) -> bool:
    return any(target == rule or (rule.endswith("/") and target.startswith(rule)) for rule in rules)


def test_every_folder_and_module_of_authz_has_a_row() -> None:
    units = {unit_of(p) for p in sources(AUTHZ)}
    assert units <= set(module_map()), sorted(units - set(module_map()))
    assert set(module_map()) <= units, "rows for what no longer exists"


@pytest.mark.parametrize("path", sources(AUTHZ), ids=lambda p: str(p.relative_to(AUTHZ)))
def test_imports_follow_the_module_map(path: Path) -> None:
    unit, rules = unit_of(path), module_map()[unit_of(path)]
    for name in imported(path):
        if not name.startswith(("authz.", "hokusai")):
            continue
        target = module_file(name) or name  # or a name inside a module, or ``hokusai`` itself
        if target.startswith(unit):
            continue  # the unit's own files
        assert allowed(target, rules), f"{unit} may not import {target} ({path.name})"


def test_wire_names_import_nothing() -> None:
    assert not [n for n in imported(AUTHZ / "transports" / "wire.py") if n.startswith("authz")]


@pytest.mark.parametrize("path", sources(AUTHZ), ids=lambda p: str(p.relative_to(AUTHZ)))
def test_protobuf_stops_in_transports(path: Path) -> None:
    if unit_of(path) == "transports/":
        return
    assert not [n for n in imported(path) if PROTOBUF.search(n)], path


def _sql_in(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docstrings and SQL.search(node.value):
                found.append(node.value[:60])
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("execute", "executemany")
            and node.args  # a statement to run (Redis pipelines execute() with none)
        ):
            found.append(f"line {node.lineno}: .{node.func.attr}(")
    return found


SQL_FREE = [p for p in sources(AUTHZ) if unit_of(p) not in ("storage/", "management/")]


@pytest.mark.parametrize(
    "path", SQL_FREE + sources(REPO / "cli"), ids=lambda p: str(p.relative_to(REPO))
)
def test_sql_stays_in_storage_and_management(path: Path) -> None:
    assert not _sql_in(path), path


def test_the_sql_detector_sees_sql() -> None:
    assert _sql_in(AUTHZ / "storage" / "api_keys.py")
    assert _sql_in(AUTHZ / "management" / "repository.py")


@pytest.mark.parametrize("root", ["authz", "cli"])
def test_authz_and_cli_never_import_the_tiers_above_them(root: str) -> None:
    above = ("cli", "bench") if root == "authz" else ("bench",)
    for path in sources(REPO / root):
        bad = [n for n in imported(path) if n.split(".")[0] in above]
        assert not bad, (path, bad)


def test_the_client_imports_nothing_of_the_server() -> None:
    """The server depends on the client distribution, never the reverse (``pip install ./client``
    brings no psycopg, grpcio or Envoy)."""
    assert sources(CLIENT)
    for path in sources(CLIENT):
        bad = [n for n in imported(path) if n.split(".")[0] in ("authz", "cli", "bench", "tests")]
        assert not bad, (path, bad)


def _defined(path: Path, dotted: str) -> bool:
    if path.suffix == ".sql":
        return re.search(rf"\b{re.escape(dotted)}\b", path.read_text()) is not None
    scope: list[ast.stmt] = ast.parse(path.read_text()).body
    for part in dotted.split("."):
        found: ast.stmt | None = None
        for node in scope:
            if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                found = node if node.name == part else found
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(isinstance(t, ast.Name) and t.id == part for t in targets):
                    found = node
        if found is None:
            return False
        scope = found.body if isinstance(found, ast.ClassDef) else []
    return True


def test_the_walks_name_real_functions() -> None:
    text = DOC.read_text()
    walks = text[text.index("## One request") :]
    references = re.findall(r"`([\w/.]+\.(?:py|sql)):([\w.]+)`", walks.replace("\n", " "))
    assert len(references) > 40
    for file, name in references:
        path = REPO / file
        assert path.is_file(), file
        assert _defined(path, name), f"{file}: no {name}"


def test_the_map_is_linked_from_the_readme_and_the_docs_index() -> None:
    assert "(docs/architecture.md)" in (REPO / "README.md").read_text()
    assert "(architecture.md)" in (REPO / "docs" / "index.md").read_text()
