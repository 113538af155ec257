"""The verdict on an experiment, with every reason.

Verdicts are read every day, so ``ship`` and ``roll_back`` rest on always-valid tests only
(`analysis.statistics.sequential`, fixed prior, one-sided mixtures): the fixed-horizon
p-values and intervals are shown on every row but never drive a verdict, before the
planned sample or after it (a fixed-horizon test read at every look past the plan would
inflate the error again).

Rules, in order (the first that applies decides; every check adds its reason):

1. ``invalid``: sample-ratio mismatch (SRM p below its threshold, 0.001 by default), a
   variant with fewer than ``min_units_per_variant`` units, a primary metric that could
   not be computed (a data problem, named in the reason), or no treatment variant.  A
   primary metric without events *yet* is not a data problem: it keeps running.
2. ``ship`` (with the variant): the primary metric is better by its always-valid
   one-sided test, Holm-adjusted across treatment variants, at ``alpha / 2``; and every
   guardrail of that variant is shown non-inferior by its always-valid test at ``alpha``
   (all must hold, so no adjustment is needed).  Several candidates: the largest
   relative effect wins.
3. ``roll_back`` (with the variant): the primary metric is worse, or a guardrail's harm is
   beyond its margin, by always-valid one-sided tests, Holm-adjusted together across
   metrics and variants at ``alpha / 2``.
4. ``keep_running`` (with the extra days): the always-valid test has fewer units per
   variant than the horizon (the plan, else the fixed-horizon sample that detects the
   MDE, or ``minimum_effect`` of the control mean, with the rules' power), or a
   candidate waits for its guardrails.
5. ``no_difference``: the horizon is reached without an always-valid difference.

Why each of ``ship`` and ``roll_back`` happens in at most ``alpha / 2`` of A/A experiments,
however often one looks: each always-valid one-sided p-value is below x at *some* look with
probability at most x (Ville's inequality), so Bonferroni, and Holm, which rejects a true
null only when its p-value is below ``alpha / (2 m0)``, keep the chance that any true null
is ever rejected at ``alpha / 2`` per direction.  ``tests/test_simulations.py`` measures it.

Warnings never change the verdict: *significant* effects beyond ``twyman_threshold``
(Twyman's law: "any figure that looks interesting or different is usually wrong") ask for
review, crossovers above ``crossover_warn_share`` and dropped outcome events above
``dropped_events_warn_share`` point at a logging or assignment problem.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from analysis.statistics.srm import SrmResult

if TYPE_CHECKING:
    from analysis.decision.rows import MetricRow


FloatArray = NDArray[np.float64]


class Verdict(StrEnum):
    """What to do with the experiment."""

    SHIP = "ship"
    KEEP_RUNNING = "keep_running"
    NO_DIFFERENCE = "no_difference"
    ROLL_BACK = "roll_back"
    INVALID = "invalid"


@dataclass(frozen=True)
class DecisionRules:
    """Thresholds of the decision; all recorded in the decision record."""

    alpha: float = 0.05
    power: float = 0.8
    minimum_effect: float = 0.05
    min_units_per_variant: int = 100
    srm_threshold: float = 0.001
    twyman_threshold: float = 0.5
    crossover_warn_share: float = 0.01
    dropped_events_warn_share: float = 0.1

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form."""
        return asdict(self)


@dataclass(frozen=True)
class Decision:
    """The verdict, the variant it concerns (ship / roll_back), and every reason.

    ``unread`` names the rows the analysis could not read (metric, variant and why).
    """

    verdict: Verdict
    variant: str | None
    reasons: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    extra_days: int | None = None
    review: bool = False
    unread: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "verdict": self.verdict.value,
            "variant": self.variant,
            "reasons": list(self.reasons),
            "warnings": list(self.warnings),
            "extra_days": self.extra_days,
            "review": self.review,
            "unread": list(self.unread),
        }


def decide(
    *,
    control: str,
    units: Mapping[str, int],
    excluded_units: int,
    srm: SrmResult,
    rows: Sequence[MetricRow],
    primary: str,
    days_elapsed: float,
    planned_units_per_variant: int | None = None,
    rules: DecisionRules | None = None,
    mde: float | None = None,
    relative_mde: bool = False,
    observation_days: float = 1.0,
    data_warnings: Sequence[str] = (),
) -> Decision:
    """Apply the rules of this module to one analysis; see the module docstring."""
    rules = rules or DecisionRules()
    warnings = (*_warnings(rows, units, excluded_units, rules), *data_warnings)
    review = any("Twyman" in w for w in warnings)
    unread = tuple(f"{r.metric} ({r.variant}): {r.error}" for r in rows if r.effect is None)
    treatments = [v for v in units if v != control]
    primary_rows = [r for r in rows if r.metric == primary]
    invalid = _invalid(srm, units, [control, *treatments], primary_rows, rules)
    if not treatments:
        invalid.append(f"no treatment variant besides control '{control}' in the exposures")
    if invalid:
        return Decision(Verdict.INVALID, None, tuple(invalid), warnings, None, review, unread)
    reasons = [f"SRM ok (p = {srm.p_value:.3g})"]
    if unread:
        reasons.append("could not read: " + "; ".join(unread))
    half = rules.alpha / 2
    better = _holm([(r, _p(r, better=True)) for r in primary_rows])
    worse = _holm([(r, _p(r, better=False)) for r in primary_rows]
                  + [(g, _p_harm(g)) for g in rows if g.role == "guardrail"])  # fmt: skip
    harmed = [(r, p) for r, p in worse if p <= half]
    harmed_variants = {r.variant for r, _ in harmed}
    guardrails = [r for r in rows if r.role == "guardrail"]
    candidates, waiting = [], []
    for row, p in better:
        if p > half or row.variant in harmed_variants:
            continue
        reasons.append(f"primary {row.metric} is significantly better in '{row.variant}' "
                       f"({_describe(row, p, half, better=True)})")  # fmt: skip
        unproven = [g for g in guardrails if g.variant == row.variant and not _shown_ok(g, rules)]
        if unproven:
            waiting.append(f"guardrail(s) {', '.join(g.metric for g in unproven)} not yet shown "
                           f"non-inferior in '{row.variant}' by the always-valid test")  # fmt: skip
        else:
            candidates.append(row)
    if candidates:
        best = max(candidates, key=lambda r: (r.relative_effect or 0.0) * _sign(r))
        reasons += [f"guardrail {g.metric} non-inferior in '{best.variant}' ({_describe_ni(g)})"
                    for g in guardrails if g.variant == best.variant]  # fmt: skip
        return Decision(Verdict.SHIP, best.variant, tuple(reasons), warnings, None, review,
                        unread)  # fmt: skip
    if harmed:
        reasons += [_describe_harm(r, p, half) for r, p in harmed]
        return Decision(Verdict.ROLL_BACK, harmed[0][0].variant, tuple(reasons), warnings, None,
                        review, unread)  # fmt: skip
    notes: list[str] = []
    needed = _horizon(primary_rows, planned=planned_units_per_variant, rules=rules, mde=mde,
                      relative_mde=relative_mde, notes=notes)  # fmt: skip
    have = min((_sequential_n(r) for r in primary_rows), default=0)
    extra_days = None
    if needed is None or have < needed:
        extra_days = _extra_days(needed, units, days_elapsed, observation_days)
        notes.append(
            f"the always-valid test has {have:,} units per variant whose observation window "
            + (f"has closed, of the {needed:,} needed" if needed else "has closed")
        )
    if waiting or extra_days is not None or needed is None:
        reasons += waiting + notes
        if extra_days:
            reasons.append(f"about {extra_days} more day(s) needed at the current traffic")
        return Decision(Verdict.KEEP_RUNNING, None, tuple(reasons), warnings, extra_days, review,
                        unread)  # fmt: skip
    reasons += notes
    reasons.append(f"no always-valid difference on {primary} at alpha {rules.alpha} with "
                   f"{have:,} units per variant, each observed for {observation_days * 24:g} h "
                   f"(horizon {needed:,})")  # fmt: skip
    return Decision(Verdict.NO_DIFFERENCE, None, tuple(reasons), warnings, None, review, unread)


# -- the rules' pieces --------------------------------------------------------------------
def _invalid(
    srm: SrmResult,
    units: Mapping[str, int],
    variants: Sequence[str],
    primary_rows: Sequence[MetricRow],
    rules: DecisionRules,
) -> list[str]:
    out = []
    if not srm.ok:
        out.append(
            f"sample-ratio mismatch: SRM p = {srm.p_value:.2g} < {srm.threshold} "
            f"(observed {dict(srm.observed)}, expected {_rounded(srm.expected)})"
        )
    for variant in variants:
        if units.get(variant, 0) < rules.min_units_per_variant:
            out.append(
                f"too few units: '{variant}' has {units.get(variant, 0):,} "
                f"(< {rules.min_units_per_variant:,})"
            )
    out += [f"{r.metric} ({r.variant}): {r.error}" for r in primary_rows
            if r.effect is None and not r.no_events]  # fmt: skip
    return out


def _sign(row: MetricRow) -> float:
    return 1.0 if row.higher_is_better else -1.0


def _p(row: MetricRow, *, better: bool) -> float:
    """One-sided always-valid p-value that the row's metric is better (or worse)."""
    if row.sequential is None:
        return 1.0
    return row.sequential.p_direction(higher=row.higher_is_better == better)


def _p_harm(row: MetricRow) -> float:
    return 1.0 if row.sequential_margin is None else row.sequential_margin.p_harm


def holm_along_last_axis(p_values: ArrayLike) -> FloatArray:
    """Holm-adjusted p-values, one family per slice along the last axis (vectorised).

    ``decide`` adjusts one experiment's family with it; the simulations in
    ``tests/test_simulations.py`` adjust thousands of experiments at every look with the
    same function, so they measure the verdict rule itself.  Agrees with
    `adjust_p_values` (``method="holm"``) on each slice.
    """
    p = np.asarray(p_values, dtype=float)
    m = p.shape[-1]
    order = np.argsort(p, axis=-1, kind="stable")
    ranked = np.take_along_axis(p, order, axis=-1)
    adjusted = np.minimum(np.maximum.accumulate(ranked * (m - np.arange(m)), axis=-1), 1.0)
    out = np.empty_like(adjusted)
    np.put_along_axis(out, order, adjusted, axis=-1)
    return out


def _holm(tests: list[tuple[MetricRow, float]]) -> list[tuple[MetricRow, float]]:
    """Each row with its Holm-adjusted p-value within ``tests``."""
    if not tests:
        return []
    adjusted = holm_along_last_axis([p for _, p in tests])
    return [(row, float(p)) for (row, _), p in zip(tests, adjusted, strict=True)]


def _shown_ok(row: MetricRow, rules: DecisionRules) -> bool:
    margin = row.sequential_margin
    return margin is not None and margin.p_non_inferior <= rules.alpha


def _sequential_n(row: MetricRow) -> int:
    seq = row.sequential
    return 0 if seq is None else min(seq.n_control[-1], seq.n_variant[-1])


def _describe(row: MetricRow, p: float, level: float, *, better: bool) -> str:
    seq = row.sequential
    assert seq is not None
    fixed = "" if row.effect is None else (
        f"; fixed horizon on all units: {row.effect.absolute_effect:+.4g}"
        + ("" if row.relative_effect is None else f" ({row.relative_effect:+.2%})")
        + f", p = {row.effect.p_value:.3g}"
    )  # fmt: skip
    return (f"always-valid: {seq.estimate:+.4g} on {seq.n_control[-1]:,}/{seq.n_variant[-1]:,} "
            f"units, p = {_p(row, better=better):.3g}, Holm-adjusted {p:.3g} <= {level:g}"
            f"{fixed}")  # fmt: skip


def _describe_harm(row: MetricRow, p: float, level: float) -> str:
    if row.role != "guardrail":
        return (f"primary {row.metric} is significantly worse in '{row.variant}' "
                f"({_describe(row, p, level, better=False)})")  # fmt: skip
    margin = row.sequential_margin
    assert margin is not None
    kind = "relative" if margin.relative else "absolute"
    return (f"guardrail {row.metric} harmed beyond its {kind} margin {margin.margin:g} in "
            f"'{row.variant}' (estimate {margin.estimate:+.4g}, always-valid p = "
            f"{margin.p_harm:.3g}, Holm-adjusted {p:.3g} <= {level:g})")  # fmt: skip


def _describe_ni(row: MetricRow) -> str:
    margin = row.sequential_margin
    if margin is None:
        return row.error or "no always-valid non-inferiority test"
    kind = "relative" if margin.relative else "absolute"
    return (f"{kind} margin {margin.margin:g}, estimate {margin.estimate:+.4g}, always-valid "
            f"p = {margin.p_non_inferior:.3g}")  # fmt: skip


def _rounded(values: Mapping[str, float]) -> dict[str, float]:
    return {k: round(v, 1) for k, v in values.items()}


def _warnings(
    rows: Sequence[MetricRow],
    units: Mapping[str, int],
    excluded_units: int,
    rules: DecisionRules,
) -> tuple[str, ...]:
    out = []
    total = sum(units.values()) + excluded_units
    share = excluded_units / total if total else 0.0
    if share > rules.crossover_warn_share:
        out.append(
            f"{excluded_units} units ({share:.2%}) were exposed to more than one variant and "
            f"were excluded: above {rules.crossover_warn_share:.0%}, check assignment/logging"
        )
    for row in rows:
        rel = row.relative_effect
        significant = row.significant or (row.sequential is not None and row.sequential.reject)
        if significant and rel is not None and abs(rel) > rules.twyman_threshold:
            out.append(
                f"Twyman's law: {row.metric} in '{row.variant}' moved {rel:+.1%} "
                f"(beyond ±{rules.twyman_threshold:.0%}); review the data before acting"
            )
    return tuple(out)


def _horizon(
    primary_rows: Sequence[MetricRow],
    *,
    planned: int | None,
    rules: DecisionRules,
    mde: float | None,
    relative_mde: bool,
    notes: list[str],
) -> int | None:
    """Units per variant the test runs to: the plan, else the fixed-horizon sample that
    detects the MDE (or ``minimum_effect`` of the control mean) with the rules' power.
    None when neither can be worked out yet (no estimate of the spread)."""
    if planned is not None:
        notes.append(f"planned {planned:,} units per variant: the horizon of the test")
        return planned
    from analysis.planning.power import sample_size_mean

    needed = 0
    for row in primary_rows:
        if row.effect is None or row.control_mean is None:
            continue
        se, n_c, n_v = row.effect.absolute_se, row.n_control, row.n_variant
        relative = mde is None or relative_mde
        target = (mde if mde is not None else rules.minimum_effect) * (
            abs(row.control_mean) if relative else 1.0
        )
        if not (se > 0 and n_c > 0 and n_v > 0 and target > 0):
            continue
        # The per-unit SD implied by the observed SE: works for every metric type (means,
        # proportions, delta-method ratios, bootstrap quantiles).
        std = se / math.sqrt(1 / n_c + 1 / n_v)
        size = sample_size_mean(std=std, mde=target, alpha=rules.alpha, power=rules.power,
                                variants=max(len(primary_rows), 1))  # fmt: skip
        needed = max(needed, int(size.n_per_variant))
        change = f"{target / abs(row.control_mean):.0%}" if relative else f"{target:g}"
        notes.append(f"{needed:,} units per variant needed to detect a {change} change with "
                     f"power {rules.power:.0%} (fixed horizon)")  # fmt: skip
    return needed or None


def _extra_days(
    needed: int | None, units: Mapping[str, int], days_elapsed: float, observation_days: float
) -> int | None:
    """Days until ``needed`` units per variant have been observed for their whole window."""
    from analysis.planning.duration import remaining_days

    if needed is None:
        return None
    current = sum(units.values())
    daily = current / max(days_elapsed, 1.0)
    required = needed * len(units)
    days = 0.0
    if required > current and daily > 0:
        days = float(remaining_days(required_total_n=required, current_total_n=current,
                                    daily_units=daily))  # fmt: skip
    return max(math.ceil(days + observation_days), 1)
