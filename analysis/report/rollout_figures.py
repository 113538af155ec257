"""The guarded rollout's timeline chart: each guardrail's cumulative effect per day with its
always-valid confidence sequence, the step changes and the planned regression.

Built without pyplot, like `analysis.report.figures` (whose date axis it shares): the
console renders it with `analysis.report.figures.figure_png`.  Its input is the per-day
series a monitor check records (``day``, ``estimate``, ``se``, ``n_control``,
``n_variant``, ``control_mean`` per look, see `service.monitor.rollout`), and the interval
at each day is the decision's own (`analysis.decision.rollout.guardrail_tests`: the
mixing prior ``τ = margin · |control mean|``, the plan's alpha), so the chart shows the
very test the decisions read.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from abtest.experiment import Metric
from analysis.report.figures import _BAD, _date_axis
from analysis.statistics.sequential import confidence_sequence


def _bounds(looks: Sequence[Mapping[str, Any]], margin: float, alpha: float) -> tuple[Any, Any]:
    estimate = np.array([float(look["estimate"]) for look in looks])
    variance = np.array([float(look["se"]) ** 2 for look in looks])
    tau2 = np.array([(margin * abs(float(look["control_mean"]))) ** 2 for look in looks])
    lower, upper = confidence_sequence(estimate=estimate, variance=variance, tau2=tau2,
                                       alpha=alpha)  # fmt: skip
    return np.where(np.isfinite(lower), lower, np.nan), np.where(np.isfinite(upper), upper, np.nan)


def rollout_figure(
    series: Mapping[str, Sequence[Mapping[str, Any]]],
    guardrails: Sequence[Metric],
    *,
    alpha: float,
    events: Sequence[tuple[str, str]] = (),
) -> Figure:
    """One panel per guardrail: the new variant's cumulative effect against control per day
    with its (1 - alpha) confidence sequence, a dashed line at the planned regression (the
    margin, in metric units at the last day's control mean) and a dotted vertical line at
    each of ``events`` (``(ISO day, label)``: step changes, pause, rollback, ship)."""
    panels = max(len(guardrails), 1)
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
        x = [np.datetime64(str(look["day"])) for look in looks]
        estimate = [float(look["estimate"]) for look in looks]
        lower, upper = _bounds(looks, margin, alpha)
        (line,) = ax.plot(x, estimate, marker="o", markersize=3, label="new − control")
        ax.fill_between(x, lower, upper, alpha=0.2, color=line.get_color(),
                        label=f"{1 - alpha:.0%} confidence sequence")  # fmt: skip
        ax.axhline(0, color="black", linewidth=0.8)
        harm = margin * abs(float(looks[-1]["control_mean"]))
        harm = -harm if metric.higher_is_better else harm
        if math.isfinite(harm):
            ax.axhline(harm, color=_BAD, linestyle="--", linewidth=0.9,
                       label=f"planned regression ({margin:.3g} relative)")  # fmt: skip
        for day, label in events:
            moment = np.datetime64(day[:10])
            ax.axvline(moment, color="#57606a", linestyle=":", linewidth=0.9)
            ax.text(moment, 1.0, f" {label}", rotation=90, va="top", fontsize=7,
                    transform=ax.get_xaxis_transform())  # fmt: skip
        worse = "down" if metric.higher_is_better else "up"
        ax.set_title(f"{metric.name}: cumulative effect of the new variant (worse is {worse})",
                     fontsize=9)  # fmt: skip
        ax.set_ylabel(metric.name)
        ax.legend(fontsize=7, loc="lower left")
        _date_axis(ax)
    figure.tight_layout()
    return figure


__all__ = ["rollout_figure"]
