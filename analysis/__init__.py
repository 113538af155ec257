"""Statistics for planning and reading experiments, in five rooms.

- `analysis.planning`: before the test: sample size, power, detectable effect, duration
  and sensitivity from history.  Pure numpy.
- `analysis.data`: the edge that touches files and frames: loading exposures and outcomes,
  the per-unit join and the per-variant aggregation (DuckDB), the daily series.
- `analysis.statistics`: pure functions from per-variant aggregates to result objects:
  effects and CIs, CUPED, SRM, multiple comparisons, sequential, Bayesian, quantiles.
- `analysis.decision`: the per-metric rows, the verdict and its rules, the whole result
  and the decision record.
- `analysis.report`: figures and the self-contained HTML report.

`analysis.analyzer` ties them together: one call from data to verdict.

Names load on first use (PEP 562): ``import analysis.planning.power`` or ``from analysis
import sample_size_mean`` does not pay for pandas, DuckDB and matplotlib, which the CLI's
planning commands and the service's hot path never need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from analysis.analyzer import analyze, analyze_experiment
    from analysis.data.join import join_and_aggregate, parse_metric
    from analysis.data.load import read_exposures, read_outcomes
    from analysis.data.tables import Aggregates
    from analysis.decision.record import decision_record, write_decision_record
    from analysis.decision.result import AnalysisResult, AnalysisSettings
    from analysis.decision.rows import MetricRow
    from analysis.decision.rules import Decision, DecisionRules, Verdict, decide
    from analysis.decision.segment_table import SegmentComparison, SegmentRow, SegmentTable
    from analysis.planning.duration import (
        duration_days,
        mde_by_duration,
        n_per_variant_after_days,
        remaining_days,
    )
    from analysis.planning.power import (
        guardrail_adjusted_power,
        minimum_detectable_effect_mean,
        minimum_detectable_effect_proportion,
        power_mean,
        power_proportion,
        sample_size_mean,
        sample_size_proportion,
    )
    from analysis.planning.ratio_metric import (
        minimum_detectable_effect_ratio,
        power_ratio,
        ratio_metric_variance,
        sample_size_ratio,
    )
    from analysis.planning.results import MinimumDetectableEffect, SampleSize
    from analysis.planning.sensitivity import (
        capping_sensitivity,
        metric_summary,
        per_unit_frame,
        sensitivity_by_duration,
        winsorize,
    )
    from analysis.report.figures import (
        cumulative_figure,
        effect_figure,
        exposures_figure,
        figure_png,
    )
    from analysis.report.html import render_html, write_report
    from analysis.statistics.aggregates import PairedStats, SampleStats
    from analysis.statistics.bayesian import BayesianResult, bayesian_binomial, bayesian_mean
    from analysis.statistics.cuped import CupedResult, cuped
    from analysis.statistics.heterogeneity import Heterogeneity, cochran_q
    from analysis.statistics.inference import (
        NonInferiority,
        effect_from_means,
        mean_difference,
        non_inferiority,
        proportion_difference,
        ratio_difference,
    )
    from analysis.statistics.mixing import MixingPrior
    from analysis.statistics.multiple import adjust_p_values
    from analysis.statistics.quantile import QuantileResult, quantile_difference
    from analysis.statistics.results import Effect
    from analysis.statistics.sequential import (
        SequentialResult,
        default_tau2,
        sequential_from_effects,
        sequential_test,
    )
    from analysis.statistics.sequential_margin import SequentialMargin, sequential_margin_test
    from analysis.statistics.srm import SrmResult, srm_test

_EXPORTS: dict[str, tuple[str, ...]] = {
    "analysis.analyzer": (
        "analyze",
        "analyze_experiment",
    ),
    "analysis.data.join": (
        "join_and_aggregate",
        "parse_metric",
    ),
    "analysis.data.load": (
        "read_exposures",
        "read_outcomes",
    ),
    "analysis.data.tables": ("Aggregates",),
    "analysis.decision.record": (
        "decision_record",
        "write_decision_record",
    ),
    "analysis.decision.result": (
        "AnalysisResult",
        "AnalysisSettings",
    ),
    "analysis.decision.rows": ("MetricRow",),
    "analysis.decision.segment_table": (
        "SegmentComparison",
        "SegmentRow",
        "SegmentTable",
    ),
    "analysis.statistics.heterogeneity": (
        "Heterogeneity",
        "cochran_q",
    ),
    "analysis.decision.rules": (
        "Decision",
        "DecisionRules",
        "Verdict",
        "decide",
    ),
    "analysis.planning.duration": (
        "duration_days",
        "mde_by_duration",
        "n_per_variant_after_days",
        "remaining_days",
    ),
    "analysis.planning.power": (
        "guardrail_adjusted_power",
        "minimum_detectable_effect_mean",
        "minimum_detectable_effect_proportion",
        "power_mean",
        "power_proportion",
        "sample_size_mean",
        "sample_size_proportion",
    ),
    "analysis.planning.ratio_metric": (
        "minimum_detectable_effect_ratio",
        "power_ratio",
        "ratio_metric_variance",
        "sample_size_ratio",
    ),
    "analysis.planning.results": (
        "MinimumDetectableEffect",
        "MixingPrior",
        "SampleSize",
    ),
    "analysis.planning.sensitivity": (
        "capping_sensitivity",
        "metric_summary",
        "per_unit_frame",
        "sensitivity_by_duration",
        "winsorize",
    ),
    "analysis.report.figures": (
        "cumulative_figure",
        "effect_figure",
        "exposures_figure",
        "figure_png",
    ),
    "analysis.report.html": (
        "render_html",
        "write_report",
    ),
    "analysis.statistics.aggregates": (
        "PairedStats",
        "SampleStats",
    ),
    "analysis.statistics.bayesian": (
        "BayesianResult",
        "bayesian_binomial",
        "bayesian_mean",
    ),
    "analysis.statistics.cuped": (
        "CupedResult",
        "cuped",
    ),
    "analysis.statistics.inference": (
        "NonInferiority",
        "effect_from_means",
        "mean_difference",
        "non_inferiority",
        "proportion_difference",
        "ratio_difference",
    ),
    "analysis.statistics.multiple": ("adjust_p_values",),
    "analysis.statistics.quantile": (
        "QuantileResult",
        "quantile_difference",
    ),
    "analysis.statistics.results": ("Effect",),
    "analysis.statistics.mixing": ("MixingPrior",),
    "analysis.statistics.sequential": (
        "SequentialMargin",
        "SequentialResult",
        "default_tau2",
        "sequential_from_effects",
        "sequential_from_effects",
        "sequential_margin_test",
        "sequential_test",
    ),
    "analysis.statistics.sequential_margin": (
        "SequentialMargin",
        "sequential_margin_test",
    ),
    "analysis.statistics.srm": (
        "SrmResult",
        "srm_test",
    ),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "Aggregates",
    "AnalysisResult",
    "AnalysisSettings",
    "BayesianResult",
    "CupedResult",
    "Decision",
    "DecisionRules",
    "Effect",
    "Heterogeneity",
    "MetricRow",
    "MinimumDetectableEffect",
    "MixingPrior",
    "NonInferiority",
    "PairedStats",
    "QuantileResult",
    "SampleSize",
    "SampleStats",
    "SegmentComparison",
    "SegmentRow",
    "SegmentTable",
    "SequentialMargin",
    "SequentialResult",
    "SrmResult",
    "Verdict",
    "adjust_p_values",
    "analyze",
    "analyze_experiment",
    "bayesian_binomial",
    "bayesian_mean",
    "capping_sensitivity",
    "cochran_q",
    "cumulative_figure",
    "cuped",
    "decide",
    "decision_record",
    "default_tau2",
    "duration_days",
    "effect_figure",
    "effect_from_means",
    "exposures_figure",
    "figure_png",
    "guardrail_adjusted_power",
    "join_and_aggregate",
    "mde_by_duration",
    "mean_difference",
    "metric_summary",
    "minimum_detectable_effect_mean",
    "minimum_detectable_effect_proportion",
    "minimum_detectable_effect_ratio",
    "n_per_variant_after_days",
    "non_inferiority",
    "parse_metric",
    "per_unit_frame",
    "power_mean",
    "power_proportion",
    "power_ratio",
    "proportion_difference",
    "quantile_difference",
    "ratio_difference",
    "ratio_metric_variance",
    "read_exposures",
    "read_outcomes",
    "remaining_days",
    "render_html",
    "sample_size_mean",
    "sample_size_proportion",
    "sample_size_ratio",
    "sensitivity_by_duration",
    "sequential_from_effects",
    "sequential_margin_test",
    "sequential_test",
    "srm_test",
    "winsorize",
    "write_decision_record",
    "write_report",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
