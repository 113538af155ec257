"""The release manager's report: one self-contained HTML file, and the figures in it.

The figure builders return `matplotlib.figure.Figure` objects made without pyplot (no
global state, safe in a web server's threads), so the web console renders the very same
figures; `figure_png` turns one into PNG bytes.  The HTML embeds them as base64 PNG and
escapes every piece of text that comes from data or configuration.
"""

from __future__ import annotations

import base64
import html
import io
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis.analysis_result import AnalysisResult, MetricRow
from analysis.daily import daily_looks
from analysis.decision import Verdict

if TYPE_CHECKING:
    import pandas as pd

_VERDICT_COLOURS = {
    Verdict.SHIP: "#1a7f37",
    Verdict.KEEP_RUNNING: "#9a6700",
    Verdict.NO_DIFFERENCE: "#57606a",
    Verdict.ROLL_BACK: "#cf222e",
    Verdict.INVALID: "#8250df",
}
_GOOD, _BAD, _NEUTRAL = "#1a7f37", "#cf222e", "#57606a"


def figure_png(figure: Figure, *, dpi: int = 110) -> bytes:
    """PNG bytes of a figure (Agg canvas; no display needed)."""
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def _colour(row: MetricRow) -> str:
    if not row.significant or row.absolute_effect is None:
        return _NEUTRAL
    better = row.absolute_effect * (1 if row.higher_is_better else -1) > 0
    return _GOOD if better else _BAD


def effect_figure(result: AnalysisResult) -> Figure:
    """Relative effect with its CI per metric and variant (green better, red worse)."""
    rows = [r for r in result.rows if r.effect is not None]
    figure = Figure(figsize=(7.5, 0.55 * max(len(rows), 1) + 1.2))
    ax = figure.add_subplot()
    for i, row in enumerate(reversed(rows)):
        assert row.effect is not None
        rel, ci = row.effect.relative_effect, row.effect.relative_ci
        if rel is None or ci is None:
            ax.text(0, i, "no relative effect (control mean 0)", va="center", fontsize=8)
            continue
        lo, hi = (100 * v if math.isfinite(v) else np.nan for v in ci)
        ax.errorbar(100 * rel, i, xerr=[[100 * rel - lo], [hi - 100 * rel]], fmt="o",
                    color=_colour(row), capsize=4)  # fmt: skip
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{r.metric} ({r.variant}, {r.role})" for r in reversed(rows)])
    ax.set_xlabel(f"relative effect vs {result.control} (%), {1 - result.settings.alpha:.0%} CI")
    ax.set_title("Effects")
    ax.grid(axis="x", alpha=0.3)
    return figure


def cumulative_figure(result: AnalysisResult, metric: str | None = None) -> Figure:
    """Cumulative absolute effect per day with the always-valid confidence sequence."""
    primary = next((r.metric for r in result.rows if r.role == "primary"), None)
    metric = metric or primary
    figure = Figure(figsize=(7.5, 3.6))
    ax = figure.add_subplot()
    agg = result.aggregates
    drawn = False
    for row in result.rows:
        if row.metric != metric or row.sequential is None or agg is None:
            continue
        days, _ = daily_looks(agg, row.metric, result.control, row.variant)
        x = [np.datetime64(str(d)) for d in days]
        seq = row.sequential
        (line,) = ax.plot(x, seq.estimates, marker="o", markersize=3, label=row.variant)
        lower = np.where(np.isfinite(seq.lower), seq.lower, np.nan)
        upper = np.where(np.isfinite(seq.upper), seq.upper, np.nan)
        label = f"{row.variant}: {1 - seq.alpha:.0%} confidence sequence"
        ax.fill_between(x, lower, upper, alpha=0.2, color=line.get_color(), label=label)
        drawn = True
    ax.axhline(0, color="black", linewidth=0.8)
    window = result.settings.attribution_window_hours
    matured = "" if window is None else f"\n(each day: units whose {window:g} h window closed)"
    ax.set_title(f"Cumulative effect on {metric} over time{matured}")
    ax.set_ylabel(f"{metric}: variant − {result.control}")
    if drawn:
        ax.legend(fontsize=8)
        _date_axis(ax)
    else:
        ax.text(0.5, 0.5, "no daily series for this metric", ha="center", transform=ax.transAxes)
    return figure


def exposures_figure(result: AnalysisResult) -> Figure:
    """New units per day and variant."""
    figure = Figure(figsize=(7.5, 3.2))
    ax = figure.add_subplot()
    frame: pd.DataFrame | None = None if result.aggregates is None else (
        result.aggregates.exposures_per_day
    )  # fmt: skip
    if frame is not None and len(frame):
        for variant in result.units:
            part = frame[frame["variant"] == variant]
            ax.plot(part["day"].to_numpy(), part["units"].to_numpy(), marker="o",
                    markersize=3, label=variant)  # fmt: skip
        ax.legend(fontsize=8)
        _date_axis(ax)
    ax.set_title("Units exposed per day")
    ax.set_ylabel("new units")
    ax.set_ylim(bottom=0)  # counts: a zoomed axis would make a 50/50 split look lopsided
    return figure


def _date_axis(ax: Any) -> None:
    """Readable day ticks; a series of one or two days gets a day of margin on each side.

    Matplotlib's default limits for a single date span years, which hides the point.
    """
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(maxticks=8)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    formatter = mdates.ConciseDateFormatter(locator)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_formatter(formatter)
    low, high = ax.dataLim.intervalx
    if high - low < 2:  # matplotlib dates are in days
        ax.set_xlim(low - 1, high + 1)


def _fmt(value: float | None, spec: str = ".4g") -> str:
    return "–" if value is None or not math.isfinite(value) else format(value, spec)


def _ci(ci: list[float | None] | None, scale: float = 1.0, spec: str = ".4g") -> str:
    if not ci:
        return "–"
    lo, hi = ((None if v is None else v * scale) for v in ci)
    return f"[{_fmt(lo, spec)}, {_fmt(hi, spec)}]"


def _img(figure: Figure, alt: str) -> str:
    data = base64.b64encode(figure_png(figure)).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def render_html(result: AnalysisResult) -> str:
    """The whole report as one HTML document (figures inline, no external resources)."""
    e = html.escape
    d = result.decision
    colour = _VERDICT_COLOURS[d.verdict]
    variant = f" — {e(d.variant)}" if d.variant else ""
    extra = f" (about {d.extra_days} more days)" if d.extra_days else ""
    reasons = "".join(f"<li>{e(r)}</li>" for r in d.reasons)
    warnings = "".join(f'<li class="warn">{e(w)}</li>' for w in d.warnings)
    srm = result.srm
    srm_rows = "".join(
        f"<tr><td>{e(v)}</td><td>{result.units.get(v, 0)}</td>"
        f"<td>{_fmt(srm.expected.get(v), '.1f')}</td></tr>"
        for v in srm.expected
    )
    metric_rows = []
    for row in result.rows:
        data = row.to_dict()
        metric_rows.append(
            "<tr>" + "".join(f"<td>{cell}</td>" for cell in (
                e(row.metric), e(row.type.value), e(row.role), e(row.variant),
                f"{row.n_control} / {row.n_variant}", _fmt(row.control_mean),
                _fmt(row.variant_mean), _fmt(row.absolute_effect),
                _ci(data["absolute_ci"]),
                _fmt(None if row.relative_effect is None else 100 * row.relative_effect, ".2f"),
                _ci(data["relative_ci"], 100, ".2f"), _fmt(row.p_value, ".3g"),
                _fmt(row.adjusted_p_value, ".3g"), "yes" if row.significant else "no",
                e(row.error or ""),
            )) + "</tr>"
        )  # fmt: skip
    figures = [_img(effect_figure(result), "effects with confidence intervals"),
               _img(cumulative_figure(result), "cumulative effect over time"),
               _img(exposures_figure(result), "units exposed per day")]  # fmt: skip
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>abtest report: {e(result.experiment)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #1f2328; }}
.verdict {{ background: {colour}; color: white; padding: 1rem 1.5rem; border-radius: 8px; }}
.verdict h1 {{ margin: 0; font-size: 1.8rem; }}
table {{ border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0 1.5rem; }}
td, th {{ border: 1px solid #d0d7de; padding: 0.25rem 0.5rem; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
.warn {{ color: #9a6700; font-weight: 600; }}
img {{ max-width: 100%; display: block; margin: 1rem 0; }}
</style></head><body>
<div class="verdict"><h1>{e(d.verdict.value.replace("_", " ").upper())}{variant}{e(extra)}</h1>
<div>experiment <b>{e(result.experiment)}</b> · control <b>{e(result.control)}</b></div></div>
<h2>Why</h2><ul>{reasons}{warnings}</ul>
<h2>Sample ratio</h2>
<p>SRM {"ok" if srm.ok else "<b>MISMATCH</b>"}: p = {_fmt(srm.p_value, ".3g")}
(threshold {srm.threshold}); {result.excluded_units} crossover unit(s) excluded
({result.crossover_share:.2%}).</p>
<table><tr><th>variant</th><th>units</th><th>expected</th></tr>{srm_rows}</table>
<h2>Metrics</h2>
<table><tr><th>metric</th><th>type</th><th>role</th><th>variant</th><th>n (c / v)</th>
<th>control</th><th>variant</th><th>abs. effect</th><th>abs. CI</th><th>rel. effect %</th>
<th>rel. CI %</th><th>p</th><th>adj. p</th><th>significant</th><th>note</th></tr>
{"".join(metric_rows)}</table>
{"".join(figures)}
<p><small>alpha {result.settings.alpha}, correction {e(result.settings.correction)};
generated {generated} by abtest.</small></p>
</body></html>
"""


def write_report(result: AnalysisResult, path: str | Path) -> Path:
    """Write `render_html` to ``path`` (UTF-8); return the path."""
    target = Path(path)
    target.write_text(render_html(result), encoding="utf-8")
    return target
