# The authz server and the hokusai CLI in one image: `python -m authz` by default,
# `hokusai …` for the CLI (e.g. docker compose run migrate). Non-root, hash-pinned dependencies.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOKUSAI_LOG_FORMAT=json

RUN groupadd --system --gid 10001 hokusai \
    && useradd --system --uid 10001 --gid hokusai --home-dir /app --shell /usr/sbin/nologin hokusai

WORKDIR /app

# Dependencies first (cached layer): exactly the locked versions, every file hash-checked.
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock

COPY client ./client
COPY pyproject.toml README.md CHANGELOG.md ./
COPY authz ./authz
COPY cli ./cli
COPY migrations ./migrations
# The documentation: the keys API serves it at /docs/ (every denial body links /docs/errors#…).
COPY docs ./docs
# The client distribution first (hokusai-client: the server imports it; its one dependency,
# requests, is in the lock), then the server. The server is editable: the code stays in /app,
# beside migrations/ (authz.storage.migrations reads it from there).
RUN pip install --no-deps --no-build-isolation ./client \
    && pip install --no-deps --no-build-isolation -e .

USER 10001:10001

EXPOSE 9191 9192 9193 9464

# 200 only while serving (503 while starting or draining): the HTTP check server's /health.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:9192/health', timeout=2)"]

ENTRYPOINT ["python", "-m", "authz"]
