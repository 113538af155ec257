"""The result objects of `analysis.analyze`: settings, one row per metric, the whole result.

Frozen, with ``to_dict()`` for JSON (the CLI's ``--json`` and ``GET .../results``) and a
``summary()`` DataFrame for notebooks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from abtest.experiment import Metric
from analysis.data.tables import DEFAULT_COVARIATE_WINDOW, Aggregates, EventCounts
from analysis.decision.rows import MetricRow
from analysis.decision.rules import Decision, DecisionRules
from analysis.decision.segment_table import SegmentTable
from analysis.statistics.mixing import MixingPrior
from analysis.statistics.results import json_float
from analysis.statistics.srm import SrmResult

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class AnalysisSettings:
    """Every setting that shapes a result; stored in it and in the decision record.

    ``sequential_prior`` is the mSPRT mixing prior the plan (``planned_units_per_variant``,
    ``mde``) or ``mixing_sd`` state, fixed before the data; ``observation_window_hours``
    the per-unit window of the sequential looks (`analysis.decision.always_valid`); ``as_of`` the
    time the data were complete up to, when it was given (ISO 8601).
    """

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
    mde: float | None = None
    relative_mde: bool = False
    mixing_sd: float | None = None
    observation_window_hours: float | None = None
    sequential_prior: MixingPrior | None = None
    as_of: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form (metrics as ``{name, type, higher_is_better, margin}``)."""
        out = asdict(self)
        out["metrics"] = [m.to_dict() for m in self.metrics]
        out["guardrails"] = [m.to_dict() for m in self.guardrails]
        out["weights"] = None if self.weights is None else dict(self.weights)
        return out


@dataclass(frozen=True)
class AnalysisResult:
    """Everything `analyze` found; ``to_dict()`` is the JSON of the CLI and the API.

    ``events`` counts what happened to the outcome events of the analysed metrics
    (counted, covariate, dropped by reason); ``undefined_metrics`` the event names of
    this experiment's units that no metric reads.  ``segments``: each metric per value
    of one attribute, when the analysis was asked for it (`analysis.segments`).
    """

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
    events: EventCounts = field(default_factory=EventCounts)
    undefined_metrics: Mapping[str, int] = field(default_factory=dict)
    segments: SegmentTable | None = None

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
            "events": self.events.to_dict(),
            "undefined_metrics": dict(self.undefined_metrics),
            "decision": self.decision.to_dict(),
            "settings": self.settings.to_dict(),
            **({} if self.segments is None else {"segments": self.segments.to_dict()}),
        }  # fmt: skip

    def summary(self) -> pd.DataFrame:
        """One row per metric and treatment variant, snake_case columns.

        Every effect column names its scale: ``absolute_*`` in metric units (with its CI),
        ``relative_*`` as a fraction of the control mean (with its own CI), and
        ``always_valid_*`` the sequential test's estimate, interval and p-value, on the
        units whose observation window has closed (absolute, metric units).
        """
        import pandas as pd

        records = []
        for row in self.rows:
            data = row.to_dict()
            seq = row.sequential
            abs_lo, abs_hi = data["absolute_ci"] or (None, None)
            rel_lo, rel_hi = data["relative_ci"] or (None, None)
            seq_lo, seq_hi = (None, None) if seq is None else seq.to_dict()["ci"]
            records.append({
                **{c: data[c] for c in _SUMMARY_HEAD},
                "absolute_effect": data["absolute_effect"],
                "absolute_ci_low": abs_lo, "absolute_ci_high": abs_hi,
                "relative_effect": data["relative_effect"],
                "relative_ci_low": rel_lo, "relative_ci_high": rel_hi,
                "p_value": data["p_value"], "adjusted_p_value": data["adjusted_p_value"],
                "significant": data["significant"],
                "always_valid_estimate": None if seq is None else json_float(seq.estimate),
                "always_valid_ci_low": seq_lo, "always_valid_ci_high": seq_hi,
                "always_valid_p_value": None if seq is None else json_float(seq.p_value),
                "error": data["error"],
            })  # fmt: skip
        return pd.DataFrame.from_records(records, columns=list(SUMMARY_COLUMNS))


_SUMMARY_HEAD = ("metric", "type", "role", "variant", "n_control", "n_variant", "control_mean",
                 "variant_mean")  # fmt: skip
SUMMARY_COLUMNS = (*_SUMMARY_HEAD, "absolute_effect", "absolute_ci_low", "absolute_ci_high",
                   "relative_effect", "relative_ci_low", "relative_ci_high", "p_value",
                   "adjusted_p_value", "significant", "always_valid_estimate",
                   "always_valid_ci_low", "always_valid_ci_high", "always_valid_p_value",
                   "error")  # fmt: skip
