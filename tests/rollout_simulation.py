"""Simulated guarded rollouts through the real decision code.

Many rollouts run side by side, one hourly check at a time: the new units of each check
are drawn for all live rollouts at once (numpy), as per-arm sufficient statistics, at the
traffic of the step each rollout is at; then the checks of every live rollout are decided
by `analysis.decision.rollout.guardrail_tests` and `decide_actions`, the vectorised rules
that `decide_rollout` (the monitor's call) applies to one rollout, and each rollout
advances, holds or rolls back.  Two guardrails: an error rate (binomial, lower is better)
and a latency (a per-unit mean, lower is better).

``python -m tests.rollout_simulation`` prints the figures the README quotes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from abtest.experiment import Metric, MetricType
from abtest.rollout_plan import RolloutPlan
from analysis.decision.rollout import (
    ADVANCE,
    ROLL_BACK,
    GuardrailArms,
    decide_actions,
    guardrail_tests,
)

ERROR = Metric("error", MetricType.BINOMIAL, higher_is_better=False, margin=0.1)
LATENCY = Metric("latency_ms", MetricType.SUM, higher_is_better=False, margin=0.05)
PLAN = RolloutPlan(
    variant="v2", steps=(0.01, 0.05, 0.25, 0.5, 1.0), min_hours_per_step=24,
    min_units_per_step=200, check_interval_minutes=60, guardrails=("error", "latency_ms"),
    alpha=0.05,
)  # fmt: skip


@dataclass(frozen=True)
class Scenario:
    """Traffic and metrics of a simulation; effects are relative, on the new variant."""

    units_per_hour: float = 1000.0  # eligible units per hour (the step's share of them are in)
    error_rate: float = 0.1
    latency_mean: float = 200.0
    latency_sd: float = 100.0
    error_effect: float = 0.0
    latency_effect: float = 0.0
    max_hours: int = 24 * 30


@dataclass(frozen=True)
class Outcome:
    """What each rollout did: final action, the hour and step it ended, units per arm."""

    action: np.ndarray  # "ship", "roll_back" or "running"
    hours: np.ndarray
    step: np.ndarray
    units_control: np.ndarray
    units_variant: np.ndarray

    def share(self, action: str) -> float:
        """Fraction of the rollouts that ended with ``action``."""
        return float(np.mean(self.action == action))


def _draw(rng, n, mean, sd, rate):
    """Per-arm sums of a batch of ``n`` units: errors, latency sum and sum of squares."""
    errors = rng.binomial(n, rate)
    safe = np.maximum(n, 1)
    total = rng.normal(n * mean, np.sqrt(safe) * sd)
    spread = sd**2 * rng.chisquare(np.maximum(n - 1, 1))
    squares = np.where(n > 0, spread * (n > 1) + total**2 / safe, 0.0)
    return errors, np.where(n > 0, total, 0.0), squares


def simulate(scenario: Scenario, rollouts: int, seed: int, plan: RolloutPlan = PLAN) -> Outcome:
    """Run ``rollouts`` rollouts of ``plan`` on ``scenario`` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    share = 0.5  # weights 50/50: the step is half the traffic
    # cumulative per arm (0 control, 1 variant): units, errors, latency sum, latency sum sq
    n = np.zeros((rollouts, 2), dtype=np.int64)
    err = np.zeros((rollouts, 2))
    lat = np.zeros((rollouts, 2))
    lat2 = np.zeros((rollouts, 2))
    step = np.zeros(rollouts, dtype=np.int64)
    started = np.zeros(rollouts)
    units_at_start = np.zeros(rollouts, dtype=np.int64)
    action = np.full(rollouts, "running", dtype=object)
    ended = np.full(rollouts, scenario.max_hours, dtype=np.int64)
    steps = np.asarray(plan.steps)
    rates = (scenario.error_rate, scenario.error_rate * (1 + scenario.error_effect))
    means = (scenario.latency_mean, scenario.latency_mean * (1 + scenario.latency_effect))
    for hour in range(1, scenario.max_hours + 1):
        live = np.flatnonzero(action == "running")
        if live.size == 0:
            break
        traffic = np.minimum(1.0, steps[step[live]] / share)
        for arm in (0, 1):
            new = rng.poisson(scenario.units_per_hour * traffic * 0.5)
            e, s, q = _draw(rng, new, means[arm], scenario.latency_sd, rates[arm])
            n[live, arm] += new
            err[live, arm] += e
            lat[live, arm] += s
            lat2[live, arm] += q
        arms = _arms(n[live], err[live], lat[live], lat2[live])
        tests = guardrail_tests(arms, margins=[ERROR.margin, LATENCY.margin],
                                higher_is_better=[False, False], alpha=plan.alpha)  # fmt: skip
        codes, ships = decide_actions(plan, tests, step=step[live], hours=hour - started[live],
                                      units=n[live, 1] - units_at_start[live])  # fmt: skip
        back, ship = live[codes == ROLL_BACK], live[ships]
        action[back], ended[back] = "roll_back", hour
        action[ship], ended[ship] = "ship", hour
        up = live[(codes == ADVANCE) & ~ships]
        step[up] += 1
        started[up], units_at_start[up] = hour, n[up, 1]
    return Outcome(action, ended, step, n[:, 0].copy(), n[:, 1].copy())


def _arms(n, err, lat, lat2) -> GuardrailArms:
    """Per-arm estimates of both guardrails (columns: error, latency) from the sums."""
    with np.errstate(invalid="ignore", divide="ignore"):
        units = np.where(n >= 2, n, np.nan)
        rate = err / units
        rate_se = np.sqrt(rate * (1 - rate) / units)
        mean = lat / units
        var = np.maximum(lat2 - lat * lat / units, 0.0) / (units - 1)
        mean_se = np.sqrt(var / units)
    pair = lambda a, b: np.stack([a, b], axis=-1)  # noqa: E731 - (rollouts, guardrails)
    return GuardrailArms(
        control_mean=pair(rate[:, 0], mean[:, 0]), control_se=pair(rate_se[:, 0], mean_se[:, 0]),
        variant_mean=pair(rate[:, 1], mean[:, 1]), variant_se=pair(rate_se[:, 1], mean_se[:, 1]),
        n_control=pair(n[:, 0], n[:, 0]).astype(float),
        n_variant=pair(n[:, 1], n[:, 1]).astype(float),
    )  # fmt: skip


def expected_units_before_ship(scenario: Scenario, plan: RolloutPlan = PLAN) -> float:
    """Units per arm a rollout that passes every step has at its last check before shipping
    (each step lasting its minimum hours)."""
    per_hour = [scenario.units_per_hour * min(1.0, s / 0.5) * 0.5 for s in plan.steps[:-1]]
    return sum(rate * plan.min_hours_per_step for rate in per_hour)


def _report() -> None:  # pragma: no cover - prints the README's figures
    from dataclasses import replace

    from analysis.planning.rollout import regression_detection_power

    relaxed = replace(PLAN, ship_requires_non_inferiority=False)
    for name, scenario, count, plan in (
        ("A/A", Scenario(), 2000, PLAN),
        ("error rate +10% (its margin)", Scenario(error_effect=0.1), 1000, PLAN),
        (
            "error rate +10%, shipping without non-inferiority",
            Scenario(error_effect=0.1),
            1000,
            relaxed,
        ),
        ("latency +5% (its margin)", Scenario(latency_effect=0.05), 1000, PLAN),
    ):
        out = simulate(scenario, count, seed=7, plan=plan)
        rolled = out.action == "roll_back"
        se = math.sqrt(out.share("roll_back") * (1 - out.share("roll_back")) / count)
        print(
            f"{name}: {count} rollouts, rolled back {out.share('roll_back'):.2%} ± {se:.2%}, "
            f"shipped {out.share('ship'):.2%}, still running {out.share('running'):.2%}"
        )
        if (out.action == "ship").any():
            print(f"  time to ship: median {np.median(out.hours[out.action == 'ship']):.0f} h")
        if rolled.any():
            hours = out.hours[rolled]
            units = out.units_variant[rolled]
            by_step = np.bincount(out.step[rolled], minlength=len(PLAN.steps) - 1).tolist()
            print(
                f"  time to rollback: median {np.median(hours):.0f} h (quartiles "
                f"{np.percentile(hours, 25):.0f}-{np.percentile(hours, 75):.0f}), "
                f"rollbacks at steps 1, 2, ...: {by_step}, median "
                f"{np.median(units):,.0f} units in the new variant"
            )
    n_final = expected_units_before_ship(Scenario())
    for regression, cv in ((0.1, math.sqrt(0.9 / 0.1)), (0.05, 0.5)):
        bound = regression_detection_power(regression=regression, cv=cv, units_per_arm=n_final,
                                           guardrails=2)  # fmt: skip
        print(
            f"lower bound at {n_final:,.0f} units per arm, regression {regression}: "
            f"{float(bound):.2%}"
        )


if __name__ == "__main__":  # pragma: no cover
    _report()
