"""The report's figures, built without pyplot (no global state, safe in a web server's threads).

The web console renders the very same figures; `figure_png` turns one into PNG bytes.
"""

from __future__ import annotations

import io
import math
import textwrap
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis.data.daily import daily_looks
from analysis.decision.always_valid import window_text
from analysis.decision.result import AnalysisResult
from analysis.decision.rows import MetricRow

if TYPE_CHECKING:
    import pandas as pd

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
            reason = textwrap.fill(row.effect.relative_reason or "no relative effect", 70)
            ax.text(0.01, i, reason, va="center", fontsize=8, transform=ax.get_yaxis_transform())
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
        seq = row.sequential
        if len(days) != len(seq.estimates):  # a quantile metric's test has no daily series
            continue
        x = [np.datetime64(str(d)) for d in days]
        (line,) = ax.plot(x, seq.estimates, marker="o", markersize=3, label=row.variant)
        lower = np.where(np.isfinite(seq.lower), seq.lower, np.nan)
        upper = np.where(np.isfinite(seq.upper), seq.upper, np.nan)
        label = f"{row.variant}: {1 - seq.alpha:.0%} confidence sequence"
        ax.fill_between(x, lower, upper, alpha=0.2, color=line.get_color(), label=label)
        drawn = True
    ax.axhline(0, color="black", linewidth=0.8)
    settings = result.settings
    window = settings.observation_window_hours or settings.attribution_window_hours
    matured = (
        ""
        if window is None
        else (f"\n(each day: units whose {window_text(timedelta(hours=window))} window closed)")
    )
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
