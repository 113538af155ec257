"""What the console's alert views show, read from the alert book and the webhooks (no
Flask views): the alerts page (every experiment's alerts, filtered, with the webhooks and
their delivery failures) and an experiment's active alerts for its own page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from abtest.alerts import Alert, Delivery, Webhook
from abtest.errors import InvalidInput
from abtest.experiment import SLUG
from abtest.store import Store
from service.monitor.alerts import STATUSES, AlertBook
from service.monitor.webhooks import Webhooks

if TYPE_CHECKING:
    from abtest.redis_client import RedisClient


@dataclass(frozen=True)
class AlertsPage:
    """The alerts page: the filtered alerts, the filter's choices, the webhooks and the
    deliveries that failed (finally, or so far)."""

    alerts: list[Alert]
    experiment: str | None
    status: str
    experiments: list[str]
    webhooks: list[Webhook]
    failures: list[Delivery]

    @property
    def statuses(self) -> tuple[str, ...]:
        """The status filter's choices."""
        return STATUSES


def alerts_page(
    client: RedisClient,
    store: Store,
    *,
    experiment: str | None,
    status: str,
    since: datetime | None = None,
) -> AlertsPage:
    """Gather the alerts page; `InvalidInput` for an unknown status (a 400 page)."""
    if status not in STATUSES:
        raise InvalidInput("must be active, resolved or all", "status")
    if experiment is not None and not SLUG.fullmatch(experiment):
        raise InvalidInput("not an experiment key", "experiment")
    experiments = [stored.experiment.key for stored in store.list_experiments()]
    chosen = experiments if experiment is None else [experiment]
    hooks = Webhooks(client)
    return AlertsPage(
        alerts=AlertBook(client).alerts(chosen, status=status, since=since),
        experiment=experiment, status=status, experiments=experiments,
        webhooks=hooks.list_webhooks(), failures=hooks.failures(),
    )  # fmt: skip


def active_alerts(client: RedisClient, experiment: str) -> list[Alert]:
    """One experiment's active alerts, critical first."""
    return AlertBook(client).active(experiment)
