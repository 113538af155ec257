"""The always-valid side of each metric row: which prior, which data, which tests.

`analysis.analyzer` builds the fixed-horizon row; this module adds what the verdict reads:

- **The prior, fixed before the data** (`stated_prior`): an explicit standardised
  ``mixing_sd``; else the plan's MDE (relative, or absolute in the primary metric's
  units); else the planned units per variant, turned into the standardised effect that
  sample detects with the rules' power (``minimum_detectable_effect_mean(std=1)``, so
  ``τ`` is the plan's MDE in SD units and needs no data at all); else
  `DEFAULT_MIXING_SD`, a standardised effect of 0.05 SD.  Each is a number stated before
  the experiment and stored in the settings; none is derived from the looks being tested.

  Why 0.05 SD without a plan: the boundary is tightest near ``n ≈ 2 r(alpha) / τ²``, about
  6,300 units per arm (a z statistic of 3.04 rejects there, at alpha 0.05), and degrades
  slowly on both sides: a million units per arm need z >= 3.62, 200 units per arm
  z >= 5.58.  A prior much narrower than the effects that occur is the costly mistake:
  with τ at 5 % of a 12.5 % conversion rate (the rules' ``minimum_effect`` as a prior),
  200 units per arm would need z >= 13.2, so a 300 % lift (z ≈ 9) would not be detected;
  hence the default is a standardised effect, not tied to ``minimum_effect``.
- **The data** (`sequential_row`): one look per day over the units whose per-unit
  observation window has closed (`analysis.data.daily`), each look's effect computed
  with the same function as the fixed-horizon row (proportions, means, ratios).
  Quantile metrics have no per-unit value to window: their test runs on every event so
  far, i.e. on exactly the fixed-horizon estimate.
- **Guardrails** (`margin_row`): always-valid harm and non-inferiority tests against the
  margin (`analysis.statistics.sequential_margin`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from abtest.errors import InvalidInput
from abtest.experiment import Metric, MetricType
from analysis.data.daily import daily_looks
from analysis.data.tables import Aggregates
from analysis.statistics.aggregates import PairedStats
from analysis.statistics.inference import mean_difference, proportion_difference, ratio_difference
from analysis.statistics.mixing import MixingPrior
from analysis.statistics.results import Effect
from analysis.statistics.sequential import SequentialResult, sequential_from_effects
from analysis.statistics.sequential_margin import SequentialMargin, sequential_margin_test

DEFAULT_MIXING_SD = 0.05


def stated_prior(
    *,
    mixing_sd: float | None,
    mde: float | None,
    relative_mde: bool,
    planned_units_per_variant: int | None,
    alpha: float,
    power: float,
) -> MixingPrior:
    """The mixing prior the settings state (see the module docstring for the order)."""
    if mixing_sd is not None:
        return MixingPrior(mixing_sd, "sd", "mixing_sd")
    if mde is not None:
        return MixingPrior(mde, "relative" if relative_mde else "absolute", "mde")
    if planned_units_per_variant is not None:
        from analysis.planning.power import minimum_detectable_effect_mean

        d = minimum_detectable_effect_mean(
            std=1.0, n_per_variant=planned_units_per_variant, alpha=alpha, power=power
        ).absolute
        return MixingPrior(float(d), "sd", "plan")
    return MixingPrior(DEFAULT_MIXING_SD, "sd", "default")


def metric_prior(
    stated: MixingPrior, *, primary: bool, primary_effect: Effect | None
) -> MixingPrior:
    """The prior of one metric: an absolute MDE is in the primary metric's units.

    For the other metrics it becomes the same standardised effect, ``mde / s`` with s
    the primary metric's per-unit standard deviation (a plug-in that converges, like the
    s inside z).

    Raises
    ------
    InvalidInput
        An absolute MDE with no usable primary estimate to scale it by.
    """
    if stated.unit != "absolute" or primary:
        return stated
    if primary_effect is None or not primary_effect.absolute_se > 0:
        raise InvalidInput("an absolute MDE needs the primary metric's spread to carry over "
                           "to other metrics", field="mde")  # fmt: skip
    design = 1 / primary_effect.n_control + 1 / primary_effect.n_variant
    sd = primary_effect.absolute_se / math.sqrt(design)
    return MixingPrior(stated.scale / sd, "sd", stated.source)


def window_text(window: timedelta) -> str:
    """``24 h``, ``30 min``, ``2.5 s``: the observation window in words."""
    seconds = window.total_seconds()
    for unit, size in (("h", 3600.0), ("min", 60.0)):
        if seconds >= size:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


def look_effect(
    metric_type: MetricType, level: float
) -> Callable[[PairedStats, PairedStats], Effect]:
    """The function from one look's (control, variant) aggregates to its effect, as the
    fixed-horizon row computes it for the metric's type (the guarded rollout's looks use
    it too)."""
    if metric_type is MetricType.RATIO:
        return lambda c, v: ratio_difference(control=c, variant=v, level=level)
    if metric_type is MetricType.BINOMIAL:
        return lambda c, v: proportion_difference(control=c.y, variant=v.y, level=level)
    return lambda c, v: mean_difference(control=c.y, variant=v.y, level=level)


def sequential_row(
    *,
    agg: Aggregates,
    metric: Metric,
    control: str,
    variant: str,
    prior: MixingPrior,
    alpha: float,
    full_effect: Effect | None,
) -> tuple[SequentialResult | None, Effect | None, str | None]:
    """The always-valid test of one metric and variant: result, last look's effect, note.

    The note says why the test is left out when it is (the result is then None).
    """
    if metric.type is MetricType.QUANTILE:
        if full_effect is None:
            return None, None, "no estimate to test"
        note = "event-level metric: every event so far, the data of the fixed-horizon estimate"
        return (sequential_from_effects([full_effect], prior=prior, alpha=alpha, note=note),
                full_effect, None)  # fmt: skip
    window = window_text(agg.observation_window)
    _, looks = daily_looks(agg, metric.name, control, variant)
    if not looks:
        return None, None, (f"no look yet: fewer than 2 units per arm have completed their "
                            f"{window} observation window")  # fmt: skip
    effect_of = look_effect(metric.type, 1 - alpha)
    effects = [effect_of(c, v) for c, v in looks]
    note = f"units observed for {window} after exposure, counted once that window has closed"
    return (sequential_from_effects(effects, prior=prior, alpha=alpha, note=note),
            effects[-1], None)  # fmt: skip


def margin_row(
    *, sequential: SequentialResult, last_effect: Effect, metric: Metric, margin: float
) -> SequentialMargin | None:
    """Always-valid harm and non-inferiority tests of a guardrail (None when undefined)."""
    if not (math.isfinite(sequential.tau2) and sequential.tau2 > 0):
        return None
    try:
        return sequential_margin_test(
            last_effect, margin=margin, tau2=sequential.tau2,
            higher_is_better=metric.higher_is_better, relative=True,
        )  # fmt: skip
    except InvalidInput:
        return None


def always_valid_fields(
    *,
    agg: Aggregates,
    metric: Metric,
    role: str,
    control: str,
    variant: str,
    alpha: float,
    margin: float,
    prior: MixingPrior,
    primary_effect: Effect | None,
    effect: Effect,
) -> dict[str, Any]:
    """The row's always-valid fields: ``sequential`` (or ``sequential_note``), margins."""
    try:
        own_prior = metric_prior(prior, primary=role == "primary", primary_effect=primary_effect)
    except InvalidInput as exc:
        return {"sequential_note": exc.message}
    sequential, last, note = sequential_row(
        agg=agg, metric=metric, control=control, variant=variant, prior=own_prior,
        alpha=alpha, full_effect=effect,
    )  # fmt: skip
    out: dict[str, Any] = {"sequential": sequential, "sequential_note": note}
    if role == "guardrail" and sequential is not None and last is not None:
        out["sequential_margin"] = margin_row(
            sequential=sequential, last_effect=last, metric=metric,
            margin=margin,
        )  # fmt: skip
    return out


__all__ = [
    "always_valid_fields",
    "look_effect",
    "margin_row",
    "metric_prior",
    "sequential_row",
    "stated_prior",
    "window_text",
]
