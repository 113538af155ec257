"""The guarded rollout's timeline chart: each guardrail's cumulative effect per day with its
always-valid confidence sequence, the step changes and the planned regression.

Built without pyplot, like `analysis.report.figures` (whose date axis it shares): the
console renders it with `analysis.report.figures.figure_png`.  Its input is the per-day
series a monitor check records (``day``, ``estimate``, ``se``, ``n_control``,
``n_variant``, ``control_mean`` per look, see `service.monitor.rollout`), and the band at
each day is the decision's own test (`analysis.decision.rollout.guardrail_tests`: the
mixing prior ``τ = margin · |control mean|``), drawn at the level of Holm's first step:
each side at ``alpha / guardrails``, so the band leaving 0 on the bad side is exactly a
rollback.  A day's look is drawn at the end of that day (the last one at the check's
time): it holds the units whose observation window had closed by then.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from abtest.experiment import Metric
from analysis.report.figures import _BAD
from analysis.statistics.sequential import confidence_sequence


def _bounds(looks: Sequence[Mapping[str, Any]], margin: float, alpha: float) -> tuple[Any, Any]:
    estimate = np.array([float(look["estimate"]) for look in looks])
    variance = np.array([float(look["se"]) ** 2 for look in looks])
    tau2 = np.array([(margin * abs(float(look["control_mean"]))) ** 2 for look in looks])
    lower, upper = confidence_sequence(estimate=estimate, variance=variance, tau2=tau2,
                                       alpha=alpha)  # fmt: skip
    return np.where(np.isfinite(lower), lower, np.nan), np.where(np.isfinite(upper), upper, np.nan)


def _time_axis(ax: Any) -> None:
    """Day ticks (every few days on a long rollout), hours within a short one."""
    import matplotlib.dates as mdates

    low, high = ax.get_xlim()
    span = high - low  # matplotlib dates are in days
    if span <= 3:
        hours = range(0, 24, 6 if span > 1 else 3)
        locator: Any = mdates.HourLocator(byhour=hours)  # type: ignore[no-untyped-call]
    else:
        locator = mdates.DayLocator(interval=max(1, round(span / 8)))  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]


def rollout_figure(
    series: Mapping[str, Sequence[Mapping[str, Any]]],
    guardrails: Sequence[Metric],
    *,
    alpha: float,
    events: Sequence[tuple[str, str]] = (),
    as_of: str | None = None,
) -> Figure:
    """One panel per guardrail: the new variant's cumulative effect against control per day
    with its always-valid band (module docstring), a dashed line at the planned regression
    (the margin, in metric units at the last day's control mean) and a dotted vertical line
    at each of ``events`` (``(ISO time, label)``: step changes, pause, rollback, ship).
    ``as_of``: the check's ISO time, where the last look is drawn."""
    panels = max(len(guardrails), 1)
    level = min(2 * alpha / max(len(guardrails), 1), 0.999)
    figure = Figure(figsize=(7.5, 2.9 * panels))
    axes = figure.subplots(panels, 1, squeeze=False)[:, 0]
    for ax, metric in zip(axes, guardrails, strict=False):
        looks = list(series.get(metric.name, ()))
        margin = metric.margin or 0.0
        if not looks or not margin > 0:
            ax.text(0.5, 0.5, f"{metric.name}: no daily look yet", ha="center",
                    transform=ax.transAxes)  # fmt: skip
            ax.set_yticks([])
            ax.set_xticks([])
            continue
        x = [np.datetime64(str(look["day"])[:10], "s") + np.timedelta64(1, "D")
             for look in looks]  # fmt: skip
        if as_of is not None:
            x[-1] = min(x[-1], np.datetime64(as_of[:19], "s"))
        estimate = [float(look["estimate"]) for look in looks]
        lower, upper = _bounds(looks, margin, level)
        (line,) = ax.plot(x, estimate, marker="o", markersize=3, label="new − control")
        ax.fill_between(x, lower, upper, alpha=0.2, color=line.get_color(),
                        label=f"always-valid band (each side at α/{len(guardrails)}: "
                        "leaving 0 upwards rolls back)" if not metric.higher_is_better
                        else f"always-valid band (each side at α/{len(guardrails)}: "
                        "leaving 0 downwards rolls back)")  # fmt: skip
        if len(x) == 1:  # a band needs two days to show: draw the one look's interval
            ax.vlines(x, lower, upper, color=line.get_color(), alpha=0.4, linewidth=6)
            ax.set_xlim(x[0] - np.timedelta64(12, "h"), x[0] + np.timedelta64(12, "h"))
        ax.axhline(0, color="black", linewidth=0.8)
        harm = margin * abs(float(looks[-1]["control_mean"]))
        harm = -harm if metric.higher_is_better else harm
        if math.isfinite(harm):
            ax.axhline(harm, color=_BAD, linestyle="--", linewidth=0.9,
                       label=f"planned regression ({margin:.3g} relative)")  # fmt: skip
        for when, label in events:
            moment = np.datetime64(when[:19], "s")
            ax.axvline(moment, color="#57606a", linestyle=":", linewidth=0.9)
            ax.text(moment, 1.0, f" {label}", rotation=90, va="top", fontsize=7,
                    transform=ax.get_xaxis_transform())  # fmt: skip
        worse = "down" if metric.higher_is_better else "up"
        ax.set_title(f"{metric.name}: cumulative effect of the new variant (worse is {worse})",
                     fontsize=9)  # fmt: skip
        ax.set_ylabel(metric.name)
        ax.legend(fontsize=7, loc="lower left")
        _time_axis(ax)
    figure.tight_layout()
    return figure


__all__ = ["rollout_figure"]
