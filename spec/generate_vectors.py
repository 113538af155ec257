"""Append cases to the hash test vectors (the file is append-only: never edit a case).

Run ``python spec/generate_vectors.py`` only when adding new kinds of cases; the test
suite checks every stored case against the implementation and the written spec.
"""

from __future__ import annotations

import json
from pathlib import Path

from abtest import Experiment, assign, hashing

PATH = Path(__file__).with_name("hash_vectors_v1.json")

UNIT_IDS = [
    "user-1", "user-2", "0", "1", "a", " ", "  leading and trailing  ", "UPPER-lower",
    "12345678901234567890", "550e8400-e29b-41d4-a716-446655440000", "user@example.com",
    "café", "naïve-ünïcödé", "Ωμέγα", "日本語のユーザー", "사용자", "مستخدم", "пользователь",
    "😀", "user-🚀-42", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "🏳️‍🌈", "e\u0301", "\u00e9", "tab\tid", "new\nline",
    "x" * 256, "é" * 256, "🙂" * 256, "a|b|c", "abtest/v1|variant|demo|", "\\", '"quoted"',
]  # fmt: skip
SALTS = ["demo", "ranker-v2", "checkout.button-color", "layer-1", "0"]

EXPERIMENTS = [
    {"key": "fifty-fifty", "status": "running",
     "variants": [{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}]},
    {"key": "ten-ninety", "status": "running",
     "variants": [{"key": "control", "weight": 10}, {"key": "treatment", "weight": 90}]},
    {"key": "three-way", "status": "running", "seed": "three-way-s2",
     "variants": [{"key": "a", "weight": 1}, {"key": "b", "weight": 1}, {"key": "c", "weight": 1}]},
    {"key": "ramp", "status": "running", "traffic": 0.2,
     "variants": [{"key": "control", "weight": 1}, {"key": "treatment", "weight": 1}]},
    {"key": "layered", "status": "running", "traffic": 0.5,
     "layer": {"name": "search", "range": [0.25, 0.75]},
     "variants": [{"key": "v1", "weight": 3}, {"key": "v2", "weight": 7}]},
    # The holdout draw (purpose "holdout", salted with the holdout's name): members get control.
    {"key": "held-out", "status": "running", "traffic": 0.8,
     "holdout": {"name": "holdout-2025", "share": 0.3},
     "variants": [{"key": "control", "weight": 1}, {"key": "treatment", "weight": 1}]},
    {"key": "held-out-shipped", "status": "shipped", "winner": "treatment",
     "holdout": {"name": "holdout-2025", "share": 0.3},
     "variants": [{"key": "control", "weight": 1}, {"key": "treatment", "weight": 1}]},
]  # fmt: skip
HOLDOUT_SALTS = ["holdout-2025", "global"]


def main() -> None:
    """Write the vector file (it keeps existing cases untouched and appends missing ones)."""
    data = json.loads(PATH.read_text()) if PATH.exists() else {"buckets": [], "assignments": []}
    seen_buckets = {(c["purpose"], c["salt"], c["unit_id"]) for c in data["buckets"]}
    draws = [(purpose, salt) for purpose in ("layer", "traffic", "variant") for salt in SALTS]
    draws += [("holdout", salt) for salt in HOLDOUT_SALTS]
    for purpose, salt in draws:
        for unit_id in UNIT_IDS:
            if (purpose, salt, unit_id) not in seen_buckets:
                data["buckets"].append({
                    "purpose": purpose, "salt": salt, "unit_id": unit_id,
                    "bucket": hashing.bucket(purpose, salt, unit_id),  # type: ignore[arg-type]
                })  # fmt: skip
    seen_assignments = {(c["experiment"]["key"], c["unit_id"]) for c in data["assignments"]}
    for config in EXPERIMENTS:
        experiment = Experiment.from_dict(config)
        for unit_id in UNIT_IDS:
            if (experiment.key, unit_id) not in seen_assignments:
                result = assign(experiment, unit_id)
                data["assignments"].append({
                    "experiment": config, "unit_id": unit_id,
                    "variant": result.variant, "reason": result.reason.value,
                })  # fmt: skip
    PATH.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
