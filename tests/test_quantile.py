"""Quantile metrics: exact point estimates and clustered SEs that respect the unit."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from abtest.errors import InvalidInput
from analysis import quantile_difference
from analysis.statistics.quantile import weighted_quantile


def _clustered(seed: int, units: int, events_per_unit: int, shift: float = 0.0):
    """Lognormal latencies with a per-unit random effect (slow devices stay slow)."""
    rng = np.random.default_rng(seed)
    unit = np.repeat(np.arange(units), events_per_unit)
    device = rng.normal(0, 0.6, units)
    values = np.exp(shift + device[unit] + rng.normal(0, 0.6, unit.size))
    return values, unit


def _run(c, v, **kwargs):
    return quantile_difference(
        control_values=c[0], control_units=c[1], variant_values=v[0], variant_units=v[1], **kwargs
    )


@pytest.mark.parametrize("q", [0.01, 0.5, 0.9, 0.95, 0.99])
@pytest.mark.parametrize("size", [7, 100, 1001])
def test_point_estimate_is_numpy_inverted_cdf(q, size):
    """Each arm's quantile equals numpy.quantile(method="inverted_cdf") of its events."""
    rng = np.random.default_rng(size)
    c = (rng.exponential(1.0, size), rng.integers(0, 5, size))
    v = (rng.exponential(1.2, size), rng.integers(0, 5, size))
    result = _run(c, v, q=q, method="asymptotic")
    assert result.effect.control_mean == np.quantile(c[0], q, method="inverted_cdf")
    assert result.effect.variant_mean == np.quantile(v[0], q, method="inverted_cdf")


@pytest.mark.parametrize("q", [0.1, 0.5, 0.95])
def test_weighted_quantile_equals_quantile_of_repeated_values(q):
    """Integer weights act as repeated events, row by row."""
    rng = np.random.default_rng(1)
    values = np.sort(rng.normal(size=50))
    weights = rng.integers(0, 4, size=(6, 50))
    weights[:, 0] += 1  # no all-zero row
    got = weighted_quantile(values, weights, q)
    want = [np.quantile(np.repeat(values, w), q, method="inverted_cdf") for w in weights]
    np.testing.assert_array_equal(got, want)


def test_bootstrap_and_asymptotic_agree_on_clustered_data():
    """The unit bootstrap and the delta-method/Woodruff SE agree within 15 %."""
    c, v = _clustered(2, 1500, 8), _clustered(3, 1500, 8, shift=0.05)
    boot = _run(c, v, q=0.95, n_boot=800, seed=4)
    asym = _run(c, v, q=0.95, method="asymptotic")
    assert boot.effect.absolute_effect == asym.effect.absolute_effect
    assert boot.effect.absolute_se == pytest.approx(asym.effect.absolute_se, rel=0.15)
    assert boot.percentile_ci[0] < boot.effect.absolute_effect < boot.percentile_ci[1]


@pytest.mark.parametrize("method", ["bootstrap", "asymptotic"])
def test_duplicated_events_do_not_shrink_the_se(method):
    """Copying each unit's single event 5 times leaves the clustered SE about unchanged,
    while pretending the copies are independent units shrinks it by about sqrt(5)."""
    rng = np.random.default_rng(5)
    c_vals, v_vals = rng.lognormal(0, 0.5, 1500), rng.lognormal(0, 0.5, 1500)
    ids = np.arange(1500)
    single = _run((c_vals, ids), (v_vals, ids), q=0.9, method=method, n_boot=600)
    rep_ids = np.repeat(ids, 5)
    copies = (np.repeat(c_vals, 5), rep_ids), (np.repeat(v_vals, 5), rep_ids)
    clustered = _run(*copies, q=0.9, method=method, n_boot=600)
    flat_ids = np.arange(7500)
    naive = _run(
        (copies[0][0], flat_ids), (copies[1][0], flat_ids), q=0.9, method=method, n_boot=600
    )
    assert clustered.effect.absolute_se == pytest.approx(single.effect.absolute_se, rel=0.15)
    assert naive.effect.absolute_se == pytest.approx(
        single.effect.absolute_se / np.sqrt(5), rel=0.2
    )


def test_asymptotic_se_matches_the_textbook_formula():
    """For iid normal events the SE is sqrt(q(1-q)/n)/f(x_q) within 10 %."""
    rng = np.random.default_rng(6)
    n, q = 20_000, 0.9
    ids = np.arange(n)
    result = _run((rng.normal(size=n), ids), (rng.normal(size=n), ids), q=q, method="asymptotic")
    theory = np.sqrt(q * (1 - q) / n) / stats.norm.pdf(stats.norm.ppf(q))
    assert result.effect.absolute_se == pytest.approx(np.sqrt(2) * theory, rel=0.1)


def test_seed_fixes_the_bootstrap():
    """The same seed reproduces the result exactly; another seed changes the SE."""
    c, v = _clustered(7, 300, 4), _clustered(8, 300, 4)
    a = _run(c, v, q=0.5, seed=11, n_boot=200)
    b = _run(c, v, q=0.5, seed=11, n_boot=200)
    other = _run(c, v, q=0.5, seed=12, n_boot=200)
    assert a == b
    assert a.effect.absolute_se != other.effect.absolute_se


def test_to_dict_is_json():
    """to_dict carries the quantile effect and the method settings as JSON."""
    c, v = _clustered(9, 200, 3), _clustered(10, 200, 3)
    for method in ("bootstrap", "asymptotic"):
        out = json.loads(
            json.dumps(_run(c, v, q=0.95, method=method, n_boot=200).to_dict(), allow_nan=False)
        )
        assert out["kind"] == "quantile"
        assert out["method"] == method
        assert out["events_control"] == 600


GOOD = (np.arange(10.0), np.arange(10) % 3)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"q": 1.0}, "q"),
        ({"q": 0.5, "n_boot": 10}, "n_boot"),
        ({"q": 0.5, "method": "exact"}, "method"),
        ({"q": 0.5, "control": (np.array([1.0, np.nan]), np.array([1, 2]))}, "control"),
        ({"q": 0.5, "control": (np.arange(3.0), np.array([1, 1, 1]))}, "control"),
        ({"q": 0.5, "variant": (np.arange(3.0), np.array([1, 2]))}, "variant"),
    ],
)
def test_bad_input(kwargs, field):
    """Bad q, too few replicates or units, nan values or misaligned ids raise InvalidInput."""
    c = kwargs.pop("control", GOOD)
    v = kwargs.pop("variant", GOOD)
    with pytest.raises(InvalidInput) as info:
        _run(c, v, **kwargs)
    assert info.value.field == field
