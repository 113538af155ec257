"""Simulated traffic for the monitor's tests: units assigned through the real store at a
controllable time, each sending a latency and maybe an error event right away."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from abtest.events import Event
from abtest.store import Store
from service.monitor.clock import SettableClock, to_us

START = datetime(2026, 3, 2, tzinfo=UTC)


def clocked_store(client: Any, clock: SettableClock) -> Store:
    """A store whose exposures, events and audit entries are dated by ``clock``."""
    return Store(client, now_us=lambda: to_us(clock.now()))


def rollout_experiment(
    key: str = "ranker-v3", *, latency_margin: float = 0.05, **plan: Any
) -> dict[str, Any]:
    """A 50/50 experiment with latency and error guardrails and a small rollout plan."""
    return {
        "key": key,
        "control": "v1",
        "variants": [{"key": "v1", "weight": 1}, {"key": "v2", "weight": 1}],
        "primary_metric": {"name": "purchase", "type": "binomial"},
        "guardrail_metrics": [
            {"name": "latency_ms", "type": "sum", "higher_is_better": False,
             "margin": latency_margin},
            {"name": "error", "type": "binomial", "higher_is_better": False, "margin": 0.5},
        ],
        "rollout": {"steps": [0.1, 0.5, 1], "min_hours_per_step": 2, "min_units_per_step": 20,
                    "check_interval_minutes": 60, "observation_hours": 0.5, **plan},
    }  # fmt: skip


@dataclass
class Traffic:
    """Drives units through ``store`` at ``clock``'s time; ``latency[variant]`` is the mean
    latency each variant gives (SD a third of it), ``error_rate`` the chance of an error."""

    store: Store
    clock: SettableClock
    experiment: str = "ranker-v3"
    latency: dict[str, float] = field(default_factory=lambda: {"v1": 200.0, "v2": 200.0})
    error_rate: float = 0.05
    seed: int = 0
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def hour(self, units: int) -> dict[str, int]:
        """``units`` new units spread over the next hour; the clock ends one hour later."""
        served: dict[str, int] = {}
        events: list[Event] = []
        step = timedelta(hours=1) / max(units, 1)
        start = self.clock.now()
        for index in range(units):
            self.clock.set(start + step * (index + 0.5))
            unit = f"{self.experiment}-user-{next(self._ids)}"
            answer, _ = self.store.assign(self.experiment, unit)
            served[answer.variant or "-"] = served.get(answer.variant or "-", 0) + 1
            if not answer.in_experiment:
                continue
            now = to_us(self.clock.now())
            mean = self.latency[answer.variant or ""]
            value = max(1.0, float(self.rng.normal(mean, mean / 3)))
            events.append(Event(f"{unit}-lat", unit, "latency_ms", value, now))
            if self.rng.random() < self.error_rate:
                events.append(Event(f"{unit}-err", unit, "error", 1.0, now))
        for first in range(0, len(events), 1000):
            self.store.record_events(events[first : first + 1000])
        self.clock.set(start + timedelta(hours=1))
        return served
