"""``abtest validate`` and ``abtest assign``: check a config and see one unit's assignment."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from abtest.assignment import assign
from abtest.errors import InvalidConfig
from abtest.experiment import Experiment


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``validate`` and ``assign``."""
    validate = subparsers.add_parser("validate", help="check an experiment config")
    validate.add_argument("config", help="experiment JSON file")
    validate.set_defaults(handler=_validate)

    assign_cmd = subparsers.add_parser("assign", help="show the assignment of one unit (QA)")
    assign_cmd.add_argument("--config", required=True, help="experiment JSON file")
    assign_cmd.add_argument("--unit-id", required=True, help="the unit (user) id")
    assign_cmd.add_argument(
        "--attr", action="append", default=[], metavar="K=V",
        help="unit attribute; V is parsed as JSON when it can be (42, true, \"x\"), else a string",
    )  # fmt: skip
    assign_cmd.add_argument("--json", action="store_true", help="print JSON")
    assign_cmd.set_defaults(handler=_assign)


def parse_attributes(pairs: list[str]) -> dict[str, Any]:
    """``["country=DE", "age=31"]`` -> ``{"country": "DE", "age": 31}``."""
    from abtest.cli import UsageError

    attributes: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"--attr expects K=V, got '{pair}'")
        try:
            attributes[name] = json.loads(raw)
        except json.JSONDecodeError:
            attributes[name] = raw
    return attributes


def _validate(args: argparse.Namespace) -> int:
    from abtest.catalogue import references, without_references

    try:
        raw = Experiment.read_json_file(args.config)
        experiment = Experiment.from_dict(without_references(raw))
    except InvalidConfig as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"abtest: error: {len(exc.problems)} problem(s) in {args.config}", file=sys.stderr)
        return 1
    named = [str(ref.get("catalogue")) for _, ref in references(raw)]
    print("ok" + (f" (catalogue metrics, resolved when pushed: {', '.join(named)})"
                  if named else ""))  # fmt: skip
    if experiment.rollout is not None:
        from abtest.rollout_rules import plan_lines

        print("\n".join(plan_lines(experiment)))
    return 0


def _assign(args: argparse.Namespace) -> int:
    from abtest.catalogue import without_references
    from abtest.cli import UsageError
    from abtest.experiment import validate_unit_id

    # Metrics play no part in assignment: catalogue references need no resolving here.
    experiment = Experiment.from_dict(without_references(Experiment.read_json_file(args.config)))
    problem = validate_unit_id(args.unit_id, "--unit-id")
    if problem:
        raise UsageError(str(problem))
    result = assign(experiment, args.unit_id, parse_attributes(args.attr))
    if args.json:
        print(json.dumps({"unit_id": args.unit_id, **result.to_dict()}, ensure_ascii=False))
    else:
        print(f"experiment  {result.experiment}")
        print(f"unit_id     {args.unit_id}")
        print(f"variant     {result.variant if result.variant is not None else '-'}")
        print(f"reason      {result.reason.value}")
        print(f"payload     {json.dumps(result.payload, ensure_ascii=False)}")
    return 0
