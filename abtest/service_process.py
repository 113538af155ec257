"""``abtest serve`` as a child process: started safely, waited for, stopped, its errors shown.

The child is ``python -P -m abtest serve``: ``-P`` keeps the current directory off the
front of ``sys.path``, so a folder named ``abtest/`` there (the folder above a clone of this
repository) cannot shadow the installed package.  It gets none of the parent's ``ABTEST_*``
settings (``ABTEST_REDIS_URL`` would point it at another store).  When it exits before it
is healthy, its own last lines of output are part of the error.
"""

from __future__ import annotations

import collections
import contextlib
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from abtest.embedded import child_environment
from abtest.errors import StoreUnavailable

START_TIMEOUT: Final = 60.0
_STOP_TIMEOUT: Final = 20.0
_TAIL_LINES: Final = 20


@dataclass(frozen=True)
class ServiceProcess:
    """A healthy ``abtest serve`` child: its URL, process and first-start admin key."""

    url: str
    process: subprocess.Popen[str]
    admin_key: str | None


def serve_command(port: int, data_dir: Path, *options: str) -> list[str]:
    """The argv that starts ``abtest serve`` on ``port`` and ``data_dir`` in a child."""
    return [sys.executable, "-P", "-m", "abtest", "serve", "--port", str(port),
            "--data-dir", str(data_dir), *options]  # fmt: skip


@contextlib.contextmanager
def running_service(
    data_dir: Path, port: int, *options: str, settings: Mapping[str, str] | None = None
) -> Iterator[ServiceProcess]:
    """Start ``abtest serve``, wait until ``/healthz`` answers, stop it (SIGTERM) on exit;
    ``settings``: ``ABTEST_*`` variables the child gets (the demo's controlled clock)."""
    env = {**child_environment(), **(settings or {})}
    process = subprocess.Popen(
        serve_command(port, data_dir, *options), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        admin_key = _wait_ready(process, url)
        yield ServiceProcess(url, process, admin_key)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()


def _wait_ready(process: subprocess.Popen[str], url: str) -> str | None:
    output = _Output(process)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output.finished.wait(timeout=5)
            said = "\n".join(f"  {line}" for line in output.tail if line.strip())
            raise StoreUnavailable(
                f"abtest serve exited with code {process.returncode}"
                + (f"; its output:\n{said}" if said else " without output")
            )
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{url}/healthz", timeout=1) as response,
        ):
            # The admin key is printed before "serving on", which comes before any request.
            if response.status == 200 and output.serving.wait(timeout=5):
                return output.admin_key
        time.sleep(0.1)
    raise StoreUnavailable("abtest serve did not become healthy in time")


class _Output:
    """Reads the child's output until it ends (a full pipe would block the child), keeping
    the admin key line apart and the last lines for an error message."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.admin_key: str | None = None
        self.tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        self.serving = threading.Event()
        self.finished = threading.Event()
        self._process = process
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        from abtest.cli.serve_commands import ADMIN_KEY_LINE

        assert self._process.stdout is not None
        try:
            with contextlib.suppress(ValueError, OSError):
                for line in self._process.stdout:
                    if line.startswith(ADMIN_KEY_LINE):
                        self.admin_key = line[len(ADMIN_KEY_LINE) :].strip()
                    else:
                        self.tail.append(line.rstrip("\n"))
                    if line.startswith("abtest: serving on"):
                        self.serving.set()
        finally:
            self.finished.set()
