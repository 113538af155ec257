"""A guarded rollout's looks at its guardrails, from the joined aggregates. Pure.

`guardrail_looks` turns an `Aggregates` (every unit since the rollout began, each observed
for the plan's observation window) into what `analysis.decision.rollout.decide_rollout`
reads: per guardrail, the new variant's effect against control at this check, and the
same effect at the end of each day (the timeline's confidence sequence per day).  The
effect of a look is computed as the fixed-horizon row computes it for the metric's type
(`analysis.decision.always_valid.look_effect`).  Quantile guardrails (``latency_ms:p95``)
have no per-unit value to observe over a window: their look is every event so far, with
the unit-clustered asymptotic SE (`analysis.statistics.quantile`), and no daily series.
"""

from __future__ import annotations

from dataclasses import dataclass

from abtest.errors import InvalidInput
from abtest.experiment import Experiment, Metric, MetricType
from analysis.data.daily import daily_looks
from analysis.data.metric_spec import quantile_level
from analysis.data.tables import Aggregates
from analysis.decision.always_valid import look_effect, window_text
from analysis.decision.rollout import GuardrailLook
from analysis.statistics.quantile import quantile_difference
from analysis.statistics.results import Effect
from analysis.statistics.sequential_margin import SequentialMargin, sequential_margin_test


@dataclass(frozen=True)
class GuardrailSeries:
    """One guardrail's cumulative effect at the end of each day (its looks, in order)."""

    metric: Metric
    days: tuple[str, ...]
    effects: tuple[Effect, ...]


def _guardrails(experiment: Experiment) -> list[Metric]:
    plan = experiment.rollout
    assert plan is not None
    by_name = {m.name: m for m in experiment.guardrail_metrics}
    return [by_name[name] for name in plan.guardrails]


def _quantile_look(agg: Aggregates, metric: Metric, control: str, variant: str) -> GuardrailLook:
    samples = agg.metrics[metric.name].samples or {}
    c, v = samples.get(control), samples.get(variant)
    if c is None or v is None or c.n_units < 2 or v.n_units < 2:
        return GuardrailLook(metric, None, "fewer than 2 units with events per arm")
    try:
        result = quantile_difference(
            control_values=c.values, control_units=c.units, variant_values=v.values,
            variant_units=v.units, q=quantile_level(metric), method="asymptotic",
        )  # fmt: skip
    except InvalidInput as exc:
        return GuardrailLook(metric, None, exc.message)
    return GuardrailLook(metric, result.effect)


def guardrail_looks(
    agg: Aggregates | None, experiment: Experiment, *, note: str = ""
) -> tuple[list[GuardrailLook], list[GuardrailSeries]]:
    """Each guardrail's look at this check and its daily series (see the module docstring).

    ``agg`` None (no data yet): every look is empty, with ``note`` as its reason.
    """
    plan = experiment.rollout
    assert plan is not None
    control, variant = experiment.control, plan.variant
    looks: list[GuardrailLook] = []
    series: list[GuardrailSeries] = []
    for metric in _guardrails(experiment):
        if agg is None or metric.name not in agg.metrics:
            looks.append(GuardrailLook(metric, None, note or "no data yet"))
            continue
        if metric.type is MetricType.QUANTILE:
            looks.append(_quantile_look(agg, metric, control, variant))
            continue
        days, arms = daily_looks(agg, metric.name, control, variant)
        if not arms:
            window = window_text(agg.observation_window)
            looks.append(GuardrailLook(metric, None, f"fewer than 2 units per arm observed "
                                                     f"for their {window} yet"))  # fmt: skip
            continue
        effect_of = look_effect(metric.type, 1 - plan.alpha)
        effects = tuple(effect_of(c, v) for c, v in arms)
        looks.append(GuardrailLook(metric, effects[-1]))
        series.append(GuardrailSeries(metric, tuple(str(d) for d in days), effects))
    return looks, series


def guardrail_margin_tests(
    agg: Aggregates, experiment: Experiment, *, level: float = 0.95
) -> list[tuple[str, str, SequentialMargin]]:
    """The always-valid margin test of each guardrail with a margin and each variant at
    the latest daily look (what `analysis.statistics.health.guardrail_regression` reads
    for an experiment without a rollout plan).

    The prior is fixed by the margin as a guarded rollout's is (``τ = margin · |control
    mean|``, `analysis.decision.rollout`), so it needs no analysis settings; quantile
    guardrails and guardrails without a look yet are left out.
    """
    out = []
    for metric in experiment.guardrail_metrics:
        if not metric.margin or metric.type is MetricType.QUANTILE:
            continue
        if metric.name not in agg.metrics:
            continue
        for variant in experiment.variant_keys:
            if variant == experiment.control:
                continue
            _, arms = daily_looks(agg, metric.name, experiment.control, variant)
            if not arms:
                continue
            effect = look_effect(metric.type, level)(*arms[-1])
            tau2 = (metric.margin * abs(effect.control_mean)) ** 2
            if not tau2 > 0:
                continue
            try:
                test = sequential_margin_test(effect, margin=metric.margin, tau2=tau2,
                                              higher_is_better=metric.higher_is_better,
                                              relative=True)  # fmt: skip
            except InvalidInput:  # no relative effect (a control mean of 0): no test
                continue
            out.append((metric.name, variant, test))
    return out


__all__ = ["GuardrailSeries", "guardrail_looks", "guardrail_margin_tests"]
