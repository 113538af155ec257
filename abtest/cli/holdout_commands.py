"""``abtest holdout show | set | release | history | results``: the global holdout over the
HTTP API (admin key from ``$ABTEST_API_KEY``, service from ``$ABTEST_URL``), audited like
the lifecycle commands (`abtest.cli.lifecycle_commands`)."""

from __future__ import annotations

import argparse
import json
from typing import Any
from urllib.parse import urlencode

from abtest.cli.lifecycle_commands import _call, _service_arguments


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``holdout`` and its subcommands."""
    holdout = subparsers.add_parser("holdout", help="the global holdout (audited)")
    commands = holdout.add_subparsers(dest="holdout_command", metavar="ACTION", required=True)
    show = commands.add_parser("show", help="the holdout, its start and the experiments it covers")
    _service_arguments(show)
    show.set_defaults(handler=_show)
    put = commands.add_parser("set", help="set the holdout from a JSON file")
    put.add_argument("config", help='JSON: {"name", "share", "covers"?, "description"?}')
    put.add_argument("--force", action="store_true",
                     help="allow moving units already assigned in running experiments")  # fmt: skip
    _service_arguments(put)
    put.set_defaults(handler=_set)
    release = commands.add_parser("release", help="end the holdout")
    release.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    _service_arguments(release)
    release.set_defaults(handler=_release)
    history = commands.add_parser("history", help="the holdout's audit trail")
    _service_arguments(history)
    history.set_defaults(handler=_history)
    results = commands.add_parser("results", help="what everything shipped added up to")
    results.add_argument("--metric", action="append", default=[], metavar="NAME:TYPE",
                         help="a metric (repeatable; default: the covered experiments' "
                         "primary metrics)")  # fmt: skip
    results.add_argument("--start", help="ISO-8601 start (default: the holdout's start)")
    results.add_argument("--end", help="ISO-8601 end (default: now)")
    results.add_argument("--report", metavar="FILE", help="also write the HTML report")
    _service_arguments(results)
    results.set_defaults(handler=_results)


def _print_holdout(args: argparse.Namespace, stored: dict[str, Any]) -> int:
    if args.json:
        print(json.dumps(stored, indent=2, ensure_ascii=False))
        return 0
    holdout = stored["holdout"]
    if holdout is None:
        print(f"no holdout (version {stored['version']})")
        return 0
    covers = holdout["covers"]
    scope = "every experiment" if covers == "all" else ", ".join(
        [*covers["experiments"], *(f"layer {name}" for name in covers["layers"])]
    )  # fmt: skip
    print(f"holdout {holdout['name']}: {holdout['share']:.1%} of units, covers {scope} "
          f"(version {stored['version']}, since {stored['started_at']})")  # fmt: skip
    covered = stored["covered_experiments"]
    print(f"covered now: {', '.join(covered) if covered else 'no experiment yet'}")
    return 0


def _show(args: argparse.Namespace) -> int:
    return _print_holdout(args, _call(args, "GET", "/v1/holdout"))


def _set(args: argparse.Namespace) -> int:
    from abtest.cli import UsageError
    from abtest.holdout_requests import HoldoutBody
    from abtest.schemas import validate

    with open(args.config, encoding="utf-8") as handle:
        try:
            config = json.load(handle)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{args.config}: not valid JSON: {exc.msg}") from None
    validate(HoldoutBody, config)  # refuse a bad file before any call
    path = "/v1/holdout" + ("?force=true" if args.force else "")
    return _print_holdout(args, _call(args, "PUT", path, config))


def _release(args: argparse.Namespace) -> int:
    from abtest.cli import UsageError

    if not args.yes:
        raise UsageError("releasing the holdout ends it for every experiment: pass --yes")
    return _print_holdout(args, _call(args, "DELETE", "/v1/holdout"))


def _history(args: argparse.Namespace) -> int:
    entries = _call(args, "GET", "/v1/holdout/history")["history"]
    if args.json:
        print(json.dumps(entries, indent=2, ensure_ascii=False))
        return 0
    for entry in entries:
        changes = ", ".join(f"{d['field']}: {d['old']} -> {d['new']}" for d in entry["diff"])
        print(f"v{entry['version']}  {entry['time']}  {entry['action']:<8} {entry['key_id']}  "
              f"{changes}")  # fmt: skip
    return 0


def _results(args: argparse.Namespace) -> int:
    from abtest.cli.analyze_output import holdout_lines

    query = [("metric", m) for m in args.metric]
    query += [(n, v) for n, v in (("start", args.start), ("end", args.end)) if v]
    result = _call(args, "GET", "/v1/holdout/results" + ("?" + urlencode(query) if query else ""))
    if args.report:
        from analysis.report.holdout_html import write_holdout_report

        write_holdout_report(result, args.report)
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return 0
    for line in holdout_lines(result):
        print(line)
    if args.report:
        print(f"report      {args.report}")
    return 0
