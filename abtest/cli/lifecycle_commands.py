"""``abtest push | start | stop | ship``: the release manager's actions over the HTTP API.

They go through the service (not straight to Redis), so every action is checked, versioned
and written to the experiment's audit trail under the admin key that made it, exactly as
the console's buttons are.  The key comes from ``$ABTEST_API_KEY`` (or ``--api-key``, which
shell history remembers), the service from ``$ABTEST_URL`` or ``--url``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Final
from urllib.parse import quote

DEFAULT_URL: Final = "http://127.0.0.1:8000"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``push``, ``start``, ``stop`` and ``ship``."""
    push = subparsers.add_parser("push", help="create an experiment from JSON, or update it")
    push.add_argument("config", help="experiment JSON file (kept in git)")
    push.add_argument("--force", action="store_true",
                      help="allow an update that moves already-assigned units")  # fmt: skip
    _service_arguments(push)
    push.set_defaults(handler=_push)
    for name, text in (("start", "start assigning units"), ("stop", "stop assigning units")):
        action = subparsers.add_parser(name, help=f"{text} (audited)")
        action.add_argument("experiment", help="experiment key")
        _service_arguments(action)
        action.set_defaults(handler=_lifecycle, action=name)
    ship = subparsers.add_parser("ship", help="route everyone to the winning variant (audited)")
    ship.add_argument("experiment", help="experiment key")
    ship.add_argument("variant", help="the winning variant's key")
    ship.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    ship.add_argument("--reason", help="why ship (kept in the audit trail); say it when "
                      "shipping against the verdict")  # fmt: skip
    _service_arguments(ship)
    ship.set_defaults(handler=_ship)


def _service_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=os.environ.get("ABTEST_URL", DEFAULT_URL),
                        help="service URL (default: $ABTEST_URL or %(default)s)")  # fmt: skip
    parser.add_argument("--api-key", default=os.environ.get("ABTEST_API_KEY"),
                        help="admin API key (default: $ABTEST_API_KEY)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the service's JSON")


def _call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    from abtest.cli import UsageError
    from abtest.client_http import HttpTransport

    if not args.api_key:
        raise UsageError("an admin API key is needed: set ABTEST_API_KEY or pass --api-key")
    transport = HttpTransport(args.url, args.api_key, timeout=30.0)
    try:
        return transport.call(method, path, body)
    finally:
        transport.close_all()


def _show(args: argparse.Namespace, stored: dict[str, Any]) -> int:
    if args.json:
        print(json.dumps(stored, indent=2, ensure_ascii=False))
        return 0
    winner = stored["config"].get("winner")
    print(f"{stored['key']}: {stored['status']}" + (f" {winner}" if winner else "")
          + f" (config version {stored['version']})")  # fmt: skip
    return 0


def _push(args: argparse.Namespace) -> int:
    from abtest.catalogue import without_references
    from abtest.errors import NotFound
    from abtest.experiment import Experiment

    raw = Experiment.read_json_file(args.config)
    # Refuse a bad file before any call; catalogue references are resolved (and pinned) by
    # the service, so they are sent as written.
    experiment = Experiment.from_dict(without_references(raw))
    # The lifecycle (status, winner) belongs to start/stop/ship, not to the file, and a
    # guarded rollout's traffic to its steps: a file pushed again must not try to move them.
    owned = ("status", "winner") + (("traffic",) if experiment.rollout is not None else ())
    config = {k: v for k, v in raw.items() if k not in owned}
    path = f"/v1/experiments/{quote(experiment.key)}"
    try:
        _call(args, "GET", path)
    except NotFound:
        return _show(args, _call(args, "POST", "/v1/experiments", config))
    suffix = "?force=true" if args.force else ""
    return _show(args, _call(args, "PUT", path + suffix, config))


def _lifecycle(args: argparse.Namespace) -> int:
    return _show(
        args, _call(args, "POST", f"/v1/experiments/{quote(args.experiment)}/{args.action}")
    )


def _ship(args: argparse.Namespace) -> int:
    from abtest.cli import UsageError

    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError("shipping needs --yes when there is no terminal to confirm on")
        prompt = f"Ship '{args.variant}' of '{args.experiment}' to everyone? [y/N] "
        if input(prompt).strip().lower() not in ("y", "yes"):
            print("not shipped")
            return 1
    path = f"/v1/experiments/{quote(args.experiment)}/ship"
    body = {"variant": args.variant}
    if args.reason is not None:
        body["reason"] = args.reason
    return _show(args, _call(args, "POST", path, body))
