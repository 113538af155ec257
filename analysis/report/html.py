"""The release manager's report: one self-contained HTML file.

The figures (`analysis.report.figures`) are embedded as base64 PNG, and every piece of text
that comes from data or configuration is escaped.
"""

from __future__ import annotations

import base64
import html
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from matplotlib.figure import Figure

from analysis.decision.result import AnalysisResult
from analysis.decision.rules import Verdict
from analysis.report.figures import cumulative_figure, effect_figure, exposures_figure, figure_png

if TYPE_CHECKING:
    pass

_VERDICT_COLOURS = {
    Verdict.SHIP: "#1a7f37",
    Verdict.KEEP_RUNNING: "#9a6700",
    Verdict.NO_DIFFERENCE: "#57606a",
    Verdict.ROLL_BACK: "#cf222e",
    Verdict.INVALID: "#8250df",
}


def _fmt(value: float | None, spec: str = ".4g") -> str:
    return "–" if value is None or not math.isfinite(value) else format(value, spec)


def _ci(ci: list[float | None] | None, scale: float = 1.0, spec: str = ".4g") -> str:
    if not ci:
        return "–"
    lo, hi = ((None if v is None else v * scale) for v in ci)
    return f"[{_fmt(lo, spec)}, {_fmt(hi, spec)}]"


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
        f"<tr><td>{e(v)}</td><td>{result.units.get(v, 0)}</td>"
        f"<td>{_fmt(srm.expected.get(v), '.1f')}</td></tr>"
        for v in srm.expected
    )
    metric_rows = []
    for row in result.rows:
        data = row.to_dict()
        metric_rows.append(
            "<tr>" + "".join(f"<td>{cell}</td>" for cell in (
                e(row.metric), e(row.type.value), e(row.role), e(row.variant),
                f"{row.n_control} / {row.n_variant}", _fmt(row.control_mean),
                _fmt(row.variant_mean), _fmt(row.absolute_effect),
                _ci(data["absolute_ci"]),
                _fmt(None if row.relative_effect is None else 100 * row.relative_effect, ".2f"),
                _ci(data["relative_ci"], 100, ".2f"), _fmt(row.p_value, ".3g"),
                _fmt(row.adjusted_p_value, ".3g"), "yes" if row.significant else "no",
                e(row.error or ""),
            )) + "</tr>"
        )  # fmt: skip
    figures = [_img(effect_figure(result), "effects with confidence intervals"),
               _img(cumulative_figure(result), "cumulative effect over time"),
               _img(exposures_figure(result), "units exposed per day")]  # fmt: skip
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>abtest report: {e(result.experiment)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #1f2328; }}
.verdict {{ background: {colour}; color: white; padding: 1rem 1.5rem; border-radius: 8px; }}
.verdict h1 {{ margin: 0; font-size: 1.8rem; }}
table {{ border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0 1.5rem; }}
td, th {{ border: 1px solid #d0d7de; padding: 0.25rem 0.5rem; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
.warn {{ color: #9a6700; font-weight: 600; }}
img {{ max-width: 100%; display: block; margin: 1rem 0; }}
</style></head><body>
<div class="verdict"><h1>{e(d.verdict.value.replace("_", " ").upper())}{variant}{e(extra)}</h1>
<div>experiment <b>{e(result.experiment)}</b> · control <b>{e(result.control)}</b></div></div>
<h2>Why</h2><ul>{reasons}{warnings}</ul>
<h2>Sample ratio</h2>
<p>SRM {"ok" if srm.ok else "<b>MISMATCH</b>"}: p = {_fmt(srm.p_value, ".3g")}
(threshold {srm.threshold}); {result.excluded_units} crossover unit(s) excluded
({result.crossover_share:.2%}).</p>
<table><tr><th>variant</th><th>units</th><th>expected</th></tr>{srm_rows}</table>
<h2>Metrics</h2>
<table><tr><th>metric</th><th>type</th><th>role</th><th>variant</th><th>n (c / v)</th>
<th>control</th><th>variant</th><th>abs. effect</th><th>abs. CI</th><th>rel. effect %</th>
<th>rel. CI %</th><th>p</th><th>adj. p</th><th>significant</th><th>note</th></tr>
{"".join(metric_rows)}</table>
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
