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
