"""CUPED from aggregates equals the per-unit computation and ANCOVA, and reduces variance."""

from __future__ import annotations

import json

import numpy as np
import pytest
import statsmodels.api as sm

from abtest.errors import InvalidInput
from analysis import PairedStats, SampleStats, cuped, mean_difference


def _correlated(seed: int, n: int, rho: float, effect: float = 0.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(10, 2, n)
    y = 5 + rho * (x - 10) / 2 * 3 + np.sqrt(1 - rho**2) * rng.normal(0, 3, n) + effect
    return y, x


def test_matches_per_unit_adjustment():
    """Adjusted means and SE equal Welch on per-unit y - θ(x - x̄) computed from arrays."""
    y_c, x_c = _correlated(1, 3000, 0.6)
    y_v, x_v = _correlated(2, 2800, 0.6, effect=0.2)
    result = cuped(
        control=PairedStats.from_values(y_c, x_c), variant=PairedStats.from_values(y_v, x_v)
    )
    s_xy = np.sum((x_c - x_c.mean()) * (y_c - y_c.mean())) + np.sum(
        (x_v - x_v.mean()) * (y_v - y_v.mean())
    )
    s_xx = np.sum((x_c - x_c.mean()) ** 2) + np.sum((x_v - x_v.mean()) ** 2)
    theta = s_xy / s_xx
    x_bar = np.concatenate([x_c, x_v]).mean()
    direct = mean_difference(
        control=SampleStats.from_values(y_c - theta * (x_c - x_bar)),
        variant=SampleStats.from_values(y_v - theta * (x_v - x_bar)),
    )
    assert result.theta == pytest.approx(theta, rel=1e-9)
    assert result.effect.absolute_effect == pytest.approx(direct.absolute_effect, rel=1e-9)
    assert result.effect.absolute_se == pytest.approx(direct.absolute_se, rel=1e-9)
    assert result.effect.control_mean == pytest.approx(direct.control_mean, rel=1e-9)


def test_matches_ancova_point_estimate():
    """The effect and θ equal the OLS fit of y on treatment and x (statsmodels ANCOVA)."""
    y_c, x_c = _correlated(3, 1500, 0.8)
    y_v, x_v = _correlated(4, 1700, 0.8, effect=0.5)
    result = cuped(
        control=PairedStats.from_values(y_c, x_c), variant=PairedStats.from_values(y_v, x_v)
    )
    y = np.concatenate([y_c, y_v])
    treat = np.concatenate([np.zeros(y_c.size), np.ones(y_v.size)])
    design = sm.add_constant(np.column_stack([treat, np.concatenate([x_c, x_v])]))
    fit = sm.OLS(y, design).fit()
    assert result.effect.absolute_effect == pytest.approx(fit.params[1], rel=1e-9)
    assert result.theta == pytest.approx(fit.params[2], rel=1e-9)
    # ANCOVA's homoscedastic SE and CUPED's Welch SE agree closely for balanced noise.
    assert result.effect.absolute_se == pytest.approx(fit.bse[1], rel=0.02)


@pytest.mark.parametrize("rho", [0.3, 0.6, 0.9])
def test_variance_reduction_is_about_rho_squared(rho):
    """On correlated data the variance of the effect shrinks by about ρ²."""
    y_c, x_c = _correlated(5, 20_000, rho)
    y_v, x_v = _correlated(6, 20_000, rho)
    result = cuped(
        control=PairedStats.from_values(y_c, x_c), variant=PairedStats.from_values(y_v, x_v)
    )
    assert result.variance_reduction == pytest.approx(rho**2, abs=0.02)
    assert result.correlation == pytest.approx(rho, abs=0.02)
    assert result.effect.absolute_se < result.unadjusted.absolute_se


def test_constant_covariate_changes_nothing():
    """A covariate without variation gives θ = 0 and the unadjusted effect."""
    y_c, _ = _correlated(7, 500, 0.5)
    y_v, _ = _correlated(8, 500, 0.5)
    ones_c, ones_v = np.ones_like(y_c), np.ones_like(y_v)
    result = cuped(
        control=PairedStats.from_values(y_c, ones_c), variant=PairedStats.from_values(y_v, ones_v)
    )
    assert result.theta == 0.0
    assert result.variance_reduction == pytest.approx(0.0, abs=1e-12)
    assert result.effect.absolute_effect == pytest.approx(result.unadjusted.absolute_effect)
    assert result.confidence_interval(0.9) == pytest.approx(
        result.unadjusted.confidence_interval(0.9)
    )


def test_to_dict_is_json():
    """to_dict carries the adjusted effect, θ and the variance reduction as plain JSON."""
    y_c, x_c = _correlated(9, 300, 0.5)
    y_v, x_v = _correlated(10, 300, 0.5)
    out = cuped(
        control=PairedStats.from_values(y_c, x_c), variant=PairedStats.from_values(y_v, x_v)
    ).to_dict()
    parsed = json.loads(json.dumps(out, allow_nan=False))
    assert parsed["kind"] == "cuped"
    assert 0 < parsed["variance_reduction"] < 1
    assert parsed["unadjusted"]["kind"] == "mean"


def test_too_few_units():
    """An arm with one unit raises InvalidInput naming it."""
    arm = PairedStats.from_values(np.array([1.0, 2.0]), np.array([1.0, 3.0]))
    with pytest.raises(InvalidInput) as info:
        cuped(control=arm, variant=PairedStats(1, 1.0, 1.0, 1.0, 1.0, 1.0))
    assert info.value.field == "variant"
