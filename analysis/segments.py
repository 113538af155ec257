"""Each metric per segment value ("did it hurt one country?"), with the heterogeneity test.

A unit's segment is the value of the attribute (``country``, ``platform``, ...) at its first
exposure, as kept by the service (`abtest.attributes`); a unit without it is in the segment
"(not set)".  For each segment value the exposures and outcomes of its units go through the
same join (`analysis.data.join.aggregate`) and the same fixed-horizon effect
(`analysis.effects`) as the whole experiment, so a segment's number means what the overall
one means.

Three safeguards, because slicing invites false discoveries:

- **minimum size**: a segment shows no number for a variant (not even its unit counts)
  unless it has at least ``min_units`` units in control and in that variant; its row says
  why.  Small segments give wild estimates, and hiding them also keeps tiny groups of
  users from being singled out.
- **multiple comparisons across segments**: the p-values of one metric and variant over
  its segments form a family, adjusted with the analysis's ``correction``: Holm (1979)
  step-down by default (family-wise error, any dependence), or Benjamini & Hochberg (1995)
  (false discovery rate), `analysis.statistics.multiple.adjust_p_values`.  The confidence
  intervals are per segment (not simultaneous).
- **heterogeneity test**: whether the effect differs across segments at all is one test,
  Cochran's Q with I² over the per-segment absolute effects and their standard errors
  (`analysis.statistics.heterogeneity`), reported per metric and variant.  A significant
  Q says the segments differ; a single significant segment under a non-significant Q is
  weak evidence.

At most ``max_segments`` segment values (the largest by units) are listed; the table says
how many more there were.  Cost: one join per listed segment, each over that segment's
units only.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Final

import numpy as np

from abtest.errors import InvalidInput
from abtest.experiment import Metric
from analysis.data.join import aggregate
from analysis.data.load import (
    Source,
    connect,
    register_covariates,
    register_exposures,
    register_outcomes,
)
from analysis.data.tables import Aggregates
from analysis.decision.rows import NO_EVENTS
from analysis.decision.segment_table import (
    SegmentComparison,
    SegmentRow,
    SegmentTable,
)
from analysis.effects import fixed_horizon_effect
from analysis.statistics.heterogeneity import cochran_q
from analysis.statistics.multiple import adjust_p_values

if TYPE_CHECKING:
    import duckdb

DEFAULT_MIN_SEGMENT_UNITS: Final = 100
MAX_SEGMENTS: Final = 50


def check_min_units(min_units: object) -> int:
    """``min_units`` if it is an integer >= 1, else `InvalidInput` naming it."""
    if isinstance(min_units, bool) or not isinstance(min_units, int) or min_units < 1:
        raise InvalidInput(f"min_segment_units must be an integer >= 1, got {min_units!r}",
                           "min_segment_units")  # fmt: skip
    return min_units


def segment_table(
    exposures: Source,
    outcomes: Source,
    *,
    attribute: str,
    experiment: str,
    control: str,
    variants: Sequence[str],
    metrics: Sequence[tuple[Metric, str]],
    alpha: float,
    correction: str,
    min_units: int = DEFAULT_MIN_SEGMENT_UNITS,
    max_segments: int = MAX_SEGMENTS,
    attribution_window: timedelta | None = None,
    covariate_window: timedelta | None = None,
    covariates: Source | None = None,
    quantile_method: str = "bootstrap",
    n_boot: int = 1000,
    seed: int = 0,
) -> SegmentTable:
    """Every metric (with its role) of every treatment variant, per value of ``attribute``.

    ``variants`` lists control first, then the treatment variants, as the overall
    analysis found them; the other settings are the overall analysis's own.

    Raises
    ------
    InvalidInput
        A bad attribute name or ``min_units``, or exposures none of which carries the
        attribute (field ``segment``).
    """
    check_min_units(min_units)
    con = connect()
    try:
        register_exposures(con, exposures, name="segment_exposures", segment=attribute)
        register_outcomes(con, outcomes, name="segment_outcomes")
        if covariates is not None:
            register_covariates(con, covariates)
        sizes = _sizes(con, experiment)
        if set(sizes) <= {None}:
            raise InvalidInput(
                f"no exposure of '{experiment}' carries the attribute '{attribute}'", "segment"
            )
        order = sorted(sizes, key=lambda s: (-sum(sizes[s].values()), s is None, s or ""))
        listed, omitted = order[:max_segments], max(0, len(order) - max_segments)
        per_segment: dict[str | None, Aggregates | None] = {}
        for value in listed:
            big_enough = sizes[value].get(control, 0) >= min_units and any(
                sizes[value].get(v, 0) >= min_units for v in variants[1:]
            )
            per_segment[value] = None
            if big_enough:
                per_segment[value] = _aggregate_segment(
                    con, value, experiment=experiment, metrics=metrics,
                    attribution_window=attribution_window, covariate_window=covariate_window,
                    covariates=covariates is not None,
                )  # fmt: skip
    finally:
        con.close()
    comparisons = []
    for metric, role in metrics:
        for variant in variants[1:]:
            rows = []
            for value in listed:
                counts = sizes[value]
                n_c, n_v = counts.get(control, 0), counts.get(variant, 0)
                agg = per_segment[value]
                if agg is None or n_c < min_units or n_v < min_units:
                    rows.append(SegmentRow(
                        value, None, None, below_minimum=True,
                        note=f"fewer than {min_units:,} units in control or {variant}: not shown",
                    ))  # fmt: skip
                    continue
                rows.append(_segment_row(
                    agg, metric, value, control=control, variant=variant, level=1 - alpha,
                    quantile_method=quantile_method, n_boot=n_boot, seed=seed,
                ))  # fmt: skip
            comparisons.append(_compare(metric, role, variant, rows, correction=correction,
                                        alpha=alpha))  # fmt: skip
    return SegmentTable(
        attribute=attribute, min_units=min_units, correction=correction, alpha=alpha,
        comparisons=tuple(comparisons), segments=tuple(listed), max_segments=max_segments,
        omitted=omitted,
    )  # fmt: skip


def _sizes(con: duckdb.DuckDBPyConnection, experiment: str) -> dict[str | None, dict[str, int]]:
    """Units per segment and variant: first exposure's segment and variant, crossovers out."""
    rows = con.execute(
        "SELECT segment, variant, count(*) FROM (SELECT unit_id, "
        "arg_min_null(segment, ts) AS segment, arg_min(variant, ts) AS variant, "
        "count(DISTINCT variant) AS seen FROM segment_exposures WHERE experiment = ? "
        "GROUP BY unit_id) WHERE seen = 1 GROUP BY ALL",
        [experiment],
    ).fetchall()
    sizes: dict[str | None, dict[str, int]] = {}
    for value, variant, n in rows:
        sizes.setdefault(None if value is None else str(value), {})[str(variant)] = int(n)
    return sizes


def _aggregate_segment(
    con: duckdb.DuckDBPyConnection,
    value: str | None,
    *,
    experiment: str,
    metrics: Sequence[tuple[Metric, str]],
    attribution_window: timedelta | None,
    covariate_window: timedelta | None,
    covariates: bool,
) -> Aggregates:
    """The overall join restricted to the units whose first exposure is in ``value``."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE exposures AS SELECT e.unit_id, e.experiment, e.variant, "
        "e.ts, e.config_version FROM segment_exposures AS e JOIN (SELECT unit_id FROM "
        "segment_exposures WHERE experiment = ? GROUP BY unit_id "
        "HAVING arg_min_null(segment, ts) IS NOT DISTINCT FROM ?) USING (unit_id) "
        "WHERE e.experiment = ?",
        [experiment, value, experiment],
    )
    # Only these units' events can count; filtering first keeps each join small.
    con.execute(
        "CREATE OR REPLACE TEMP TABLE outcomes AS SELECT * FROM segment_outcomes "
        "WHERE unit_id IN (SELECT unit_id FROM exposures)"
    )
    return aggregate(
        con,
        metrics=[m for m, _ in metrics], experiment=experiment,
        attribution_window=attribution_window,
        covariate_window=None if covariates else covariate_window,
        use_covariate_table=covariates, daily=False,
    )  # fmt: skip


def _segment_row(
    agg: Aggregates,
    metric: Metric,
    value: str | None,
    *,
    control: str,
    variant: str,
    level: float,
    quantile_method: str,
    n_boot: int,
    seed: int,
) -> SegmentRow:
    n_c, n_v = agg.units.get(control, 0), agg.units.get(variant, 0)
    if agg.events_missing(metric):
        return SegmentRow(value, n_c, n_v, note=NO_EVENTS)
    try:
        fixed = fixed_horizon_effect(
            agg.metrics[metric.name], control=control, variant=variant, level=level,
            quantile_method=quantile_method, n_boot=n_boot, seed=seed,
        )  # fmt: skip
    except InvalidInput as exc:
        return SegmentRow(value, n_c, n_v, note=exc.message)
    raw = fixed.unadjusted
    return SegmentRow(value, n_c, n_v, control_mean=raw.control_mean,
                      variant_mean=raw.variant_mean, effect=fixed.effect)  # fmt: skip


def _compare(
    metric: Metric,
    role: str,
    variant: str,
    rows: list[SegmentRow],
    *,
    correction: str,
    alpha: float,
) -> SegmentComparison:
    """Adjust the p-values across segments and test heterogeneity over the estimates."""
    raw = np.array([np.nan if r.p_value is None else r.p_value for r in rows], dtype=float)
    adjusted = adjust_p_values(raw, method=correction) if rows else raw
    out = []
    for row, p in zip(rows, adjusted, strict=True):
        p_adj = None if np.isnan(p) else float(p)
        out.append(SegmentRow(
            row.segment, row.n_control, row.n_variant, row.control_mean, row.variant_mean,
            row.effect, p_adj, p_adj is not None and p_adj < alpha, row.note, row.below_minimum,
        ))  # fmt: skip
    usable = [r.effect for r in out if r.effect is not None
              and np.isfinite(r.effect.absolute_effect) and r.effect.absolute_se > 0
              and np.isfinite(r.effect.absolute_se)]  # fmt: skip
    heterogeneity, note = None, None
    if len(usable) >= 2:
        heterogeneity = cochran_q([e.absolute_effect for e in usable],
                                  [e.absolute_se for e in usable])  # fmt: skip
        if len(usable) < sum(r.effect is not None for r in out):
            note = "segments whose effect has no standard error are left out"
    else:
        note = f"needs two segments with an estimate ({len(usable)} here)"
    return SegmentComparison(
        metric=metric.name, type=metric.type, role=role, variant=variant,
        higher_is_better=metric.higher_is_better, rows=tuple(out),
        heterogeneity=heterogeneity, heterogeneity_note=note,
    )  # fmt: skip


__all__ = ["DEFAULT_MIN_SEGMENT_UNITS", "MAX_SEGMENTS", "check_min_units", "segment_table"]
