"""What the console's pages show, gathered from the store and the analysis (no Flask views).

Counts come from the store's exposure counters (always current); verdicts, effects and
figures from `service.results.experiment_results` (the same cached analysis the JSON
endpoint serves).  An experiment that cannot be analysed yet says why instead of failing.
"""

from __future__ import annotations

import base64
import json
import logging
import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from flask import Flask

from abtest.errors import AbtestError
from abtest.experiment import Experiment, MetricType, Status
from abtest.export_files import Kind, experiment_folders
from abtest.store import StoredExperiment
from analysis.decision.rules import DecisionRules
from analysis.report.formatting import MetricCells, metric_cells, metric_headers, metric_unit
from analysis.statistics.srm import srm_test
from service.results import ExperimentResults, experiment_results, export_dir

_FIGURES: Final = "abtest.console_figures"
_FIGURE_CACHE_SIZE: Final = 16
_log = logging.getLogger(__name__)


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
    winner: str | None = None  # the shipped variant; a shipped experiment has no verdict
    updated_at: str = ""


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
    metric_headers: Sequence[str] = ()
    metric_rows: Sequence[MetricCells] = ()
    shipped: Mapping[str, Any] | None = None  # the ship entry: time, key, reason
    rollout: Mapping[str, Any] | None = None  # `service.rollout_status.rollout_document`
    rollout_figure: Figure | None = None
    segments: SegmentSection | None = None


@dataclass(frozen=True)
class SegmentSection:
    """The segment table of the experiment page (``?segment=country``)."""

    attribute: str | None
    min_units: int
    attributes: Sequence[str]  # the names the exported exposures carry
    headers: Sequence[str] = ()
    rows: Sequence[Sequence[str]] = ()
    tests: Sequence[str] = ()
    footnote: str = ""
    error: str = ""


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
    shipped = stored.experiment.status is Status.SHIPPED
    summary = Summary(
        key=stored.experiment.key,
        status=stored.experiment.status.value,
        version=stored.version,
        description=stored.experiment.description,
        units=units,
        srm=srm,
        # Once shipped there is nothing left to decide: "keep running" would be misread.
        verdict=data.get("decision") if data is not None and not shipped else None,
        note=note,
        winner=stored.experiment.winner,
        updated_at=stored.updated_at,
    )
    return summary, analysed


def summary(app: Flask, stored: StoredExperiment) -> Summary:
    """The list row of ``stored``."""
    return _summary(app, stored)[0]


def current_verdict(app: Flask, stored: StoredExperiment) -> tuple[Mapping[str, Any] | None, str]:
    """The analysis's decision now (``verdict``, ``variant``, ``reasons``...), or None and why."""
    analysed, note = _analysed(app, stored)
    if analysed is None:
        return None, note
    decision: Mapping[str, Any] = analysed.to_dict()["decision"]
    return decision, ""


def ships_against(decision: Mapping[str, Any] | None, variant: str) -> bool:
    """Whether shipping ``variant`` goes against ``decision`` (or there is none to follow)."""
    return decision is None or decision["verdict"] != "ship" or decision["variant"] != variant


def _ship_entry(
    app: Flask, stored: StoredExperiment, history: Sequence[Mapping[str, Any]]
) -> dict[str, Any] | None:
    """Who shipped which variant when, and why: the newest ship entry of the audit trail."""
    if stored.experiment.status is not Status.SHIPPED:
        return None
    entry = next((h for h in reversed(history) if h.get("action") == "ship"), None)
    if entry is None:
        return None
    names = {k.id: k.name for k in app.extensions["abtest"].store.list_api_keys()}
    time = str(entry.get("time", ""))  # ISO 8601 in UTC: 2024-06-01T12:34:56.789Z
    return {"winner": stored.experiment.winner, "time": f"{time[:10]} {time[11:16]} UTC",
            "key_id": entry.get("key_id", ""), "key_name": names.get(entry.get("key_id"), ""),
            "reason": entry.get("reason")}  # fmt: skip


def history_rows(entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Audit entries (oldest first) as ``_tables.html``'s history table shows them: newest
    first, each change's values as short JSON."""
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


def _power(
    experiment: Experiment, analysed: ExperimentResults | None, *, shipped: bool = False
) -> dict[str, Any] | None:
    """Power for the planned effect, and the detectable effect, now and (unless shipped, when
    no unit will be added) at the plan.

    The effect is the experiment's ``minimum_detectable_effect`` (relative), or the
    decision rules' default (5%) when the config has none.  For a binomial, count or sum
    primary metric, from the observed control mean (and standard deviation), with the
    decision rules' alpha and power (`analysis.power_proportion`, `analysis.power_mean`
    and their MDE counterparts; the variants are Bonferroni-split as in planning, so this
    approximates the Holm analysis).
    """
    from analysis import (
        SampleStats,
        minimum_detectable_effect_mean,
        minimum_detectable_effect_proportion,
        power_mean,
        power_proportion,
    )

    metric = experiment.primary_metric
    result = None if analysed is None else analysed.analysis
    if metric is None or result is None or result.aggregates is None:
        return None
    stats = result.aggregates.metrics[metric.name].stats.get(result.control)
    if not isinstance(stats, SampleStats) or stats.n < 2:
        return None
    rules = result.settings.rules
    effect = experiment.minimum_detectable_effect
    planned_effect = effect is not None
    effect = effect if effect is not None else DecisionRules().minimum_effect
    planned = None if shipped else experiment.planned_units_per_variant
    now = min(result.units.values())
    sizes = [n for n in (now, planned) if n]
    common = {"n_per_variant": sizes, "alpha": rules.alpha, "variants": len(result.units) - 1}
    baseline = stats.mean
    try:
        if metric.type is MetricType.BINOMIAL and 0 < baseline < 1:
            mde = minimum_detectable_effect_proportion(baseline=baseline, power=rules.power,
                                                       **common)  # fmt: skip
            power = power_proportion(baseline=baseline, effect=effect, relative=True,
                                     **common)  # fmt: skip
        elif metric.type in (MetricType.COUNT, MetricType.SUM) and baseline and stats.variance:
            std = math.sqrt(stats.variance)
            mde = minimum_detectable_effect_mean(std=std, baseline=baseline, power=rules.power,
                                                 **common)  # fmt: skip
            power = power_mean(std=std, baseline=baseline, effect=effect, relative=True,
                               **common)  # fmt: skip
        else:
            return None
    except AbtestError:
        return None
    points = [{"units": n, "relative_mde": float(abs(r)), "power": float(p)}
              for n, r, p in zip(sizes, mde.relative, power, strict=True)]  # fmt: skip
    return {
        "metric": metric.name,
        "baseline": metric_unit(metric.name, metric.type.value).value(baseline),
        "effect": effect,
        "planned_effect": planned_effect,
        "target_power": rules.power,
        "alpha": rules.alpha,
        "now": points[0] if now else None,
        "planned": points[-1] if planned else None,
    }


def _segments(
    app: Flask, stored: StoredExperiment, attribute: str | None, min_units: int, analysed: bool
) -> SegmentSection | None:
    """The segment section: the attributes to choose from and, when one is chosen, its table."""
    from analysis.data.load import attribute_names
    from analysis.report import segment_view

    key = stored.experiment.key
    if not analysed or not experiment_folders(export_dir(app), key):
        return None
    names = attribute_names(export_dir(app) / Kind.EXPOSURES.value, experiment=key)
    section = SegmentSection(attribute, min_units, names)
    if attribute is None:
        return section
    try:
        data = experiment_results(app, stored, segment=attribute,
                                  min_segment_units=min_units).to_dict()  # fmt: skip
    except AbtestError as exc:
        return replace(section, error=exc.message)
    table = data["segments"]
    return replace(
        section,
        headers=segment_view.segment_headers(table, data["settings"]["alpha"]),
        rows=[r for c in table["comparisons"] for r in segment_view.comparison_rows(c)],
        tests=[segment_view.heterogeneity_text(c) for c in table["comparisons"]],
        footnote=segment_view.footnote(table),
    )


def detail(
    app: Flask,
    stored: StoredExperiment,
    history: Sequence[Mapping[str, Any]],
    *,
    segment: str | None = None,
    min_segment_units: int = 100,
) -> Detail:
    """The experiment page of ``stored`` with its audit ``history`` (oldest first), and
    the segment table of ``segment`` when one is asked for."""
    row, analysed = _summary(app, stored)
    data = analysed.to_dict() if analysed is not None else None
    planned = stored.experiment.planned_units_per_variant
    return Detail(
        stored=stored,
        summary=row,
        config_json=stored.experiment.to_json(),
        history=history_rows(history),
        progress=[Progress(v, n, planned) for v, n in row.units.items()],
        power=_power(stored.experiment, analysed, shipped=stored.experiment.winner is not None),
        results=data,
        figures=_figures(app, analysed),
        metric_headers=() if data is None else metric_headers(data["settings"]["alpha"]),
        metric_rows=[] if data is None else [metric_cells(m) for m in data["metrics"]],
        shipped=_ship_entry(app, stored, history),
        **_rollout(app, stored),
        segments=_segments(app, stored, segment, min_segment_units, analysed is not None),
    )


def _rollout(app: Flask, stored: StoredExperiment) -> dict[str, Any]:
    """The rollout section of the page: its document and its timeline chart (when the
    experiment has a rollout plan)."""
    from abtest.rollout_store import Rollouts
    from analysis.report.figures import figure_png
    from analysis.report.rollout_figures import rollout_figure
    from service.rollout_status import rollout_document

    plan = stored.experiment.rollout
    if plan is None:
        return {}
    document = rollout_document(Rollouts(app.extensions["abtest"].store), stored.experiment.key,
                                limit=100)  # fmt: skip
    latest = next((c for c in reversed(document["checks"]) if c.get("series")), None)
    series: dict[str, Any] = {} if latest is None else latest["series"]
    guardrails = [m for m in stored.experiment.guardrail_metrics if m.name in plan.guardrails]
    events = [(a["time"], a["action"].replace("rollout_", "")) for a in document["actions"]
              if a["action"] != "start"]  # fmt: skip
    figure = None
    try:
        png = figure_png(
            rollout_figure(
                series,
                guardrails,
                alpha=plan.alpha,
                events=events,
                as_of=None if latest is None else latest["time"],
            )
        )
        figure = Figure("Guardrails: cumulative effect of the new variant per day", png)
    except Exception:  # one broken chart must not hide the page (it is logged)
        _log.exception("rollout figure of %s failed", stored.experiment.key)
    return {"rollout": document, "rollout_figure": figure}


def _figures(app: Flask, analysed: ExperimentResults | None) -> list[Figure]:
    """The report's figures (`analysis.effect_figure`, `cumulative_figure`,
    `exposures_figure`) as PNG, rendered once per cached result."""
    from analysis import cumulative_figure, effect_figure, exposures_figure, figure_png

    if analysed is None:
        return []
    key = (analysed.key, analysed.config_version, analysed.watermark)
    cache: OrderedDict[tuple[str, int, str], list[Figure]] = app.extensions.setdefault(
        _FIGURES, OrderedDict()
    )
    hit = cache.get(key)
    if hit is not None:
        return hit
    result = analysed.analysis
    builders = [("Effect per metric (95% CI)", effect_figure),
                ("Cumulative effect of the primary metric", cumulative_figure),
                ("Units exposed per day", exposures_figure)]  # fmt: skip
    figures = []
    for title, build in builders:
        try:
            figures.append(Figure(title, figure_png(build(result))))
        except Exception:  # one broken chart must not hide the page (it is logged)
            _log.exception("console figure %r of %s failed", title, analysed.key)
    cache[key] = figures
    while len(cache) > _FIGURE_CACHE_SIZE:
        cache.popitem(last=False)
    return figures
