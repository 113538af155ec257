"""``abtest metrics list | show | put``: the metric catalogue over the HTTP API.

Like ``abtest push``, these go through the service with an admin key
(``$ABTEST_API_KEY``, ``$ABTEST_URL``), so every change is versioned and audited under it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from abtest.cli.lifecycle_commands import _call, _service_arguments


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``metrics`` with ``list``, ``show`` and ``put``."""
    metrics = subparsers.add_parser("metrics", help="the metric catalogue (versioned, audited)")
    actions = metrics.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="every metric, and events for unknown ones")
    _service_arguments(listing)
    listing.set_defaults(handler=_list)
    show = actions.add_parser("show", help="one metric with every version and why it changed")
    show.add_argument("name", help="the metric's name (revenue, clicks/searches, ...)")
    _service_arguments(show)
    show.set_defaults(handler=_show)
    put = actions.add_parser("put", help="store definitions from a JSON file (one or a list)")
    put.add_argument("file", help="a JSON definition {name, type, unit, ...} or a list of them")
    put.add_argument("--reason", help="why (kept in each changed metric's audit trail)")
    _service_arguments(put)
    put.set_defaults(handler=_put)


def _definition_line(entry: dict[str, Any]) -> str:
    d = entry["definition"]
    parts = [d["type"], "higher is better" if d["higher_is_better"] else "lower is better"]
    if d["unit"]:
        parts.insert(1, d["unit"])
    if d["cap"] is not None:
        parts.append(f"capped at {d['cap']:g}")
    if d["attribution_window_hours"] is not None:
        parts.append(f"window {d['attribution_window_hours']:g} h")
    return f"{entry['name']}  v{entry['version']}  " + ", ".join(parts)


def _list(args: argparse.Namespace) -> int:
    answer = _call(args, "GET", "/v1/metrics")
    if args.json:
        print(json.dumps(answer, indent=2, ensure_ascii=False))
        return 0
    for entry in answer["metrics"]:
        print(_definition_line(entry))
    if not answer["metrics"]:
        print("no metrics in the catalogue")
    for name, count in answer["unknown"].items():
        shown = "other names" if name == "*" else repr(name)
        print(f"unknown  {shown}: {count:,} events")
    return 0


def _show(args: argparse.Namespace) -> int:
    answer = _call(args, "GET", "/v1/metrics/" + quote(args.name, safe="/:"))
    if args.json:
        print(json.dumps(answer, indent=2, ensure_ascii=False))
        return 0
    print(_definition_line(answer))
    if answer["definition"]["description"]:
        print(answer["definition"]["description"])
    for version in answer["versions"]:
        why = f": {version['reason']}" if version.get("reason") else ""
        changed = ", ".join(change["field"] for change in version.get("diff", [])) or "nothing"
        print(f"  v{version['version']}  {version['updated_at']}  key {version['key_id']}  "
              f"changed {changed}{why}")  # fmt: skip
    return 0


def _put(args: argparse.Namespace) -> int:
    from abtest.cli import UsageError
    from abtest.json_input import loads

    try:
        data = loads(Path(args.file).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read {args.file}: {exc.strerror}") from None
    definitions = data if isinstance(data, list) else [data]
    answers = []
    for definition in definitions:
        if not isinstance(definition, dict):
            raise UsageError(f"{args.file}: a definition must be a JSON object")
        body = definition if args.reason is None else {**definition, "reason": args.reason}
        answers.append(_call(args, "PUT", "/v1/metrics", body))
    for answer in answers:
        if args.json:
            print(json.dumps(answer, ensure_ascii=False))
        else:
            print(_definition_line(answer) + ("" if answer["changed"] else "  (unchanged)"))
    return 0
