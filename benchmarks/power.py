"""Benchmark: sample size for a grid of 10,000 scenarios, abtest vs statsmodels ``solve_power``.

The grid crosses effect size d (50 values), alpha (4), power (10) and the allocation ratio
(5): 10,000 two-sample designs.  In the same run it times

- ``abtest vectorised``: one call of `analysis.sample_size_mean` on the whole grid
  (closed form with ``ndtri``, two-sided opposite tail by a fixed-point iteration);
- ``abtest per call``: the same function called once per scenario (Python overhead);
- ``statsmodels``: ``NormalIndPower().solve_power`` once per scenario (root finding), on
  every scenario or on a seeded random sample of them (``--statsmodels-sample``);
- the same three for the exact t-test (``test="t"`` vs ``TTestIndPower``), on a sample.

and checks that the rounded-up sample sizes are identical (and the unrounded roots agree).
It prints time per scenario and the speed-up ratios; exit code 1 if any result differs by
more than one unit.  Usage::

    python benchmarks/power.py [--statsmodels-sample 1000] [--t-sample 200]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

# Run as a script, this folder is first on sys.path; keep `import analysis` on the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

from statsmodels.stats.power import NormalIndPower, TTestIndPower  # noqa: E402

from analysis import sample_size_mean  # noqa: E402


def grid() -> dict[str, np.ndarray]:
    """10,000 scenarios: d x alpha x power x ratio, flattened."""
    d, alpha, power, ratio = np.meshgrid(
        np.geomspace(0.02, 1.0, 50),
        np.array([0.01, 0.05, 0.1, 0.2]),
        np.linspace(0.5, 0.95, 10),
        np.array([0.5, 1.0, 1.5, 2.0, 3.0]),
        indexing="ij",
    )
    return {"d": d.ravel(), "alpha": alpha.ravel(), "power": power.ravel(), "ratio": ratio.ravel()}


def best_time(run: Callable[[], object], repeats: int) -> float:
    """Best wall time of ``repeats`` runs (seconds): the least disturbed by other processes."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def compare(
    name: str,
    test: str,
    engine: NormalIndPower | TTestIndPower,
    g: dict[str, np.ndarray],
    sample: np.ndarray,
) -> bool:
    """Time and check one test type; returns whether every sampled result agrees."""
    n_all = len(g["d"])
    vectorised = best_time(
        lambda: sample_size_mean(
            std=1.0, mde=g["d"], alpha=g["alpha"], power=g["power"], ratio=g["ratio"], test=test
        ),
        repeats=5,
    )
    ours = sample_size_mean(
        std=1.0, mde=g["d"], alpha=g["alpha"], power=g["power"], ratio=g["ratio"], test=test
    )
    per_call_sample = sample[: min(len(sample), 500)]
    start = time.perf_counter()
    for i in per_call_sample:
        sample_size_mean(
            std=1.0,
            mde=g["d"][i],
            alpha=g["alpha"][i],
            power=g["power"][i],
            ratio=g["ratio"][i],
            test=test,
        )
    per_call = (time.perf_counter() - start) / len(per_call_sample)

    reference = np.empty(len(sample))
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsmodels' root finder warns on its fallbacks
        for k, i in enumerate(sample):
            reference[k] = engine.solve_power(
                effect_size=g["d"][i],
                alpha=g["alpha"][i],
                power=g["power"][i],
                ratio=g["ratio"][i],
                alternative="two-sided",
            )
    sm_per = (time.perf_counter() - start) / len(sample)

    ceil_ours = ours.n_per_variant[sample]
    ceil_ref = np.ceil(reference).astype(np.int64)
    identical = int(np.sum(ceil_ours == ceil_ref))
    max_diff = int(np.max(np.abs(ceil_ours - ceil_ref)))
    rel = np.abs(ours.n_per_variant_exact[sample] / reference - 1)
    ours_per = vectorised / n_all

    print(f"\n{name}: {n_all:,} scenarios, statsmodels on {len(sample):,} of them")
    print(f"  abtest vectorised   {ours_per * 1e6:10.3f} us/scenario ({vectorised * 1e3:.1f} ms)")
    print(f"  abtest per call     {per_call * 1e6:10.1f} us/scenario")
    print(f"  statsmodels         {sm_per * 1e6:10.1f} us/scenario ({type(engine).__name__})")
    print(f"  ratio vectorised    {sm_per / ours_per:10.0f}x faster than statsmodels")
    print(f"  ratio per call      {sm_per / per_call:10.1f}x faster than statsmodels")
    print(
        f"  identical ceil(n)   {identical:,} / {len(sample):,}; max |diff| {max_diff}; "
        f"max relative diff of the roots {rel.max():.1e}"
    )
    return max_diff <= 1


def main() -> int:
    """Run the benchmark; exit 1 if any sampled result differs by more than one unit."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--statsmodels-sample",
        type=int,
        default=1000,
        help="z scenarios solved by statsmodels (10000 = all; ~5 ms each)",
    )
    parser.add_argument(
        "--t-sample", type=int, default=200, help="t-test scenarios solved by statsmodels"
    )
    args = parser.parse_args()
    g = grid()
    rng = np.random.default_rng(0)
    n = len(g["d"])
    z_sample = np.sort(rng.choice(n, size=min(args.statsmodels_sample, n), replace=False))
    t_sample = np.sort(rng.choice(n, size=min(args.t_sample, n), replace=False))
    ok = compare("z-test (NormalIndPower)", "z", NormalIndPower(), g, z_sample)
    ok &= compare("t-test (TTestIndPower)", "t", TTestIndPower(), g, t_sample)
    print("\nresults agree within one unit" if ok else "\nMISMATCH: see above")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
