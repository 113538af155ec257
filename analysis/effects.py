"""One metric's fixed-horizon effect of one variant against control, from its aggregates.

Shared by the whole-experiment rows (`analysis.analyzer`) and the per-segment rows
(`analysis.segments`), so that a segment's number is computed exactly as the overall one:
Welch / z effects with Fieller relative CIs, CUPED when a pre-exposure covariate varies,
the unit-clustered quantile difference, and the Bayesian summary.
"""

from __future__ import annotations

from typing import NamedTuple

from abtest.experiment import MetricType
from analysis.data.join import quantile_level
from analysis.data.tables import MetricAggregates
from analysis.statistics.aggregates import PairedStats, SampleStats
from analysis.statistics.bayesian import BayesianResult, bayesian_binomial, bayesian_mean
from analysis.statistics.cuped import CupedResult, cuped
from analysis.statistics.inference import mean_difference, proportion_difference, ratio_difference
from analysis.statistics.quantile import quantile_difference
from analysis.statistics.results import Effect


class FixedHorizon(NamedTuple):
    """The effect (CUPED-adjusted when CUPED applies), the unadjusted one, and the extras."""

    effect: Effect
    unadjusted: Effect
    n_control: int | None  # units with values, for quantile metrics; else None
    n_variant: int | None
    bayesian: BayesianResult | None
    cuped: CupedResult | None


def fixed_horizon_effect(
    data: MetricAggregates,
    *,
    control: str,
    variant: str,
    level: float,
    quantile_method: str,
    n_boot: int,
    seed: int,
) -> FixedHorizon:
    """The fixed-horizon comparison of ``variant`` with ``control`` on one metric.

    Raises
    ------
    InvalidInput
        The data cannot give an effect (too few units, no variance...); the message says why.
    """
    metric = data.metric
    if metric.type is MetricType.QUANTILE:
        assert data.samples is not None
        c, v = data.samples[control], data.samples[variant]
        q = quantile_difference(
            control_values=c.values, control_units=c.units, variant_values=v.values,
            variant_units=v.units, q=quantile_level(metric), n_boot=n_boot,
            method=quantile_method,  # type: ignore[arg-type]
            seed=seed, level=level,
        )  # fmt: skip
        return FixedHorizon(q.effect, q.effect, c.n_units, v.n_units, None, None)
    if metric.type is MetricType.RATIO:
        pc, pv = data.stats[control], data.stats[variant]
        assert isinstance(pc, PairedStats) and isinstance(pv, PairedStats)
        effect = ratio_difference(control=pc, variant=pv, level=level)
        return FixedHorizon(effect, effect, None, None, None, None)
    sc, sv = data.stats[control], data.stats[variant]
    assert isinstance(sc, SampleStats) and isinstance(sv, SampleStats)
    if metric.type is MetricType.BINOMIAL:
        effect = proportion_difference(control=sc, variant=sv, level=level)
        bayes = bayesian_binomial(control=sc, variant=sv, higher_is_better=metric.higher_is_better)
    else:
        effect = mean_difference(control=sc, variant=sv, level=level)
        bayes = bayesian_mean(control=sc, variant=sv, higher_is_better=metric.higher_is_better)
    cov = data.covariate
    if cov is not None and cov[control].x.variance + cov[variant].x.variance > 0:
        adjusted = cuped(control=cov[control], variant=cov[variant], level=level)
        return FixedHorizon(adjusted.effect, adjusted.unadjusted, None, None, bayes, adjusted)
    return FixedHorizon(effect, effect, None, None, bayes, None)


__all__ = ["FixedHorizon", "fixed_horizon_effect"]
