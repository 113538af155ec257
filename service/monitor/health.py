"""The health monitors and the alerts of a monitor check (a `service.monitor.checks` plugin).

At every check of a running, shipped or rolled-back experiment, `check_experiment`

1. builds the health series from what the check read (`service.monitor.health_series`:
   24-hour windows ending at the last full hour, each weighted by the traffic share its
   configuration gave, from the experiment's audit trail);
2. runs the pure checks of `analysis.statistics.health` on them (`health_signals`);
3. hands the signals to the alert book (`service.monitor.alerts.AlertBook.record`): a new
   condition raises an alert, a known one refreshes it, one no longer seen is resolved;
4. queues a webhook delivery per change (`service.monitor.webhooks.Webhooks.notify`).

What is judged depends on the status.  A running experiment: exposures overall and per
variant, the sample ratio, each metric's events and a variant without any, each metric's
value per daily cohort (per event for quantile metrics), and, without a rollout plan, the
always-valid harm of each guardrail beyond its margin.  Once shipped or rolled back no
exposure is logged any more: the units' events and each metric's mean value per event
stay watched (models decay after the ship), and the exposure-side alerts are resolved.

A check on incomplete data (the monitor cannot read the export directory) judges nothing:
a missing file looks exactly like a broken client, and the alerts keep their state until
a complete check.

`on_decision` turns a rollout's automatic rollback into a ``rollout_rolled_back`` alert
(critical), delivered like the others; it stays active while the experiment is rolled
back and is resolved when it is not any more (stopped, or started again).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from abtest.alerts import Severity
from abtest.experiment import Experiment, Metric, MetricType, Status
from analysis.decision.rollout import Action, RolloutDecision
from analysis.decision.rollout_looks import guardrail_margin_tests
from analysis.statistics import health
from service.monitor import checks
from service.monitor import health_series as series
from service.monitor.alerts import AlertBook, AlertChange
from service.monitor.webhooks import Webhooks

if TYPE_CHECKING:
    from abtest.redis_client import RedisClient
    from abtest.store import Store
    from service.monitor.clock import Clock
    from service.monitor.data import MonitorData

ROLLOUT_ROLLED_BACK: Final = "rollout_rolled_back"
_log = logging.getLogger(__name__)


def health_signals(
    experiment: Experiment, data: MonitorData, history: Sequence[dict[str, Any]]
) -> list[health.HealthSignal]:
    """Every health signal of one check (module docstring), from the data it read and the
    experiment's audit trail (oldest first)."""
    end = series.window_end(data.as_of)
    timeline = series.Timeline(history)
    primary = [experiment.primary_metric] if experiment.primary_metric is not None else []
    metrics = [*primary, *experiment.secondary_metrics, *experiment.guardrail_metrics]
    running = experiment.status is Status.RUNNING
    signals: list[health.HealthSignal] = []
    counts, exposure = series.exposure_inputs(experiment, timeline, data.exposures_by_hour, end)
    events, latest = series.event_inputs(metrics, data.events_by_hour, end)
    if running:
        signals += health.exposure_drop(counts, exposure=exposure)
        signals += health.event_drop(events, exposure=exposure[health.ALL])
        units, weights = series.hourly_srm_inputs(experiment, timeline, data.exposures_by_hour)
        if units:
            signals += health.sample_ratio_mismatch(units, weights)
        exposed = series.cumulative_units(data.exposures_by_hour, end)
        if len(exposed) > 1:
            for name, per_variant in latest.items():
                signals += health.missing_events(per_variant, exposed, metric=name)
        signals += _metric_trends(data, end, metrics)
        if experiment.rollout is None and data.aggregates is not None:
            tests = guardrail_margin_tests(data.aggregates, experiment)
            signals += health.guardrail_regression(tests)
    else:
        signals += health.event_drop(events)
        quantities = series.per_event_means(metrics, data.events_by_hour, end, by_variant=False)
        signals += health.metric_trend(quantities)
    return signals


def _metric_trends(
    data: MonitorData, end: datetime, metrics: Sequence[Metric]
) -> list[health.HealthSignal]:
    """Daily cohorts of the per-unit metrics; per-event means of the quantile ones."""
    per_unit = [m for m in metrics if m.type is not MetricType.QUANTILE]
    quantile = [m for m in metrics if m.type is MetricType.QUANTILE]
    signals: list[health.HealthSignal] = []
    if data.aggregates is not None and per_unit:
        latest_day = (data.as_of - timedelta(days=1)).date()
        cohorts = series.cohort_values(per_unit, data.aggregates.daily, latest_day)
        signals += health.metric_trend(cohorts.values, se=cohorts.se, units=cohorts.units)
    if quantile:
        means = series.per_event_means(quantile, data.events_by_hour, end, by_variant=True)
        signals += health.metric_trend(means)
    return signals


def judged_kinds(experiment: Experiment) -> frozenset[str]:
    """The kinds a complete check judges: every health kind (a kind that does not apply
    to a shipped experiment is judged healthy, so its alert resolves), and the rollout's
    own alert once the experiment is no longer rolled back."""
    kinds = frozenset(health.KINDS)
    if experiment.status is not Status.ROLLED_BACK:
        kinds |= {ROLLOUT_ROLLED_BACK}
    return kinds


def check_experiment(
    store: Store, client: RedisClient, experiment: Experiment, data: MonitorData, clock: Clock
) -> None:
    """The plugin's check (module docstring)."""
    if not data.complete:
        _log.warning("health of %s not judged: %s", experiment.key, data.incomplete_reason)
        return
    signals = health_signals(experiment, data, store.history(experiment.key))
    now = clock.now()
    # The rollout check just before may have rolled it back: judge by the current status.
    current = store.get_experiment(experiment.key).experiment
    changes = AlertBook(client).record(experiment.key, signals,
                                       judged=judged_kinds(current), now=now)  # fmt: skip
    _deliver(client, changes, now)


def rollback_signal(experiment: Experiment, decision: RolloutDecision) -> health.HealthSignal:
    """The ``rollout_rolled_back`` signal of an automatic rollback, with its numbers."""
    plan = experiment.rollout
    variant = plan.variant if plan is not None else health.ALL
    guardrails = decision.numbers.get("guardrails", {})
    return health.HealthSignal(
        kind=ROLLOUT_ROLLED_BACK, severity=Severity.CRITICAL, subject=variant,
        numbers={"step": decision.step + 1, "guardrails": guardrails},
        message=(f"guarded rollout of {variant} rolled back at step {decision.step + 1}: "
                 + "; ".join(decision.reasons)),
    )  # fmt: skip


def on_decision(
    store: Store, client: RedisClient, experiment: Experiment, decision: RolloutDecision,
    clock: Clock,
) -> None:  # fmt: skip
    """A rollback becomes an alert and its deliveries."""
    del store
    if decision.action is not Action.ROLL_BACK:
        return
    now = clock.now()
    changes = AlertBook(client).raise_alert(experiment.key, rollback_signal(experiment, decision),
                                            now=now)  # fmt: skip
    _deliver(client, changes, now)


def _deliver(client: RedisClient, changes: Sequence[AlertChange], now: datetime) -> None:
    if changes:
        Webhooks(client).notify(changes, now=now)


checks.register(check_experiment)
checks.register_decision_hook(on_decision)

__all__ = [
    "ROLLOUT_ROLLED_BACK",
    "check_experiment",
    "health_signals",
    "judged_kinds",
    "on_decision",
    "rollback_signal",
]
