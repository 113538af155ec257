"""The result objects of `analysis.analyze`: settings, one row per metric, the whole result.

Frozen, with ``to_dict()`` for JSON (the CLI's ``--json`` and ``GET .../results``) and a
``summary()`` DataFrame for notebooks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from abtest.experiment import Metric
from analysis.data.tables import DEFAULT_COVARIATE_WINDOW, Aggregates
from analysis.decision.rows import MetricRow
from analysis.decision.rules import Decision, DecisionRules
from analysis.statistics.results import json_float
from analysis.statistics.srm import SrmResult

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
