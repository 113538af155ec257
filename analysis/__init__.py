"""Statistics for planning and reading experiments.

Pure: functions take numpy arrays or per-variant aggregates (`SampleStats`,
`PairedStats`) and return immutable result objects.  Reading files and frames happens in
one loading module at the edge.
"""

from analysis.aggregates import PairedStats, SampleStats
from analysis.bayesian import BayesianResult, bayesian_binomial, bayesian_mean
from analysis.cuped import CupedResult, cuped
from analysis.inference import (
    NonInferiority,
    effect_from_means,
    mean_difference,
    non_inferiority,
    proportion_difference,
    ratio_difference,
)
from analysis.multiple import adjust_p_values
from analysis.quantile import QuantileResult, quantile_difference
from analysis.results import Effect
from analysis.sequential import SequentialResult, default_tau2, sequential_test
from analysis.srm import SrmResult, srm_test

__all__ = [
    "BayesianResult",
    "CupedResult",
    "Effect",
    "NonInferiority",
    "PairedStats",
    "QuantileResult",
    "SampleStats",
    "SequentialResult",
    "SrmResult",
    "adjust_p_values",
    "bayesian_binomial",
    "bayesian_mean",
    "cuped",
    "default_tau2",
    "effect_from_means",
    "mean_difference",
    "non_inferiority",
    "proportion_difference",
    "quantile_difference",
    "ratio_difference",
    "sequential_test",
    "srm_test",
]
