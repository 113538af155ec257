"""The verdict on an experiment, with every reason.

Rules, in order (the first that applies decides; every check adds its reason):

1. ``invalid``: sample-ratio mismatch (SRM p below its threshold, 0.001 by default), a
   variant with fewer than ``min_units_per_variant`` units, or a primary metric that
   could not be computed (a data problem, named in the reason).
2. ``ship`` (with the variant): the primary metric is better, significantly after the
   multiple-comparison adjustment, every guardrail is shown non-inferior, and the result
   may be read now: the planned sample is reached, or (before it) the always-valid
   sequential p-value is below alpha too.  Several candidates: the largest effect wins.
3. ``roll_back`` (with the variant): a guardrail is harmed (its non-inferiority test
   fails with the estimate on the harmful side, once the test has its units or when the
   harm is significant by itself), or the primary metric is significantly worse.
4. ``keep_running`` (with the extra days needed, from `analysis.planning.power`): a candidate
   waits for its guardrails or its sample, or nothing is significant yet and the test
   has fewer units than it needs to detect ``minimum_effect`` (relative, 5% by default)
   with the configured power, or than its plan.
5. ``no_difference``: nothing significant with enough units.

Warnings never change the verdict: effects beyond ``twyman_threshold`` (Twyman's law:
"any figure that looks interesting or different is usually wrong") ask for review, and
crossovers above ``crossover_warn_share`` point at a logging or assignment problem.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from analysis.statistics.srm import SrmResult

if TYPE_CHECKING:
    from analysis.decision.rows import MetricRow


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

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form."""
        return asdict(self)


@dataclass(frozen=True)
class Decision:
    """The verdict, the variant it concerns (ship / roll_back), and every reason."""

    verdict: Verdict
    variant: str | None
    reasons: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    extra_days: int | None = None
    review: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "verdict": self.verdict.value,
            "variant": self.variant,
            "reasons": list(self.reasons),
            "warnings": list(self.warnings),
            "extra_days": self.extra_days,
            "review": self.review,
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
) -> Decision:
    """Apply the rules of this module to one analysis; see the module docstring."""
    rules = rules or DecisionRules()
    reasons: list[str] = []
    warnings = _warnings(rows, units, excluded_units, rules)
    review = any("Twyman" in w for w in warnings)
    treatments = [v for v in units if v != control]
    invalid = []
    if not srm.ok:
        invalid.append(
            f"sample-ratio mismatch: SRM p = {srm.p_value:.2g} < {srm.threshold} "
            f"(observed {dict(srm.observed)}, expected {_rounded(srm.expected)})"
        )
    for variant in [control, *treatments]:
        if units.get(variant, 0) < rules.min_units_per_variant:
            invalid.append(
                f"too few units: '{variant}' has {units.get(variant, 0):,} "
                f"(< {rules.min_units_per_variant:,})"
            )
    primary_rows = [r for r in rows if r.metric == primary]
    invalid += [f"{r.metric} ({r.variant}): {r.error}" for r in primary_rows if r.error]
    if not treatments:
        invalid.append(f"no treatment variant besides control '{control}' in the exposures")
    if invalid:
        return Decision(Verdict.INVALID, None, tuple(invalid), warnings, None, review)
    reasons.append(f"SRM ok (p = {srm.p_value:.3g})")
    guardrails = [r for r in rows if r.role == "guardrail"]
    power_notes: list[str] = []
    extra_days = _extra_days(
        primary_rows=primary_rows, units=units, days_elapsed=days_elapsed,
        planned=planned_units_per_variant, rules=rules, notes=power_notes,
    )  # fmt: skip
    plan_reached = planned_units_per_variant is None or all(
        units[v] >= planned_units_per_variant for v in units
    )
    candidates, waiting, harmed = [], [], []
    for row in primary_rows:
        better = row.significant and _better(row)
        worse = row.significant and not _better(row)
        bad_guards = [
            g for g in guardrails if g.variant == row.variant and _harmed(g, not extra_days)
        ]
        unproven = [g for g in guardrails if g.variant == row.variant and not _non_inferior(g)]
        harmed += [(row.variant, f"guardrail {g.metric} harmed in '{g.variant}': "
                    f"{_describe_ni(g)}") for g in bad_guards]  # fmt: skip
        if worse:
            harmed.append((row.variant, f"primary {row.metric} is significantly worse in "
                           f"'{row.variant}' ({_describe(row)})"))  # fmt: skip
        if not better:
            continue
        reasons.append(f"primary {row.metric} is significantly better in '{row.variant}' "
                       f"({_describe(row)})")  # fmt: skip
        sequential_ok = row.sequential is None or row.sequential.reject
        if bad_guards:
            continue
        if unproven:
            waiting.append(f"guardrail(s) {', '.join(g.metric for g in unproven)} not yet "
                           f"shown non-inferior in '{row.variant}'")  # fmt: skip
        elif not plan_reached and not sequential_ok:
            assert row.sequential is not None
            waiting.append(
                f"planned sample of {planned_units_per_variant:,} per variant not reached and "
                f"the always-valid p-value ({row.sequential.p_value:.3g}) is above alpha"
            )
        else:
            candidates.append(row)
    if candidates:
        best = max(candidates, key=lambda r: (r.relative_effect or 0.0) * _sign(r))
        reasons += [f"guardrail {g.metric} non-inferior in '{best.variant}' ({_describe_ni(g)})"
                    for g in guardrails if g.variant == best.variant]  # fmt: skip
        return Decision(Verdict.SHIP, best.variant, tuple(reasons), warnings, None, review)
    if harmed:
        variant = harmed[0][0]
        reasons += [text for _, text in harmed]
        return Decision(Verdict.ROLL_BACK, variant, tuple(reasons), warnings, None, review)
    if waiting or extra_days:
        reasons += waiting + power_notes
        if extra_days:
            reasons.append(f"about {extra_days} more day(s) needed at the current traffic")
        return Decision(Verdict.KEEP_RUNNING, None, tuple(reasons), warnings, extra_days, review)
    reasons.append(
        f"no significant difference on {primary} at alpha {rules.alpha} with enough units "
        f"to detect a {rules.minimum_effect:.0%} change"
    )
    return Decision(Verdict.NO_DIFFERENCE, None, tuple(reasons), warnings, None, review)


# -- the rules' pieces --------------------------------------------------------------------
def _sign(row: MetricRow) -> float:
    return 1.0 if row.higher_is_better else -1.0


def _better(row: MetricRow) -> bool:
    return (row.absolute_effect or 0.0) * _sign(row) > 0


def _non_inferior(row: MetricRow) -> bool:
    return row.non_inferiority is not None and row.non_inferiority.non_inferior


def _harmed(row: MetricRow, enough_units: bool) -> bool:
    """Non-inferiority not shown with the estimate on the harmful side, and either the
    test has its units or the harm is significant on its own (small samples fail
    non-inferiority by chance half of the time under no effect)."""
    if row.error or _non_inferior(row) or (row.absolute_effect or 0.0) * _sign(row) >= 0:
        return False
    return enough_units or row.significant


def _describe(row: MetricRow) -> str:
    rel = "" if row.relative_effect is None else f"{row.relative_effect:+.2%}, "
    return f"{rel}adjusted p = {row.adjusted_p_value:.3g}"


def _describe_ni(row: MetricRow) -> str:
    ni = row.non_inferiority
    if ni is None:
        return row.error or "no non-inferiority test"
    kind = "relative" if ni.relative else "absolute"
    return f"{kind} margin {ni.margin:g}, bound {ni.bound:+.4g}, p = {ni.p_value:.3g}"


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
        if rel is not None and abs(rel) > rules.twyman_threshold:
            out.append(
                f"Twyman's law: {row.metric} in '{row.variant}' moved {rel:+.1%} "
                f"(beyond ±{rules.twyman_threshold:.0%}); review the data before acting"
            )
    return tuple(out)


def _extra_days(
    *,
    primary_rows: Sequence[MetricRow],
    units: Mapping[str, int],
    days_elapsed: float,
    planned: int | None,
    rules: DecisionRules,
    notes: list[str],
) -> int | None:
    """Days until the test has the units it needs (power for ``minimum_effect``, plan)."""
    from analysis.planning.duration import remaining_days
    from analysis.planning.power import sample_size_mean

    current = sum(units.values())
    daily = current / max(days_elapsed, 1.0)
    needed_total = 0.0
    variants = max(len(units) - 1, 1)
    for row in primary_rows:
        if row.effect is None or row.control_mean is None or row.control_mean == 0:
            continue
        se = row.effect.absolute_se
        n_c, n_v = row.n_control, row.n_variant
        if not (se > 0 and n_c > 0 and n_v > 0):
            continue
        # The per-unit standard deviation implied by the observed SE: works for every
        # metric type (means, proportions, delta-method ratios, bootstrap quantiles).
        std = se / math.sqrt(1 / n_c + 1 / n_v)
        size = sample_size_mean(
            std=std, mde=rules.minimum_effect * abs(row.control_mean),
            alpha=rules.alpha, power=rules.power, variants=variants,
        )  # fmt: skip
        needed_total = max(needed_total, float(size.total_n))
    if needed_total > current:
        notes.append(
            f"underpowered: {current:,} units, about {int(needed_total):,} needed to detect a "
            f"{rules.minimum_effect:.0%} change with power {rules.power:.0%}"
        )
    if planned is not None:
        planned_total = planned * len(units)
        if planned_total > current:
            notes.append(f"planned {planned:,} units per variant, have {min(units.values()):,}")
        needed_total = max(needed_total, planned_total)
    if needed_total <= current or daily <= 0:
        return None
    days = int(remaining_days(required_total_n=needed_total, current_total_n=current,
                              daily_units=daily))  # fmt: skip
    return max(days, 1)
