"""The local MLflow store of fallback and mock mode: ``hokusai-local:///<directory>``.

One directory holds everything: ``mlflow.db`` (MLflow's own SQLite store: runs, params, metrics,
tags, the model registry) and ``artifacts/``. A plain ``sqlite:///…/mlflow.db`` tracking URI
would not do: MLflow then puts the artifacts of every experiment it creates under ``./mlruns``
of whatever the working directory happens to be. These two builders, registered for the
``hokusai-local`` scheme through MLflow's store plugin entry points (``mlflow.tracking_store``,
``mlflow.model_registry_store``), build the same SQLite stores with the artifact root inside the
directory — so stray ``mlflow.*`` calls land there too.

To browse the runs without this client: ``mlflow ui --backend-store-uri
sqlite:///<directory>/mlflow.db`` (artifact locations are absolute, so they resolve as well).

MLflow's SQL store needs SQLAlchemy and Alembic (the full ``mlflow`` package; ``mlflow-skinny``
lacks them): ``available()`` says whether they are there, so ``setup()`` can refuse a fallback
that could not work before it needs one.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

SCHEME = "hokusai-local"
DATABASE = "mlflow.db"
ARTIFACTS = "artifacts"


def uri(directory: Path) -> str:
    return f"{SCHEME}://{quote(directory.resolve().as_posix())}"


def directory_of(store_uri: str) -> Path:
    parts = urlsplit(store_uri)
    if parts.scheme != SCHEME or not parts.path:
        raise ValueError(f"not a {SCHEME}:///<directory> URI: {store_uri}")
    return Path(unquote(parts.path))


def sqlite_uri(directory: Path) -> str:
    return f"sqlite:///{(directory / DATABASE).as_posix()}"


def available() -> bool:
    """Whether MLflow's SQL store can be built here (SQLAlchemy and Alembic installed)."""
    return all(importlib.util.find_spec(name) is not None for name in ("sqlalchemy", "alembic"))


MISSING = (
    "this local MLflow store needs MLflow's SQL store (SQLAlchemy and Alembic): install "
    "the full `mlflow` package, not only `mlflow-skinny`"
)


def _prepare(store_uri: str) -> Path:
    if not available():
        from mlflow.exceptions import MlflowException

        raise MlflowException(MISSING)
    directory = directory_of(store_uri)
    (directory / ARTIFACTS).mkdir(parents=True, exist_ok=True)
    return directory


def tracking_store(store_uri: str, artifact_uri: str | None = None) -> Any:
    """MLflow's SQLite tracking store in the directory, artifacts beside it."""
    directory = _prepare(store_uri)  # first: it says clearly when SQLAlchemy is missing
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    root = artifact_uri or (directory / ARTIFACTS).as_uri()
    build: Any = SqlAlchemyStore  # MLflow is untyped
    return build(sqlite_uri(directory), root)


def registry_store(store_uri: str, tracking_uri: str | None = None) -> Any:
    """MLflow's SQLite model registry store, in the same database."""
    directory = _prepare(store_uri)
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

    build: Any = SqlAlchemyStore
    return build(sqlite_uri(directory))
