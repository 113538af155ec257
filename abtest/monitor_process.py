"""``abtest monitor`` as a child of ``abtest serve``: started, restarted when it dies, stopped.

The child is ``python -P -m abtest monitor`` with the store's URL in ``$ABTEST_REDIS_URL``
(never on its command line, where ``ps`` would show a password).  It runs in its own
session, so a Ctrl-C meant for ``abtest serve`` reaches it through serve (which stops it
with SIGTERM, then SIGKILL after `STOP_TIMEOUT`), and on Linux it gets SIGTERM when serve
dies without stopping it.  A supervising thread of serve's master process (never of the
gunicorn workers: they are forked before it could matter, and only the master starts it)
restarts a monitor that exits, waiting 1 s, then twice as long after each quick exit, up
to `MAX_BACKOFF`.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from typing import Final

from abtest.embedded import child_environment, prepare_child

STOP_TIMEOUT: Final = 10.0
MAX_BACKOFF: Final = 30.0
_STABLE_SECONDS: Final = 60.0  # a monitor that ran this long resets the backoff
_log = logging.getLogger(__name__)


class MonitorSupervisor:
    """Keeps one ``abtest monitor`` child running until `stop`.

    ``environment``: the ``ABTEST_*`` settings the child needs (the Redis URL, export dir,
    clock, observation window); ``options``: extra command-line options.
    """

    def __init__(self, environment: Mapping[str, str], *options: str) -> None:
        self.environment = dict(environment)
        self.options = options
        self.restarts = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._thread = threading.Thread(target=self._supervise, name="abtest-monitor",
                                        daemon=True)  # fmt: skip

    @property
    def pid(self) -> int | None:
        """The running child's pid, if any."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def start(self) -> MonitorSupervisor:
        """Start the child and the thread that restarts it."""
        self._spawn()
        self._thread.start()
        return self

    def _spawn(self) -> None:
        env = {**child_environment(), **self.environment, "PYTHONUNBUFFERED": "1"}
        with self._lock:
            if self._stop.is_set():
                return
            self._process = subprocess.Popen(
                [sys.executable, "-P", "-m", "abtest", "monitor", *self.options],
                stdin=subprocess.DEVNULL, env=env,
                start_new_session=True, preexec_fn=prepare_child,  # noqa: PLW1509 - see module
            )  # fmt: skip

    def _supervise(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            process = self._process
            if process is None:
                return
            started = time.monotonic()
            code = process.wait()
            if self._stop.is_set():
                return
            backoff = 1.0 if time.monotonic() - started > _STABLE_SECONDS else backoff
            _log.warning("abtest monitor exited with code %s; restarting in %.0f s", code,
                         backoff)  # fmt: skip
            print(f"abtest: monitor exited with code {code}; restarting in {backoff:.0f} s",
                  file=sys.stderr, flush=True)  # fmt: skip
            if self._stop.wait(backoff):
                return
            backoff = min(MAX_BACKOFF, backoff * 2)
            self.restarts += 1
            self._spawn()

    def stop(self) -> None:
        """Stop the child (SIGTERM, then SIGKILL) and the supervising thread."""
        self._stop.set()
        with self._lock:
            process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._thread.is_alive():
            self._thread.join(STOP_TIMEOUT)


__all__ = ["MonitorSupervisor"]
