"""Hypothesis strategies shared by the test modules (append new ones; keep them small)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import strategies as st

from analysis.statistics.aggregates import SampleStats

# -- assignment ---------------------------------------------------------------------------
slugs = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,20}", fullmatch=True)
unit_ids = st.text(
    alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=64,
)
weights = st.floats(min_value=0.01, max_value=100.0, allow_nan=False, allow_infinity=False)
traffic_fractions = st.floats(min_value=0.001, max_value=1.0, allow_nan=False)


# -- inference (analysis/inference, multiple, bayesian) -------------------------------------
# Per-unit metric values: bounded and finite so sums of squares stay well conditioned.
unit_values = st.lists(
    st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False),
    min_size=2,
    max_size=60,
)
# (n, conversions) of one binomial arm.
conversions = st.integers(min_value=1, max_value=100_000).flatmap(
    lambda n: st.tuples(st.just(n), st.integers(min_value=0, max_value=n))
)
alternatives = st.sampled_from(["two-sided", "greater", "less"])
confidence_levels = st.floats(min_value=0.5, max_value=0.999)
p_value_lists = st.lists(
    st.one_of(st.floats(min_value=0.0, max_value=1.0), st.sampled_from([0.0, 0.01, 0.05, 1.0])),
    min_size=1,
    max_size=40,
)


# -- power and sample size (tests/test_power.py) -------------------------------------------
baselines = st.floats(min_value=0.01, max_value=0.9, allow_nan=False)
relative_mdes = st.floats(min_value=0.02, max_value=0.5, allow_nan=False)
standardised_effects = st.floats(min_value=0.02, max_value=2.0, allow_nan=False)
alphas = st.sampled_from([0.001, 0.01, 0.05, 0.1, 0.2])
powers = st.floats(min_value=0.5, max_value=0.99, allow_nan=False)
# "alternatives" (above) is shared with the inference tests.
allocation_ratios = st.floats(min_value=0.25, max_value=4.0, allow_nan=False)
sample_sizes = st.integers(min_value=10, max_value=1_000_000)
# Heavy-tailed non-negative per-unit values (revenue-like) for winsorizing properties.
revenue_samples = st.lists(
    st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=1e6, allow_nan=False)),
    min_size=2,
    max_size=200,
)


# -- sequential tests (tests/test_sequential.py) -------------------------------------------
@st.composite
def _sequential_looks(draw: st.DrawFn) -> list[tuple[SampleStats, SampleStats]]:
    """Cumulative (control, variant) looks: each look adds a few units to both arms."""
    values = st.lists(st.floats(min_value=-100, max_value=100, allow_nan=False), min_size=2,
                      max_size=20)  # fmt: skip
    control: list[float] = []
    variant: list[float] = []
    looks = []
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        control += draw(values)
        variant += draw(values)
        looks.append((SampleStats.from_values(np.array(control)),
                      SampleStats.from_values(np.array(variant))))  # fmt: skip
    return looks


sequential_looks = _sequential_looks()


# -- whole experiments (tests/test_analyze_sequential.py) -----------------------------------
@st.composite
def _experiment_data(draw: st.DrawFn) -> tuple[pd.DataFrame, pd.DataFrame, float | None]:
    """Small random exposures and outcomes in the export schema, with an attribution window
    in hours (or None): units arrive over a few days, events fall before and after."""
    n = draw(st.integers(min_value=8, max_value=60))
    days = draw(st.floats(min_value=0.5, max_value=6.0))
    rate = draw(st.floats(min_value=0.05, max_value=0.9))
    window = draw(st.sampled_from([None, 2.0, 30.0, 72.0]))
    rng = np.random.default_rng(draw(st.integers(min_value=0, max_value=2**32 - 1)))
    t0 = pd.Timestamp("2025-03-01 06:00")
    start = t0 + pd.to_timedelta(rng.uniform(0, days * 86400, n), unit="s")
    exposures = pd.DataFrame({"unit_id": [f"u{i}" for i in range(n)], "experiment": "exp",
                              # both arms always: units 0 and 1 are one of each
                              "variant": np.r_[["control", "treatment"],
                                               rng.choice(["control", "treatment"], n - 2)],
                              "timestamp": start})  # fmt: skip
    events = rng.poisson(rate * 3, n)
    events[0] += 1  # an outcome file is never empty
    unit = np.repeat(np.arange(n), events)
    delay = rng.uniform(-24, 96, unit.size)  # hours after exposure, some before it
    outcomes = pd.DataFrame({
        "event_id": [f"e{i}" for i in range(unit.size)],
        "unit_id": [f"u{i}" for i in unit],
        "metric": rng.choice(["buy", "rev"], unit.size),
        "value": rng.exponential(10.0, unit.size).round(2),
        "timestamp": start[unit] + pd.to_timedelta(delay, unit="h"),
    })  # fmt: skip
    return exposures, outcomes, window


experiment_data = _experiment_data()
