"""What the console's pages show, gathered from the store and the analysis (no Flask views).

Counts come from the store's exposure counters (always current); verdicts, effects and
figures from `service.results.experiment_results` (the same cached analysis the JSON
endpoint serves).  An experiment that cannot be analysed yet says why instead of failing.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flask import Flask

from abtest.errors import AbtestError
from abtest.experiment import MetricType, Status
from abtest.store import StoredExperiment
from analysis.srm import srm_test
from service.results import ExperimentResults, experiment_results


@dataclass(frozen=True)
class Summary:
    """One row of the experiments list."""

    key: str
    status: str
    version: int
    description: str
    units: Mapping[str, int]
    srm: Mapping[str, Any] | None  # {"p_value", "ok"}; None before any unit
    verdict: Mapping[str, Any] | None  # the analysis's "decision"; None when not analysed
    note: str  # why there is no verdict


@dataclass(frozen=True)
class Progress:
    """Units of one variant against the planned units per variant."""

    variant: str
    units: int
    planned: int | None

    @property
    def percent(self) -> float | None:
        """Share of the plan reached, capped at 100 for the bar."""
        return None if not self.planned else min(100.0, 100.0 * self.units / self.planned)


@dataclass(frozen=True)
class Figure:
    """A figure as an inline PNG."""

    title: str
    png: bytes

    @property
    def data_uri(self) -> str:
        """``data:image/png;base64,...`` for an ``<img src>``."""
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


@dataclass(frozen=True)
class Detail:
    """Everything the experiment page shows."""

    stored: StoredExperiment
    summary: Summary
    config_json: str
    history: Sequence[Mapping[str, Any]]  # newest first
    progress: Sequence[Progress]
    power: Mapping[str, Any] | None
    results: Mapping[str, Any] | None
    figures: Sequence[Figure] = field(default_factory=tuple)


def _analysed(app: Flask, stored: StoredExperiment) -> tuple[ExperimentResults | None, str]:
    if stored.experiment.status is Status.DRAFT:
        return None, "not started"
    try:
        return experiment_results(app, stored), ""
    except AbtestError as exc:
        return None, exc.message


def _srm_from_counts(stored: StoredExperiment, units: Mapping[str, int]) -> dict[str, Any] | None:
    if sum(units.values()) == 0:
        return None
    result = srm_test(observed=units, weights=stored.experiment.weights)
    return {"p_value": result.p_value, "ok": result.ok}


def _summary(app: Flask, stored: StoredExperiment) -> tuple[Summary, ExperimentResults | None]:
    store = app.extensions["abtest"].store
    units = dict(store.exposure_counts(stored.experiment.key).variants)
    analysed, note = _analysed(app, stored)
    data = analysed.to_dict() if analysed is not None else None
    srm = data.get("srm") if data is not None else _srm_from_counts(stored, units)
    summary = Summary(
        key=stored.experiment.key,
        status=stored.experiment.status.value,
        version=stored.version,
        description=stored.experiment.description,
        units=units,
        srm=srm,
        verdict=data.get("decision") if data is not None else None,
        note=note,
    )
    return summary, analysed


def summary(app: Flask, stored: StoredExperiment) -> Summary:
    """The list row of ``stored``."""
    return _summary(app, stored)[0]


def _history(entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    shown = []
    for entry in reversed(entries):
        changes = [
            {"field": c.get("field"), "old": _short(c.get("old")), "new": _short(c.get("new"))}
            for c in entry.get("diff", [])
        ]
        shown.append({**entry, "changes": changes})
    return shown


def _short(value: Any, limit: int = 160) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _power(stored: StoredExperiment, data: Mapping[str, Any] | None,
           units: Mapping[str, int]) -> dict[str, Any] | None:  # fmt: skip
    """Minimum detectable effect (80% power, alpha 0.05) now and at the plan, primary metric.

    Only for a binomial primary metric with an observed control rate: the MDE of a
    proportion needs nothing else (`analysis.power.minimum_detectable_effect_proportion`).
    """
    from analysis.power import minimum_detectable_effect_proportion

    experiment = stored.experiment
    metric = experiment.primary_metric
    if metric is None or metric.type is not MetricType.BINOMIAL or data is None:
        return None
    rows = [r for r in data.get("metrics", []) if r.get("metric") == metric.name]
    baseline = rows[0].get("control_mean") if rows else None
    if not isinstance(baseline, float | int) or not 0 < baseline < 1:
        return None
    now = min(units.values()) if units else 0
    planned = experiment.planned_units_per_variant
    sizes = [n for n in (now, planned) if n]
    if not sizes:
        return None
    mde = minimum_detectable_effect_proportion(
        baseline=float(baseline), n_per_variant=sizes, variants=len(experiment.variants) - 1
    )
    relative = [float(x) for x in mde.relative]
    return {
        "metric": metric.name,
        "baseline": float(baseline),
        "now": {"units": now, "relative_mde": relative[0]} if now else None,
        "planned": {"units": planned, "relative_mde": relative[-1]} if planned else None,
    }


def detail(app: Flask, stored: StoredExperiment, history: Sequence[Mapping[str, Any]]) -> Detail:
    """The experiment page of ``stored`` with its audit ``history`` (oldest first)."""
    row, analysed = _summary(app, stored)
    data = analysed.to_dict() if analysed is not None else None
    planned = stored.experiment.planned_units_per_variant
    return Detail(
        stored=stored,
        summary=row,
        config_json=stored.experiment.to_json(),
        history=_history(history),
        progress=[Progress(v, n, planned) for v, n in row.units.items()],
        power=_power(stored, data, row.units),
        results=data,
        figures=_figures(analysed),
    )


def _figures(analysed: ExperimentResults | None) -> list[Figure]:
    if analysed is None:
        return []
    return []
