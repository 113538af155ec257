"""The holdout report: what everything the global holdout covered added up to, in one
self-contained HTML file (the same tables and number formats as the experiment report)."""

from __future__ import annotations

import html
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from analysis.report.formatting import count, metric_cells, metric_headers, number, p_value
from analysis.report.html import REPORT_CSS


def render_holdout_html(result: Mapping[str, Any]) -> str:
    """The report of a `analysis.holdout.HoldoutResult` (its ``to_dict()``, as the service
    and ``abtest holdout results --json`` give it); every text from data is escaped."""
    e = html.escape
    srm = result["srm"]
    groups = "".join(
        f"<tr><td>{e(g['group'])}</td><td>{count(g['units'])}</td>"
        f"<td>{number(srm['expected'].get(g['group']), 6)}</td></tr>"
        for g in result["groups"]
    )
    headers = "".join(f"<th>{e(h)}</th>" for h in metric_headers(float(result["alpha"])))
    rows = []
    for row in result["metrics"]:
        cells = metric_cells(row)
        rest = "".join(f"<td>{e(cell)}</td>" for cell in cells.cells()[1:])
        rows.append(
            f"<tr><td>{e(cells.metric)}<br><small>{e(cells.detail)}</small></td>{rest}</tr>"
        )
    period = result["period"]
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>abtest holdout report: {e(result["holdout"])}</title>
<style>
{REPORT_CSS}
</style></head><body>
<h1>Holdout {e(result["holdout"])}: what everything shipped added up to</h1>
<p>{float(result["share"]):.1%} of units got control in every covered experiment; the rest
got the shipped winners (and the running experiments' treatments). Units first met from
{e(period["start"] or "the start")} to {e(period["end"] or "now")}; the effects below are
rest − holdout.</p>
<h2>Groups</h2>
<p id="srm">SRM {"ok" if srm["ok"] else "<b>MISMATCH</b>"}: p = {p_value(srm["p_value"])};
{count(result["excluded_units"])} unit(s) in both groups excluded.</p>
<table><tr><th>group</th><th>units</th><th>expected units</th></tr>{groups}</table>
<h2>Metrics</h2>
<table id="metrics"><tr>{headers}</tr>
{"".join(rows)}</table>
<p><small>alpha {result["alpha"]}, correction {e(str(result["correction"]))}; generated
{generated} by abtest.</small></p>
</body></html>
"""


def write_holdout_report(result: Mapping[str, Any], path: str | Path) -> Path:
    """Write `render_holdout_html` to ``path`` (UTF-8); return the path."""
    target = Path(path)
    target.write_text(render_holdout_html(result), encoding="utf-8")
    return target
