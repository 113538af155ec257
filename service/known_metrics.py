"""The one rule for "a known metric", and what ``POST /v1/events`` does with the others.

A metric is known when the metric catalogue defines it or some experiment names it
inline; both count their event names (``clicks/searches`` reads clicks and searches,
``latency_ms:p95`` reads latency_ms).  ``UNKNOWN_METRICS`` says what happens to an event
for any other name: ``refuse`` (the default: a 400 naming the event and suggesting the
closest known name: ``'purchse'; did you mean 'purchase'?``), ``count`` (kept, and counted
per name for ``GET /v1/metrics`` and the console) or ``accept`` (kept, not counted).
``REFUSE_UNDECLARED_METRICS=true``, the older spelling, means ``refuse``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

from abtest.catalogue import closest, event_names
from abtest.errors import InvalidInput
from abtest.events import Event
from abtest.store import Store

MODES: Final = ("refuse", "count", "accept")


def mode(config: Mapping[str, Any]) -> str:
    """The configured mode (``REFUSE_UNDECLARED_METRICS`` wins when it is true)."""
    return "refuse" if config.get("REFUSE_UNDECLARED_METRICS") else str(config["UNKNOWN_METRICS"])


class KnownMetrics:
    """The known event names, re-read from the store at most every ``seconds``: a metric
    added by a catalogue or experiment write counts at once in the worker that stored it
    (`forget`).  An event for a name the cache lacks makes the other workers read again
    if their names are over ``recheck_seconds`` old, so an experiment's first events are
    not refused for up to ``seconds`` by a worker that has not seen it yet."""

    def __init__(self, seconds: float = 5.0, recheck_seconds: float = 0.1) -> None:
        self.seconds = seconds
        self.recheck_seconds = recheck_seconds
        self._names: frozenset[str] = frozenset()
        self._expires = 0.0
        self._lock = threading.Lock()

    def names(self, store: Store) -> frozenset[str]:
        """Every known event name (cached)."""
        if time.monotonic() >= self._expires:
            declared = {
                name
                for stored in store.list_experiments()
                for metric in stored.experiment.metrics
                for name in event_names(metric.name)
            }
            defined = {name for metric in store.catalogue.names() for name in event_names(metric)}
            with self._lock:
                self._names = frozenset(declared | defined)
                self._expires = time.monotonic() + self.seconds
        return self._names

    def forget(self) -> None:
        """Read the names again on next use (after this worker changed a definition)."""
        with self._lock:
            self._expires = 0.0

    def check(self, store: Store, events: Sequence[Event], how: str) -> list[int]:
        """Indexes of the events whose metric is not known (none with ``accept``);
        `InvalidInput` naming the first of them with ``refuse``."""
        if how == "accept":
            return []
        names = self.names(store)
        unknown = [i for i, event in enumerate(events) if event.metric not in names]
        if unknown and time.monotonic() >= self._expires - self.seconds + self.recheck_seconds:
            self.forget()
            names = self.names(store)
            unknown = [i for i in unknown if events[i].metric not in names]
        if unknown and how == "refuse":
            index = unknown[0]
            name = events[index].metric
            raise InvalidInput(
                f"'{name}' is not a known metric (no catalogue entry or experiment names "
                f"it){closest(name, names)}",
                f"events[{index}].metric",
            )
        return unknown
