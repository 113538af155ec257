"""The monitor's Prometheus series, rendered from Redis at each scrape.

The monitor is its own process (often on another host), so its state is read from Redis
when ``/metrics`` is scraped rather than kept in per-process gauges: under gunicorn's
multiprocess mode a gauge set in one process is reported per process id and a dead
process's last value lingers, which is exactly wrong for "when did the monitor last
succeed".  Series:

- ``abtest_monitor_last_success_timestamp_seconds{monitor}``: wall-clock time of each
  monitor's last successful cycle (alert on ``time() - max(...) > 300``, say);
- ``abtest_monitor_up``: 1 when some monitor is not stale (`service.monitor.heartbeat`);
- ``abtest_rollout_step{experiment}``: the step each guarded rollout is at (1-based;
  shipped: the last step; rolled back: 0);
- ``abtest_rollout_share{experiment,variant}``: the share of units served the new variant
  (1 once shipped, 0 once rolled back);
- ``abtest_rollout_last_check_timestamp_seconds{experiment}``: its last check, on the
  monitor's clock.
"""

from __future__ import annotations

from collections.abc import Sequence

from abtest.experiment import Status
from abtest.rollout_store import Rollouts
from abtest.store import StoredExperiment
from service.monitor.heartbeat import heartbeats, is_stale


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def monitor_lines(rollouts: Rollouts, experiments: Sequence[StoredExperiment]) -> list[str]:
    """The exposition lines of the series in the module docstring."""
    beats = heartbeats(rollouts.redis)
    lines = [
        "# HELP abtest_monitor_last_success_timestamp_seconds Last successful check cycle "
        "of each monitor (wall clock)",
        "# TYPE abtest_monitor_last_success_timestamp_seconds gauge",
    ]
    for name, beat in sorted(beats.items()):
        success = float(beat.get("last_success") or 0)
        lines.append(f'abtest_monitor_last_success_timestamp_seconds{{monitor="{_label(name)}"}}'
                     f" {success:.3f}")  # fmt: skip
    up = int(any(not is_stale(beat) for beat in beats.values()))
    lines += [
        "# HELP abtest_monitor_up 1 when some monitor completed a cycle lately (heartbeat)",
        "# TYPE abtest_monitor_up gauge",
        f"abtest_monitor_up {up}",
        "# HELP abtest_rollout_step Step of each guarded rollout (1-based; 0 rolled back)",
        "# TYPE abtest_rollout_step gauge",
    ]
    shares, checks = [], []
    for stored in experiments:
        experiment = stored.experiment
        plan = experiment.rollout
        if plan is None or experiment.status in (Status.DRAFT,):
            continue
        state = rollouts.state(experiment.key)
        key = _label(experiment.key)
        if experiment.status is Status.SHIPPED:
            step, share = len(plan.steps), 1.0
        elif experiment.status is Status.ROLLED_BACK:
            step, share = 0, 0.0
        else:
            step, share = state.step + 1, plan.steps[state.step]
        lines.append(f'abtest_rollout_step{{experiment="{key}"}} {step}')
        shares.append(f'abtest_rollout_share{{experiment="{key}",variant="{_label(plan.variant)}"}}'
                      f" {share:g}")  # fmt: skip
        if state.last_check_at:
            checks.append(f'abtest_rollout_last_check_timestamp_seconds{{experiment="{key}"}}'
                          f" {state.last_check_at / 1e6:.3f}")  # fmt: skip
    lines += [
        "# HELP abtest_rollout_share Share of units served the new variant",
        "# TYPE abtest_rollout_share gauge",
        *shares,
        "# HELP abtest_rollout_last_check_timestamp_seconds Last check of each rollout "
        "(the monitor's clock)",
        "# TYPE abtest_rollout_last_check_timestamp_seconds gauge",
        *checks,
    ]
    return lines


__all__ = ["monitor_lines"]
