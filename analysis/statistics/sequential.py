"""Always-valid inference: mSPRT p-values and confidence sequences for an effect.

A fixed-horizon p-value is valid only at the one planned look; checking it every day and
stopping at the first p < 0.05 inflates false positives several-fold.  The mixture
sequential probability ratio test (mSPRT) gives a statistic Λ_n that is a martingale under
the null, so by Ville's inequality ``P(∃ n: Λ_n >= 1/alpha) <= alpha``: its p-value may be
read after every look, as often as one likes, *provided the mixing distribution is fixed
before the data* (`analysis.statistics.mixing`).

Design choices
--------------
- **One-sided mixtures, one per direction.**  ``Λ⁺`` mixes over effects > 0 (a half-normal
  N(0, τ²) restricted to θ > 0), ``Λ⁻`` over effects < 0.  Each is a martingale under
  θ = 0 (a supermartingale on its null side), so each direction's error is at most its
  own level.  The two-sided p-value is ``min(1, 2 min(p⁺, p⁻))``: rejecting two-sided at
  alpha rejects one direction at alpha / 2, which bounds *each* of "better" and "worse"
  by alpha / 2 under peeking, not only their sum (Howard, Ramdas, McAuliffe & Sekhon
  2021, §3.5, one-sided normal mixture; Ramdas, Grünwald, Vovk & Shafer 2023, §5).
- **The current look's p-value and interval.**  ``p_n = min(1, 1 / Λ_n)`` and the interval
  ``{θ : both one-sided tests of θ accept}`` at look n are valid at any stopping time
  (Ville's inequality bounds the chance that *any* look rejects).  Johari et al. report
  the running minimum of p and the running intersection of intervals, which are valid
  too and never widen, but the intersection is built from earlier estimates and can
  exclude the current one.  Reporting the current look keeps the interval centred on
  the estimate printed beside it and dual to the p-value (p <= alpha exactly when the
  interval excludes the null).
- **Plug-in variance.**  V is estimated at each look; Johari et al. (2017, §4) show the
  plug-in mSPRT is asymptotically valid.  The simulations in ``tests/test_simulations.py``
  measure the false-positive rate at 14, 60 and 365 looks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import log_ndtr

from abtest.errors import InvalidInput
from analysis.statistics.aggregates import SampleStats
from analysis.statistics.mixing import MixingPrior, default_tau2, tau2_ratio
from analysis.statistics.results import Effect, Interval, json_float, json_interval

FloatArray = NDArray[np.float64]
_LOG2: float = math.log(2.0)


def _standardised(
    estimate: ArrayLike, variance: ArrayLike, tau2: ArrayLike, null: float
) -> tuple[FloatArray, FloatArray, NDArray[np.bool_]]:
    """``z = (θ̂ - null) / √V``, ``rho = V / τ²`` and where the look carries evidence."""
    est, var, t2 = (np.asarray(a, dtype=float) for a in (estimate, variance, tau2))
    ok = (var > 0) & np.isfinite(var) & (t2 > 0) & np.isfinite(t2) & np.isfinite(est)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(ok, (est - null) / np.sqrt(np.where(ok, var, 1.0)), 0.0)
        rho = np.where(ok, var / np.where(ok, t2, 1.0), 1.0)
    return z, rho, ok


def log_likelihood_ratio(*, estimate: ArrayLike, variance: ArrayLike, tau2: float) -> FloatArray:
    """log Λ of the two-sided normal-mixture SPRT at each look (vectorised; V = 0 gives 0).

    ``Λ = sqrt(V / (V + τ²)) · exp(τ² θ̂² / (2 V (V + τ²)))`` for an estimate θ̂ ~ N(θ, V)
    and the mixing distribution θ ~ N(0, τ²) under the alternative.

    References
    ----------
    Johari, Koomen, Pekelis & Walsh (2017), "Peeking at A/B Tests", KDD, §4 (two-sample
    normal mSPRT; plug-in variances as in their deployment at Optimizely).
    """
    z, rho, ok = _standardised(estimate, variance, tau2, 0.0)
    llr = 0.5 * np.log(rho / (1 + rho)) + z**2 / (2 * (1 + rho))
    return np.where(ok, llr, 0.0)


def one_sided_log_likelihood_ratio(
    *, estimate: ArrayLike, variance: ArrayLike, tau2: ArrayLike, null: float = 0.0
) -> FloatArray:
    """log Λ⁺ of the mixture over effects above ``null`` (half-normal, scale τ).

    ``Λ⁺ = 2 Φ(z / √(1 + rho)) · sqrt(rho / (1 + rho)) · exp(z² / (2 (1 + rho)))`` with
    ``z = (θ̂ - null) / √V`` and ``rho = V / τ²``: the integral of the likelihood ratio
    ``exp((θ z √V - θ²/2) / V)`` against the density ``2 φ(θ / τ) / τ`` on θ > 0.
    Increasing in θ̂.  Looks without evidence (V = 0, τ² undefined) give 0 (Λ = 1).

    References
    ----------
    Howard, Ramdas, McAuliffe & Sekhon (2021), Ann. Statist. 49, §3.5 (one-sided normal
    mixture boundary); Johari et al. (2017), §4.
    """
    z, rho, ok = _standardised(estimate, variance, tau2, null)
    scaled = z / np.sqrt(1 + rho)
    llr = _LOG2 + log_ndtr(scaled) + 0.5 * np.log(rho / (1 + rho)) + scaled**2 / 2
    return np.where(ok, llr, 0.0)


def always_valid_p_values(
    *,
    estimate: ArrayLike,
    variance: ArrayLike,
    tau2: ArrayLike,
    null: float = 0.0,
    alternative: str = "two-sided",
) -> FloatArray:
    """Always-valid p-values at each look (vectorised over any shape).

    ``"greater"``: ``min(1, 1/Λ⁺)`` against H0: θ <= null; ``"less"`` mirrors it;
    ``"two-sided"``: ``min(1, 2 min(p_greater, p_less))``.  Valid at any stopping time
    (see the module docstring); compare with alpha (two-sided) or alpha / 2 per direction.
    """
    if alternative not in ("two-sided", "greater", "less"):
        raise InvalidInput("alternative must be two-sided, greater or less", field="alternative")
    est = np.asarray(estimate, dtype=float)

    def one(sign: float) -> FloatArray:
        llr = one_sided_log_likelihood_ratio(
            estimate=sign * est, variance=variance, tau2=tau2, null=sign * null
        )
        return np.asarray(np.minimum(1.0, np.exp(-llr)), dtype=float)

    if alternative == "greater":
        return one(1.0)
    if alternative == "less":
        return one(-1.0)
    return np.asarray(np.minimum(1.0, 2 * np.minimum(one(1.0), one(-1.0))), dtype=float)


def half_width(*, variance: ArrayLike, tau2: ArrayLike, alpha: float) -> FloatArray:
    """Half-width h of the (1 - alpha) interval ``θ̂ ± h`` at each look (vectorised).

    h is where each one-sided test at alpha / 2 just rejects: ``Λ⁺(h) = 2 / alpha``.  With
    ``u = h / √(V (1 + rho))`` this is ``log Φ(u) + u²/2 = log(1/alpha) + ½ log(1 + 1/rho)``,
    whose left side is increasing and convex for u > 0; Newton's method from the upper
    end of the bracket ``[√(2c), √(2c + 2 log 2)]`` converges monotonically.  Looks
    without evidence give an infinite half-width.
    """
    _, rho, ok = _standardised(0.0, variance, tau2, 0.0)
    c = math.log(1 / alpha) + 0.5 * np.log1p(1 / rho)
    u = np.sqrt(2 * c + 2 * _LOG2)
    for _ in range(30):
        log_cdf = log_ndtr(u)
        mills = np.exp(-0.5 * u**2 - 0.5 * math.log(2 * math.pi) - log_cdf)
        step = (log_cdf + u**2 / 2 - c) / (mills + u)
        u = u - step
        if np.all(np.abs(step) < 1e-12):
            break
    var = np.asarray(variance, dtype=float)
    with np.errstate(invalid="ignore"):
        width = u * np.sqrt(np.where(ok, var, 1.0) * (1 + rho))
    return np.where(ok, width, np.inf)


def confidence_sequence(
    *, estimate: ArrayLike, variance: ArrayLike, tau2: ArrayLike, alpha: float
) -> tuple[FloatArray, FloatArray]:
    """Lower and upper bounds of the (1 - alpha) confidence sequence at each look.

    ``θ̂_n ± h_n`` (`half_width`): ``P(∃ n: θ ∉ interval_n) <= alpha``, each side at
    alpha / 2.  The bounds are the current look's, not a running intersection (module
    docstring), so each contains its own estimate.

    References
    ----------
    Howard et al. (2021), Ann. Statist. 49, §3.5; Johari et al. (2017), §4.
    """
    est = np.asarray(estimate, dtype=float)
    h = half_width(variance=variance, tau2=tau2, alpha=alpha)
    return est - h, est + h


@dataclass(frozen=True)
class SequentialResult:
    """The always-valid test of an effect at each look, the last look on top.

    ``estimates``, ``p_values`` (two-sided), ``p_greater``/``p_less`` (one-sided, each to
    be read at alpha / 2) and ``lower``/``upper`` hold every look, in time order, all
    computed on the same data as the estimate of that look.  ``tau2`` is the mixing
    variance in the effect's units at the last look; ``prior`` what it came from.
    """

    alpha: float
    tau2: float
    n_control: tuple[int, ...]
    n_variant: tuple[int, ...]
    estimates: tuple[float, ...]
    p_values: tuple[float, ...]
    p_greater: tuple[float, ...]
    p_less: tuple[float, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    prior: MixingPrior | None = None
    note: str | None = None

    @property
    def estimate(self) -> float:
        """The estimate at the last look (the one ``ci`` and ``p_value`` belong to)."""
        return self.estimates[-1]

    @property
    def p_value(self) -> float:
        """Two-sided always-valid p-value at the last look."""
        return self.p_values[-1]

    @property
    def ci(self) -> Interval:
        """The (1 - alpha) confidence sequence at the last look; contains ``estimate``."""
        return (self.lower[-1], self.upper[-1])

    @property
    def reject(self) -> bool:
        """True when the two-sided always-valid p-value is <= alpha at the last look."""
        return self.p_value <= self.alpha

    def p_direction(self, *, higher: bool) -> float:
        """One-sided always-valid p-value at the last look: the effect is > 0 (or < 0)."""
        return self.p_greater[-1] if higher else self.p_less[-1]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with the last look on top and every look in ``looks``."""
        return {
            "estimate": json_float(self.estimate),
            "p_value": json_float(self.p_value),
            "p_greater": json_float(self.p_greater[-1]),
            "p_less": json_float(self.p_less[-1]),
            "ci": json_interval(self.ci),
            "n_control": self.n_control[-1],
            "n_variant": self.n_variant[-1],
            "alpha": self.alpha,
            "tau2": json_float(self.tau2),
            "prior": None if self.prior is None else self.prior.to_dict(),
            "note": self.note,
            "reject": self.reject,
            "looks": [
                {"n_control": nc, "n_variant": nv, "estimate": json_float(e),
                 "p_value": json_float(p), "ci": json_interval((lo, hi))}
                for nc, nv, e, p, lo, hi in zip(
                    self.n_control, self.n_variant, self.estimates, self.p_values,
                    self.lower, self.upper, strict=True,
                )
            ],
        }  # fmt: skip


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise InvalidInput(f"alpha must lie in (0, 1), got {alpha}", field="alpha")


def sequential_from_effects(
    effects: Sequence[Effect],
    *,
    prior: MixingPrior | None = None,
    tau2: float | None = None,
    alpha: float = 0.05,
    note: str | None = None,
) -> SequentialResult:
    """The always-valid test of the absolute effect at each look.

    Parameters
    ----------
    effects : sequence of Effect
        One per look, in time order, each on the cumulative data of that look (from
        `mean_difference`, `proportion_difference`, `ratio_difference`, a quantile...).
    prior : MixingPrior, optional
        The mixing distribution, fixed in advance; τ² follows from it at each look.
    tau2 : float, optional
        Or τ² itself, in the effect's units (e.g. `default_tau2` at the planned V).
        Exactly one of ``prior`` and ``tau2`` is required.
    alpha : float
        Level of the interval; each one-sided p-value is read at alpha / 2.
    note : str, optional
        What data the looks hold (e.g. the observation window), kept for the report.

    Raises
    ------
    InvalidInput
        No looks, a bad alpha, neither or both of ``prior``/``tau2``, or a τ² <= 0.
    """
    _check_alpha(alpha)
    if not effects:
        raise InvalidInput("needs at least one look", field="looks")
    if (prior is None) == (tau2 is None):
        raise InvalidInput("give exactly one of prior and tau2", field="tau2")
    if tau2 is not None and not (tau2 > 0 and math.isfinite(tau2)):
        raise InvalidInput(f"tau2 must be finite and > 0, got {tau2}", field="tau2")
    est = np.array([e.absolute_effect for e in effects], dtype=float)
    var = np.array([e.absolute_se**2 for e in effects], dtype=float)
    n_c = np.array([e.n_control for e in effects])
    n_v = np.array([e.n_variant for e in effects])
    if prior is not None:
        t2 = prior.tau2(variance=var, n_control=n_c, n_variant=n_v,
                        control_mean=[e.control_mean for e in effects])  # fmt: skip
    else:
        t2 = np.full(est.shape, tau2)
    lower, upper = confidence_sequence(estimate=est, variance=var, tau2=t2, alpha=alpha)

    def p_of(alternative: str) -> tuple[float, ...]:
        p = always_valid_p_values(estimate=est, variance=var, tau2=t2, alternative=alternative)
        return tuple(float(x) for x in p)

    return SequentialResult(
        alpha=alpha,
        tau2=float(t2[-1]),
        n_control=tuple(int(n) for n in n_c),
        n_variant=tuple(int(n) for n in n_v),
        estimates=tuple(float(x) for x in est),
        p_values=p_of("two-sided"),
        p_greater=p_of("greater"),
        p_less=p_of("less"),
        lower=tuple(float(x) for x in lower),
        upper=tuple(float(x) for x in upper),
        prior=prior,
        note=note,
    )


def sequential_test(
    *,
    looks: Sequence[tuple[SampleStats, SampleStats]],
    alpha: float = 0.05,
    prior: MixingPrior | None = None,
    tau2: float | None = None,
) -> SequentialResult:
    """mSPRT of the difference of means over cumulative looks (e.g. one per day).

    Parameters
    ----------
    looks : sequence of (control, variant) SampleStats
        Cumulative aggregates at each look, in time order (a binomial metric passes its
        0/1 aggregates; the variance is the sample variance of each arm).
    alpha : float
        Level of the confidence sequence; rejecting at ``p <= alpha`` keeps the
        false-positive rate <= alpha however often one looks.
    prior, tau2
        The mixing distribution, fixed before the data (see `sequential_from_effects`).
        Neither given: ``MixingPrior(0.05, "sd", "default")``, a standardised effect of
        0.05 SD (the analysis's default, see `analysis.decision.always_valid`).

    Returns
    -------
    SequentialResult

    Raises
    ------
    InvalidInput
        No looks, an arm with fewer than 2 units at some look, or a bad alpha / τ².

    References
    ----------
    Johari, Koomen, Pekelis & Walsh (2017), "Peeking at A/B Tests: Why it matters, and
    what to do about it", KDD.  Howard, Ramdas, McAuliffe & Sekhon (2021), Ann. Statist.
    """
    from analysis.statistics.inference import effect_from_means

    if not looks:
        raise InvalidInput("needs at least one look", field="looks")
    effects = []
    for i, (c, v) in enumerate(looks):
        if c.n < 2 or v.n < 2:
            raise InvalidInput("every look needs >= 2 units per arm", field=f"looks[{i}]")
        effects.append(
            effect_from_means(
                kind="mean",
                n_control=c.n,
                n_variant=v.n,
                control_mean=c.mean,
                control_var=c.variance / c.n,
                variant_mean=v.mean,
                variant_var=v.variance / v.n,
            )
        )
    if prior is None and tau2 is None:
        prior = MixingPrior(0.05, "sd", "default")
    return sequential_from_effects(effects, prior=prior, tau2=tau2, alpha=alpha)


__all__ = [
    "MixingPrior",
    "SequentialResult",
    "always_valid_p_values",
    "confidence_sequence",
    "default_tau2",
    "half_width",
    "log_likelihood_ratio",
    "one_sided_log_likelihood_ratio",
    "sequential_from_effects",
    "sequential_test",
    "tau2_ratio",
]
