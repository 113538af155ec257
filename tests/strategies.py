"""Hypothesis strategies shared by the test modules (append new ones; keep them small)."""

from __future__ import annotations

from hypothesis import strategies as st

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
