"""In-process assignment throughput: abtest single and batch beside GrowthBook's SDK.

Run: ``pip install -e '.[bench]' && python benchmarks/assignment.py [--units 1000000]``

Both sides evaluate an equivalent 50/50 experiment at full traffic for the same distinct
ids in the same run; GrowthBook is called as its docs show for a server (set the unit's
attributes, then ``run``).  Goals (issue 2): single >= 5x GrowthBook, batch >= 1,000,000/s.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Callable

from abtest import Experiment, assign, assign_batch


def timed(label: str, n: int, work: Callable[[], Counter[object]]) -> float:
    """Run ``work`` once, print its rate and split, return assignments per second."""
    start = time.perf_counter()
    split = work()
    rate = n / (time.perf_counter() - start)
    shares = ", ".join(f"{k}={v / n:.3f}" for k, v in sorted(split.items(), key=str))
    print(f"{label:<28} {rate:>12,.0f} /s   split: {shares}")
    return rate


def main() -> None:
    """Print the three rates and the two ratios against the goals."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=1_000_000)
    n = parser.parse_args().units
    ids = [f"user-{i}" for i in range(n)]
    experiment = Experiment.from_dict(
        {
            "key": "bench",
            "status": "running",
            "variants": [{"key": "control", "weight": 1}, {"key": "treatment", "weight": 1}],
        }
    )
    assign(experiment, "warm-up")

    def single() -> Counter[object]:
        return Counter(assign(experiment, uid).variant for uid in ids)

    def batch() -> Counter[object]:
        return Counter(assign_batch(experiment, ids).counts())

    from growthbook import Experiment as GBExperiment
    from growthbook import GrowthBook

    gb_experiment = GBExperiment(key="bench", variations=["control", "treatment"])
    gb = GrowthBook(attributes={"id": "warm-up"})

    def growthbook() -> Counter[object]:
        counts: Counter[object] = Counter()
        for uid in ids:
            gb.set_attributes({"id": uid})
            counts[gb.run(gb_experiment).value] += 1
        return counts

    print(f"{n:,} distinct ids, 50/50 experiment, one process")
    single_rate = timed("abtest assign()", n, single)
    batch_split: Counter[object] = Counter()
    batch_rate = timed("abtest assign_batch()", n, lambda: batch_split + batch())
    gb_rate = timed("growthbook GrowthBook.run()", n, growthbook)
    print(f"single / growthbook = {single_rate / gb_rate:.1f}x   (goal >= 5x)")
    print(f"batch               = {batch_rate / 1e6:.2f}M/s (goal >= 1.00M/s)")


if __name__ == "__main__":
    main()
