"""`abtest metrics`, `AdminClient`'s catalogue methods, `abtest push` of a file that names
catalogue metrics, and `abtest export` + `abtest analyze` resolving them, all over real
HTTP against the app on a real Redis."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

from abtest.admin_client import AdminClient
from abtest.catalogue import MetricDefinition
from abtest.cli import main
from abtest.errors import Conflict, NotFound
from abtest.experiment import MetricType
from abtest.export import export
from tests.conftest import Api, simple_config
from tests.test_cli_lifecycle import service  # noqa: F401  (the served app, for the CLI)

pytestmark = pytest.mark.usefixtures("service")

REVENUE = {"name": "revenue", "type": "sum", "unit": "EUR", "cap": 100,
           "description": "Order value"}  # fmt: skip


def write(tmp_path: Path, name: str, data: Any) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def test_put_list_and_show(api: Api, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """put stores each definition of a file (the reason lands in the audit trail), list
    shows every metric, and show prints the versions with who changed what and why."""
    both = [REVENUE, {"name": "latency_ms:p95", "type": "quantile", "unit": "ms",
                      "higher_is_better": False}]  # fmt: skip
    assert main(["metrics", "put", write(tmp_path, "m.json", both), "--reason", "launch"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["revenue  v1  sum, EUR, higher is better, capped at 100",
                   "latency_ms:p95  v1  quantile, ms, lower is better"]  # fmt: skip
    assert main(["metrics", "put", write(tmp_path, "r.json", {**REVENUE, "cap": 150})]) == 0
    assert "v2" in capsys.readouterr().out
    assert main(["metrics", "list"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("revenue  v2")
    assert main(["metrics", "show", "revenue"]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert shown[1] == "Order value"
    assert shown[2].startswith("  v1 ") and shown[2].endswith(": launch")
    assert "changed cap" in shown[3]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["metrics", "show", "revenu"], "no metric 'revenu' in the catalogue"),
        (["metrics", "put", "missing.json"], "cannot read"),
    ],
)
def test_errors_are_one_line_exit_2(
    api: Api,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    """A missing metric or file is one line on stderr with exit code 2."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_bad_definition_names_its_field(
    api: Api,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A cap on a binomial metric is refused with exit code 2, naming the field."""
    path = write(tmp_path, "bad.json", {"name": "purchase", "type": "binomial", "cap": 1})
    assert main(["metrics", "put", path]) == 2
    assert "cap" in capsys.readouterr().err


def test_admin_client_methods(api: Api) -> None:
    """put_metric, list_metrics, get_metric, unknown_metrics; a stale edit is a Conflict and
    an unknown name NotFound."""
    with AdminClient(os.environ["ABTEST_URL"], api.admin_key) as admin:
        definition = MetricDefinition("revenue", MetricType.SUM, unit="EUR", cap=100.0)
        entry = admin.put_metric(definition, reason="first")
        assert (entry.version, entry.reason, entry.definition) == (1, "first", definition)
        with pytest.raises(Conflict):
            admin.put_metric({**definition.to_dict(), "cap": 5}, base_version=0)
        admin.put_metric({**definition.to_dict(), "cap": 5}, base_version=1)
        assert [(e.definition.name, e.version) for e in admin.list_metrics()] == [("revenue", 2)]
        current, versions = admin.get_metric("revenue")
        assert current.definition.cap == 5.0 and [v["version"] for v in versions] == [1, 2]
        with pytest.raises(NotFound):
            admin.get_metric("revenu")
        assert admin.unknown_metrics() == {}


def test_push_export_and_analyze_resolve_the_catalogue(
    api: Api,
    redis_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A file naming {"catalogue": "revenue"} validates offline, is pinned by push, and
    `abtest analyze --config` on the export resolves it from the catalogue.json the export
    wrote, reading the pinned version although the catalogue moved on."""
    api.call("PUT", "/v1/metrics", REVENUE)
    config = simple_config(primary_metric={"catalogue": "revenue"}, control="control")
    path = write(tmp_path, "exp.json", config)
    assert main(["validate", path]) == 0
    assert "revenue" in capsys.readouterr().out
    assert main(["push", path]) == 0 and main(["start", "exp"]) == 0
    api.call("PUT", "/v1/metrics", {**REVENUE, "cap": 1})  # a later edit
    rng = np.random.default_rng(0)
    events = []
    for i in range(300):
        api.assign("exp", f"u{i}")
        events.append({"event_id": f"e{i}", "unit_id": f"u{i}", "metric": "revenue",
                       "value": float(rng.exponential(50))})  # fmt: skip
    assert api.send_events(events).status_code == 202
    out = tmp_path / "export"
    raw = redis.Redis.from_url(redis_url)  # bytes, as `abtest export` connects
    try:
        export(raw, out_dir=out)
    finally:
        raw.close()
    snapshot = json.loads((out / "catalogue.json").read_text())
    assert [v["definition"]["cap"] for v in snapshot["metrics"]["revenue"]] == [100.0, 1.0]
    stored = api.call("GET", "/v1/experiments/exp").get_json()["config"]
    stored_path = write(tmp_path, "stored.json", stored)
    capsys.readouterr()
    argv = ["analyze", "--exposures", str(out / "exposures"), "--outcomes", str(out / "outcomes"),
            "--observation-hours", "0.0003", "--json"]  # fmt: skip
    for config_path in (path, stored_path):
        assert main([*argv, "--config", config_path]) == 0, capsys.readouterr().err
        result = json.loads(capsys.readouterr().out)
        metric = result["settings"]["metrics"][0]
        # The file's reference has no version: the latest (cap 1) unless pinned by the store.
        expected = 1.0 if config_path == path else 100.0
        assert (metric["name"], metric["cap"]) == ("revenue", expected)
