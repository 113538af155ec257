"""Statistics for planning and reading experiments.

Pure: functions take numpy arrays or per-variant aggregates (`SampleStats`,
`PairedStats`) and return immutable result objects.  Reading files and frames happens in
one loading module at the edge.

Names load on first use (PEP 562): ``import analysis.power`` or ``from analysis import
sample_size_mean`` does not pay for pandas, DuckDB and matplotlib, which the CLI's planning
commands and the service's hot path never need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from analysis.aggregates import PairedStats, SampleStats
    from analysis.analyzer import (
        AnalysisResult,
        AnalysisSettings,
        MetricRow,
        analyze,
        analyze_experiment,
    )
    from analysis.bayesian import BayesianResult, bayesian_binomial, bayesian_mean
    from analysis.cuped import CupedResult, cuped
    from analysis.decision import (
        Decision,
        DecisionRules,
        Verdict,
        decide,
        decision_record,
        write_decision_record,
    )
    from analysis.duration import (
        duration_days,
        mde_by_duration,
        n_per_variant_after_days,
        remaining_days,
    )
    from analysis.inference import (
        NonInferiority,
        effect_from_means,
        mean_difference,
        non_inferiority,
        proportion_difference,
        ratio_difference,
    )
    from analysis.join import Aggregates, join_and_aggregate, parse_metric
    from analysis.load import read_exposures, read_outcomes
    from analysis.multiple import adjust_p_values
    from analysis.power import (
        guardrail_adjusted_power,
        minimum_detectable_effect_mean,
        minimum_detectable_effect_proportion,
        power_mean,
        power_proportion,
        sample_size_mean,
        sample_size_proportion,
    )
    from analysis.power_ratio_metric import (
        minimum_detectable_effect_ratio,
        power_ratio,
        ratio_metric_variance,
        sample_size_ratio,
    )
    from analysis.power_results import MinimumDetectableEffect, SampleSize
    from analysis.quantile import QuantileResult, quantile_difference
    from analysis.report import (
        cumulative_figure,
        effect_figure,
        exposures_figure,
        figure_png,
        render_html,
        write_report,
    )
    from analysis.results import Effect
    from analysis.sensitivity import (
        capping_sensitivity,
        metric_summary,
        per_unit_frame,
        sensitivity_by_duration,
        winsorize,
    )
    from analysis.sequential import SequentialResult, default_tau2, sequential_test
    from analysis.srm import SrmResult, srm_test

_EXPORTS: dict[str, tuple[str, ...]] = {
    "analysis.aggregates": ("PairedStats", "SampleStats"),
    "analysis.analyzer": (
        "AnalysisResult",
        "AnalysisSettings",
        "MetricRow",
        "analyze",
        "analyze_experiment",
    ),
    "analysis.bayesian": ("BayesianResult", "bayesian_binomial", "bayesian_mean"),
    "analysis.cuped": ("CupedResult", "cuped"),
    "analysis.decision": (
        "Decision",
        "DecisionRules",
        "Verdict",
        "decide",
        "decision_record",
        "write_decision_record",
    ),
    "analysis.duration": (
        "duration_days",
        "mde_by_duration",
        "n_per_variant_after_days",
        "remaining_days",
    ),
    "analysis.inference": (
        "NonInferiority",
        "effect_from_means",
        "mean_difference",
        "non_inferiority",
        "proportion_difference",
        "ratio_difference",
    ),
    "analysis.join": ("Aggregates", "join_and_aggregate", "parse_metric"),
    "analysis.load": ("read_exposures", "read_outcomes"),
    "analysis.multiple": ("adjust_p_values",),
    "analysis.power": (
        "guardrail_adjusted_power",
        "minimum_detectable_effect_mean",
        "minimum_detectable_effect_proportion",
        "power_mean",
        "power_proportion",
        "sample_size_mean",
        "sample_size_proportion",
    ),
    "analysis.power_ratio_metric": (
        "minimum_detectable_effect_ratio",
        "power_ratio",
        "ratio_metric_variance",
        "sample_size_ratio",
    ),
    "analysis.power_results": ("MinimumDetectableEffect", "SampleSize"),
    "analysis.quantile": ("QuantileResult", "quantile_difference"),
    "analysis.report": (
        "cumulative_figure",
        "effect_figure",
        "exposures_figure",
        "figure_png",
        "render_html",
        "write_report",
    ),
    "analysis.results": ("Effect",),
    "analysis.sensitivity": (
        "capping_sensitivity",
        "metric_summary",
        "per_unit_frame",
        "sensitivity_by_duration",
        "winsorize",
    ),
    "analysis.sequential": ("SequentialResult", "default_tau2", "sequential_test"),
    "analysis.srm": ("SrmResult", "srm_test"),
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
    "MetricRow",
    "MinimumDetectableEffect",
    "NonInferiority",
    "PairedStats",
    "QuantileResult",
    "SampleSize",
    "SampleStats",
    "SequentialResult",
    "SrmResult",
    "Verdict",
    "adjust_p_values",
    "analyze",
    "analyze_experiment",
    "bayesian_binomial",
    "bayesian_mean",
    "capping_sensitivity",
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
    "sequential_test",
    "srm_test",
    "winsorize",
    "write_decision_record",
    "write_report",
]


# `cuped` shares its name with its module: importing the submodule (as its siblings do)
# binds the *module* to the package attribute, and __getattr__ would never run. The
# module is light (numpy and scipy), so the function is bound now. No other public name
# may equal a module name (tests/test_smoke.py checks).
from analysis.cuped import cuped  # noqa: E402


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
