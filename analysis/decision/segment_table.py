"""The segment table of `analysis.analyze(..., segment=...)`: each metric per segment value.

Frozen, with ``to_dict()`` for JSON and ``summary()`` for notebooks.  A segment row's dict
has the keys of `analysis.decision.rows.MetricRow.to_dict` (plus ``segment``), so the
report, the console and the terminal format it with the same code as the overall rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from abtest.experiment import MetricType
from analysis.decision.rows import effect_fields
from analysis.statistics.heterogeneity import Heterogeneity
from analysis.statistics.results import Effect, json_float

if TYPE_CHECKING:
    import pandas as pd

NOT_SET: Final = "(not set)"
"""How a unit without the attribute is labelled in tables (``segment`` is null in JSON)."""


def segment_label(value: str | None) -> str:
    """The segment's text in tables: its value, or `NOT_SET`."""
    return NOT_SET if value is None else value


@dataclass(frozen=True)
class SegmentRow:
    """One metric for one treatment variant within one segment value.

    ``note`` says why no number is shown (a segment below the minimum size, whose unit
    counts are hidden too) or why none could be computed; the numbers are then None.
    ``adjusted_p_value`` is adjusted across the segments of the same metric and variant.
    """

    segment: str | None
    n_control: int | None
    n_variant: int | None
    control_mean: float | None = None
    variant_mean: float | None = None
    effect: Effect | None = None
    adjusted_p_value: float | None = None
    significant: bool = False
    note: str | None = None
    below_minimum: bool = False

    @property
    def p_value(self) -> float | None:
        """The segment's own (unadjusted) p-value."""
        return None if self.effect is None else self.effect.p_value


@dataclass(frozen=True)
class SegmentComparison:
    """One metric and treatment variant across every segment value, with the
    heterogeneity test over the segments that have an estimate."""

    metric: str
    type: MetricType
    role: str
    variant: str
    higher_is_better: bool
    rows: tuple[SegmentRow, ...]
    heterogeneity: Heterogeneity | None
    heterogeneity_note: str | None = None

    def row_dicts(self) -> list[dict[str, Any]]:
        """Each segment as a metric-row dict (``MetricRow.to_dict`` keys plus ``segment``)."""
        out = []
        for row in self.rows:
            out.append({
                "segment": row.segment, "metric": self.metric, "type": self.type.value,
                "role": self.role, "variant": self.variant,
                "higher_is_better": self.higher_is_better,
                "n_control": row.n_control, "n_variant": row.n_variant,
                "control_mean": json_float(row.control_mean),
                "variant_mean": json_float(row.variant_mean),
                **effect_fields(row.effect),
                "p_value": json_float(row.p_value),
                "adjusted_p_value": json_float(row.adjusted_p_value),
                "significant": row.significant, "error": row.note,
                "below_minimum": row.below_minimum,
            })  # fmt: skip
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON form: the metric, its segment rows and the heterogeneity test."""
        return {
            "metric": self.metric,
            "type": self.type.value,
            "role": self.role,
            "variant": self.variant,
            "segments": self.row_dicts(),
            "heterogeneity": None if self.heterogeneity is None else self.heterogeneity.to_dict(),
            "heterogeneity_note": self.heterogeneity_note,
        }


@dataclass(frozen=True)
class SegmentTable:
    """Every metric per value of one attribute (``attribute``, such as ``country``).

    ``min_units``: a segment shows numbers for a variant only when it has at least this
    many units in control and in that variant.  ``correction`` ("holm" or "bh") adjusts
    the p-values of one metric and variant across its segments.  ``omitted`` counts the
    segment values left out because there were more than ``max_segments``.
    """

    attribute: str
    min_units: int
    correction: str
    alpha: float
    comparisons: tuple[SegmentComparison, ...]
    segments: tuple[str | None, ...]
    max_segments: int
    omitted: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``AnalysisResult.to_dict()["segments"]``)."""
        return {
            "attribute": self.attribute,
            "min_units": self.min_units,
            "correction": self.correction,
            "heterogeneity_test": "cochran_q",
            "values": list(self.segments),
            "max_segments": self.max_segments,
            "omitted": self.omitted,
            "comparisons": [c.to_dict() for c in self.comparisons],
        }

    def summary(self) -> pd.DataFrame:
        """One row per segment, metric and variant, snake_case columns."""
        import pandas as pd

        records = []
        for comparison in self.comparisons:
            for data in comparison.row_dicts():
                lo, hi = data["absolute_ci"] or (None, None)
                records.append({
                    **{c: data[c] for c in _COLUMNS[:8]},
                    "absolute_ci_low": lo, "absolute_ci_high": hi,
                    **{c: data[c] for c in _COLUMNS[10:-1]}, "note": data["error"],
                })  # fmt: skip
        return pd.DataFrame.from_records(records, columns=list(_COLUMNS))


_COLUMNS: Final = ("segment", "metric", "variant", "n_control", "n_variant", "control_mean",
                   "variant_mean", "absolute_effect", "absolute_ci_low", "absolute_ci_high",
                   "relative_effect", "p_value", "adjusted_p_value", "significant",
                   "note")  # fmt: skip


__all__ = [
    "NOT_SET",
    "SegmentComparison",
    "SegmentRow",
    "SegmentTable",
    "segment_label",
]
