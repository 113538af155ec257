"""The monitor: guarded rollouts and health checks that run on their own.

- `service.monitor.runner`: the loop (`Monitor`), its schedule and the per-experiment lease;
- `service.monitor.data`: what a check reads (`MonitorData`), from Redis and the export;
- `service.monitor.rollout`: one rollout check: decide, act, audit, record;
- `service.monitor.checks`: the registry of checks and decision hooks (health, alerts);
- `service.monitor.clock`: the system clock and the controlled one of demo and test mode;
- `service.monitor.heartbeat`: whether monitors are alive (``/healthz``, ``/metrics``);
- `service.monitor.health_series`: the health checks' series from what a check reads;
- `service.monitor.alerts`: the alert book (deduplicated alerts and their history);
- `service.monitor.webhooks`: the outbox, sender and delivery log of the webhooks.

The decision itself is pure and lives in `analysis.decision.rollout`.
"""

from __future__ import annotations

__all__: list[str] = []
