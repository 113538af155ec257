"""``abtest challenge`` and ``abtest lineage``: a retraining job puts a new model version into
a test against the champion with one call (`abtest.challengers`), over the HTTP API with an
admin key (``$ABTEST_API_KEY``, ``$ABTEST_URL``), audited like every lifecycle command."""

from __future__ import annotations

import argparse
import json
from urllib.parse import quote

from abtest.cli.lifecycle_commands import _call, _service_arguments


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``challenge`` and ``lineage``."""
    challenge = subparsers.add_parser(
        "challenge", help="test a new model version against the champion (idempotent)"
    )
    challenge.add_argument("experiment", help="the experiment (lineage) key, e.g. ranker")
    challenge.add_argument("--model", required=True, help="the registered model's name")
    challenge.add_argument("--version", required=True, help="the model version")
    challenge.add_argument("--payload", default="{}", metavar="JSON",
                           help='extra payload, e.g. \'{"endpoint": "http://..."}\'')  # fmt: skip
    challenge.add_argument("--variant", help="the variant key (default: <model>-v<version>)")
    challenge.add_argument("--new-experiment", dest="new_experiment",
                           help="key of the experiment to create, when one is created")  # fmt: skip
    _service_arguments(challenge)
    challenge.set_defaults(handler=_challenge)
    chain = subparsers.add_parser("lineage", help="an experiment and its challengers' successors")
    chain.add_argument("experiment", help="experiment key")
    _service_arguments(chain)
    chain.set_defaults(handler=_lineage)


def _challenge(args: argparse.Namespace) -> int:
    from abtest.cli import UsageError

    try:
        payload = json.loads(args.payload)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--payload is not JSON: {exc.msg}") from None
    if not isinstance(payload, dict):
        raise UsageError("--payload must be a JSON object")
    body = {"model": {"name": args.model, "version": args.version}, "payload": payload}
    if args.variant:
        body["variant"] = args.variant
    if args.new_experiment:
        body["experiment"] = args.new_experiment
    answer = _call(args, "POST", f"/v1/experiments/{quote(args.experiment)}/challengers", body)
    if args.json:
        print(json.dumps(answer, indent=2, ensure_ascii=False))
        return 0
    stored = answer["stored"]
    what = "registered" if answer["created"] else "already registered (nothing changed)"
    print(f"{args.model} version {args.version}: {what}: variant '{answer['variant']}' against "
          f"champion '{answer['champion']}' in '{answer['experiment']}' "
          f"({stored['status']}, config version {stored['version']})")  # fmt: skip
    return 0


def _lineage(args: argparse.Namespace) -> int:
    answer = _call(args, "GET", f"/v1/experiments/{quote(args.experiment)}/lineage")
    if args.json:
        print(json.dumps(answer, indent=2, ensure_ascii=False))
        return 0
    for stored in answer["lineage"]:
        config = stored["config"]
        winner = f" winner {config['winner']}" if config.get("winner") else ""
        print(f"{stored['key']}: {stored['status']}{winner} "
              f"({', '.join(v['key'] for v in config['variants'])})")  # fmt: skip
    return 0
