"""Bayesian read-out: chance to beat control and expected loss (risk) of each decision.

Binomial metrics use conjugate Beta posteriors and exact one-dimensional integrals;
mean metrics use the normal approximation of GrowthBook's stats engine (flat prior on
the effect, posterior ``δ ~ N(d, s²)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special, stats

from abtest.errors import InvalidInput
from analysis.statistics.aggregates import SampleStats
from analysis.statistics.results import Interval, json_float

# The integrals below are expectations over one Beta posterior B, written as
# E_Z[h(Q_B(Φ(Z)))] with Z standard normal and evaluated by Gauss-Hermite quadrature:
# the integrand is smooth in z even for posteriors concentrated by millions of units,
# and 64 nodes agree with adaptive quadrature to ~1e-12 (1e-10 at worst over arms of
# 1 to 10 million units).
_Z_ALL, _W_ALL = special.roots_hermitenorm(64)
# Nodes beyond |z| ~ 9 weigh < 1e-20 and only ask for quantiles of ~1e-21 probability,
# where the Beta quantile's root finding can fail: drop them.
_KEEP = _W_ALL / math.sqrt(2 * math.pi) > 1e-20
_Z = _Z_ALL[_KEEP]
_W = _W_ALL[_KEEP] / math.sqrt(2 * math.pi)


@dataclass(frozen=True)
class BayesianResult:
    """Posterior summary of variant versus control (absolute units of the metric).

    ``expected_loss`` is the posterior expected shortfall from shipping the variant,
    ``E[max(control - variant, 0)]`` (sign flipped when lower is better);
    ``expected_loss_control`` the same for keeping control.
    """

    method: str
    control_mean: float
    variant_mean: float
    effect_mean: float
    effect_sd: float
    chance_to_beat_control: float
    expected_loss: float
    expected_loss_control: float
    higher_is_better: bool

    def credible_interval(self, level: float = 0.95) -> Interval:
        """Equal-tailed interval of the absolute effect (normal approximation)."""
        z = float(stats.norm.isf((1 - level) / 2))
        return (self.effect_mean - z * self.effect_sd, self.effect_mean + z * self.effect_sd)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "method": self.method,
            "chance_to_beat_control": json_float(self.chance_to_beat_control),
            "expected_loss": json_float(self.expected_loss),
            "expected_loss_control": json_float(self.expected_loss_control),
            "control_mean": json_float(self.control_mean),
            "variant_mean": json_float(self.variant_mean),
            "effect_mean": json_float(self.effect_mean),
            "effect_sd": json_float(self.effect_sd),
            "higher_is_better": self.higher_is_better,
        }


def _beta_params(arm: SampleStats, prior: tuple[float, float], field: str) -> tuple[float, float]:
    if arm.n < 1 or not 0 <= arm.sum <= arm.n:
        raise InvalidInput(f"needs n >= 1 and 0 <= conversions <= n, got {arm}", field=field)
    return prior[0] + arm.sum, prior[1] + arm.n - arm.sum


def _beta_sd(p: tuple[float, float]) -> float:
    total = p[0] + p[1]
    return math.sqrt(p[0] * p[1] / (total * total * (total + 1)))


def _outer_inner(o: tuple[float, float], i: tuple[float, float]) -> tuple[float, float, float]:
    """``P(O > I)``, ``E[(O - I)⁺]`` and ``E[(I - O)⁺]`` for independent Betas O and I.

    One quadrature over O: ``P(O > I) = E_O[F_I(O)]``, and with the Beta partial
    expectation ``E[I 1{I < t}] = μ_I F(t; a_I + 1, b_I)``,
    ``E[(O - I)⁺] = E_O[O F_I(O) - μ_I F(O; a_I + 1, b_I)]`` and
    ``E[(I - O)⁺] = E_O[μ_I S(O; a_I + 1, b_I) - O S_I(O)]`` (S = 1 - F).
    """
    # isf in the upper half keeps the far-right quantiles accurate (1 - Φ(z) underflows).
    t = np.where(
        _Z < 0,
        stats.beta.ppf(stats.norm.cdf(_Z), o[0], o[1]),
        stats.beta.isf(stats.norm.sf(_Z), o[0], o[1]),
    )
    mu_i = i[0] / (i[0] + i[1])
    f_i = stats.beta.cdf(t, i[0], i[1])
    win = float(np.dot(_W, f_i))
    gain = float(np.dot(_W, t * f_i - mu_i * stats.beta.cdf(t, i[0] + 1, i[1])))
    s_i = stats.beta.sf(t, i[0], i[1])
    loss = float(np.dot(_W, mu_i * stats.beta.sf(t, i[0] + 1, i[1]) - t * s_i))
    return min(max(win, 0.0), 1.0), max(gain, 0.0), max(loss, 0.0)


def _beta_win_and_losses(
    a: tuple[float, float], b: tuple[float, float]
) -> tuple[float, float, float]:
    """``P(B > A)``, ``E[(B - A)⁺]`` and ``E[(A - B)⁺]`` for Beta posteriors A and B.

    The outer integral runs over the narrower posterior, so the inner CDF varies slowly
    across its nodes (integrating a near-step function would need many more nodes).
    """
    if _beta_sd(b) <= _beta_sd(a):
        return _outer_inner(b, a)
    win_a, gain_a, loss_a = _outer_inner(a, b)
    return 1.0 - win_a, loss_a, gain_a


def bayesian_binomial(
    *,
    control: SampleStats,
    variant: SampleStats,
    prior: tuple[float, float] = (1.0, 1.0),
    higher_is_better: bool = True,
) -> BayesianResult:
    """Chance to beat control and expected loss of a conversion rate, Beta posteriors.

    Parameters
    ----------
    control, variant : SampleStats
        ``n`` units of which ``sum`` converted.
    prior : (float, float)
        Beta(alpha, β) prior of each rate; Beta(1, 1) (uniform) as in GrowthBook.
    higher_is_better : bool
        False for metrics where a lower rate wins (errors, churn).

    Returns
    -------
    BayesianResult
        ``method="beta"``.  Both numbers are exact integrals over the Beta posteriors
        (64-node Gauss-Hermite quadrature over the variant's normal scores: it agrees
        with adaptive quadrature to ~1e-12 and with gbstats' Gauss-Jacobi risk to
        ~1e-9); the credible interval is the normal approximation.

    References
    ----------
    Stucchio (2015), "Bayesian A/B Testing at VWO" (expected loss).  GrowthBook stats
    engine, gbstats 0.2 ``bayesian.main.binomial_ab_test`` (Beta posteriors, risk by
    Gauss-Jacobi quadrature), https://github.com/growthbook/growthbook/tree/main/packages/stats.
    """
    if len(prior) != 2 or min(prior) <= 0:
        raise InvalidInput("prior must be two positive numbers (alpha, beta)", field="prior")
    a = _beta_params(control, prior, "control")
    b = _beta_params(variant, prior, "variant")
    win_b, loss_keep, loss_ship = _beta_win_and_losses(a, b)
    mean_a, mean_b = a[0] / sum(a), b[0] / sum(b)
    var_a = a[0] * a[1] / (sum(a) ** 2 * (sum(a) + 1))
    var_b = b[0] * b[1] / (sum(b) ** 2 * (sum(b) + 1))
    if not higher_is_better:
        win_b, loss_keep, loss_ship = 1 - win_b, loss_ship, loss_keep
    return BayesianResult(
        method="beta",
        control_mean=mean_a,
        variant_mean=mean_b,
        effect_mean=mean_b - mean_a,
        effect_sd=math.sqrt(var_a + var_b),
        chance_to_beat_control=win_b,
        expected_loss=loss_ship,
        expected_loss_control=loss_keep,
        higher_is_better=higher_is_better,
    )


def normal_win_and_loss(mean: float, sd: float) -> tuple[float, float, float]:
    """For ``δ ~ N(mean, sd²)``: ``P(δ > 0)``, ``E[max(-δ, 0)]`` and ``E[max(δ, 0)]``.

    ``E[max(-δ, 0)] = sd φ(mean/sd) - mean Φ(-mean/sd)`` (mean of a truncated normal);
    with sd = 0 the posterior is a point mass.
    """
    if sd <= 0:
        return (0.5 if mean == 0 else float(mean > 0)), max(-mean, 0.0), max(mean, 0.0)
    z = mean / sd
    pdf = float(stats.norm.pdf(z))
    win = float(stats.norm.cdf(z))
    loss_ship = sd * pdf - mean * float(stats.norm.cdf(-z))
    loss_keep = sd * pdf + mean * win
    return win, max(loss_ship, 0.0), max(loss_keep, 0.0)


def bayesian_mean(
    *,
    control: SampleStats,
    variant: SampleStats,
    higher_is_better: bool = True,
) -> BayesianResult:
    """Chance to beat control and expected loss of a mean metric, normal approximation.

    Parameters
    ----------
    control, variant : SampleStats
        Per-unit aggregates of each arm (n >= 2).
    higher_is_better : bool
        False when a lower mean wins.

    Returns
    -------
    BayesianResult
        ``method="normal"``: with a flat prior each mean's posterior is
        ``N(ȳ, s²/n)``, so the effect's is ``N(d, s_c²/n_c + s_v²/n_v)``; the chance to
        beat control is ``Φ(d/s)`` and the losses are truncated-normal means.

    References
    ----------
    GrowthBook stats engine (gbstats), ``EffectBayesianABTest`` with an improper prior
    (absolute effect) and ``get_risk``; gbstats 0.2 ``bayesian.main.gaussian_ab_test``
    computes the same risk by Gauss-Hermite quadrature.
    """
    for arm, name in ((control, "control"), (variant, "variant")):
        if arm.n < 2:
            raise InvalidInput(f"needs at least 2 units, got {arm.n}", field=name)
    d = variant.mean - control.mean
    sd = math.sqrt(control.variance / control.n + variant.variance / variant.n)
    sign = 1.0 if higher_is_better else -1.0
    win, loss_ship, loss_keep = normal_win_and_loss(sign * d, sd)
    return BayesianResult(
        method="normal",
        control_mean=control.mean,
        variant_mean=variant.mean,
        effect_mean=d,
        effect_sd=sd,
        chance_to_beat_control=win,
        expected_loss=loss_ship,
        expected_loss_control=loss_keep,
        higher_is_better=higher_is_better,
    )


__all__ = ["BayesianResult", "bayesian_binomial", "bayesian_mean", "normal_win_and_loss"]
