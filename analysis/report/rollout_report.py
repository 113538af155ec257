"""A self-contained HTML report of guarded rollouts: for each, its status, the steps with
when each began, the timeline chart (`analysis.report.rollout_figures`), every check with
its decision and reasons, and its alerts.

Its input is what ``GET /v1/experiments/{key}/rollout`` answers (the rollout document of
`service.rollout_status`) with the experiment it belongs to, and the alerts as
``GET /v1/alerts`` gives them, so the report is written from the API alone (``abtest demo
--scenario rollout`` does).  Figures are embedded PNGs: the file opens anywhere.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from abtest.experiment import Experiment
from analysis.report.figures import figure_png
from analysis.report.rollout_figures import rollout_figure

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
table{border-collapse:collapse;margin:.5rem 0 1rem}
td,th{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:left;vertical-align:top}
.rolled_back{color:#cf222e}.shipped{color:#1a7f37}img{max-width:100%}.muted{color:#57606a}
"""


def _minute(stamp: object) -> str:
    return "—" if not stamp else html.escape(str(stamp)[:16].replace("T", " "))


def _chart(experiment: Experiment, document: Mapping[str, Any]) -> str:
    plan = experiment.rollout
    if plan is None:
        return ""
    latest = next((c for c in reversed(document["checks"]) if c.get("series")), None)
    if latest is None:
        return '<p class="muted">No daily look yet.</p>'
    guardrails = [m for m in experiment.guardrail_metrics if m.name in plan.guardrails]
    events = [(a["time"], a["action"].replace("rollout_", "")) for a in document["actions"]
              if a["action"] != "start"]  # fmt: skip
    png = figure_png(rollout_figure(latest["series"], guardrails, alpha=plan.alpha,
                                    events=events, as_of=latest["time"]))  # fmt: skip
    data = base64.b64encode(png).decode()
    alt = f"guardrails of {html.escape(experiment.key)}"
    return f'<img alt="{alt}" src="data:image/png;base64,{data}">'


def _section(experiment: Experiment, document: Mapping[str, Any], alerts: Sequence[Any]) -> str:
    e = html.escape
    status = str(document["status"])
    parts = [
        f'<h2 id="{e(experiment.key)}">{e(experiment.key)}: <span class="{e(status)}">'
        f"{e(status.replace('_', ' '))}</span></h2>",
        f"<p>Guarded rollout of <b>{e(str(document['variant']))}</b> against "
        f"{e(str(document['control']))}: step {document['step']} of "
        f"{document['steps_total']}, {float(document['share']):.0%} of units on the new "
        "variant.</p>",
        "<table><tr><th>Step</th><th>Share</th><th>State</th><th>Began (UTC)</th></tr>",
    ]
    for step in document["steps"]:
        parts.append(f"<tr><td>{step['step']}</td><td>{float(step['share']):.0%}</td>"
                     f"<td>{e(str(step['state']))}</td><td>{_minute(step.get('entered_at'))}"
                     "</td></tr>")  # fmt: skip
    parts += ["</table>", _chart(experiment, document), "<h3>Alerts</h3>"]
    own = [a for a in alerts if a["experiment"] == experiment.key]
    if own:
        parts.append("<table><tr><th>Kind</th><th>Severity</th><th>Status</th><th>First seen"
                     "</th><th>Message</th></tr>")  # fmt: skip
        for alert in own:
            parts.append(f"<tr><td>{e(alert['kind'])}</td><td>{e(alert['severity'])}</td>"
                         f"<td>{e(alert['status'])}</td><td>{_minute(alert['first_seen'])}</td>"
                         f"<td>{e(alert['message'])}</td></tr>")  # fmt: skip
        parts.append("</table>")
    else:
        parts.append('<p class="muted">None.</p>')
    parts.append("<h3>Checks</h3><table><tr><th>Time (UTC)</th><th>Step</th><th>Decision</th>"
                 "<th>Why</th></tr>")  # fmt: skip
    for check in reversed(document["checks"]):
        decision = "ship" if check.get("ship") and check.get("acted") else check["action"]
        reasons = "".join(f"<div>{e(str(r))}</div>" for r in check.get("reasons", []))
        shown = e(str(decision).replace("_", " "))
        parts.append(f"<tr><td>{_minute(check['time'])}</td><td>{int(check['step']) + 1}</td>"
                     f"<td>{shown}</td><td>{reasons}</td></tr>")  # fmt: skip
    parts.append("</table>")
    return "\n".join(parts)


def write_rollout_report(
    rollouts: Sequence[tuple[Experiment, Mapping[str, Any]]],
    alerts: Sequence[Mapping[str, Any]],
    path: str | Path,
    *,
    title: str = "Guarded rollouts",
) -> Path:
    """Write the report (module docstring) to ``path``; returns it."""
    body = "\n".join(_section(experiment, document, alerts) for experiment, document in rollouts)
    text = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f"{body}</body></html>\n")  # fmt: skip
    target = Path(path)
    target.write_text(text, encoding="utf-8")
    return target


__all__ = ["write_rollout_report"]
