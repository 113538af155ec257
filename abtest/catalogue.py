"""The metric catalogue's model: one definition per metric, and the references to it.

A catalogue entry (`MetricDefinition`) says once what a metric is: its name as the analysis
reads it (``purchase``, ``clicks/searches``, ``latency_ms:p95``), its type (``binomial`` is
a proportion; ``count`` and ``sum`` are means of a per-unit count or total; ``ratio`` and
``quantile``), its unit, its direction, an optional cap on each unit's value, an optional
attribution window and a description.  Entries are versioned by the store
(`abtest.catalogue_store`); this module is pure.

An experiment names an entry instead of repeating it: ``{"catalogue": "revenue"}`` (with an
optional ``"version": 3`` and the experiment's own guardrail ``"margin"``).  When the
service stores an experiment version, `resolve_references` replaces each reference by the
definition it names, *pinned*: the stored metric carries every field of that definition
and ``catalogue_version``, so the analysis of a stored experiment never reads the
catalogue, and a later catalogue edit changes nothing until someone stores a new
experiment version that names the new catalogue version.  A reference without a version
takes the version the experiment's current version already pins (the latest only for a
metric it did not use yet), so pushing the same file again never moves a metric silently.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from abtest.errors import InvalidConfig, InvalidInput, NotFound, Problem
from abtest.experiment import METRIC_NAME_PATTERN, Metric, MetricType, metric_name_problem
from abtest.json_input import loads

__all__ = [
    "MAX_DESCRIPTION_LENGTH",
    "MAX_UNIT_LENGTH",
    "METRIC_ROLES",
    "MetricDefinition",
    "closest",
    "event_names",
    "read_catalogue",
    "references",
    "resolve_references",
    "snapshot_lookup",
    "without_references",
]

MAX_UNIT_LENGTH: Final = 32
MAX_DESCRIPTION_LENGTH: Final = 2_000
# A catalogue name: a metric name of any type (ratio 'a/b', quantile 'name:p95').
CATALOGUE_NAME_PATTERN: Final = rf"{METRIC_NAME_PATTERN}(/{METRIC_NAME_PATTERN}|:p[0-9.]{{1,8}})?"
METRIC_ROLES: Final = ("primary_metric", "guardrail_metrics", "secondary_metrics")
_CAPPABLE: Final = (MetricType.COUNT, MetricType.SUM)
_REFERENCE_FIELDS: Final = frozenset({"catalogue", "version", "margin"})


@dataclass(frozen=True)
class MetricDefinition:
    """One catalogue entry.

    ``cap``: each unit's value is capped at this before the statistics (count and sum
    metrics only; winsorizing at a fixed value, Kohavi, Tang & Xu 2020, ch. 22).
    ``attribution_window_hours``: only a unit's events within this long after its first
    exposure count (default: the analysis' own window).
    """

    name: str
    type: MetricType
    unit: str = ""
    higher_is_better: bool = True
    cap: float | None = None
    attribution_window_hours: float | None = None
    description: str = ""

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise InvalidConfig(problems)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetricDefinition:
        """Build and validate; `InvalidConfig` listing every problem with its field."""
        if not isinstance(data, Mapping):
            raise InvalidConfig([Problem("$", "a metric definition must be a JSON object")])
        unknown = sorted(set(data) - set(_FIELDS))
        problems = [Problem(name, "unknown field") for name in unknown]
        name, type_name = data.get("name"), data.get("type")
        if not isinstance(name, str) or not name:
            problems.append(Problem("name", "required: a metric name"))
        try:
            metric_type = MetricType(str(type_name))
        except ValueError:
            choices = ", ".join(t.value for t in MetricType)
            problems.append(Problem("type", f"required: one of {choices}"))
        for field, kind in _FIELDS.items():
            value = data.get(field)
            if field in ("name", "type") or value is None:
                continue
            if kind is float and not _is_number(value):
                problems.append(Problem(field, "must be a number or null"))
            elif kind is not float and not isinstance(value, kind):
                problems.append(Problem(field, f"must be {_KIND_TEXT[kind]}"))
        if problems:
            raise InvalidConfig(problems)
        kwargs = {k: data[k] for k in _FIELDS if k in data and data[k] is not None}
        for field in ("cap", "attribution_window_hours"):
            if field in kwargs:
                kwargs[field] = float(kwargs[field])
        return cls(**{**kwargs, "type": metric_type})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form (every field)."""
        return {
            "name": self.name,
            "type": self.type.value,
            "unit": self.unit,
            "higher_is_better": self.higher_is_better,
            "cap": self.cap,
            "attribution_window_hours": self.attribution_window_hours,
            "description": self.description,
        }

    def as_metric(self, version: int, margin: float | None = None) -> Metric:
        """The experiment `Metric` of this definition at catalogue ``version``."""
        return Metric(self.name, self.type, self.higher_is_better, margin, self.unit, self.cap,
                      self.attribution_window_hours, version)  # fmt: skip

    def experiment_metric(self, version: int, margin: object = None) -> dict[str, Any]:
        """The metric an experiment stores for this definition at catalogue ``version``."""
        return {
            "name": self.name,
            "type": self.type.value,
            "higher_is_better": self.higher_is_better,
            "margin": margin,
            "unit": self.unit,
            "cap": self.cap,
            "attribution_window_hours": self.attribution_window_hours,
            "catalogue_version": version,
        }


_FIELDS: Final[dict[str, type]] = {
    "name": str, "type": str, "unit": str, "higher_is_better": bool, "cap": float,
    "attribution_window_hours": float, "description": str,
}  # fmt: skip
_KIND_TEXT: Final = {str: "a string", bool: "true or false"}


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _problems(d: MetricDefinition) -> list[Problem]:
    problems = []
    problem = metric_name_problem(d.name, d.type) if isinstance(d.name, str) else "not a name"
    if problem:
        problems.append(Problem("name", problem))
    if len(d.unit) > MAX_UNIT_LENGTH:
        problems.append(Problem("unit", f"at most {MAX_UNIT_LENGTH} characters"))
    if len(d.description) > MAX_DESCRIPTION_LENGTH:
        problems.append(Problem("description", f"at most {MAX_DESCRIPTION_LENGTH:,} characters"))
    if d.cap is not None:
        if d.type not in _CAPPABLE:
            problems.append(Problem("cap", "only count and sum metrics can be capped"))
        elif not (math.isfinite(d.cap) and d.cap > 0):
            problems.append(Problem("cap", "must be a finite number > 0"))
    window = d.attribution_window_hours
    if window is not None and not (math.isfinite(window) and window > 0):
        problems.append(Problem("attribution_window_hours", "must be a finite number > 0"))
    return problems


def event_names(name: str) -> tuple[str, ...]:
    """The event names a metric of this name reads: ``clicks/searches`` -> (clicks,
    searches), ``latency_ms:p95`` -> (latency_ms,), ``purchase`` -> (purchase,)."""
    if "/" in name:
        num, _, den = name.partition("/")
        return (num, den)
    return (name.partition(":")[0],)


def closest(name: str, names: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``names``, or ``""``."""
    close = difflib.get_close_matches(name, list(names), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def _metric_slots(config: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """(field path, value) of every metric slot of a raw experiment config."""
    slots: list[tuple[str, Any]] = []
    if config.get("primary_metric") is not None:
        slots.append(("primary_metric", config["primary_metric"]))
    for role in METRIC_ROLES[1:]:
        items = config.get(role)
        if isinstance(items, list):
            slots += [(f"{role}[{i}]", item) for i, item in enumerate(items)]
    return slots


def _is_reference(value: object) -> bool:
    return isinstance(value, Mapping) and "catalogue" in value


def references(config: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """The catalogue references of a raw experiment config, with their field paths."""
    return [(path, value) for path, value in _metric_slots(config) if _is_reference(value)]


def without_references(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config with every catalogue reference left out (to check the rest offline)."""
    out = dict(config)
    if _is_reference(out.get("primary_metric")):
        out["primary_metric"] = None
    for role in METRIC_ROLES[1:]:
        if isinstance(out.get(role), list):
            out[role] = [m for m in out[role] if not _is_reference(m)]
    return out


Lookup = Callable[[str, "int | None"], tuple[MetricDefinition, int]]
"""``(name, version or None for the latest) -> (definition, its version)``; `NotFound`."""


def resolve_references(
    config: Mapping[str, Any], lookup: Lookup, *, pinned: Mapping[str, int] | None = None
) -> dict[str, Any]:
    """``config`` with every catalogue reference replaced by the definition it names.

    A reference without ``version`` takes ``pinned[name]`` (what the experiment's current
    version uses) when there is one, else the latest.  A metric that already carries a
    ``catalogue_version`` (a stored config sent back) must equal that version's
    definition.  Raises `InvalidConfig` listing every reference that cannot be resolved
    (unknown names come with the closest known one).
    """
    pinned = pinned or {}
    problems: list[Problem] = []
    resolved: dict[str, Any] = {}
    for path, value in _metric_slots(config):
        if not isinstance(value, Mapping):
            continue
        if _is_reference(value):
            resolved[path] = _resolve_one(path, value, lookup, pinned, problems)
        elif value.get("catalogue_version") is not None:
            _check_pinned(path, value, lookup, problems)
    if problems:
        raise InvalidConfig(problems)
    if not resolved:
        return dict(config)
    out = dict(config)
    if "primary_metric" in resolved:
        out["primary_metric"] = resolved["primary_metric"]
    for role in METRIC_ROLES[1:]:
        if isinstance(out.get(role), list):
            out[role] = [resolved.get(f"{role}[{i}]", m) for i, m in enumerate(out[role])]
    return out


def _resolve_one(
    path: str,
    ref: Mapping[str, Any],
    lookup: Lookup,
    pinned: Mapping[str, int],
    problems: list[Problem],
) -> Any:
    extra = sorted(set(ref) - _REFERENCE_FIELDS)
    if extra:
        problems.append(Problem(f"{path}.{extra[0]}", "a catalogue reference takes only "
                                "catalogue, version and margin"))  # fmt: skip
        return ref
    name, version = ref.get("catalogue"), ref.get("version")
    if not isinstance(name, str) or not name:
        problems.append(Problem(f"{path}.catalogue", "must name a catalogue metric"))
        return ref
    if version is not None and (
        isinstance(version, bool) or not isinstance(version, int) or version < 1
    ):
        problems.append(Problem(f"{path}.version", "must be a whole number >= 1"))
        return ref
    try:
        definition, found = lookup(name, version if version is not None else pinned.get(name))
    except NotFound as exc:
        problems.append(Problem(f"{path}.{'version' if version else 'catalogue'}", exc.message))
        return ref
    return definition.experiment_metric(found, ref.get("margin"))


def _check_pinned(
    path: str, value: Mapping[str, Any], lookup: Lookup, problems: list[Problem]
) -> None:
    version, name = value.get("catalogue_version"), value.get("name")
    if isinstance(version, float) and version.is_integer():
        version = int(version)
    if isinstance(version, bool) or not isinstance(version, int) or not isinstance(name, str):
        return  # Experiment.from_dict names the bad field
    try:
        definition, _ = lookup(name, version)
    except (NotFound, InvalidInput) as exc:
        problems.append(Problem(f"{path}.catalogue_version", exc.message))
        return
    expected = definition.experiment_metric(version, value.get("margin"))
    stated = {k: value.get(k, expected[k]) for k in expected}
    if stated != expected:
        changed = next(k for k in expected if stated[k] != expected[k])
        problems.append(Problem(
            f"{path}.{changed}", f"differs from version {version} of catalogue metric '{name}'; "
            "name the catalogue entry instead ({\"catalogue\": ...}) or drop catalogue_version",
        ))  # fmt: skip


def snapshot_lookup(snapshot: Mapping[str, Any]) -> Lookup:
    """A `Lookup` over a catalogue snapshot: ``{"metrics": {name: [version entries]}}``,
    as ``GET /v1/metrics`` lists versions and ``abtest export`` writes ``catalogue.json``."""
    metrics = snapshot.get("metrics") if isinstance(snapshot, Mapping) else None
    if not isinstance(metrics, Mapping):
        raise InvalidInput('a catalogue file holds {"metrics": {name: [versions]}}', "metrics")

    def lookup(name: str, version: int | None) -> tuple[MetricDefinition, int]:
        versions = metrics.get(name)
        if not versions:
            raise NotFound(f"no metric '{name}' in the catalogue{closest(name, metrics)}", "name")
        number = len(versions) if version is None else version
        if not 1 <= number <= len(versions):
            raise NotFound(f"metric '{name}' has no version {version}", "version")
        return MetricDefinition.from_dict(versions[number - 1]["definition"]), number

    return lookup


def read_catalogue(path: str | Path) -> Lookup:
    """`snapshot_lookup` over a ``catalogue.json`` file (`abtest export` writes one)."""
    try:
        data = loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidInput(f"cannot read the catalogue file {path}: {exc.strerror}",
                           "catalogue") from None  # fmt: skip
    return snapshot_lookup(data)
