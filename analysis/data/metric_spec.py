"""Metric specs (``name:type``) and how a metric's events become one value per unit in SQL.

``purchase:binomial`` (1 if the unit had an event), ``purchase:count`` (its events),
``revenue:sum`` (the sum of its values), ``clicks/searches:ratio`` (Σ clicks and Σ searches
per unit) and ``latency_ms:p95:quantile`` (the event values themselves).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from abtest.errors import InvalidInput
from abtest.experiment import Metric, MetricType, metric_name_problem


def parse_metric(text: str, *, field_name: str = "metric") -> Metric:
    """``"purchase:binomial"``, ``"clicks/searches:ratio"``, ``"latency_ms:p95:quantile"``.

    Raises
    ------
    InvalidInput
        Not ``NAME:TYPE``, an unknown type, or a name that does not fit the type.
    """
    name, sep, type_name = text.rpartition(":")
    if not sep or not name:
        raise InvalidInput(f"metric '{text}' must be NAME:TYPE, e.g. purchase:binomial", field_name)
    try:
        metric_type = MetricType(type_name)
    except ValueError:
        choices = ", ".join(t.value for t in MetricType)
        raise InvalidInput(
            f"metric '{text}': unknown type '{type_name}' (one of: {choices})", field_name
        ) from None
    problem = metric_name_problem(name, metric_type)
    if problem:
        raise InvalidInput(f"metric '{text}': {problem}", field_name)
    return Metric(name, metric_type)


def source_metrics(metric: Metric) -> tuple[str, ...]:
    """The event names a metric reads: ``clicks/searches`` -> (clicks, searches)."""
    if metric.type is MetricType.RATIO:
        num, den = metric.name.split("/")
        return (num, den)
    if metric.type is MetricType.QUANTILE:
        return (metric.name.rpartition(":")[0],)
    return (metric.name,)


def longest_window(metrics: Sequence[Metric]) -> timedelta | None:
    """The longest attribution window any of ``metrics`` defines, or None."""
    hours = [m.attribution_window_hours for m in metrics if m.attribution_window_hours]
    return timedelta(hours=max(hours)) if hours else None


def quantile_level(metric: Metric) -> float:
    """``latency_ms:p95`` -> 0.95."""
    return float(metric.name.rpartition(":")[2][1:]) / 100.0


def value_sql(metric_type: MetricType, count: str, total: str, cap: float | None = None) -> str:
    """The per-unit value from its event count and value sum; a count or sum metric with a
    ``cap`` (from its catalogue definition) is capped at it (winsorized at a fixed value,
    Kohavi, Tang & Xu 2020, *Trustworthy Online Controlled Experiments*, ch. 22)."""
    if metric_type is MetricType.BINOMIAL:
        return f"CAST({count} > 0 AS DOUBLE)"
    value = (
        f"CAST({count} AS DOUBLE)"
        if metric_type is MetricType.COUNT
        else f"CAST({total} AS DOUBLE)"
    )
    return value if cap is None else f"least({value}, {float(cap)!r})"


def window_sql(
    metrics: Sequence[Metric], default: timedelta | None, *, event: str, time: str, start: str
) -> str:
    """SQL true when an event (name column ``event``, time column ``time``) of a unit
    exposed at ``start`` falls after its metric's attribution window: the metric's own
    window, else ``default``.

    Raises `InvalidInput` when one event name is read by metrics with different windows
    (the per-unit join keeps one copy of each event).
    """
    own: dict[str, timedelta | None] = {}
    for metric in metrics:
        hours = metric.attribution_window_hours
        window = default if hours is None else timedelta(hours=hours)
        for name in source_metrics(metric):
            if name in own and own[name] != window:
                raise InvalidInput(
                    f"event '{name}' is read by metrics with different attribution windows; "
                    "analyse them separately", "attribution_window")  # fmt: skip
            own[name] = window
    by_window: dict[timedelta, list[str]] = {}
    for name, window in own.items():
        if window is not None:
            by_window.setdefault(window, []).append(name)
    late = [f"({event} IN ({sql_list(sorted(names))}) AND {time} >= {start} + {interval_sql(w)})"
            for w, names in sorted(by_window.items())]  # fmt: skip
    return " OR ".join(late) or "FALSE"


def sql_list(names: Sequence[str]) -> str:
    """A SQL list of quoted string literals."""
    return ", ".join("'" + n.replace("'", "''") + "'" for n in names)


def interval_sql(window: timedelta) -> str:
    """A DuckDB interval literal of ``window`` (whole microseconds)."""
    return f"INTERVAL {int(window.total_seconds() * 1_000_000)} MICROSECONDS"
