"""``abtest analyze``'s human-readable output: every number with its scale and its test.

Two tables, because they answer different questions: the fixed-horizon effects, shown for
reference, and the always-valid test that drives the verdict, on the units whose
observation window has closed, with its own estimate beside its own interval.  Numbers,
units and headers come from `analysis.report.formatting`, so the terminal reads like the
HTML report and the console: an absolute effect and its interval in the metric's unit
(pp for a conversion rate, ms for ``latency_ms``), a relative one in %, never mixed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from analysis.report.formatting import (
    count,
    effect_with_ci,
    metric_cells,
    metric_headers,
    metric_unit,
    p_value,
)
from analysis.report.segment_view import (
    comparison_rows,
    footnote,
    heterogeneity_text,
    segment_headers,
)

if TYPE_CHECKING:
    from analysis.decision.result import AnalysisResult
    from analysis.decision.rows import MetricRow

# The columns of the shared metrics table the terminal has room for.
_FIXED_COLUMNS = (0, 1, 2, 3, 4, 5, 6, 8, 11)


def _fixed_table(result: AnalysisResult) -> list[list[str]]:
    headers = metric_headers(result.settings.alpha)
    rows = [[cells[i] for i in _FIXED_COLUMNS]
            for cells in (metric_cells(row.to_dict()).cells() for row in result.rows)]  # fmt: skip
    return [[headers[i] for i in _FIXED_COLUMNS], *rows]


def _sequential_cells(row: MetricRow) -> list[str]:
    seq = row.sequential
    if seq is None:
        return [row.metric, row.variant, "–", "–", "–", row.sequential_note or row.error or ""]
    unit = metric_unit(row.metric, row.type.value)
    effect = effect_with_ci(seq.estimate, seq.ci, scale=unit.value_scale, unit=unit.effect_unit)
    margin = row.sequential_margin
    note = "" if margin is None else (
        f"harm beyond margin p = {p_value(margin.p_harm)}, "
        f"non-inferior p = {p_value(margin.p_non_inferior)}"
    )  # fmt: skip
    units = f"{count(seq.n_control[-1])} / {count(seq.n_variant[-1])}"
    return [row.metric, row.variant, units, effect, p_value(seq.p_value), note]


def _sequential_table(result: AnalysisResult) -> list[list[str]]:
    level = f"{1 - result.settings.alpha:.0%} CS"
    headers = ["Metric", "Variant", "Units observed (control / variant)",
               f"Abs. effect, variant − control [{level}]", "Always-valid p", "Note"]  # fmt: skip
    return [headers, *(_sequential_cells(row) for row in result.rows)]


def render_table(table: list[list[str]]) -> str:
    """Left-aligned columns two spaces apart; a column that is empty everywhere is dropped."""
    keep = [i for i in range(len(table[0])) if any(row[i] for row in table[1:])]
    widths = {i: max(len(row[i]) for row in table) for i in keep}
    return "\n".join("  ".join(row[i].ljust(widths[i]) for i in keep).rstrip() for row in table)


def _segment_lines(result: AnalysisResult) -> list[str]:
    if result.segments is None:
        return []
    data = result.segments.to_dict()
    table = [segment_headers(data, result.settings.alpha)]
    for comparison in data["comparisons"]:
        table += comparison_rows(comparison)
    return ["", f"segments by {data['attribute']} (fixed horizon, per segment)",
            render_table(table), *(heterogeneity_text(c) for c in data["comparisons"]),
            footnote(data)]  # fmt: skip


def human_report(result: AnalysisResult, *, html: str | None, record: str | None) -> str:
    """The text ``abtest analyze`` prints without ``--json``."""
    decision, settings = result.decision, result.settings
    verdict = decision.verdict.value + (f" {decision.variant}" if decision.variant else "")
    if decision.extra_days:
        verdict += f" (about {decision.extra_days} more days)"
    events = result.events
    dropped = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in events.dropped.items() if v)
    plan = [f"observation window {settings.observation_window_hours:g} h"]
    if settings.planned_units_per_variant is not None:
        plan.insert(0, f"planned {settings.planned_units_per_variant:,} units per variant")
    if settings.sequential_prior is not None:
        plan.append(settings.sequential_prior.describe())
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
        render_table(_fixed_table(result)),
        "",
        "always-valid (drives the verdict; units whose observation window closed)",
        render_table(_sequential_table(result)),
        *_segment_lines(result),
        "",
        f"verdict     {verdict}",
        *(f"  - {reason}" for reason in decision.reasons),
        *(f"  ! {warning}" for warning in decision.warnings),
    ]  # fmt: skip
    lines += [f"{flag:<11} {path}" for flag, path in (("report", html), ("record", record)) if path]
    return "\n".join(lines)


def holdout_lines(result: Mapping[str, Any]) -> list[str]:
    """The text ``abtest holdout results`` prints for a `HoldoutResult.to_dict()`."""
    headers = metric_headers(float(result["alpha"]))
    table = [[headers[i] for i in _FIXED_COLUMNS]]
    table += [[cells[i] for i in _FIXED_COLUMNS]
              for cells in (metric_cells(row).cells() for row in result["metrics"])]  # fmt: skip
    groups = ", ".join(f"{g['group']} {g['units']:,}" for g in result["groups"])
    period = result["period"]
    srm = result["srm"]
    return [
        f"holdout     {result['holdout']} ({result['share']:.1%} of units)   "
        f"period {period['start'] or 'start'} .. {period['end'] or 'now'}",
        f"units       {groups}   crossovers excluded {result['excluded_units']:,}",
        f"srm         p = {p_value(srm['p_value'])} ({'ok' if srm['ok'] else 'MISMATCH'})",
        "",
        "rest − holdout: the effect of everything the holdout covered",
        render_table(table),
    ]
