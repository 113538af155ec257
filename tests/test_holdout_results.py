"""The holdout's cumulative analysis end to end: traffic over HTTP, export, the results
endpoint, the CLI, the console page and the HTML report."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from abtest.cli import main
from abtest.holdout import HoldoutRef
from analysis.report.formatting import metric_cells
from analysis.report.holdout_html import render_holdout_html
from tests.conftest import simple_config
from tests.test_console import Console

HOLDOUT = {"name": "h-2025", "share": 0.2}
REF = HoldoutRef("h-2025", 0.2)


def _traffic(api: Any, n: int, seed: int = 3) -> tuple[int, int]:
    """n units meet 'checkout' (running, then shipped); members convert at 10%, the rest
    at 30%.  Returns (members, others)."""
    api.create_experiment(simple_config("checkout", primary_metric="purchase:binomial"))
    units = [f"user-{i}" for i in range(n)]
    for start in range(0, n, 100):
        body = {"requests": [{"experiment": "checkout", "unit_id": u}
                             for u in units[start:start + 100]]}  # fmt: skip
        assert api.call("POST", "/v1/assign/batch", body, role="sdk").status_code == 200
    shipped = api.call("POST", "/v1/experiments/checkout/ship", {"variant": "treatment"})
    assert shipped.status_code == 200
    rng = np.random.default_rng(seed)
    member = np.array([REF.contains(u) for u in units])
    converted = rng.random(n) < np.where(member, 0.10, 0.30)
    events = [{"event_id": f"e-{u}", "unit_id": u, "metric": "purchase"}
              for u, c in zip(units, converted, strict=True) if c]  # fmt: skip
    for start in range(0, len(events), 500):
        assert api.send_events(events[start : start + 500]).status_code == 202
    return int(member.sum()), int((~member).sum())


def test_no_holdout_or_no_data_is_a_409_saying_why(api):
    """Without a holdout, or before any contact, the endpoint explains instead of failing."""
    response = api.call("GET", "/v1/holdout/results?metric=purchase:binomial")
    assert response.status_code == 409
    assert "no holdout" in response.get_json()["error"]["message"]
    api.call("PUT", "/v1/holdout", HOLDOUT)
    response = api.call("GET", "/v1/holdout/results?metric=purchase:binomial")
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "no_data"


@pytest.mark.parametrize(
    ("query", "field"),
    [("?metric=purchase", "metrics[0]"), ("?start=yesterday", "start"), ("?foo=1", "foo")],
)
def test_bad_parameters_are_400(api, tmp_path, app, query, field):
    """A metric without a type, a time that is not ISO 8601 or an unknown parameter."""
    app.config["EXPORT_DIR"] = str(tmp_path)
    api.call("PUT", "/v1/holdout", HOLDOUT)
    _traffic(api, 200)
    response = api.call("GET", "/v1/holdout/results" + query)
    assert response.status_code in (400, 409), response.get_json()
    assert response.get_json()["error"]["field"] == field


def test_the_rest_beats_the_holdout_by_what_shipped(api, app, tmp_path):
    """With 10% conversion in the holdout and 30% elsewhere the endpoint finds a positive,
    significant effect near +20 pp, on exactly the units that met the experiment."""
    app.config["EXPORT_DIR"] = str(tmp_path)
    api.call("PUT", "/v1/holdout", HOLDOUT)
    members, others = _traffic(api, 1500)
    response = api.call("GET", "/v1/holdout/results")  # default: the primary metric
    assert response.status_code == 200, response.get_json()
    result = response.get_json()
    assert result["groups"] == [{"group": "holdout", "units": members},
                                {"group": "rest", "units": others}]  # fmt: skip
    assert result["srm"]["ok"]
    (row,) = result["metrics"]
    assert (row["metric"], row["control_mean"] < 0.15, row["variant_mean"] > 0.25) == (
        "purchase", True, True)  # fmt: skip
    low, high = row["absolute_ci"]
    assert 0 < low < 0.2 < high and row["significant"]
    html = render_holdout_html(result)
    assert "Holdout h-2025" in html and metric_cells(row).absolute in html


@pytest.mark.usefixtures("app")
def test_cli_console_and_report_show_the_same_result(api, tmp_path, url, monkeypatch, capsys):
    """``abtest holdout show|results --report`` over HTTP and the console page agree."""
    client, app = api.client, api.client.application
    app.config["EXPORT_DIR"] = str(tmp_path / "export")
    api.call("PUT", "/v1/holdout", HOLDOUT)
    members, others = _traffic(api, 600)
    monkeypatch.setenv("ABTEST_API_KEY", api.admin_key)
    monkeypatch.setenv("ABTEST_URL", url)
    assert main(["holdout", "show"]) == 0
    shown = capsys.readouterr().out
    assert "holdout h-2025: 20.0% of units, covers every experiment" in shown
    assert "covered now: checkout" in shown
    report = tmp_path / "holdout.html"
    assert main(["holdout", "results", "--metric", "purchase:binomial",
                 "--report", str(report)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert f"holdout {members:,}, rest {others:,}" in printed
    assert "purchase" in printed and report.read_text().count("<tr>") >= 3
    assert Console(client).login(api.admin_key).status_code == 302
    page = client.get("/holdout").get_data(as_text=True)
    assert f"<strong>{members:,}</strong> units" in page and "holdout-metrics" in page


def test_cli_refuses_a_bad_holdout_file_and_release_without_yes(tmp_path, monkeypatch, capsys):
    """Exit code 2 with a one-line message, before any request."""
    monkeypatch.setenv("ABTEST_API_KEY", "abt_unused")
    monkeypatch.setenv("ABTEST_URL", "http://127.0.0.1:9")
    bad = tmp_path / "holdout.json"
    bad.write_text('{"name": "h", "share": 2}')
    assert main(["holdout", "set", str(bad)]) == 2
    assert "share" in capsys.readouterr().err
    assert main(["holdout", "release"]) == 2
    assert "--yes" in capsys.readouterr().err
