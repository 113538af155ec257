"""Hashing spec v1: the test vectors, the written byte layout, uniformity and independence."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from abtest import Experiment, assign, assign_batch, hashing

VECTORS = json.loads(
    (Path(__file__).parents[1] / "spec" / "hash_vectors_v1.json").read_text(encoding="utf-8")
)


def spec_bucket(purpose: str, salt: str, unit_id: str) -> int:
    """The bucket as the module docstring specifies it, written independently of the code."""
    message = f"abtest/v1|{purpose}|{salt}|{unit_id}".encode()
    return int.from_bytes(hashlib.sha256(message).digest()[:4], byteorder="big")


def test_vector_file_has_hundreds_of_cases_including_hard_ids():
    """The vector file covers a few hundred cases with non-BMP, non-ASCII and long ids."""
    ids = {case["unit_id"] for case in VECTORS["buckets"]}
    assert len(VECTORS["buckets"]) + len(VECTORS["assignments"]) >= 300
    assert any(any(ord(ch) > 0xFFFF for ch in uid) for uid in ids)  # emoji, math letters
    assert any(any(0x7F < ord(ch) <= 0xFFFF for ch in uid) for uid in ids)
    assert any(len(uid) >= 256 for uid in ids)
    assert any(uid.strip() == "" for uid in ids)


@pytest.mark.parametrize("case", VECTORS["buckets"], ids=lambda c: f"{c['purpose']}-{c['salt']}")
def test_bucket_vectors(case):
    """Every stored bucket matches both the implementation and the written spec."""
    assert hashing.bucket(case["purpose"], case["salt"], case["unit_id"]) == case["bucket"]
    assert spec_bucket(case["purpose"], case["salt"], case["unit_id"]) == case["bucket"]


def test_assignment_vectors_single_and_batch():
    """Every stored assignment is reproduced by `assign` and by `assign_batch`."""
    by_experiment: dict[str, list[dict]] = {}
    for case in VECTORS["assignments"]:
        by_experiment.setdefault(case["experiment"]["key"], []).append(case)
    for cases in by_experiment.values():
        experiment = Experiment.from_dict(cases[0]["experiment"])
        batch = assign_batch(experiment, [c["unit_id"] for c in cases])
        for case, variant, reason in zip(cases, batch.variants(), batch.reasons(), strict=True):
            single = assign(experiment, case["unit_id"])
            assert (single.variant, single.reason.value) == (case["variant"], case["reason"])
            assert (variant, reason.value) == (case["variant"], case["reason"])


def test_batch_buckets_equal_single_buckets():
    """The vectorised bucket path gives the same integers as the scalar one."""
    ids = [f"u{i}" for i in range(500)] + ["😀", "é" * 300]
    batch = hashing.buckets("variant", "demo", ids)
    assert batch.tolist() == [hashing.bucket("variant", "demo", uid) for uid in ids]


def test_batch_rejects_nul_in_ids():
    """A NUL character would misalign the batch encoding, so it is refused."""
    with pytest.raises(ValueError, match="NUL"):
        hashing.buckets("variant", "demo", ["a\x00b", "c"])


@pytest.mark.parametrize(
    ("weights", "cases"),
    [([1, 1], [0.0, 0.5, 1.0]), ([1, 9], [0.0, 0.1, 1.0]), ([1, 1, 1], [0.0, 1 / 3, 2 / 3, 1.0])],
)
def test_variant_boundaries_partition_the_bucket_space(weights, cases):
    """Boundaries are the thresholds of cumulative weights and the last is exactly 2**32."""
    bounds = hashing.variant_boundaries(weights)
    assert bounds == (*(hashing.threshold(f) for f in cases[1:-1]), 2**32)


def running(key: str, weights: list[float], **extra: object) -> Experiment:
    """A running experiment with the given variant weights."""
    variants = [{"key": f"v{i}", "weight": w} for i, w in enumerate(weights)]
    return Experiment.from_dict({"key": key, "status": "running", "variants": variants, **extra})


@pytest.mark.parametrize("weights", [[50, 50], [10, 90], [1, 1, 1], [20, 30, 50]])
def test_variant_counts_are_uniform_by_weight(weights):
    """Chi-square over 200,000 ids does not reject the configured split."""
    experiment = running("uniformity", weights)
    ids = [f"user-{i}" for i in range(200_000)]
    counts = np.array(list(assign_batch(experiment, ids).counts().values()))
    expected = np.array(weights) / sum(weights) * len(ids)
    assert stats.chisquare(counts, expected).pvalue > 0.001


def test_two_experiments_are_independent():
    """A contingency chi-square finds no association between two experiments' variants."""
    ids = [f"user-{i}" for i in range(200_000)]
    first = assign_batch(running("exp-a", [1, 1]), ids).variant_index
    second = assign_batch(running("exp-b", [1, 1, 1]), ids).variant_index
    table = np.zeros((2, 3))
    np.add.at(table, (first, second), 1)
    assert stats.chi2_contingency(table).pvalue > 0.001


def test_traffic_and_variant_draws_are_independent():
    """Among included units the variant split holds even at 5% traffic (Unleash's bug)."""
    ids = [f"user-{i}" for i in range(400_000)]
    batch = assign_batch(running("low-rollout", [1, 1], traffic=0.05), ids)
    counts = np.array(list(batch.counts().values()))
    assert abs(counts.sum() / len(ids) - 0.05) < 0.002
    assert stats.chisquare(counts).pvalue > 0.001


def test_changing_the_seed_reshuffles_only_that_experiment():
    """A new seed moves about half the units of a 50/50 test and none of another test's."""
    ids = [f"user-{i}" for i in range(20_000)]
    before = assign_batch(running("seeded", [1, 1], seed="s1"), ids).variant_index
    after = assign_batch(running("seeded", [1, 1], seed="s2"), ids).variant_index
    other = assign_batch(running("other", [1, 1]), ids).variant_index
    moved = np.mean(before != after)
    assert 0.47 < moved < 0.53
    assert np.array_equal(other, assign_batch(running("other", [1, 1]), ids).variant_index)
