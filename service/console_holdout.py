"""The console's holdout page: the global holdout, what it covers, its audit trail and the
cumulative effect of everything it covered (`service.holdout.holdout_results`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flask import Flask

from abtest.errors import AbtestError
from abtest.holdout_store import HoldoutStore, StoredHoldout
from analysis.report.formatting import MetricCells, metric_cells, metric_headers
from service.console_pages import history_rows


@dataclass(frozen=True)
class HoldoutPage:
    """What ``holdout.html`` shows."""

    stored: StoredHoldout
    history: Sequence[Mapping[str, Any]]
    result: Mapping[str, Any] | None = None
    note: str = ""
    metric_headers: Sequence[str] = ()
    metric_rows: Sequence[MetricCells] = field(default_factory=tuple)


def holdout_page(app: Flask) -> HoldoutPage:
    """The page's data; the analysis's refusal (no holdout, no data yet) becomes its note."""
    from service.holdout import holdout_results

    holdouts = HoldoutStore(app.extensions["abtest"].store)
    stored = holdouts.get()
    history = history_rows(holdouts.history())
    if stored.holdout is None:
        return HoldoutPage(stored, history, note="No holdout is set: PUT /v1/holdout sets one.")
    try:
        result = holdout_results(app, []).to_dict()
    except AbtestError as exc:
        return HoldoutPage(stored, history, note=exc.message)
    rows = [metric_cells(row) for row in result["metrics"]]
    return HoldoutPage(stored, history, result, "", metric_headers(float(result["alpha"])), rows)
