"""The release manager's report: one self-contained HTML file.

The figures (`analysis.report.figures`) are embedded as base64 PNG, and every piece of text
that comes from data or configuration is escaped.
"""

from __future__ import annotations

import base64
import html
from datetime import UTC, datetime
from pathlib import Path

from matplotlib.figure import Figure

from analysis.decision.result import AnalysisResult
from analysis.decision.rules import Verdict
from analysis.report.figures import cumulative_figure, effect_figure, exposures_figure, figure_png
from analysis.report.formatting import count, metric_cells, metric_headers, number, p_value
from analysis.report.segment_view import segment_html

_VERDICT_COLOURS = {
    Verdict.SHIP: "#1a7f37",
    Verdict.KEEP_RUNNING: "#9a6700",
    Verdict.NO_DIFFERENCE: "#57606a",
    Verdict.ROLL_BACK: "#cf222e",
    Verdict.INVALID: "#8250df",
}


# Shared with the holdout report (`analysis.report.holdout_html`).
REPORT_CSS = """\
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #1f2328; }
.verdict h1 { margin: 0; font-size: 1.8rem; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0 1.5rem; }
td, th { border: 1px solid #d0d7de; padding: 0.25rem 0.5rem; text-align: right; }
td:first-child, th:first-child { text-align: left; }
.warn { color: #9a6700; font-weight: 600; }
img { max-width: 100%; display: block; margin: 1rem 0; }"""


def _img(figure: Figure, alt: str) -> str:
    data = base64.b64encode(figure_png(figure)).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def render_html(result: AnalysisResult) -> str:
    """The whole report as one HTML document (figures inline, no external resources)."""
    e = html.escape
    d = result.decision
    colour = _VERDICT_COLOURS[d.verdict]
    variant = f" — {e(d.variant)}" if d.variant else ""
    extra = f" (about {d.extra_days} more days)" if d.extra_days else ""
    reasons = "".join(f"<li>{e(r)}</li>" for r in d.reasons)
    warnings = "".join(f'<li class="warn">{e(w)}</li>' for w in d.warnings)
    srm = result.srm
    srm_rows = "".join(
        f"<tr><td>{e(v)}</td><td>{count(result.units.get(v, 0))}</td>"
        f"<td>{number(srm.expected.get(v), 6)}</td></tr>"
        for v in srm.expected
    )
    headers = "".join(f"<th>{e(h)}</th>" for h in metric_headers(result.settings.alpha))
    metric_rows = []
    for row in result.rows:
        cells = metric_cells(row.to_dict())
        first = f"{e(cells.metric)}<br><small>{e(cells.detail)}</small>"
        rest = "".join(f"<td>{e(cell)}</td>" for cell in cells.cells()[1:])
        metric_rows.append(f"<tr><td>{first}</td>{rest}</tr>")
    figures = [_img(effect_figure(result), "effects with confidence intervals"),
               _img(cumulative_figure(result), "cumulative effect over time"),
               _img(exposures_figure(result), "units exposed per day")]  # fmt: skip
    segments = (
        ""
        if result.segments is None
        else segment_html(result.segments.to_dict(), result.settings.alpha)
    )
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>abtest report: {e(result.experiment)}</title>
<style>
{REPORT_CSS}
.verdict {{ background: {colour}; color: white; padding: 1rem 1.5rem; border-radius: 8px; }}
</style></head><body>
<div class="verdict"><h1>{e(d.verdict.value.replace("_", " ").upper())}{variant}{e(extra)}</h1>
<div>experiment <b>{e(result.experiment)}</b> · control <b>{e(result.control)}</b></div></div>
<h2>Why</h2><ul>{reasons}{warnings}</ul>
<h2>Sample ratio</h2>
<p id="srm">SRM {"ok" if srm.ok else "<b>MISMATCH</b>"}: p = {p_value(srm.p_value)}
(threshold {srm.threshold}); {count(result.excluded_units)} crossover unit(s) excluded
({result.crossover_share:.2%}).</p>
<table><tr><th>variant</th><th>units</th><th>expected units</th></tr>{srm_rows}</table>
<h2>Metrics</h2>
<table id="metrics"><tr>{headers}</tr>
{"".join(metric_rows)}</table>
{segments}
{"".join(figures)}
<p><small>alpha {result.settings.alpha}, correction {e(result.settings.correction)};
generated {generated} by abtest.</small></p>
</body></html>
"""


def write_report(result: AnalysisResult, path: str | Path) -> Path:
    """Write `render_html` to ``path`` (UTF-8); return the path."""
    target = Path(path)
    target.write_text(render_html(result), encoding="utf-8")
    return target
