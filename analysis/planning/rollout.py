"""Planning a guarded rollout: how likely a regression of the planned size is caught, and
how many units that takes.

The rollout's harm test (`analysis.decision.rollout`) is a one-sided mSPRT per guardrail,
read at every check, with the prior ``τ = margin`` on the relative scale, Holm across the
guardrails at alpha.  A rollback happens once the harmed guardrail's always-valid p-value
is at most ``alpha / guardrails`` (Holm's first step) at *some* check; it certainly
happens if it is at the last check before shipping.  So the chance of a rollback is at
least the chance that the last look alone rejects:

    P(roll back) >= Φ((r - h) / √V),   V = (cv_c² + cv_v²) / n

with ``r`` the true relative regression, ``V`` the variance of the relative effect's
estimate with ``n`` observed units per arm (cv: the per-unit coefficient of variation of
each arm), and ``h`` the one-sided boundary of the always-valid test at level
``alpha / guardrails`` (`analysis.statistics.sequential.half_width`, two-sided at twice
that level).  Every earlier check only adds chances to detect, so this is a lower bound
(normal approximation of the estimate, as the test itself uses); the simulations in
``tests/test_rollout_simulation.py`` measure the real rate through the decision code.

References: Johari, Koomen, Pekelis & Walsh (2017), KDD, §4 (the mSPRT boundary);
Howard et al. (2021), Ann. Statist. 49, §3.5.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import brentq
from scipy.special import ndtr

from abtest.errors import InvalidInput
from analysis.statistics.sequential import half_width


def _check(regression: float, margin: float, alpha: float, guardrails: int) -> None:
    if not regression > 0:
        raise InvalidInput(f"regression must be > 0, got {regression}", field="regression")
    if not margin > 0:
        raise InvalidInput(f"margin must be > 0, got {margin}", field="margin")
    if not 0 < alpha < 1:
        raise InvalidInput(f"alpha must lie in (0, 1), got {alpha}", field="alpha")
    if guardrails < 1:
        raise InvalidInput("at least one guardrail", field="guardrails")


def regression_detection_power(
    *,
    regression: float,
    cv: float,
    units_per_arm: ArrayLike,
    margin: float | None = None,
    alpha: float = 0.05,
    guardrails: int = 1,
    cv_variant: float | None = None,
) -> NDArray[np.float64]:
    """Lower bound on the chance that a guardrail regressed by ``regression`` rolls back.

    Parameters
    ----------
    regression : float
        The true relative regression (0.05: 5% worse), in the metric's bad direction.
    cv : float
        Per-unit coefficient of variation (SD / mean) of the control arm; for a rate
        ``p``, ``sqrt((1 - p) / p)``.
    units_per_arm : array_like
        Observed units per arm at the last check before shipping.
    margin : float, optional
        The guardrail's margin, which fixes the test's prior (default: ``regression``,
        the planned size).
    alpha : float
        The plan's alpha; ``guardrails`` is how many guardrails share it (Holm).
    cv_variant : float, optional
        The variant arm's CV relative to the *control* mean (default ``cv``).

    Returns
    -------
    ndarray
        ``Φ((regression - h) / √V)`` (see the module docstring), same shape as
        ``units_per_arm``.

    Examples
    --------
    A 10% regression of an error rate near 10% (cv 3), 20,000 units per arm:

    >>> round(float(regression_detection_power(regression=0.1, cv=3.0, units_per_arm=20_000)), 3)
    0.709
    """
    margin = regression if margin is None else margin
    _check(regression, margin, alpha, guardrails)
    n = np.asarray(units_per_arm, dtype=float)
    cv_v = cv if cv_variant is None else cv_variant
    variance = (cv**2 + cv_v**2) / n
    h = half_width(variance=variance, tau2=np.full(n.shape, margin**2),
                   alpha=2 * alpha / guardrails)  # fmt: skip
    return np.asarray(ndtr((regression - h) / np.sqrt(variance)), dtype=float)


def units_for_regression_power(
    *,
    regression: float,
    cv: float,
    power: float = 0.8,
    margin: float | None = None,
    alpha: float = 0.05,
    guardrails: int = 1,
) -> int:
    """Observed units per arm at which `regression_detection_power` reaches ``power``.

    Examples
    --------
    >>> units_for_regression_power(regression=0.1, cv=3.0)
    23817
    """
    if not 0 < power < 1:
        raise InvalidInput(f"power must lie in (0, 1), got {power}", field="power")

    def gap(log_n: float) -> float:
        return float(regression_detection_power(
            regression=regression, cv=cv, units_per_arm=math.exp(log_n), margin=margin,
            alpha=alpha, guardrails=guardrails,
        )) - power  # fmt: skip

    return math.ceil(math.exp(brentq(gap, math.log(2.0), math.log(1e13))))


__all__ = ["regression_detection_power", "units_for_regression_power"]
