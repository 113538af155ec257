"""``abtest rollout status | pause | resume | rollback``: a release manager's view of a guarded
rollout and the actions on it, over the HTTP API (audited under the admin key, like
``abtest ship``; the key and URL as for `abtest.cli.lifecycle_commands`)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any
from urllib.parse import quote

from abtest.cli.lifecycle_commands import _call, _service_arguments


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rollout`` and its actions."""
    rollout = subparsers.add_parser("rollout", help="a guarded rollout: status, pause, resume, "
                                    "roll back (audited)")  # fmt: skip
    actions = rollout.add_subparsers(dest="rollout_command", metavar="ACTION", required=True)
    status = actions.add_parser("status", help="plan, step, actions and the latest checks")
    status.add_argument("experiment", help="experiment key")
    status.add_argument("--checks", type=int, default=5, metavar="N",
                        help="show the N newest checks (default 5)")  # fmt: skip
    _service_arguments(status)
    status.set_defaults(handler=_status)
    for name, text in (
        ("pause", "hold at the current step (it still rolls back on harm)"),
        ("resume", "let the monitor advance it again"),
        ("rollback", "take the new variant away: everyone gets control"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("experiment", help="experiment key")
        action.add_argument("--reason", help="why (kept in the audit trail)")
        if name == "rollback":
            action.add_argument("--yes", action="store_true", help="do not ask to confirm")
        _service_arguments(action)
        action.set_defaults(handler=_act, action=name)


def _status(args: argparse.Namespace) -> int:
    from abtest.cli import UsageError

    if not 1 <= args.checks <= 2000:
        raise UsageError(f"--checks must be 1-2000, got {args.checks}")
    path = f"/v1/experiments/{quote(args.experiment)}/rollout?limit={args.checks}"
    return _show(args, _call(args, "GET", path))


def _act(args: argparse.Namespace) -> int:
    from abtest.cli import UsageError

    if args.action == "rollback" and not args.yes:
        if not sys.stdin.isatty():
            raise UsageError("rolling back needs --yes when there is no terminal to confirm on")
        prompt = f"Roll back '{args.experiment}' (everyone gets control)? [y/N] "
        if input(prompt).strip().lower() not in ("y", "yes"):
            print("not rolled back")
            return 1
    body = {} if args.reason is None else {"reason": args.reason}
    path = f"/v1/experiments/{quote(args.experiment)}/rollout/{args.action}"
    return _show(args, _call(args, "POST", path, body))


def _short(moment: str | None) -> str:
    return "—" if not moment else moment[:16].replace("T", " ")


def _show(args: argparse.Namespace, doc: dict[str, Any]) -> int:
    if args.json:
        print(json.dumps(doc, indent=2, ensure_ascii=False))
        return 0
    print(f"{doc['experiment']}: {doc['status'].replace('_', ' ')}, step {doc['step']} of "
          f"{doc['steps_total']} ({doc['share']:.1%} of units get {doc['variant']}; traffic "
          f"{doc['traffic']:.1%}) (config version {doc['version']})")  # fmt: skip
    if doc["paused"]:
        print(f"  paused by {doc['paused_by']} at {_short(doc['paused_at'])}"
              + (f": {doc['paused_reason']}" if doc["paused_reason"] else ""))  # fmt: skip
    for step in doc["steps"]:
        print(f"  step {step['step']}  {step['share']:>6.1%}  {step['state']:<12} "
              f"began {_short(step['entered_at'])}")  # fmt: skip
    for check in doc["checks"][::-1]:
        what = "ship" if check.get("ship") and check.get("acted") else check["action"]
        print(f"  check {_short(check['time'])}  {what}: {'; '.join(check['reasons'])}")
    return 0
