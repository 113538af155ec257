"""The result objects of `analysis.analyze`: settings, one row per metric, the whole result.

Frozen, with ``to_dict()`` for JSON (the CLI's ``--json`` and ``GET .../results``) and a
``summary()`` DataFrame for notebooks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from abtest.experiment import Metric, MetricType
from analysis.bayesian import BayesianResult
from analysis.cuped import CupedResult
from analysis.decision import Decision, DecisionRules
from analysis.inference import NonInferiority
from analysis.join import DEFAULT_COVARIATE_WINDOW, Aggregates
from analysis.results import Effect, json_float, json_interval
from analysis.sequential import SequentialResult
from analysis.srm import SrmResult

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class AnalysisSettings:
    """Every setting that shapes a result; stored in it and in the decision record."""

    alpha: float = 0.05
    correction: str = "holm"
    attribution_window_hours: float | None = None
    covariate_window_days: float | None = DEFAULT_COVARIATE_WINDOW.days
    quantile_method: str = "bootstrap"
    n_boot: int = 1000
    seed: int = 0
    rules: DecisionRules = field(default_factory=DecisionRules)
    metrics: tuple[Metric, ...] = ()
    guardrails: tuple[Metric, ...] = ()
    control: str = "control"
    experiment: str | None = None
    weights: tuple[tuple[str, float], ...] | None = None
    planned_units_per_variant: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form (metrics as ``{name, type, higher_is_better, margin}``)."""
        out = asdict(self)
        out["metrics"] = [m.to_dict() for m in self.metrics]
        out["guardrails"] = [m.to_dict() for m in self.guardrails]
        out["weights"] = None if self.weights is None else dict(self.weights)
        return out


@dataclass(frozen=True)
class MetricRow:
    """One metric for one treatment variant against control.

    With CUPED applied the effect, CIs and p-value are the adjusted ones (``cuped`` keeps
    the unadjusted effect); ``control_mean``/``variant_mean`` are always the raw values.
    ``error`` says why nothing could be computed (the other numbers are then None).
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
            "absolute_effect": None if e is None else json_float(e.absolute_effect),
            "absolute_ci": None if e is None else json_interval(e.absolute_ci),
            "relative_effect": None if e is None else json_float(e.relative_effect),
            "relative_ci": None if e is None else json_interval(e.relative_ci),
            "p_value": json_float(self.p_value),
            "adjusted_p_value": json_float(self.adjusted_p_value),
            "significant": self.significant,
            "error": self.error,
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
            out["sequential"] = {
                "p_value": json_float(self.sequential.p_value),
                "ci": json_interval(self.sequential.ci),
            }
        if self.bayesian is not None:
            out["bayesian"] = {
                "chance_to_beat_control": json_float(self.bayesian.chance_to_beat_control),
                "expected_loss": json_float(self.bayesian.expected_loss),
            }
        if self.non_inferiority is not None:
            out["non_inferiority"] = self.non_inferiority.to_dict()
        return out


@dataclass(frozen=True)
class AnalysisResult:
    """Everything `analyze` found; ``to_dict()`` is the JSON of the CLI and the API."""

    experiment: str
    control: str
    units: Mapping[str, int]
    excluded_units: int
    srm: SrmResult
    rows: tuple[MetricRow, ...]
    decision: Decision
    settings: AnalysisSettings
    config_versions: tuple[str, ...] = ()
    aggregates: Aggregates | None = field(default=None, compare=False, repr=False)

    @property
    def crossover_share(self) -> float:
        """Excluded crossover units over all exposed units."""
        total = sum(self.units.values()) + self.excluded_units
        return self.excluded_units / total if total else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (nan/inf as null)."""
        return {
            "experiment": self.experiment,
            "control": self.control,
            "variants": [{"variant": v, "units": n} for v, n in self.units.items()],
            "excluded_units": self.excluded_units,
            "crossover_share": self.crossover_share,
            "srm": {"p_value": json_float(self.srm.p_value), "ok": self.srm.ok,
                    "expected": {k: json_float(v) for k, v in self.srm.expected.items()}},
            "metrics": [row.to_dict() for row in self.rows],
            "decision": self.decision.to_dict(),
            "settings": self.settings.to_dict(),
        }  # fmt: skip

    def summary(self) -> pd.DataFrame:
        """One row per metric and treatment variant, snake_case columns."""
        import pandas as pd

        columns = ["metric", "type", "role", "variant", "n_control", "n_variant",
                   "control_mean", "variant_mean", "absolute_effect", "relative_effect",
                   "p_value", "adjusted_p_value", "significant"]  # fmt: skip
        records = []
        for row in self.rows:
            data = row.to_dict()
            record = {c: data[c] for c in columns}
            lo, hi = data["absolute_ci"] or (None, None)
            record.update(ci_low=lo, ci_high=hi)
            records.append(record)
        return pd.DataFrame.from_records(records, columns=[*columns, "ci_low", "ci_high"])
