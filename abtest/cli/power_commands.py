"""``abtest power`` and ``abtest mde``: plan an experiment from the command line.

``abtest power`` answers "how many units and days?" for a minimum detectable effect;
``abtest mde`` answers "what can this many units (or days) detect?".  Both print a table,
or one JSON object with ``--json``; impossible inputs exit 2 with a one-line message.
numpy/scipy/pandas are imported inside the handlers so ``abtest --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from analysis import MinimumDetectableEffect, SampleSize

METRICS = ("proportion", "mean", "ratio")
RATIO_MOMENTS = {
    "num_mean": "mean_numerator",
    "den_mean": "mean_denominator",
    "num_var": "var_numerator",
    "den_var": "var_denominator",
    "cov": "covariance",
}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``power`` and ``mde``."""
    power = subparsers.add_parser(
        "power",
        help="sample size and duration to detect an effect",
        description="Units per variant (and days) needed to detect --mde.",
    )
    _metric_arguments(power)
    power.add_argument(
        "--mde", type=float, help="minimum detectable effect (absolute unless --relative)"
    )
    power.add_argument(
        "--relative", action="store_true", help="--mde (and margin) are fractions of the baseline"
    )
    power.add_argument("--power", type=float, default=0.8, help="target power (default 0.8)")
    power.add_argument(
        "--guardrails",
        type=int,
        default=0,
        metavar="G",
        help="guardrail metrics: power each test at 1-(1-power)/(G+1)",
    )
    power.add_argument(
        "--non-inferiority-margin",
        type=float,
        metavar="M",
        help="one-sided non-inferiority test; --mde is then the assumed true effect (default 0)",
    )
    _design_arguments(power)
    power.add_argument("--daily-units", type=float, metavar="N", help="new eligible units per day")
    power.add_argument(
        "--traffic",
        type=float,
        default=1.0,
        help="fraction of eligible units in the test (default 1.0)",
    )
    power.set_defaults(handler=_power)

    mde = subparsers.add_parser(
        "mde",
        help="minimum detectable effect for a sample size or duration",
        description="The smallest effect detectable with --power at --n-per-variant units, "
        "and/or after --days at --daily-units.",
    )
    _metric_arguments(mde)
    mde.add_argument("--n-per-variant", type=float, metavar="N", help="units in the control arm")
    mde.add_argument("--power", type=float, default=0.8, help="target power (default 0.8)")
    mde.add_argument(
        "--guardrails",
        type=int,
        default=0,
        metavar="G",
        help="guardrail metrics: power each test at 1-(1-power)/(G+1)",
    )
    _design_arguments(mde)
    mde.add_argument(
        "--daily-units",
        type=float,
        metavar="N",
        help="new eligible units per day: adds the table by duration",
    )
    mde.add_argument(
        "--traffic",
        type=float,
        default=1.0,
        help="fraction of eligible units in the test (default 1.0)",
    )
    mde.add_argument(
        "--days", default="7,14,21,28", help="durations for the table (default 7,14,21,28)"
    )
    mde.set_defaults(handler=_mde)


def _metric_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metric", required=True, choices=METRICS)
    parser.add_argument("--baseline", type=float, help="control rate (proportion) or mean (mean)")
    parser.add_argument("--std", type=float, help="per-unit standard deviation (mean)")
    parser.add_argument("--num-mean", type=float, help="ratio: per-unit numerator mean")
    parser.add_argument("--den-mean", type=float, help="ratio: per-unit denominator mean")
    parser.add_argument("--num-var", type=float, help="ratio: per-unit numerator variance")
    parser.add_argument("--den-var", type=float, help="ratio: per-unit denominator variance")
    parser.add_argument("--cov", type=float, help="ratio: numerator-denominator covariance")


def _design_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--alpha", type=float, default=0.05, help="family-wise alpha (default 0.05)"
    )
    sides = parser.add_mutually_exclusive_group()
    sides.add_argument("--one-sided", action="store_true", help="same as --alternative greater")
    sides.add_argument("--alternative", choices=("two-sided", "greater", "less"), default=None)
    parser.add_argument(
        "--ratio", type=float, default=1.0, help="treatment / control units (default 1.0)"
    )
    parser.add_argument(
        "--variants",
        type=int,
        default=1,
        help="treatment variants, Bonferroni-corrected (default 1)",
    )
    parser.add_argument(
        "--cuped-rho", type=float, default=0.0, help="correlation with the pre-period covariate"
    )
    parser.add_argument(
        "--test", choices=("z", "t"), default="z", help="z (default) or exact t (mean, ratio)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _alternative(args: argparse.Namespace) -> str:
    if args.one_sided:
        return "greater"
    if args.alternative is None and getattr(args, "non_inferiority_margin", None) is not None:
        return "greater"  # a non-inferiority test is one-sided; higher is better by default
    return str(args.alternative or "two-sided")


def _metric_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The metric-specific keyword arguments, or a usage error naming what is missing."""
    from abtest.cli import UsageError

    if args.metric == "proportion":
        needed = {"baseline": args.baseline}
    elif args.metric == "mean":
        needed = {"std": args.std}
        if args.baseline is not None:
            needed["baseline"] = args.baseline
    else:
        needed = {name: getattr(args, flag) for flag, name in RATIO_MOMENTS.items()}
    missing = [k for k, v in needed.items() if v is None]
    if missing:
        flags = {v: k for k, v in RATIO_MOMENTS.items()}
        names = ", ".join("--" + flags.get(k, k).replace("_", "-") for k in missing)
        raise UsageError(f"--metric {args.metric} needs {names}")
    if args.test == "t" and args.metric == "proportion":
        raise UsageError("--test t applies to mean and ratio metrics only")
    kwargs: dict[str, Any] = dict(needed)
    if args.metric != "proportion":
        kwargs["test"] = args.test
    return kwargs


def _common_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "alpha": args.alpha,
        "alternative": _alternative(args),
        "ratio": args.ratio,
        "variants": args.variants,
        "cuped_rho": args.cuped_rho,
        "n_guardrails": args.guardrails,
    }


def _number(value: Any) -> Any:
    """A JSON-safe scalar: numpy -> Python, nan -> None."""
    item = value.item() if hasattr(value, "item") else value
    if isinstance(item, float) and math.isnan(item):
        return None
    return item


def _power(args: argparse.Namespace) -> int:
    from abtest.cli import UsageError
    from analysis import duration_days, sample_size_mean, sample_size_proportion, sample_size_ratio

    if args.mde is None and args.non_inferiority_margin is None:
        raise UsageError("--mde is required (the effect the test must detect)")
    functions: dict[str, Callable[..., SampleSize]] = {
        "proportion": sample_size_proportion,
        "mean": sample_size_mean,
        "ratio": sample_size_ratio,
    }
    result = functions[args.metric](
        **_metric_kwargs(args),
        **_common_kwargs(args),
        power=args.power,
        mde=args.mde,
        relative=args.relative,
        non_inferiority_margin=args.non_inferiority_margin,
    )
    baseline = _baseline(args)
    report: dict[str, Any] = {
        "metric": args.metric,
        "alternative": _alternative(args),
        "test": "non-inferiority" if args.non_inferiority_margin is not None else "superiority",
        "baseline": baseline,
        "mde_absolute": _number(result.effect) if args.non_inferiority_margin is None else None,
        "mde_relative": None,
        "alpha": args.alpha,
        "alpha_per_comparison": _number(result.alpha),
        "power": args.power,
        "power_per_test": _number(result.power),
        "ratio": args.ratio,
        "variants": args.variants,
        "n_per_variant": _number(result.n_per_variant),
        "n_treatment": _number(result.n_treatment),
        "total_n": _number(result.total_n),
    }
    if report["mde_absolute"] is not None and baseline:
        report["mde_relative"] = report["mde_absolute"] / abs(baseline)
    if args.daily_units is not None:
        days = duration_days(
            total_n=result.total_n, daily_units=args.daily_units, traffic=args.traffic
        )
        report.update(days=_number(days), daily_units=args.daily_units, traffic=args.traffic)
    if args.json:
        print(json.dumps(report))
        return 0
    _print_power(report, args)
    return 0


def _baseline(args: argparse.Namespace) -> float | None:
    if args.metric == "ratio":
        return float(args.num_mean / args.den_mean) if args.den_mean else None
    return float(args.baseline) if args.baseline is not None else None


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        value = int(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}g}"


def _print_power(report: dict[str, Any], args: argparse.Namespace) -> None:
    rows = [
        ("metric", f"{report['metric']} ({report['test']}, {report['alternative']})"),
        ("baseline", _fmt(report["baseline"])),
    ]
    if args.non_inferiority_margin is not None:
        rows.append(
            ("margin", _fmt(args.non_inferiority_margin) + (" (relative)" if args.relative else ""))
        )
    else:
        relative = report["mde_relative"]
        rows.append(
            (
                "mde",
                _fmt(report["mde_absolute"])
                + " absolute"
                + (f", {relative:.2%} relative" if relative is not None else ""),
            )
        )
    rows += [
        (
            "alpha",
            f"{_fmt(report['alpha'])} ({_fmt(report['alpha_per_comparison'])} per comparison)",
        ),
        ("power", f"{_fmt(report['power'])} ({_fmt(report['power_per_test'])} per test)"),
        (
            "allocation",
            f"control 1 : treatment {_fmt(report['ratio'])} x {report['variants']} variant(s)",
        ),
        (
            "n per variant",
            f"{_fmt(report['n_per_variant'])} control, {_fmt(report['n_treatment'])} per treatment",
        ),
        ("total n", _fmt(report["total_n"])),
    ]
    if "days" in report:
        rows.append(
            (
                "days",
                f"{_fmt(report['days'])} at {_fmt(report['daily_units'])} units/day "
                f"x {report['traffic']:.0%} traffic",
            )
        )
    _print_rows(rows)


def _print_rows(rows: list[tuple[str, str]]) -> None:
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")


def _parse_days(text: str) -> list[int]:
    from abtest.cli import UsageError

    try:
        days = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--days expects integers like 7,14,21,28, got '{text}'") from None
    if not days or min(days) < 1:
        raise UsageError(f"--days expects positive integers, got '{text}'")
    return days


def _mde(args: argparse.Namespace) -> int:
    from abtest.cli import UsageError
    from analysis import (
        mde_by_duration,
        minimum_detectable_effect_mean,
        minimum_detectable_effect_proportion,
        minimum_detectable_effect_ratio,
    )

    if args.n_per_variant is None and args.daily_units is None:
        raise UsageError("give --n-per-variant, or --daily-units for the table by duration")
    kwargs = {**_metric_kwargs(args), **_common_kwargs(args), "power": args.power}
    report: dict[str, Any] = {
        "metric": args.metric,
        "alternative": _alternative(args),
        "baseline": _baseline(args),
        "alpha": args.alpha,
        "power": args.power,
    }
    if args.n_per_variant is not None:
        functions: dict[str, Callable[..., MinimumDetectableEffect]] = {
            "proportion": minimum_detectable_effect_proportion,
            "mean": minimum_detectable_effect_mean,
            "ratio": minimum_detectable_effect_ratio,
        }
        result = functions[args.metric](n_per_variant=args.n_per_variant, **kwargs)
        report.update(
            n_per_variant=args.n_per_variant,
            mde_absolute=_number(result.absolute),
            mde_relative=_number(result.relative),
        )
    if args.daily_units is not None:
        table = mde_by_duration(
            metric=args.metric,
            daily_units=args.daily_units,
            traffic=args.traffic,
            days=_parse_days(args.days),
            **kwargs,
        )
        report["by_days"] = [
            {key: _number(value) for key, value in row.items()}
            for row in table.to_dict(orient="records")
        ]
        report.update(daily_units=args.daily_units, traffic=args.traffic)
    if args.json:
        print(json.dumps(report))
        return 0
    _print_mde(report)
    return 0


def _relative_text(value: Any) -> str:
    return "-" if value is None else f"{value:.2%}"


def _print_mde(report: dict[str, Any]) -> None:
    rows = [
        ("metric", f"{report['metric']} ({report['alternative']})"),
        ("baseline", _fmt(report["baseline"])),
        ("alpha / power", f"{_fmt(report['alpha'])} / {_fmt(report['power'])}"),
    ]
    if "mde_absolute" in report:
        detectable = report["mde_absolute"] is not None
        rows += [
            (
                "n per variant",
                _fmt(int(report["n_per_variant"]))
                if float(report["n_per_variant"]).is_integer()
                else _fmt(report["n_per_variant"]),
            ),
            (
                "mde",
                (
                    f"{_fmt(report['mde_absolute'])} absolute, "
                    f"{_relative_text(report['mde_relative'])} relative"
                )
                if detectable
                else "no effect is detectable at this n",
            ),
        ]
    _print_rows(rows)
    if "by_days" in report:
        print()
        header = ("days", "n per variant", "total n", "mde (abs)", "mde (rel)")
        print("{:>5}  {:>13}  {:>10}  {:>10}  {:>9}".format(*header))
        for row in report["by_days"]:
            print(
                f"{row['days']:>5}  {row['n_per_variant']:>13,}  {row['total_n']:>10,}  "
                f"{_fmt(row['mde_absolute']):>10}  {_relative_text(row['mde_relative']):>9}"
            )
