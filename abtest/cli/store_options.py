"""Where the commands that touch the store find it: one rule for serve, keys and export.

``--redis-url`` wins; else ``$ABTEST_REDIS_URL`` (the variable the service reads, see
`service.settings`); else the embedded store in ``--data-dir`` (default ``./.abtest``).
For `keys` and `export`, an explicit ``--data-dir`` while ``$ABTEST_REDIS_URL`` is set is
refused: the two name different stores, and guessing would write to the wrong one.

A password on the command line is visible to every user of the machine in ``ps`` while the
command runs (and stays in shell history), so it is warned about; the environment variable
is the way to pass one.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TextIO
from urllib.parse import urlsplit

from abtest.errors import AbtestError

REDIS_URL_ENV: Final = "ABTEST_REDIS_URL"
DEFAULT_DATA_DIR: Final = ".abtest"


@dataclass(frozen=True)
class StoreChoice:
    """The Redis URL to use (None: the embedded store in ``data_dir``) and the data dir."""

    redis_url: str | None
    data_dir: Path
    url_on_command_line: bool


def add_store_arguments(parser: argparse.ArgumentParser, *, exclusive: bool) -> None:
    """``--redis-url`` and ``--data-dir``; ``exclusive``: giving both is a usage error."""
    group = parser.add_mutually_exclusive_group() if exclusive else parser
    group.add_argument(
        "--redis-url", metavar="URL", default=None,
        help=f"Redis to use (default: ${REDIS_URL_ENV}, else the embedded redis-server of "
        "--data-dir); a password here is visible in ps: prefer the variable",
    )  # fmt: skip
    group.add_argument(
        "--data-dir", metavar="DIR", default=None,
        help=f"data directory of the embedded redis-server (default {DEFAULT_DATA_DIR}/)",
    )  # fmt: skip


def choose_store(args: argparse.Namespace, *, err: TextIO | None = None) -> StoreChoice:
    """Apply the rule of this module to parsed arguments, warning about a password."""
    data_dir = Path(args.data_dir or DEFAULT_DATA_DIR)
    if args.redis_url:
        warn_if_password(args.redis_url, err or sys.stderr)
        return StoreChoice(args.redis_url, data_dir, url_on_command_line=True)
    env_url = os.environ.get(REDIS_URL_ENV) or None
    if env_url and args.data_dir:
        raise AbtestError(
            f"names an embedded store, but {REDIS_URL_ENV} is set: unset it or drop --data-dir",
            "--data-dir",
        )
    return StoreChoice(env_url, data_dir, url_on_command_line=False)


def has_password(url: str) -> bool:
    """True when the URL carries a password (``redis://:secret@host`` or ``?password=``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return bool(parts.password) or "password=" in parts.query


def warn_if_password(url: str, err: TextIO) -> None:
    """One line on ``err`` when ``url`` holds a password."""
    if has_password(url):
        print(
            "abtest: warning: a password in --redis-url can be seen by other users in ps "
            f"and stays in your shell history; set {REDIS_URL_ENV} instead",
            file=err,
        )
