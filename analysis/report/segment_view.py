"""The segment table as text, the same in the terminal, the HTML report and the console.

Reads the JSON form (``AnalysisResult.to_dict()["segments"]``), so the console can show
a cached result and the terminal a fresh one with one piece of code; each cell is
formatted by `analysis.report.formatting.metric_cells`, as the overall metrics are.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any, Final

from analysis.decision.segment_table import segment_label
from analysis.report.formatting import metric_cells, metric_headers, number, p_value

# Metric, variant, units, control, variant, absolute, relative, p, adjusted p, note.
_CELLS: Final = (0, 1, 2, 3, 4, 5, 6, 7, 8, 11)


def segment_headers(segments: Mapping[str, Any], alpha: float) -> list[str]:
    """Column headers: the attribute, then the metric table's, the adjustment named."""
    headers = [metric_headers(alpha)[i] for i in _CELLS]
    headers[8] = f"Adj. p ({segments['correction']}, across segments)"
    return [str(segments["attribute"]), *headers]


def comparison_rows(comparison: Mapping[str, Any]) -> list[list[str]]:
    """One row of cells per segment of one metric and variant."""
    out = []
    for row in comparison["segments"]:
        cells = metric_cells(row).cells()
        out.append([segment_label(row["segment"]), *(cells[i] for i in _CELLS)])
    return out


def heterogeneity_text(comparison: Mapping[str, Any]) -> str:
    """One line on the heterogeneity test of one metric and variant."""
    name = f"{comparison['metric']} ({comparison['variant']})"
    test = comparison.get("heterogeneity")
    if not test:
        return f"{name}: no heterogeneity test: {comparison.get('heterogeneity_note') or ''}"
    return (f"{name}: is the effect different across segments? Cochran's Q = "
            f"{number(test['q'], 3)} on {test['df']} df, p = {p_value(test['p_value'])}, "
            f"I² = {number(100 * (test['i_squared'] or 0.0), 2)}%")  # fmt: skip


def footnote(segments: Mapping[str, Any]) -> str:
    """What the table's safeguards are, in one sentence."""
    text = (f"A segment is a unit's '{segments['attribute']}' at its first exposure; no number "
            f"is shown for fewer than {segments['min_units']:,} units in an arm; p-values "
            f"adjusted ({segments['correction']}) across the segments of each metric and "
            f"variant; CIs are per segment.")  # fmt: skip
    if segments.get("omitted"):
        text += (f" {segments['omitted']:,} smaller segment value(s) beyond the "
                 f"{segments['max_segments']} largest are not listed.")  # fmt: skip
    return text


def segment_html(segments: Mapping[str, Any], alpha: float) -> str:
    """The report's section: one table, a heterogeneity line per metric, the footnote."""
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in segment_headers(segments, alpha))
    body = "".join(
        "<tr>" + "".join(f"<td>{e(cell)}</td>" for cell in cells) + "</tr>"
        for comparison in segments["comparisons"]
        for cells in comparison_rows(comparison)
    )
    tests = "".join(f"<li>{e(heterogeneity_text(c))}</li>" for c in segments["comparisons"])
    return (f'<h2>Segments by {e(str(segments["attribute"]))}</h2>'
            f'<table id="segments"><tr>{head}</tr>{body}</table>'
            f"<ul>{tests}</ul><p><small>{e(footnote(segments))}</small></p>")  # fmt: skip


__all__ = [
    "comparison_rows",
    "footnote",
    "heterogeneity_text",
    "segment_headers",
    "segment_html",
]
