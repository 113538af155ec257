"""``abtest analyze``'s human-readable output: every number with its scale and its test.

Two tables, because they answer different questions: the fixed-horizon effects (absolute
in metric units, relative in % of the control mean, each with its own interval), shown for
reference; and the always-valid test that drives the verdict, on the units whose
observation window has closed, with its own estimate beside its interval.  A column's
header names its scale (``abs``: metric units; ``rel %``: percent of the control mean), and
an absolute value of a metric whose name ends with a unit (``latency_ms`` -> ms) carries
it, so a relative effect never sits next to an absolute interval.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from analysis.decision.result import AnalysisResult
    from analysis.decision.rows import MetricRow

_UNITS: Final = ("ms", "us", "s", "sec", "usd", "eur", "gbp", "bytes", "kb", "mb")


def metric_unit(metric: str) -> str:
    """``latency_ms:p95`` -> "ms", ``revenue`` -> "": the unit a metric name ends with."""
    if "/" in metric:  # a ratio's unit is num/den, not the numerator's
        return ""
    stem = metric.split(":", maxsplit=1)[0]
    suffix = stem.rpartition("_")[2].lower()
    return suffix if "_" in stem and suffix in _UNITS else ""


def _num(value: float | None, unit: str = "") -> str:
    if value is None or not math.isfinite(value):
        return "-"
    if unit == "%":
        return f"{100 * value:+.2f}"
    return f"{value:+.4g}" + (f" {unit}" if unit else "")


def _interval(low: float | None, high: float | None, unit: str = "") -> str:
    if low is None or high is None:
        return "-"
    suffix = f" {unit}" if unit and unit != "%" else ""
    return (
        f"[{_num(low, '%' if unit == '%' else '')}, {_num(high, '%' if unit == '%' else '')}]"
        + suffix
    )


def _fixed_row(row: MetricRow, level: str) -> dict[str, str]:
    effect = row.effect
    unit = metric_unit(row.metric)
    rel_ci = None if effect is None else effect.relative_ci
    return {
        "metric": row.metric,
        "variant": row.variant,
        "control (abs)": _num(row.control_mean, unit).lstrip("+"),
        "variant (abs)": _num(row.variant_mean, unit).lstrip("+"),
        "effect (abs)": _num(None if effect is None else effect.absolute_effect, unit),
        f"{level} CI (abs)": "-" if effect is None else _interval(*effect.absolute_ci, unit=unit),
        "effect (rel %)": _num(None if effect is None else effect.relative_effect, "%"),
        f"{level} CI (rel %)": "-" if rel_ci is None else _interval(*rel_ci, unit="%"),
        "p (adj.)": "-" if row.adjusted_p_value is None else f"{row.adjusted_p_value:.3g}",
        "note": row.error or "",
    }


def _sequential_row(row: MetricRow, level: str) -> dict[str, str]:
    seq = row.sequential
    unit = metric_unit(row.metric)
    if seq is None:
        return {"metric": row.metric, "variant": row.variant, "units": "-",
                "effect (abs)": "-", f"{level} CS (abs)": "-", "p": "-",
                "note": row.sequential_note or row.error or ""}  # fmt: skip
    return {
        "metric": row.metric,
        "variant": row.variant,
        "units": f"{seq.n_control[-1]:,}/{seq.n_variant[-1]:,}",
        "effect (abs)": _num(seq.estimate, unit),
        f"{level} CS (abs)": _interval(*seq.ci, unit=unit),
        "p": f"{seq.p_value:.3g}",
        "note": "" if row.sequential_margin is None
        else f"harm beyond margin p = {row.sequential_margin.p_harm:.3g}, "
        f"non-inferior p = {row.sequential_margin.p_non_inferior:.3g}",
    }  # fmt: skip


def _table(records: list[dict[str, str]]) -> str:
    import pandas as pd

    frame = pd.DataFrame.from_records(records)
    if "note" in frame and not frame["note"].astype(bool).any():
        frame = frame.drop(columns="note")
    return frame.to_string(index=False)


def human_report(result: AnalysisResult, *, html: str | None, record: str | None) -> str:
    """The text ``abtest analyze`` prints without ``--json``."""
    decision, settings = result.decision, result.settings
    level = f"{1 - settings.alpha:.0%}"
    verdict = decision.verdict.value + (f" {decision.variant}" if decision.variant else "")
    if decision.extra_days:
        verdict += f" (about {decision.extra_days} more days)"
    events = result.events
    dropped = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in events.dropped.items() if v)
    prior = settings.sequential_prior
    plan = [f"observation window {settings.observation_window_hours:g} h"]
    if settings.planned_units_per_variant is not None:
        plan.insert(0, f"planned {settings.planned_units_per_variant:,} units per variant")
    if prior is not None:
        plan.append(prior.describe())
    lines = [
        f"experiment  {result.experiment}   control {result.control}",
        f"units       {', '.join(f'{v} {n:,}' for v, n in result.units.items())}   "
        f"crossovers excluded {result.excluded_units:,}",
        f"srm         p = {result.srm.p_value:.3g} ({'ok' if result.srm.ok else 'MISMATCH'})",
        f"events      {events.counted:,} counted, {events.covariate:,} pre-exposure covariate, "
        f"{sum(events.dropped.values()):,} dropped" + (f" ({dropped})" if dropped else "")
        + f", {events.duplicates:,} duplicates",
        f"sequential  {'; '.join(plan)}",
        "",
        "fixed horizon (shown for reference; never drives the verdict)",
        _table([_fixed_row(row, level) for row in result.rows]),
        "",
        "always-valid (drives the verdict; units whose observation window closed, "
        "control/variant)",
        _table([_sequential_row(row, level) for row in result.rows]),
        "",
        f"verdict     {verdict}",
        *(f"  - {reason}" for reason in decision.reasons),
        *(f"  ! {warning}" for warning in decision.warnings),
    ]  # fmt: skip
    lines += [f"{flag:<11} {path}" for flag, path in (("report", html), ("record", record)) if path]
    return "\n".join(lines)
