"""``GET /v1/experiments/<key>/results``: export the experiment's buffered events, analyse.

The view drains the experiment's exposure stream and the shared outcome stream into the
export directory (``EXPORT_DIR``, env ``ABTEST_EXPORT_DIR``) with `abtest.export.export`,
then analyses the exported files with the experiment's configured metrics
(`analysis.analyze_experiment`).  The body is exactly the analysis result's ``to_dict()``.

Exported files are immutable once renamed, so the sorted list of their names and sizes is a
watermark of the data: a result is cached per (experiment, config version, watermark) and
computed again only when either changes, or when it is older than 1/24 of the observation
window (``OBSERVATION_HOURS``, 24 by default; at least a minute): the analysis is as of the
time it runs, and units enter the always-valid test as their observation windows close,
new data or not.
The console reads the same cache.

``?segment=country`` (an attribute kept with the exposures) adds the segment table
(``segments`` in the body: each metric per value, adjusted across segments, with the
heterogeneity test); ``&min_segment_units=N`` (default 100) hides smaller segments.

Errors: a bad ``segment`` or ``min_segment_units`` 400; unknown experiment 404; 409 when
the request is fine but the experiment cannot be analysed yet: ``no_metrics`` (no primary
metric), ``no_data`` (no exposure exported yet), ``cannot_analyze`` (the analysis refused
the data, e.g. a metric with no event yet, or exported exposures that carry no attributes;
the message and field are the analysis's own).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from flask import Blueprint, Flask, Response, jsonify

from abtest.errors import Conflict, InvalidInput
from abtest.export import Kind, export, files, sources_for
from abtest.store import StoredExperiment

bp = Blueprint("results", __name__)

DEFAULT_EXPORT_DIR: Final = ".abtest/export"
_CACHE_SIZE: Final = 32
_EXTENSION: Final = "abtest.results"
_MIN_REFRESH: Final = timedelta(minutes=1)


class NoData(Conflict):
    """The experiment exists but cannot be analysed yet (no exposures, no metrics)."""

    code = "no_data"


class NoMetrics(Conflict):
    """The experiment has no primary metric to analyse."""

    code = "no_metrics"


class CannotAnalyze(Conflict):
    """The analysis refused the exported data (e.g. a metric with no event yet)."""

    code = "cannot_analyze"


@dataclass(frozen=True)
class ExperimentResults:
    """One experiment's analysis at one config version and data watermark."""

    key: str
    config_version: int
    watermark: str  # the data's, and the time the analysis is as of
    analysis: Any  # analysis.analyze's result: immutable, with to_dict()
    as_of: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """The analysis's own JSON form (what the endpoint serves)."""
        result: dict[str, Any] = self.analysis.to_dict()
        return result


# experiment, config version, data watermark, segment attribute, minimum segment size
_CacheKey = tuple[str, int, str, str | None, int]


class _Cache:
    """A small LRU of results; one lock, so concurrent requests never compute one key twice."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: OrderedDict[_CacheKey, ExperimentResults] = OrderedDict()

    def get(self, key: _CacheKey) -> ExperimentResults | None:
        hit = self.entries.get(key)
        if hit is not None:
            self.entries.move_to_end(key)
        return hit

    def put(self, key: _CacheKey, value: ExperimentResults) -> None:
        self.entries[key] = value
        self.entries.move_to_end(key)
        while len(self.entries) > _CACHE_SIZE:
            self.entries.popitem(last=False)


def export_dir(app: Flask) -> Path:
    """Where this service exports events: ``EXPORT_DIR`` or ``.abtest/export``."""
    return Path(app.config.get("EXPORT_DIR") or DEFAULT_EXPORT_DIR)


def _watermark(exposures: list[Path], outcomes: list[Path], root: Path) -> str:
    digest = hashlib.sha256()
    for path in (*exposures, *outcomes):
        digest.update(f"{path.relative_to(root)}\0{path.stat().st_size}\n".encode())
    return digest.hexdigest()[:16]


def experiment_results(
    app: Flask,
    stored: StoredExperiment,
    *,
    segment: str | None = None,
    min_segment_units: int = 100,
) -> ExperimentResults:
    """Export ``stored``'s buffered events, then its analysis (cached by watermark).

    With ``segment`` (an attribute kept with the exposures, such as ``country``) the
    analysis also breaks every metric down by it (`analysis.segments`); cached apart.

    Raises
    ------
    NoMetrics
        The experiment configures no metric.
    NoData
        No exposure of the experiment has been exported (nobody was assigned yet).
    """
    import pandas as pd

    from analysis import analyze_experiment

    experiment = stored.experiment
    if experiment.primary_metric is None:
        raise NoMetrics(f"'{experiment.key}' has no primary metric", "primary_metric")
    ext = app.extensions["abtest"]
    root = export_dir(app)
    export(ext.redis, sources=sources_for(ext.redis, experiment.key), out_dir=root)
    exposure_dir = root / Kind.EXPOSURES.value / experiment.key
    exposure_files = sorted(p for p in exposure_dir.rglob("*.parquet") if p.is_file())
    outcome_files = files(root, Kind.OUTCOMES)
    if not exposure_files:
        raise NoData(f"no exposures of '{experiment.key}' yet: results need assigned units",
                     "experiment")  # fmt: skip
    watermark = _watermark(exposure_files, outcome_files, root)
    cache_key = (experiment.key, stored.version, watermark, segment, min_segment_units)
    cache: _Cache = app.extensions.setdefault(_EXTENSION, _Cache())
    window = timedelta(hours=app.config["OBSERVATION_HOURS"])
    with cache.lock:
        hit = cache.get(cache_key)
        now = datetime.now(UTC)
        fresh = max(window / 24, _MIN_REFRESH)
        if hit is not None and hit.as_of is not None and now - hit.as_of < fresh:
            return hit
        outcomes: Any = (
            root / Kind.OUTCOMES.value
            if outcome_files
            else pd.DataFrame({"event_id": pd.Series(dtype=str), "unit_id": pd.Series(dtype=str),
                               "metric": pd.Series(dtype=str), "value": pd.Series(dtype=float),
                               "timestamp": pd.Series(dtype="datetime64[us, UTC]")})
        )  # fmt: skip
        try:
            analysis = analyze_experiment(experiment, exposures=exposure_dir, outcomes=outcomes,
                                          observation_window=window, as_of=now, segment=segment,
                                          min_segment_units=min_segment_units)  # fmt: skip
        except InvalidInput as exc:
            raise CannotAnalyze(f"cannot analyse '{experiment.key}' yet: {exc.message}",
                                exc.field) from exc  # fmt: skip
        result = ExperimentResults(experiment.key, stored.version,
                                   f"{watermark}@{now.isoformat()}", analysis, now)  # fmt: skip
        cache.put(cache_key, result)
        return result


def segment_query(args: Mapping[str, str]) -> tuple[str | None, int]:
    """``?segment=country&min_segment_units=100`` checked; 400 naming the bad parameter."""
    from abtest.attributes import check_attribute_name

    segment = args.get("segment") or None
    if segment is not None:
        check_attribute_name(segment, "segment")
    raw = args.get("min_segment_units", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= 10**9:
        raise InvalidInput(f"must be an integer >= 1, got {raw[:40]!r}", "min_segment_units")
    return segment, int(raw)


@bp.get("/v1/experiments/<key>/results")
def results(key: str) -> Response:
    """The experiment's analysis as JSON (admin key); ``?segment=`` adds the segment table."""
    from flask import current_app, request

    from service.extension import abtest
    from service.validation import experiment_key

    segment, min_units = segment_query(request.args)
    stored = abtest().store.get_experiment(experiment_key(key, "key"))
    analysed = experiment_results(current_app, stored, segment=segment,
                                  min_segment_units=min_units)  # fmt: skip
    return jsonify(analysed.to_dict())
