"""One metric for one treatment variant against control: the row the decision reads.

Frozen, with ``to_dict()`` for JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from abtest.experiment import MetricType
from analysis.statistics.bayesian import BayesianResult
from analysis.statistics.cuped import CupedResult
from analysis.statistics.noninferiority import NonInferiority
from analysis.statistics.results import Effect, json_float, json_interval
from analysis.statistics.sequential import SequentialResult
from analysis.statistics.sequential_margin import SequentialMargin

NO_EVENTS = "no events yet"


def effect_fields(e: Effect | None) -> dict[str, Any]:
    """An effect's absolute and relative estimates and CIs as a row's JSON fields."""
    return {
        "absolute_effect": None if e is None else json_float(e.absolute_effect),
        "absolute_ci": None if e is None else json_interval(e.absolute_ci),
        "relative_effect": None if e is None else json_float(e.relative_effect),
        "relative_ci": None if e is None else json_interval(e.relative_ci),
        "relative_reason": None if e is None else e.relative_reason,
    }


@dataclass(frozen=True)
class MetricRow:
    """One metric for one treatment variant against control.

    With CUPED applied the effect, CIs and p-value are the adjusted ones (``cuped`` keeps
    the unadjusted effect); ``control_mean``/``variant_mean`` are always the raw values.
    ``error`` says why nothing could be computed (the other numbers are then None);
    ``no_events`` marks the normal case of a metric whose events have not arrived yet.

    ``sequential`` is the always-valid test, on its own data (units whose observation
    window has closed) and with its own estimate; ``sequential_note`` says why it is
    missing when it is.  Guardrails carry ``sequential_margin``, the always-valid harm
    and non-inferiority tests against their margin.
    """

    metric: str
    type: MetricType
    role: str
    variant: str
    higher_is_better: bool
    n_control: int
    n_variant: int
    control_mean: float | None
    variant_mean: float | None
    effect: Effect | None
    p_value: float | None
    adjusted_p_value: float | None = None
    significant: bool = False
    cuped: CupedResult | None = None
    sequential: SequentialResult | None = None
    bayesian: BayesianResult | None = None
    non_inferiority: NonInferiority | None = None
    error: str | None = None
    no_events: bool = False
    sequential_note: str | None = None
    sequential_margin: SequentialMargin | None = None

    @property
    def absolute_effect(self) -> float | None:
        """Variant minus control (adjusted when CUPED applies)."""
        return None if self.effect is None else self.effect.absolute_effect

    @property
    def relative_effect(self) -> float | None:
        """Absolute effect over |control mean| (None when undefined)."""
        return None if self.effect is None else self.effect.relative_effect

    def to_dict(self) -> dict[str, Any]:
        """The row of ``AnalysisResult.to_dict()["metrics"]``."""
        e = self.effect
        out: dict[str, Any] = {
            "metric": self.metric,
            "type": self.type.value,
            "role": self.role,
            "variant": self.variant,
            "higher_is_better": self.higher_is_better,
            "n_control": self.n_control,
            "n_variant": self.n_variant,
            "control_mean": json_float(self.control_mean),
            "variant_mean": json_float(self.variant_mean),
            **effect_fields(e),
            "p_value": json_float(self.p_value),
            "adjusted_p_value": json_float(self.adjusted_p_value),
            "significant": self.significant,
            "error": self.error,
            "no_events": self.no_events,
        }
        if self.cuped is not None:
            raw = self.cuped.unadjusted
            out["cuped"] = {
                "variance_reduction": json_float(self.cuped.variance_reduction),
                "theta": json_float(self.cuped.theta),
                "correlation": json_float(self.cuped.correlation),
                "unadjusted": {"absolute_effect": json_float(raw.absolute_effect),
                               "absolute_ci": json_interval(raw.absolute_ci),
                               "p_value": json_float(raw.p_value)},
            }  # fmt: skip
        if self.sequential is not None:
            seq = self.sequential.to_dict()
            out["sequential"] = {k: v for k, v in seq.items() if k != "looks"}
        elif self.sequential_note is not None:
            out["sequential"] = {"note": self.sequential_note}
        if self.sequential_margin is not None:
            out["sequential_margin"] = self.sequential_margin.to_dict()
        if self.bayesian is not None:
            out["bayesian"] = {
                "chance_to_beat_control": json_float(self.bayesian.chance_to_beat_control),
                "expected_loss": json_float(self.bayesian.expected_loss),
            }
        if self.non_inferiority is not None:
            out["non_inferiority"] = self.non_inferiority.to_dict()
        return out
