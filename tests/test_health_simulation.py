"""The health checks' false-alarm rates on steady traffic and their detection of planted
failures stay within the bounds the README states (``tests/health_simulation.py``)."""

from __future__ import annotations

import pytest

from analysis.statistics import health
from tests import health_simulation as simulation

# The README's stated bounds: false alarms per experiment-day on steady traffic.
FALSE_ALARM_BOUNDS = {
    health.EXPOSURE_DROP: 1e-4,
    health.EVENT_DROP: 1e-4,
    health.METRIC_DROP: 5e-4,
    health.METRIC_JUMP: 5e-4,
    health.MISSING_EVENTS: 1e-4,
    health.SAMPLE_RATIO_MISMATCH: 2e-3,  # 0.001 per look, looks correlated
}


@pytest.fixture(scope="module")
def traffic() -> simulation.Traffic:
    """1,000 experiments x 60 days of steady traffic (seeded)."""
    return simulation.simulate_traffic(seed=2024)


@pytest.mark.slow
def test_false_alarm_rates_per_experiment_day(traffic):
    """Each check kind alarms on at most its stated share of steady experiment-days."""
    rates = simulation.false_alarm_rates(traffic)
    assert set(rates) == set(FALSE_ALARM_BOUNDS)
    for kind, rate in rates.items():
        assert rate <= FALSE_ALARM_BOUNDS[kind], (kind, rate)


@pytest.mark.slow
def test_guardrail_false_alarms_per_experiment():
    """The always-valid guardrail check alarms on at most about alpha (2.5%) of harmless
    A/A experiments over 14 daily looks (with 200 experiments, 5% is 2.2 SEs above 2.5%)."""
    assert simulation.guardrail_false_alarms(seed=7) <= 0.05


@pytest.mark.slow
def test_planted_failures_are_caught(traffic):
    """A broken client is caught the same day; a collapsed or silent metric the same day in
    large experiments, and a collapse within a week in most small ones too (the sustained
    rule); a +30% jump within a week in nearly all large ones."""
    found = simulation.planted(traffic, seed=99)
    client = found["broken client (exposures to 10%): exposure_drop"]
    assert client.same_day >= 0.99
    assert found["broken client in one variant: exposure_drop[v2]"].same_day >= 0.99
    collapse = found["metric collapse (v2 conversions to 10%): metric_drop"]
    assert collapse.same_day_large >= 0.99 and collapse.same_day >= 0.75
    assert collapse.within_week >= 0.9
    assert found["metric logging stops in v2: missing_events"].same_day_large >= 0.99
    assert found["metric jump (v2 conversions +30%): metric_jump"].within_week_large >= 0.9
