"""The ``abtest`` command line. Each command group lives in its own module of this package.

A module in `COMMAND_MODULES` exposes ``register(subparsers)``; it adds its subcommands and
sets ``handler`` (a function of the parsed namespace returning an exit code).  Heavy
imports (pandas, scipy, Flask) happen inside handlers, so ``abtest --help`` stays fast.

Errors: bad arguments and any `AbtestError` print one line ``abtest: error: ...`` on stderr
and exit with code 2; a traceback is a bug.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from abtest import __version__
from abtest.errors import AbtestError

COMMAND_MODULES = (
    "abtest.cli.config_commands",  # validate, assign
    "abtest.cli.serve_commands",  # serve, keys
    "abtest.cli.export_commands",  # export
    "abtest.cli.power_commands",  # power, mde
    "abtest.cli.lifecycle_commands",  # push, start, stop, ship
    "abtest.cli.alert_commands",  # alerts, webhooks
    "abtest.cli.metrics_commands",  # metrics list, show, put
    "abtest.cli.demo_commands",  # demo
    "abtest.cli.analyze_commands",  # analyze
    "abtest.cli.monitor_commands",  # monitor
    "abtest.cli.rollout_commands",  # rollout status|pause|resume|rollback
    "abtest.cli.holdout_commands",  # holdout show|set|release|history|results
    "abtest.cli.challenge_commands",  # challenge, lineage
    "abtest.cli.registry_commands",  # registry watch (abtest[mlflow])
)

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad command-line input: reported in one line with exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2 (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    """The full parser with every command group registered."""
    parser = _Parser(
        prog="abtest",
        description="Experimentation from assignment to the ship decision.",
    )
    parser.add_argument("--version", action="version", version=f"abtest {__version__}")
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_Parser, required=True
    )
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``abtest`` console script; returns the exit code."""
    try:
        args = build_parser().parse_args(argv)
        code: int = args.handler(args)
    except UsageError as exc:
        print(f"abtest: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except AbtestError as exc:
        print(f"abtest: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(
            f"abtest: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "),
            file=sys.stderr,
        )
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return code


def run() -> NoReturn:
    """Console-script wrapper: exit with `main`'s code."""
    sys.exit(main())
