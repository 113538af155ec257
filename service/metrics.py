"""Prometheus metrics: requests, a latency histogram, assignments, exposures and alerts.

Under gunicorn (several worker processes) `abtest serve` sets ``PROMETHEUS_MULTIPROC_DIR``
before any worker starts, and the scrape sums every worker's values (prometheus_client's
multiprocess mode).  Exposure totals come from Redis counters, so they are exact across
workers and hosts.  The monitor is a process of its own: what it finds (active alerts,
webhook deliveries) is read from Redis at scrape time by `AlertCollector`, so any API
process serves it, with no file or port shared with the monitor.
"""

from __future__ import annotations

import os
import time
from typing import Any, Final

from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from abtest.assignment import Assignment
from abtest.store import Store

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
_BUCKETS: Final = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """The app's metric objects and registry (one per app, so tests never share them)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        if multiprocess:
            MultiProcessCollector(self.registry)  # type: ignore[no-untyped-call]  # untyped upstream
        # In multiprocess mode values live in per-process files and the collector reads
        # them, so the metrics themselves must not be registered a second time.
        target = None if multiprocess else self.registry
        self.requests = Counter(
            "abtest_http_requests", "HTTP requests by route, method and status",
            ["endpoint", "method", "status"], registry=target,
        )  # fmt: skip
        self.latency = Histogram(
            "abtest_http_request_duration_seconds", "Request latency by route",
            ["endpoint"], buckets=_BUCKETS, registry=target,
        )  # fmt: skip
        self.assignments = Counter(
            "abtest_assignments", "Assignment responses by experiment, variant and reason",
            ["experiment", "variant", "reason"], registry=target,
        )  # fmt: skip

        # labels() costs a lock and a dict build per call; the label sets are few, so the
        # children are looked up once (this is on every request's path).
        self._children: dict[tuple[Any, ...], Any] = {}
        # (route, method, status) -> (latency child, request counter child)
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def register(self, app: Flask) -> None:
        """Time every request."""
        app.before_request(self._start)
        app.after_request(self._finish)

    def assigned(self, result: Assignment) -> None:
        """Count one assignment response."""
        variant = result.variant or ""
        self._child(self.assignments, result.experiment, variant, result.reason.value).inc()

    def render(self, store: Store) -> Response:
        """The exposition text: process metrics plus exposure counters read from Redis, and
        the monitor's and rollouts' series (`service.monitor.metrics`)."""
        from abtest.rollout_store import Rollouts
        from service.monitor.metrics import monitor_lines

        lines = [
            "# HELP abtest_exposures_total First exposures by experiment and variant",
            "# TYPE abtest_exposures_total counter",
        ]
        experiments = store.list_experiments()
        keys = [stored.experiment.key for stored in experiments]
        for key in keys:
            for variant, count in store.exposure_counts(key).variants.items():
                lines.append(
                    f'abtest_exposures_total{{experiment="{key}",variant="{variant}"}} {count}'
                )
        lines += monitor_lines(Rollouts(store), experiments)
        monitor = CollectorRegistry(auto_describe=False)
        monitor.register(AlertCollector(store.redis, keys))
        text = (generate_latest(self.registry).decode() + "\n".join(lines) + "\n"
                + generate_latest(monitor).decode())  # fmt: skip
        return Response(text, content_type=CONTENT_TYPE)

    @staticmethod
    def _start() -> None:
        g.abtest_started = time.perf_counter()

    def _finish(self, response: Response) -> Response:
        started = g.get("abtest_started")
        if started is not None:
            elapsed = time.perf_counter() - started
            req = request._get_current_object()  # type: ignore[attr-defined]  # one lookup
            rule = req.url_rule
            endpoint = rule.rule if rule is not None else "unmatched"
            key = (endpoint, req.method, response.status_code)
            pair = self._request_children.get(key)
            if pair is None:
                pair = self._request_children[key] = (
                    self._child(self.latency, endpoint),
                    self._child(self.requests, endpoint, req.method, str(response.status_code)),
                )
            pair[0].observe(elapsed)
            pair[1].inc()
        return response


class AlertCollector(Collector):
    """The monitor's findings, read from Redis when scraped.

    ``abtest_alerts_active{experiment, kind, severity}``: active alerts (only non-zero
    series; ``sum by (severity) (abtest_alerts_active)`` for a dashboard).
    ``abtest_webhook_deliveries{webhook, status}``: each webhook's deliveries by status:
    ``pending`` (queued or waiting for a retry), and ``delivered`` / ``failed`` among the
    recent ones its log keeps (`service.monitor.webhooks.LOG_LIMIT`).
    """

    def __init__(self, client: Any, experiments: list[str]) -> None:
        self.client = client
        self.experiments = experiments

    def collect(self) -> list[Metric]:
        """The two gauges."""
        from service.monitor.alerts import AlertBook
        from service.monitor.webhooks import Webhooks

        alerts = GaugeMetricFamily("abtest_alerts_active",
                                   "Active alerts by experiment, kind and severity",
                                   labels=["experiment", "kind", "severity"])  # fmt: skip
        for labels, count in sorted(AlertBook(self.client).counts(self.experiments).items()):
            alerts.add_metric(list(labels), count)
        help_text = "Webhook deliveries by status (pending; recent ones delivered or failed)"
        deliveries = GaugeMetricFamily("abtest_webhook_deliveries", help_text,
                                       labels=["webhook", "status"])  # fmt: skip
        for (webhook, status), count in sorted(Webhooks(self.client).status_counts().items()):
            deliveries.add_metric([webhook, status], count)
        return [alerts, deliveries]
