"""``abtest analyze``: effects, tests and the verdict from exported exposure/outcome files."""

from __future__ import annotations

import argparse
import json
from datetime import timedelta
from typing import Any


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``analyze``."""
    cmd = subparsers.add_parser(
        "analyze",
        help="analyse an experiment from exposure and outcome files",
        description="Join exposures and outcomes, test every metric, and print the verdict.",
    )
    cmd.add_argument(
        "--exposures",
        required=True,
        metavar="PATH",
        help="Parquet/CSV file or directory written by `abtest export`",
    )
    cmd.add_argument(
        "--outcomes",
        required=True,
        metavar="PATH",
        help="Parquet/CSV file or directory of outcome events",
    )
    cmd.add_argument(
        "--metric",
        action="append",
        default=[],
        metavar="NAME:TYPE",
        help="purchase:binomial, revenue:sum, clicks/searches:ratio, "
        "latency_ms:p95:quantile...; the first is primary (repeatable)",
    )
    cmd.add_argument(
        "--guardrail",
        action="append",
        default=[],
        metavar="NAME:TYPE",
        help="guardrail metric, non-inferiority with --margin (repeatable)",
    )
    cmd.add_argument(
        "--margin",
        type=float,
        default=0.05,
        help="relative non-inferiority margin of --guardrail metrics (0.05)",
    )
    cmd.add_argument(
        "--lower-is-better",
        action="append",
        default=[],
        metavar="NAME",
        help="metric NAME improves when it goes down (repeatable)",
    )
    cmd.add_argument("--control", help="control variant key (default: control)")
    cmd.add_argument(
        "--catalogue",
        metavar="FILE",
        help="metric catalogue (catalogue.json, which `abtest export` writes beside exposures/; "
        "found there by default): resolves a --metric or --guardrail given by its catalogue "
        "name (revenue) and the catalogue references of --config",
    )
    source = cmd.add_mutually_exclusive_group()
    source.add_argument("--experiment", metavar="KEY", help="experiment key in the exposures")
    source.add_argument(
        "--config",
        metavar="EXP.json",
        help="experiment definition: metrics, guardrails, weights, control",
    )
    cmd.add_argument("--alpha", type=float, default=0.05, help="significance level (0.05)")
    cmd.add_argument(
        "--correction",
        choices=("holm", "bh"),
        default="holm",
        help="multiple-comparison adjustment (holm)",
    )
    cmd.add_argument(
        "--attribution-hours",
        type=float,
        metavar="H",
        help="count outcomes only within H hours of the first exposure",
    )
    cmd.add_argument(
        "--segment",
        metavar="ATTRIBUTE",
        help="also each metric per value of ATTRIBUTE kept with the exposures (country, "
        "platform...): adjusted across segments, with a heterogeneity test",
    )
    cmd.add_argument(
        "--min-segment-units",
        type=int,
        default=100,
        metavar="N",
        help="show no number for a segment with fewer than N units in an arm (100)",
    )
    plan = cmd.add_argument_group(
        "plan (fixes the always-valid test's prior before the data; stored in the result)"
    )
    plan.add_argument(
        "--planned-units",
        type=int,
        metavar="N",
        help="planned units per variant: the horizon of the test (overrides the config's)",
    )
    plan.add_argument(
        "--mde",
        type=float,
        metavar="X",
        help="minimum detectable effect of the primary metric (metric units; see --relative)",
    )
    plan.add_argument(
        "--relative", action="store_true", help="--mde is a fraction of the control mean"
    )
    plan.add_argument(
        "--mixing-sd",
        type=float,
        metavar="D",
        help="a stated prior instead: the mSPRT mixing SD in per-unit SDs (a standardised effect)",
    )
    plan.add_argument(
        "--observation-hours",
        type=float,
        metavar="H",
        help="per-unit observation window of the always-valid test "
        "(default: --attribution-hours, else 24)",
    )
    cmd.add_argument("--json", action="store_true", help="print the result as JSON")
    cmd.add_argument("--html", metavar="REPORT.html", help="write the HTML report")
    cmd.add_argument("--record", metavar="PATH", help="write the decision record (JSON)")
    cmd.set_defaults(handler=_analyze)  # fmt: skip


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    from abtest.cli import UsageError

    if not 0 < args.alpha < 0.5:
        raise UsageError(f"--alpha must lie in (0, 0.5), got {args.alpha}")
    settings: dict[str, Any] = {"alpha": args.alpha, "correction": args.correction}
    if args.segment is not None:
        if args.min_segment_units < 1:
            minimum = args.min_segment_units
            raise UsageError(f"--min-segment-units must be at least 1, got {minimum}")
        settings.update(segment=args.segment, min_segment_units=args.min_segment_units)
    for flag, name in (("--attribution-hours", "attribution_hours"),
                       ("--observation-hours", "observation_hours")):  # fmt: skip
        hours = getattr(args, name)
        if hours is not None:
            if not 0 < hours < 1e6:
                raise UsageError(f"{flag} must be > 0, got {hours}")
            key = "attribution_window" if name == "attribution_hours" else "observation_window"
            settings[key] = timedelta(hours=hours)
    if args.planned_units is not None:
        if args.planned_units < 2:
            raise UsageError(f"--planned-units must be at least 2, got {args.planned_units}")
        settings["planned_units_per_variant"] = args.planned_units
    for flag, value in (("--mde", args.mde), ("--mixing-sd", args.mixing_sd)):
        if value is not None and not 0 < value < float("inf"):
            raise UsageError(f"{flag} must be a number > 0, got {value}")
    if args.relative and args.mde is None:
        raise UsageError("--relative needs --mde")
    if args.mde is not None:
        settings.update(mde=args.mde, relative_mde=args.relative)
    if args.mixing_sd is not None:
        settings["mixing_sd"] = args.mixing_sd
    return settings


def _analyze(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from abtest.catalogue import references, resolve_references
    from abtest.cli import UsageError
    from abtest.experiment import Experiment
    from analysis.analyzer import analyze, analyze_experiment, as_metric

    settings = _settings(args)
    experiment = None
    catalogue = _catalogue(args)
    if args.config:
        if args.metric or args.guardrail or args.control:
            raise UsageError("with --config, metrics, guardrails and control come from the config")
        raw = Experiment.read_json_file(args.config)
        if references(raw):
            if catalogue is None:
                raise UsageError(f"{args.config} names catalogue metrics: give --catalogue FILE "
                                 "(abtest export writes catalogue.json)")  # fmt: skip
            raw = resolve_references(raw, catalogue)
        experiment = Experiment.from_dict(raw)
        result = analyze_experiment(experiment, args.exposures, args.outcomes, **settings)
    else:
        if not args.metric:
            raise UsageError("give at least one --metric NAME:TYPE (or --config EXP.json)")
        if not 0 < args.margin < 1:
            raise UsageError(f"--margin must lie in (0, 1), got {args.margin}")
        lower = set(args.lower_is_better)

        def metric(text: str, where: str, margin: float | None) -> Any:
            parsed = as_metric(text, where, catalogue)
            if parsed.catalogue_version is not None:  # the catalogue says which way is better
                return replace(parsed, margin=margin)
            return replace(parsed, higher_is_better=parsed.name not in lower, margin=margin)

        result = analyze(
            args.exposures, args.outcomes,
            metrics=[metric(m, "--metric", None) for m in args.metric],
            guardrails=[metric(g, "--guardrail", args.margin) for g in args.guardrail],
            control=args.control or "control", experiment=args.experiment, **settings,
        )  # fmt: skip
    if args.html:
        from analysis.report.html import write_report

        write_report(result, args.html)
    if args.record:
        from analysis.data.load import fingerprint
        from analysis.decision.record import write_decision_record

        write_decision_record(
            result, args.record, experiment=experiment,
            data_sha256={"exposures": fingerprint(args.exposures),
                         "outcomes": fingerprint(args.outcomes)},
        )  # fmt: skip
    if args.json:
        print(json.dumps(result.to_dict(), allow_nan=False, ensure_ascii=False))
    else:
        _print_human(result, args)
    return 0


def _catalogue(args: argparse.Namespace) -> Any:
    """The --catalogue lookup, else the export's catalogue.json beside the exposures."""
    from pathlib import Path

    from abtest.catalogue import read_catalogue

    if args.catalogue:
        return read_catalogue(args.catalogue)
    beside = Path(args.exposures).parent / "catalogue.json"
    return read_catalogue(beside) if beside.is_file() else None


def _print_human(result: Any, args: argparse.Namespace) -> None:
    from abtest.cli.analyze_output import human_report

    print(human_report(result, html=args.html, record=args.record))
