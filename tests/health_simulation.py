"""Steady synthetic traffic through the health checks of `analysis.statistics.health`:
false alarms per check kind per experiment-day, and how fast planted failures are caught.

Every experiment-day is judged exactly as the monitor judges the latest day: its count or
value against the (up to) 14 days before it, from the 8th day on.  The traffic is seeded
and vectorised (1,000 experiments x 60 days in about a second):

- units per day: Poisson around a base rate drawn log-uniformly from 200 to 30,000, times
  a day-of-week profile (weekends down to about 70%, amplitude and phase per experiment),
  day-level log-normal noise (sd 0.08, beyond Poisson) and a slow trend (+-20% over the 60
  days); two variants at 50/50;
- a conversion metric per variant: a rate drawn from 3% to 30% per experiment, with its
  own day-of-week effect (+-3%) and day-level noise (sd 0.03); its daily value is
  conversions / units (judged with the binomial SE).

``python -m tests.health_simulation`` prints the table the README quotes;
``tests/test_health_simulation.py`` asserts it stays within the stated bounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from analysis.statistics import health
from analysis.statistics.aggregates import SampleStats
from analysis.statistics.inference import mean_difference
from analysis.statistics.sequential_margin import sequential_margin_test

DAYS = 60
EXPERIMENTS = 1_000
ONSET = 40  # day a planted failure starts
SRM_EXPERIMENTS = 200


@dataclass(frozen=True)
class Traffic:
    """Daily units and conversions per experiment, day and variant: shape (E, T, 2)."""

    units: np.ndarray
    conversions: np.ndarray


def simulate_traffic(seed: int, experiments: int = EXPERIMENTS, days: int = DAYS) -> Traffic:
    """Steady traffic as described in the module docstring."""
    rng = np.random.default_rng(seed)
    t = np.arange(days)
    base = np.exp(rng.uniform(np.log(200), np.log(30_000), experiments))
    profile = np.array([1.0, 1.02, 1.03, 1.0, 0.95, 0.78, 0.72])
    amplitude = rng.uniform(0.5, 1.5, experiments)[:, None]
    phase = rng.integers(0, 7, experiments)[:, None]
    weekly = 1 + amplitude * (profile[(t[None, :] + phase) % 7] - 1)
    trend = 1 + rng.uniform(-0.2, 0.2, experiments)[:, None] * t[None, :] / days
    noise = rng.lognormal(0.0, 0.08, (experiments, days))
    total = rng.poisson(base[:, None] * weekly * trend * noise)
    first = rng.binomial(total, 0.5)
    units = np.stack([first, total - first], axis=-1)
    rate = rng.uniform(0.03, 0.3, experiments)[:, None]
    rate_weekly = 1 + 0.03 * np.sin(2 * np.pi * (t[None, :] + phase) / 7)
    rate_noise = rng.lognormal(0.0, 0.03, (experiments, days))
    p = np.clip(rate * rate_weekly * rate_noise, 0, 1)[..., None]
    return Traffic(units=units, conversions=rng.binomial(units, p))


def _windows(series: np.ndarray, window: int = health.WINDOW) -> tuple[np.ndarray, np.ndarray]:
    """(history, current) for every day along axis 1: history (E, T, window), NaN-padded."""
    values = np.moveaxis(np.asarray(series, float), 1, -1)
    padded = np.concatenate([np.full((*values.shape[:-1], window), np.nan), values], axis=-1)
    view = sliding_window_view(padded, window + 1, axis=-1)
    return np.moveaxis(view[..., :window], -2, 1), np.moveaxis(view[..., window], -1, 1)


def rate_alarms(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`rate_drop_test` on every day of ``counts`` (E, T[, ...]): (alarm, critical)."""
    history, current = _windows(counts)
    test = health.rate_drop_test(history, current)
    return test.alarm, test.critical


def trend_alarms(rates: np.ndarray, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`metric_trend`'s two rules on every day of daily conversion ``rates`` over ``units``:
    (drop, jump).  One day: `trend_series` (the binomial SE at each day's baseline median,
    as the monitor computes it); sustained: `cusum_test` over the `health.WINDOW` days up to
    each day, as the monitor runs it on its series."""
    values = np.moveaxis(rates, 1, -1)  # (E, variants, T)
    test = health.trend_series(values, units=np.moveaxis(units, 1, -1))
    judged = (test.periods >= health.MIN_HISTORY) & np.isfinite(test.z)
    z = np.where(judged, test.z, 0.0)
    rel = np.where(judged, test.relative_change, 0.0)
    pad = np.zeros((*z.shape[:-1], health.WINDOW - 1))
    z_windows = sliding_window_view(np.concatenate([pad, z], axis=-1), health.WINDOW, axis=-1)
    rel_windows = sliding_window_view(np.concatenate([pad, rel], axis=-1), health.WINDOW,
                                      axis=-1)  # fmt: skip
    sustained = health.cusum_test(z_windows, rel_windows)
    drop = test.drop | sustained.drop
    jump = (test.jump | sustained.jump) & ~drop
    return np.moveaxis(drop, -1, 1), np.moveaxis(jump, -1, 1)


def conversion_rates(traffic: Traffic) -> tuple[np.ndarray, np.ndarray]:
    """Daily conversion rate per variant, and the units it is over."""
    units = np.maximum(traffic.units, 1)
    return traffic.conversions / units, units


def srm_alarms(units: np.ndarray, days: range) -> np.ndarray:
    """`sample_ratio_mismatch` on the cumulative units of each experiment and day in
    ``days``: (E, len(days)) booleans."""
    out = np.zeros((units.shape[0], len(days)), dtype=bool)
    for i, units_of in enumerate(units):
        for j, day in enumerate(days):
            series = {"v1": units_of[: day + 1, 0], "v2": units_of[: day + 1, 1]}
            out[i, j] = bool(health.sample_ratio_mismatch(series, {"v1": 1.0, "v2": 1.0}))
    return out


def judged_days(days: int = DAYS) -> slice:
    """Days with a full minimum history (the checks say nothing before)."""
    return slice(health.MIN_HISTORY, days)


def false_alarm_rates(traffic: Traffic) -> dict[str, float]:
    """Per kind: the share of judged experiment-days with at least one alarm."""
    judged = judged_days(traffic.units.shape[1])
    total = traffic.units.sum(axis=-1)
    exposure = np.concatenate([rate_alarms(total)[0][..., None], rate_alarms(traffic.units)[0]],
                              axis=-1).any(axis=-1)  # fmt: skip
    events = rate_alarms(traffic.conversions.sum(axis=-1))[0]
    rate, units = conversion_rates(traffic)
    drop, jump = trend_alarms(rate, units)
    _, missing = health.missing_events_test(traffic.conversions, traffic.units)
    # srm_test is called once per experiment-day (about 0.3 ms each): a fifth of the
    # experiments keeps the run short.
    srm = srm_alarms(traffic.units[:SRM_EXPERIMENTS], range(judged.start, traffic.units.shape[1]))
    return {
        health.EXPOSURE_DROP: float(exposure[:, judged].mean()),
        health.EVENT_DROP: float(events[:, judged].mean()),
        health.METRIC_DROP: float(drop.any(axis=-1)[:, judged].mean()),
        health.METRIC_JUMP: float(jump.any(axis=-1)[:, judged].mean()),
        health.MISSING_EVENTS: float(missing.any(axis=-1)[:, judged].mean()),
        health.SAMPLE_RATIO_MISMATCH: float(srm.mean()),
    }


def guardrail_false_alarms(seed: int, experiments: int = 200, days: int = 14) -> float:
    """Share of A/A experiments (harm 0, margin 5%) whose always-valid guardrail check
    alarms on any of ``days`` daily looks (a per-experiment rate, not per day)."""
    rng = np.random.default_rng(seed)
    per_day = rng.integers(200, 2_000, experiments)
    mean, sd = 100.0, 30.0
    alarmed = 0
    tau2 = (0.1 * sd) ** 2  # the stated prior: 0.1 per-unit SD
    for e in range(experiments):
        n = per_day[e] * np.arange(1, days + 1)
        values = rng.normal(mean, sd, (2, days, per_day[e]))
        sums = values.sum(axis=-1).cumsum(axis=1)
        squares = (values**2).sum(axis=-1).cumsum(axis=1)
        for day in range(days):
            arms = [SampleStats(int(n[day]), float(sums[a, day]), float(squares[a, day]))
                    for a in (0, 1)]  # fmt: skip
            effect = mean_difference(control=arms[0], variant=arms[1])
            test = sequential_margin_test(effect, margin=0.05, tau2=tau2, relative=True,
                                          higher_is_better=False)  # fmt: skip
            if health.guardrail_regression([("latency", "v2", test)]):
                alarmed += 1
                break
    return alarmed / experiments


@dataclass(frozen=True)
class Detection:
    """How a planted failure was caught: share detected on its first day and within 7
    days, over all experiments and over those with at least `LARGE` units per variant and
    day (one day of a small experiment cannot show a modest change)."""

    same_day: float
    within_week: float
    same_day_large: float
    within_week_large: float


LARGE = 5_000  # units per variant and day


def detection(alarms: np.ndarray, large: np.ndarray, onset: int = ONSET) -> Detection:
    """From per-experiment-day alarms (E, T): delays from ``onset`` to the first alarm."""
    after = alarms[:, onset:]
    delay = np.where(after.any(axis=1), after.argmax(axis=1), np.inf)
    return Detection(same_day=float((delay == 0).mean()), within_week=float((delay <= 6).mean()),
                     same_day_large=float((delay[large] == 0).mean()),
                     within_week_large=float((delay[large] <= 6).mean()))  # fmt: skip


def planted(traffic: Traffic, seed: int) -> dict[str, Detection]:
    """Failures planted from day `ONSET` on, and the check that should catch each."""
    rng = np.random.default_rng(seed)
    out: dict[str, Detection] = {}
    large = traffic.units[:, :ONSET].mean(axis=(1, 2)) >= LARGE
    broken = traffic.units.copy()
    broken[:, ONSET:] = rng.binomial(broken[:, ONSET:], 0.1)  # a broken client: 10% left
    out["broken client (exposures to 10%): exposure_drop"] = detection(
        rate_alarms(broken.sum(axis=-1))[0], large
    )
    one = traffic.units.copy()
    one[:, ONSET:, 1] = rng.binomial(one[:, ONSET:, 1], 0.1)
    out["broken client in one variant: exposure_drop[v2]"] = detection(
        rate_alarms(one)[0][..., 1], large
    )
    for label, factor, which in (
        ("metric collapse (v2 conversions to 10%): metric_drop", 0.1, 0),
        ("metric jump (v2 conversions +30%): metric_jump", 1.3, 1),
        ("metric jump (v2 conversions +10%): metric_jump", 1.1, 1),
    ):
        conversions = traffic.conversions.copy()
        p = np.clip(conversions[:, ONSET:, 1] / np.maximum(traffic.units[:, ONSET:, 1], 1)
                    * factor, 0, 1)  # fmt: skip
        conversions[:, ONSET:, 1] = rng.binomial(traffic.units[:, ONSET:, 1], p)
        changed = Traffic(units=traffic.units, conversions=conversions)
        out[label] = detection(trend_alarms(*conversion_rates(changed))[which][..., 1], large)
    silent = traffic.conversions.copy()
    silent[:, ONSET:, 1] = 0
    _, missing = health.missing_events_test(silent, traffic.units)
    out["metric logging stops in v2: missing_events"] = detection(missing[..., 1], large)
    return out


def main() -> None:
    """Print the figures the README quotes."""
    traffic = simulate_traffic(seed=2024)
    judged = EXPERIMENTS * (DAYS - health.MIN_HISTORY)
    print(f"false alarms per experiment-day ({EXPERIMENTS:,} experiments x {DAYS} days, "
          f"{judged:,} judged experiment-days):")  # fmt: skip
    for kind, rate in false_alarm_rates(traffic).items():
        days = (
            judged
            if kind != health.SAMPLE_RATIO_MISMATCH
            else SRM_EXPERIMENTS * (DAYS - health.MIN_HISTORY)
        )
        print(f"  {kind:<24} {rate:.2e}  ({round(rate * days)} of {days:,})")
    rate = guardrail_false_alarms(seed=7)
    print(f"  {'guardrail_regression':<24} {rate:.3f} per experiment over 14 daily looks (A/A)")
    print(f"planted from day {ONSET}: caught the same day / within a week (all; "
          f">= {LARGE:,} units per variant and day)")  # fmt: skip
    for label, found in planted(traffic, seed=99).items():
        print(f"  {label:<56} {found.same_day:6.1%} {found.within_week:6.1%}  "
              f"({found.same_day_large:6.1%} {found.within_week_large:6.1%})")  # fmt: skip


if __name__ == "__main__":
    main()
