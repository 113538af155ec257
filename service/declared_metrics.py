"""``REFUSE_UNDECLARED_METRICS``: which event names some experiment reads, and the check
that refuses the others with a suggestion (``purchse``: did you mean ``purchase``?)."""

from __future__ import annotations

import difflib
import threading
import time
from collections.abc import Sequence

from abtest.errors import InvalidInput
from abtest.events import Event
from abtest.store import Store


class DeclaredMetrics:
    """The event names some experiment reads (``clicks/searches`` reads both), re-read from
    the store at most every ``seconds``, for ``REFUSE_UNDECLARED_METRICS``: a metric added
    by a create or update counts at once in the worker that stored it and within
    ``seconds`` in the others."""

    def __init__(self, seconds: float = 5.0) -> None:
        self.seconds = seconds
        self._names: frozenset[str] = frozenset()
        self._expires = 0.0
        self._lock = threading.Lock()

    def names(self, store: Store) -> frozenset[str]:
        """Every declared event name (cached)."""
        if time.monotonic() >= self._expires:
            from analysis.data.metric_spec import source_metrics  # only with the setting on

            names = frozenset(
                name
                for stored in store.list_experiments()
                for metric in stored.experiment.metrics
                for name in source_metrics(metric)
            )
            with self._lock:
                self._names, self._expires = names, time.monotonic() + self.seconds
        return self._names

    def forget(self) -> None:
        """Read the names again on next use (after this worker changed an experiment)."""
        with self._lock:
            self._expires = 0.0

    def check(self, store: Store, events: Sequence[Event]) -> None:
        """`InvalidInput` naming the first event whose metric no experiment declares, with
        the closest declared name as a suggestion."""
        names = self.names(store)
        for index, event in enumerate(events):
            if event.metric not in names:
                close = difflib.get_close_matches(event.metric, names, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                raise InvalidInput(
                    f"no experiment declares the metric '{event.metric}'{hint}",
                    f"events[{index}].metric",
                )
