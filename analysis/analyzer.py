"""One call from exposure and outcome data to effects, tests and a verdict.

`analyze` joins and aggregates (`analysis.data.join`, in DuckDB), then runs the statistics of
the sibling modules on the aggregates only: Welch / z effects with absolute and relative
CIs, CUPED when a pre-exposure covariate exists, SRM, Holm (or BH) across metrics and
variants, Bayesian chance to beat control, non-inferiority of guardrails, the always-valid
tests of `analysis.decision.always_valid` (mSPRT with a prior fixed by the plan, on the units whose
observation window has closed), and finally `analysis.decision.decide`.

Multiple comparisons: the fixed-horizon p-values of the primary and secondary metrics by
treatment variants form one family, the guardrails another (shown, not used for the
verdict); the verdict's own always-valid families are Holm-adjusted in `decide`.
A metric without events gives its row with "no events yet"; the result counts the outcome
events it dropped and lists the event names no metric reads.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from abtest.catalogue import Lookup, read_catalogue, snapshot_lookup
from abtest.errors import InvalidInput, NotFound
from abtest.experiment import Metric, MetricType
from analysis.data.daily import daily_looks
from analysis.data.join import join_and_aggregate, parse_metric
from analysis.data.load import Source
from analysis.data.metric_spec import source_metrics
from analysis.data.tables import (
    DEFAULT_COVARIATE_WINDOW,
    Aggregates,
    MetricAggregates,
    observation_window_for,
)
from analysis.decision.always_valid import always_valid_fields, stated_prior
from analysis.decision.data_checks import data_warnings
from analysis.decision.result import AnalysisResult, AnalysisSettings
from analysis.decision.rows import NO_EVENTS, MetricRow
from analysis.decision.rules import DecisionRules, decide
from analysis.effects import fixed_horizon_effect
from analysis.segments import DEFAULT_MIN_SEGMENT_UNITS, check_min_units, segment_table
from analysis.statistics.inference import (
    non_inferiority,
)
from analysis.statistics.mixing import MixingPrior
from analysis.statistics.multiple import adjust_p_values
from analysis.statistics.results import Effect
from analysis.statistics.srm import srm_test

__all__ = [
    "DEFAULT_GUARDRAIL_MARGIN",
    "AnalysisResult",
    "AnalysisSettings",
    "MetricRow",
    "analyze",
    "analyze_experiment",
    "as_metric",
    "daily_looks",
]

if TYPE_CHECKING:
    from abtest.experiment import Experiment

MetricSpec = str | Metric | Mapping[str, Any]
DEFAULT_GUARDRAIL_MARGIN = 0.05
_TYPES = frozenset(t.value for t in MetricType)


def as_metric(spec: MetricSpec, where: str, catalogue: Lookup | None = None) -> Metric:
    """A metric from ``"name:type"``, a `Metric`, or a catalogue name (``"revenue"``,
    ``"latency_ms:p95"``) or reference (``{"catalogue": "revenue", "version": 2}``)
    resolved with ``catalogue`` (`abtest.catalogue.snapshot_lookup` / `read_catalogue`)."""
    if isinstance(spec, Metric):
        return spec
    if isinstance(spec, str) and (spec.rpartition(":")[2] in _TYPES or catalogue is None):
        return parse_metric(spec, field_name=where)
    reference = {"catalogue": spec} if isinstance(spec, str) else spec
    if not isinstance(reference, Mapping) or catalogue is None:
        raise InvalidInput(f"{where}: expected 'name:type', a Metric or, with a catalogue, "
                           f"a catalogue name, got {spec!r}", where)  # fmt: skip
    name, version, margin = (reference.get(k) for k in ("catalogue", "version", "margin"))
    numeric = margin is None or (isinstance(margin, int | float) and not isinstance(margin, bool))
    if (
        not isinstance(name, str)
        or not (version is None or isinstance(version, int))
        or not (numeric)
    ):
        raise InvalidInput(
            f"{where}: a catalogue reference is {{catalogue, version?, margin?}}", where
        )
    try:
        definition, found = catalogue(name, version)
    except NotFound as exc:
        hint = " (nor NAME:TYPE)" if isinstance(spec, str) else ""
        raise InvalidInput(f"{where}: {exc.message}{hint}", where) from None
    return definition.as_metric(found, None if margin is None else float(margin))


def _catalogue(catalogue: Lookup | Mapping[str, Any] | str | Path | None) -> Lookup | None:
    if catalogue is None or callable(catalogue):
        return catalogue
    if isinstance(catalogue, Mapping):
        return snapshot_lookup(catalogue)
    return read_catalogue(catalogue)


def analyze(
    exposures: Source,
    outcomes: Source,
    *,
    metrics: Sequence[MetricSpec],
    control: str = "control",
    experiment: str | None = None,
    guardrails: Sequence[MetricSpec] = (),
    weights: Mapping[str, float] | None = None,
    alpha: float = 0.05,
    correction: str = "holm",
    attribution_window: timedelta | None = None,
    covariate_window: timedelta | None = DEFAULT_COVARIATE_WINDOW,
    covariates: Source | None = None,
    planned_units_per_variant: int | None = None,
    mde: float | None = None,
    relative_mde: bool = False,
    mixing_sd: float | None = None,
    observation_window: timedelta | None = None,
    as_of: datetime | None = None,
    rules: DecisionRules | None = None,
    quantile_method: str = "bootstrap",
    n_boot: int = 1000,
    seed: int = 0,
    engine: str = "duckdb",
    spark_master: str | None = None,
    segment: str | None = None,
    min_segment_units: int = DEFAULT_MIN_SEGMENT_UNITS,
    catalogue: Lookup | Mapping[str, Any] | str | Path | None = None,
) -> AnalysisResult:
    """Analyse one experiment: the first metric is primary, the others secondary.

    Parameters
    ----------
    exposures, outcomes : DataFrame or path
        See `analysis.data.load` for the schemas and accepted sources.
    metrics : sequence of "name:type", Metric, or catalogue name or reference
        ``purchase:binomial``, ``revenue:sum``, ``clicks/searches:ratio``,
        ``latency_ms:p95:quantile``…; with ``catalogue``, also ``"revenue"`` or
        ``{"catalogue": "revenue", "version": 2}`` (`as_metric`).
    control : str
        Control variant key.
    guardrails : sequence of "name:type" or Metric
        Tested for non-inferiority with the Metric's relative ``margin`` (default 5%)
        and direction.
    weights : mapping, optional
        Configured weights for the SRM test; default equal over the variants seen.
    alpha, correction
        Significance level; "holm" (default) or "bh" for the fixed-horizon p-values.
    attribution_window, covariate_window, covariates
        See `analysis.data.join.aggregate`.
    planned_units_per_variant : int, optional
        The plan: the sample at which a test without an always-valid difference ends
        as ``no_difference``; without ``mde`` or ``mixing_sd`` it also fixes the mSPRT
        prior (`analysis.decision.always_valid.stated_prior`).
    mde, relative_mde
        The plan's minimum detectable effect of the primary metric (absolute, or a
        fraction of the control mean with ``relative_mde``): the mSPRT prior's scale
        and the effect the power check sizes the test for.
    mixing_sd : float, optional
        A stated prior instead: the mSPRT mixing SD as a standardised effect (in units
        of each metric's per-unit SD).
    observation_window : timedelta, optional
        Per-unit observation window of the sequential looks; default the attribution
        window, else 24 h (`analysis.data.daily`).
    as_of : datetime, optional
        The time the data are complete up to, for live data (the service passes the time
        of the analysis); default, and never less than, the last timestamp in the data.
        A unit enters the sequential looks once its observation window has closed by then.
    rules : DecisionRules, optional
        Decision thresholds (its ``alpha`` is replaced by ``alpha``).
    quantile_method, n_boot, seed
        Quantile metrics: "bootstrap" (unit-clustered, ``n_boot`` replicates from
        ``seed``) or "asymptotic" (O(events)); see `analysis.statistics.quantile`.
    engine, spark_master
        Where the join runs: "duckdb" (default, in this process) or "spark" (pyspark,
        ``pip install 'abtest[spark]'``; the active session, else a new one on
        ``spark_master``, default ``local[*]``).  Same rules, same numbers
        (`analysis.data.engines`).
    segment, min_segment_units
        An attribute kept with the exposures (``country``): every metric per value of it,
        with p-values adjusted across segments, Cochran's Q heterogeneity test, and no
        number for a segment with fewer than ``min_segment_units`` units in an arm
        (`analysis.segments`); in the result's ``segments``.
    catalogue : catalogue snapshot, its file, or a lookup, optional
        Resolves catalogue names in ``metrics`` and ``guardrails``: the ``catalogue.json``
        that ``abtest export`` writes, or `abtest.catalogue.snapshot_lookup`.  A catalogue
        metric brings its type, direction, cap and attribution window.

    Raises
    ------
    InvalidInput
        Missing columns, empty data, an unknown control or experiment, bad settings; the
        message and ``field`` name the problem.  A metric without events is not an
        error: its row says "no events yet".
    """
    _check_settings(alpha=alpha, correction=correction, quantile_method=quantile_method,
                    planned=planned_units_per_variant, mde=mde, relative_mde=relative_mde,
                    mixing_sd=mixing_sd, observation_window=observation_window)  # fmt: skip
    if not metrics:
        raise InvalidInput("at least one metric is required", "metrics")
    if segment is not None:
        check_min_units(min_segment_units)
    lookup = _catalogue(catalogue)
    primary = [as_metric(m, f"metrics[{i}]", lookup) for i, m in enumerate(metrics)]
    guards = [as_metric(m, f"guardrails[{i}]", lookup) for i, m in enumerate(guardrails)]
    rules = replace(rules or DecisionRules(), alpha=alpha)
    window = observation_window_for([*primary, *guards], observation_window, attribution_window)
    prior = stated_prior(
        mixing_sd=mixing_sd, mde=mde, relative_mde=relative_mde,
        planned_units_per_variant=planned_units_per_variant, alpha=alpha, power=rules.power,
    )  # fmt: skip
    settings = AnalysisSettings(
        alpha=alpha,
        correction=correction,
        attribution_window_hours=None if attribution_window is None
        else attribution_window.total_seconds() / 3600,
        covariate_window_days=None if covariate_window is None or covariates is not None
        else covariate_window.total_seconds() / 86400,
        quantile_method=quantile_method, n_boot=n_boot, seed=seed, rules=rules,
        metrics=tuple(primary), guardrails=tuple(guards),
        control=control, experiment=experiment,
        weights=None if weights is None else tuple((k, float(v)) for k, v in weights.items()),
        planned_units_per_variant=planned_units_per_variant, mde=mde,
        relative_mde=relative_mde, mixing_sd=mixing_sd,
        observation_window_hours=window.total_seconds() / 3600, sequential_prior=prior,
        as_of=None if as_of is None else as_of.isoformat(),
    )  # fmt: skip
    agg = join_and_aggregate(
        exposures, outcomes, metrics=[*primary, *guards], experiment=experiment,
        attribution_window=attribution_window, covariate_window=covariate_window,
        covariates=covariates, observation_window=window, as_of=as_of, engine=engine,
        spark_master=spark_master,
    )  # fmt: skip
    if control not in agg.units:
        raise InvalidInput(
            f"control '{control}' not found in the exposures (variants: "
            f"{', '.join(agg.units) or 'none'})",
            "control",
        )
    order = list(weights) if weights else sorted(agg.units)
    unknown = [v for v in agg.units if weights and v not in weights]
    if unknown:
        raise InvalidInput(f"exposures hold variant(s) {unknown} that have no weight", "weights")
    variants = [control, *[v for v in order if v != control and v in agg.units]]
    units = {v: agg.units[v] for v in variants}
    srm = srm_test(observed=units, weights=weights or dict.fromkeys(units, 1.0),
                   threshold=rules.srm_threshold)  # fmt: skip
    rows: list[MetricRow] = []
    primary_effects: dict[str, Any] = {}
    for role_metrics, role in ((primary[:1], "primary"), (primary[1:], "secondary"),
                               (guards, "guardrail")):  # fmt: skip
        for metric in role_metrics:
            for variant in variants[1:]:
                row = _row(agg=agg, data=agg.metrics[metric.name], role=role, control=control,
                           variant=variant, settings=settings, prior=prior,
                           primary_effect=primary_effects.get(variant))  # fmt: skip
                if role == "primary":
                    primary_effects[variant] = row.effect
                rows.append(row)
    rows = _adjust(rows, correction, alpha)
    checks = data_warnings(
        events=agg.events, undefined=agg.undefined_metrics,
        defined=sorted({n for m in [*primary, *guards] for n in source_metrics(m)}),
        rules=rules,
    )  # fmt: skip
    decision = decide(
        control=control, units=units, excluded_units=agg.excluded_units, srm=srm, rows=rows,
        primary=primary[0].name, days_elapsed=agg.days,
        planned_units_per_variant=planned_units_per_variant, rules=rules, mde=mde,
        relative_mde=relative_mde, observation_days=window.total_seconds() / 86400,
        data_warnings=checks,
    )  # fmt: skip
    segments = None if segment is None else segment_table(
        exposures, outcomes, attribute=segment, experiment=agg.experiment, control=control,
        variants=variants, metrics=[(primary[0], "primary"),
                                     *((m, "secondary") for m in primary[1:]),
                                     *((g, "guardrail") for g in guards)],
        alpha=alpha, correction=correction, min_units=min_segment_units,
        attribution_window=attribution_window, covariate_window=covariate_window,
        covariates=covariates, quantile_method=quantile_method, n_boot=n_boot, seed=seed,
        engine=engine, spark_master=spark_master,
    )  # fmt: skip
    return AnalysisResult(
        experiment=agg.experiment, control=control, units=units,
        excluded_units=agg.excluded_units, srm=srm, rows=tuple(rows), decision=decision,
        settings=settings, config_versions=agg.config_versions, aggregates=agg,
        events=agg.events, undefined_metrics=agg.undefined_metrics, segments=segments,
    )  # fmt: skip


def _check_settings(
    *,
    alpha: float,
    correction: str,
    quantile_method: str,
    planned: int | None,
    mde: float | None,
    relative_mde: bool,
    mixing_sd: float | None,
    observation_window: timedelta | None,
) -> None:
    """Refuse a setting the analysis cannot run with, naming it."""
    if not 0 < alpha < 0.5:
        raise InvalidInput(f"alpha must lie in (0, 0.5), got {alpha}", "alpha")
    if correction not in ("holm", "bh"):
        raise InvalidInput(f"correction must be 'holm' or 'bh', got {correction!r}", "correction")
    if quantile_method not in ("bootstrap", "asymptotic"):
        raise InvalidInput(
            f"quantile_method must be 'bootstrap' or 'asymptotic', got {quantile_method!r}",
            "quantile_method",
        )
    integer = isinstance(planned, numbers.Integral) and not isinstance(planned, bool)
    if planned is not None and not (integer and planned >= 2):
        raise InvalidInput(f"planned_units_per_variant must be an integer >= 2, got {planned!r}",
                           "planned_units_per_variant")  # fmt: skip
    for name, value in (("mde", mde), ("mixing_sd", mixing_sd)):
        if value is not None and not (isinstance(value, int | float) and 0 < value < math.inf):
            raise InvalidInput(f"{name} must be a finite number > 0, got {value!r}", name)
    if relative_mde and mde is None:
        raise InvalidInput("relative_mde needs an mde", "relative_mde")
    if observation_window is not None and observation_window <= timedelta(0):
        raise InvalidInput("observation_window must be > 0", "observation_window")


def analyze_experiment(
    experiment: Experiment, exposures: Source, outcomes: Source, **settings: Any
) -> AnalysisResult:
    """`analyze` with metrics, guardrails, control, weights and plan from the definition.

    The plan is ``planned_units_per_variant`` and the relative
    ``minimum_detectable_effect``: unless given explicitly, it is the ``mde`` that fixes
    the always-valid prior, and (unless ``rules`` are given) the effect the verdict's
    sample-size check powers for.

    Raises
    ------
    InvalidInput
        The experiment has no primary metric, or any `analyze` error.
    """
    if experiment.primary_metric is None:
        raise InvalidInput(f"experiment '{experiment.key}' has no primary metric", "primary_metric")
    if settings.get("planned_units_per_variant") is None:
        settings["planned_units_per_variant"] = experiment.planned_units_per_variant
    if experiment.minimum_detectable_effect is not None:
        if "rules" not in settings:
            settings["rules"] = DecisionRules(minimum_effect=experiment.minimum_detectable_effect)
        if settings.get("mde") is None:
            settings.update(mde=experiment.minimum_detectable_effect, relative_mde=True)
    return analyze(
        exposures, outcomes,
        metrics=[experiment.primary_metric, *experiment.secondary_metrics],
        guardrails=list(experiment.guardrail_metrics), control=experiment.control,
        experiment=experiment.key, weights=experiment.weights, **settings,
    )  # fmt: skip


# -- one row ------------------------------------------------------------------------------
def _row(
    *,
    agg: Aggregates,
    data: MetricAggregates,
    role: str,
    control: str,
    variant: str,
    settings: AnalysisSettings,
    prior: MixingPrior,
    primary_effect: Effect | None,
) -> MetricRow:
    metric = data.metric
    level = 1 - settings.alpha
    base: dict[str, Any] = {
        "metric": metric.name, "type": metric.type, "role": role, "variant": variant,
        "higher_is_better": metric.higher_is_better,
    }  # fmt: skip
    n_c, n_v = agg.units[control], agg.units[variant]
    missing = agg.events_missing(metric)
    if missing:
        named = "" if missing == [metric.name] else f" for {', '.join(map(repr, missing))}"
        return MetricRow(
            **base, n_control=n_c, n_variant=n_v, control_mean=None, variant_mean=None,
            effect=None, p_value=None, error=NO_EVENTS + named, no_events=True,
        )  # fmt: skip
    try:
        fixed = fixed_horizon_effect(
            data, control=control, variant=variant, level=level,
            quantile_method=settings.quantile_method, n_boot=settings.n_boot, seed=settings.seed,
        )  # fmt: skip
        effect = fixed.effect
        if fixed.n_control is not None and fixed.n_variant is not None:
            n_c, n_v = fixed.n_control, fixed.n_variant
        extra: dict[str, Any] = {}
        if fixed.bayesian is not None:
            extra["bayesian"] = fixed.bayesian
        if fixed.cuped is not None:
            extra["cuped"] = fixed.cuped
        raw = fixed.unadjusted
        extra.update(always_valid_fields(
            agg=agg, metric=metric, role=role, control=control, variant=variant,
            alpha=settings.alpha, margin=metric.margin or DEFAULT_GUARDRAIL_MARGIN, prior=prior,
            primary_effect=primary_effect, effect=raw,
        ))  # fmt: skip
        if role == "guardrail":
            try:
                extra["non_inferiority"] = non_inferiority(
                    effect, margin=metric.margin or DEFAULT_GUARDRAIL_MARGIN,
                    higher_is_better=metric.higher_is_better, relative=True,
                    alpha=settings.alpha,
                )  # fmt: skip
            except InvalidInput as exc:
                extra["error"] = f"non-inferiority: {exc.message}"
        return MetricRow(
            **base, n_control=n_c, n_variant=n_v, control_mean=raw.control_mean,
            variant_mean=raw.variant_mean, effect=effect, p_value=effect.p_value, **extra,
        )  # fmt: skip
    except InvalidInput as exc:
        return MetricRow(
            **base, n_control=n_c, n_variant=n_v, control_mean=None, variant_mean=None,
            effect=None, p_value=None, error=exc.message,
        )  # fmt: skip


def _adjust(rows: list[MetricRow], correction: str, alpha: float) -> list[MetricRow]:
    out = list(rows)
    for family in (("primary", "secondary"), ("guardrail",)):
        index = [i for i, r in enumerate(rows) if r.role in family]
        raw = np.array([np.nan if rows[i].p_value is None else rows[i].p_value for i in index])
        adjusted = adjust_p_values(raw, method=correction) if index else raw
        for i, p in zip(index, adjusted, strict=True):
            p_adj = None if np.isnan(p) else float(p)
            out[i] = replace(rows[i], adjusted_p_value=p_adj,
                             significant=p_adj is not None and p_adj < alpha)  # fmt: skip
    return out
