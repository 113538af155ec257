"""How numbers read in the HTML report and the web console: one module, so that both show
the same text for the same result.

- Counts get thousands separators: ``130,016``, never ``130016``.
- Measurements get four significant digits and separators, with no exponent between 0.0001
  and 10^15: ``0.04213``, ``1,234``, ``130,016``.
- An effect and its confidence interval share one number of decimals, chosen so that the
  interval's half-width shows two significant digits: ``+0.35 pp [+0.10 pp, +0.60 pp]``.
  More decimals would claim a precision the interval denies.
- Every value says its unit, and an interval always has the unit of the effect beside it:
  the mean of a binomial metric is a share of units (``%``) and its absolute effect is in
  percentage points (``pp``); a relative effect is in ``%``; a metric whose name ends in
  ``_ms`` (``latency_ms:p95``) or ``_s`` is in milliseconds or seconds.  A relative effect
  is never put beside an absolute interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

MISSING: Final = "–"
# Beyond this the interval is too narrow to matter and the digits are noise.
_MAX_DECIMALS: Final = 8


def _finite(value: float | None) -> float | None:
    """``value`` if it is a finite number, else None."""
    return value if value is not None and math.isfinite(value) else None


def count(value: int | None) -> str:
    """A count with thousands separators (``130,016``)."""
    return MISSING if value is None else f"{int(value):,}"


def number(value: float | None, digits: int = 4, *, signed: bool = False) -> str:
    """``value`` with ``digits`` significant digits and thousands separators.

    No exponent between 0.0001 and 10^15; trailing zeros after the point are dropped (as
    with the ``g`` format): ``0.04213``, ``12.3``, ``1,234``, ``130,016``, ``7.56e-05``.
    """
    if value is None or not math.isfinite(value):
        return MISSING
    sign = "+" if signed else ""
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude < 1e-4 or magnitude >= 1e15:
        return format(value, f"{sign}.{digits}g")
    decimals = max(0, digits - 1 - math.floor(math.log10(magnitude)))
    text = format(value, f"{sign},.{decimals}f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def percent(share: float | None, digits: int = 4, *, signed: bool = False) -> str:
    """A share as a percentage (0.0421 -> ``4.21%``), ``digits`` significant digits."""
    if share is None or not math.isfinite(share):
        return MISSING
    return number(100 * share, digits, signed=signed) + "%"


def p_value(value: float | None) -> str:
    """A p-value with three significant digits (``0.0123``, ``7.56e-05``)."""
    return number(value, 3)


def _decimals(estimate: float, low: float | None, high: float | None) -> int:
    """Decimals that show the interval's half-width with two significant digits (or the
    estimate with four when there is no finite interval)."""
    if low is not None and high is not None and high != low:
        reference, digits = abs(high - low) / 2, 2
    else:
        reference, digits = abs(estimate), 4
    if reference == 0 or not math.isfinite(reference):
        return 2
    return min(_MAX_DECIMALS, max(0, digits - 1 - math.floor(math.log10(reference))))


def effect_with_ci(
    estimate: float | None, ci: Sequence[float | None] | None, *, scale: float = 1.0,
    unit: str = "",
) -> str:  # fmt: skip
    """``+0.35 pp [+0.10 pp, +0.60 pp]``: the effect and its CI in one unit and precision.

    ``scale`` converts to the unit (100 for % and pp); an open bound prints as `MISSING`.
    """
    if estimate is None or not math.isfinite(estimate):
        return MISSING
    low, high = (None, None) if not ci else (_finite(ci[0]), _finite(ci[1]))
    low = None if low is None else low * scale
    high = None if high is None else high * scale
    decimals = _decimals(estimate * scale, low, high)

    def signed(value: float | None) -> str:
        return MISSING if value is None else f"{value:+,.{decimals}f}{unit}"

    text = signed(estimate * scale)
    return text if ci is None else f"{text} [{signed(low)}, {signed(high)}]"


@dataclass(frozen=True)
class MetricUnit:
    """How one metric's values and absolute effects are shown."""

    describes: str  # what a value is: "share of units", "sum per unit", ...
    value_scale: float = 1.0
    value_unit: str = ""
    effect_unit: str = ""

    def value(self, raw: float | None) -> str:
        """A per-variant value (a mean, a ratio, a quantile) in this unit."""
        if raw is None or not math.isfinite(raw):
            return MISSING
        return number(raw * self.value_scale) + self.value_unit


_DESCRIBES: Final = {"binomial": "share of units", "count": "events per unit",
                     "sum": "sum per unit", "ratio": "ratio of sums"}  # fmt: skip
_NAME_UNITS: Final = (("_ms", " ms"), ("_seconds", " s"), ("_s", " s"))


def metric_unit(metric: str, metric_type: str) -> MetricUnit:
    """The unit of ``metric``: from its type (binomial: % and pp) or its name (``*_ms``)."""
    base, _, quantile = metric.partition(":")
    describes = f"{quantile} of values" if metric_type == "quantile" else _DESCRIBES.get(
        metric_type, metric_type
    )  # fmt: skip
    if metric_type == "binomial":
        return MetricUnit(describes, 100.0, "%", " pp")
    if metric_type != "ratio":
        for suffix, unit in _NAME_UNITS:
            if base.endswith(suffix):
                return MetricUnit(describes, 1.0, unit, unit)
    return MetricUnit(describes)


@dataclass(frozen=True)
class MetricCells:
    """One row of the metrics table as text: the same in the report and the console."""

    metric: str
    detail: str  # type, role and what a value is
    variant: str
    units: str  # "control / variant"
    control: str
    treatment: str
    absolute: str  # absolute effect [CI], in the metric's unit
    relative: str  # relative effect [CI], in %
    p_value: str
    adjusted_p_value: str
    significant: str  # "yes" / "no"
    chance_to_beat_control: str
    note: str

    def cells(self) -> tuple[str, ...]:
        """The cells in `metric_headers` order."""
        return (self.metric, self.variant, self.units, self.control, self.treatment,
                self.absolute, self.relative, self.p_value, self.adjusted_p_value,
                self.significant, self.chance_to_beat_control, self.note)  # fmt: skip


def metric_headers(alpha: float) -> tuple[str, ...]:
    """Column headers of `MetricCells.cells`, each naming its unit."""
    level = f"{1 - alpha:.0%} CI"
    return ("Metric", "Variant", "Units (control / variant)", "Control (value)",
            "Variant (value)", f"Abs. effect, variant − control [{level}]",
            f"Rel. effect, % of control [{level}]", "p", "Adj. p", "Significant",
            "P(beats control)", "Note")  # fmt: skip


def metric_cells(row: Mapping[str, Any]) -> MetricCells:
    """The text of one metric row (``MetricRow.to_dict()`` or the results JSON row)."""
    unit = metric_unit(row["metric"], row["type"])
    bayesian = row.get("bayesian") or {}
    return MetricCells(
        metric=row["metric"],
        detail=f"{row['type']}, {row['role']}: {unit.describes}",
        variant=row["variant"],
        units=f"{count(row['n_control'])} / {count(row['n_variant'])}",
        control=unit.value(row["control_mean"]),
        treatment=unit.value(row["variant_mean"]),
        absolute=effect_with_ci(
            row["absolute_effect"],
            row["absolute_ci"],
            scale=unit.value_scale,
            unit=unit.effect_unit,
        ),
        relative=effect_with_ci(row["relative_effect"], row["relative_ci"], scale=100, unit="%"),
        p_value=p_value(row["p_value"]),
        adjusted_p_value=p_value(row["adjusted_p_value"]),
        significant="yes" if row["significant"] else "no",
        chance_to_beat_control=percent(bayesian.get("chance_to_beat_control"), 3),
        note=_note(row, unit),
    )


def _note(row: Mapping[str, Any], unit: MetricUnit) -> str:
    if row.get("error"):
        return str(row["error"])
    test = row.get("non_inferiority")
    if test:
        margin = (percent(test["margin"], 3) if test["relative"]
                  else number(test["margin"] * unit.value_scale) + unit.effect_unit)  # fmt: skip
        shown = "non-inferior" if test["non_inferior"] else "not shown non-inferior"
        return f"{shown} (margin {margin}, p = {p_value(test['p_value'])})"
    cuped = row.get("cuped")
    if cuped and _finite(cuped.get("variance_reduction")) is not None:
        return f"CUPED: variance −{percent(cuped['variance_reduction'], 2)}"
    return ""
