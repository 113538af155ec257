"""``GET /v1/experiments/{key}/results``: export, then the analysis of the exported files."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from abtest.redis_client import connect
from tests.conftest import CLUSTER_PARTITIONS, Api, simple_config
from tests.stored import exposure_rows, outcome_entries

BOTH = pytest.mark.parametrize("redis_topology", ["single", "cluster"], indirect=True)

METRICS = {
    "primary_metric": {"name": "purchase", "type": "binomial"},
    "secondary_metrics": [{"name": "revenue", "type": "sum"}],
}


@pytest.fixture
def export_dir(tmp_path: Path) -> Path:
    """The service's export directory for this test."""
    return tmp_path / "export"


@pytest.fixture
def app(
    redis_url: str, redis_client: redis.Redis, export_dir: Path, partitions: dict[str, int]
) -> Any:
    """The real app, exporting into `export_dir`."""
    from service import create_app

    return create_app({"TESTING": True, "REDIS_URL": redis_url, "EXPORT_DIR": str(export_dir),
                       "UNIT_PARTITIONS": partitions["unit_partitions"],
                       "EVENT_PARTITIONS": partitions["event_partitions"]})  # fmt: skip


def _traffic(api: Api, units: range, *, buyers_every: int = 3) -> dict[str, dict[str, float]]:
    """Assign ``units`` and send purchases (every ``buyers_every``-th unit) with revenue.

    Returns per variant the units, buyers and revenue that were sent.
    """
    sent: dict[str, dict[str, float]] = {}
    events = []
    for i in units:
        unit = f"user-{i}"
        variant = api.assign("exp", unit)["variant"]
        tally = sent.setdefault(variant, {"units": 0, "buyers": 0, "revenue": 0.0})
        tally["units"] += 1
        if i % buyers_every == 0:
            tally["buyers"] += 1
            tally["revenue"] += i % 7 + 1.5
            events += [
                {"event_id": f"p-{i}", "unit_id": unit, "metric": "purchase"},
                {"event_id": f"r-{i}", "unit_id": unit, "metric": "revenue", "value": i % 7 + 1.5},
            ]
    for start in range(0, len(events), 500):
        assert api.send_events(events[start : start + 500]).status_code == 202
    return sent


@BOTH
def test_results_match_the_sent_data(api: Api, export_dir: Path) -> None:
    """Units, conversion rates and revenue means in the results are those that were sent."""
    api.create_experiment(simple_config(**METRICS))
    sent = _traffic(api, range(300))
    response = api.call("GET", "/v1/experiments/exp/results")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["control"] == "control"
    assert {v["variant"]: v["units"] for v in body["variants"]} == {
        v: int(t["units"]) for v, t in sent.items()
    }
    rows = {(r["metric"], r["variant"]): r for r in body["metrics"]}
    purchase = rows[("purchase", "treatment")]
    assert purchase["n_control"] == sent["control"]["units"]
    assert purchase["control_mean"] == pytest.approx(
        sent["control"]["buyers"] / sent["control"]["units"]
    )
    assert purchase["variant_mean"] == pytest.approx(
        sent["treatment"]["buyers"] / sent["treatment"]["units"]
    )
    revenue = rows[("revenue", "treatment")]
    assert revenue["variant_mean"] == pytest.approx(
        sent["treatment"]["revenue"] / sent["treatment"]["units"]
    )
    assert body["decision"]["verdict"] in {"ship", "keep_running", "no_difference",
                                           "roll_back", "invalid"}  # fmt: skip


def test_results_are_analyze_of_the_exported_files(api: Api, export_dir: Path) -> None:
    """The body is exactly `analysis.analyze_experiment(...).to_dict()` on the exported files."""
    import analysis

    api.create_experiment(simple_config(**METRICS))
    _traffic(api, range(200))
    body = api.call("GET", "/v1/experiments/exp/results").get_json()
    experiment = api.store.get_experiment("exp").experiment
    settings = body["settings"]  # the analysis is as of the request's time
    direct = analysis.analyze_experiment(
        experiment, exposures=export_dir / "exposures" / "experiment=exp",
        outcomes=export_dir / "outcomes",
        observation_window=timedelta(hours=settings["observation_window_hours"]),
        as_of=datetime.fromisoformat(settings["as_of"]),
    )  # fmt: skip
    assert body == api.client.application.json.loads(
        api.client.application.json.dumps(direct.to_dict())
    )


@BOTH
def test_results_drain_the_streams(api: Api, redis_client: redis.Redis, export_dir: Path) -> None:
    """The request exports the buffered exposures and outcomes into the export directory."""
    api.create_experiment(simple_config(**METRICS))
    _traffic(api, range(50))
    assert len(exposure_rows(redis_client, "exp")) == 50
    assert api.call("GET", "/v1/experiments/exp/results").status_code == 200
    assert exposure_rows(redis_client, "exp") == []
    assert outcome_entries(redis_client) == []
    assert list((export_dir / "exposures" / "experiment=exp").rglob("*.parquet"))
    assert list((export_dir / "outcomes").rglob("*.parquet"))


def test_results_follow_new_data_and_new_versions(api: Api, app: Any) -> None:
    """A cached result is reused until new data or a new config version arrives."""
    from service.results import experiment_results

    api.create_experiment(simple_config(**METRICS))
    _traffic(api, range(100))
    with app.app_context():
        first = experiment_results(app, api.store.get_experiment("exp"))
        assert experiment_results(app, api.store.get_experiment("exp")) is first
        _traffic(api, range(100, 160))
        second = experiment_results(app, api.store.get_experiment("exp"))
        assert second is not first and second.watermark != first.watermark
        units = sum(v["units"] for v in second.to_dict()["variants"])
        assert units == 160
        config = {**simple_config(**METRICS), "description": "a new version"}
        assert api.call("PUT", "/v1/experiments/exp", config).status_code == 200
        third = experiment_results(app, api.store.get_experiment("exp"))
        assert third is not second and third.config_version == second.config_version + 1
        assert third.as_of >= second.as_of
        assert _without_as_of(third.to_dict()) == _without_as_of(second.to_dict())


def _without_as_of(body: dict[str, Any]) -> dict[str, Any]:
    """The result without the time it is as of (two requests differ in that only)."""
    return {**body, "settings": {k: v for k, v in body["settings"].items() if k != "as_of"}}


def test_results_before_any_outcome_say_why(api: Api) -> None:
    """Units assigned but no outcome event yet: a 409 naming the missing outcomes, not a 500."""
    api.create_experiment(simple_config(**METRICS))
    for i in range(40):
        api.assign("exp", f"user-{i}")
    response = api.call("GET", "/v1/experiments/exp/results")
    assert response.status_code == 409
    error = response.get_json()["error"]
    assert (error["code"], error["field"]) == ("cannot_analyze", "outcomes")
    assert "outcomes" in error["message"]


@pytest.mark.parametrize(
    ("setup", "path", "role", "expected"),
    [
        ("none", "/v1/experiments/nope/results", "admin", (404, "not_found", "experiment")),
        ("none", "/v1/experiments/Not%20A%20Key/results", "admin",
         (400, "invalid_input", "key")),
        ("draft", "/v1/experiments/exp/results", "admin", (409, "no_data", "experiment")),
        ("running", "/v1/experiments/exp/results", "admin", (409, "no_data", "experiment")),
        ("no-metrics", "/v1/experiments/exp/results", "admin",
         (409, "no_metrics", "primary_metric")),
        ("running", "/v1/experiments/exp/results", "sdk", (403, "forbidden", "Authorization")),
        ("running", "/v1/experiments/exp/results", "none",
         (401, "unauthorized", "Authorization")),
    ],
)  # fmt: skip
def test_results_errors(
    api: Api, setup: str, path: str, role: str, expected: tuple[int, str, str]
) -> None:
    """Each way the endpoint cannot answer is a JSON 4xx naming the problem."""
    if setup == "draft":
        api.create_experiment(simple_config(**METRICS), start=False)
    elif setup == "running":
        api.create_experiment(simple_config(**METRICS))
    elif setup == "no-metrics":
        api.create_experiment(simple_config())
        api.assign("exp", "user-1")
    response = api.client.get(path) if role == "none" else api.call("GET", path, role=role)
    assert response.status_code == expected[0]
    error = response.get_json()["error"]
    assert (error["code"], error["field"]) == expected[1:]
    assert error["message"]


def test_the_same_experiment_gives_the_same_numbers_on_one_server_and_on_a_cluster(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Assign, events, export and analysis on one Redis and on a partitioned Redis Cluster:
    the same traffic gives the same results, number for number."""
    from service import create_app

    bodies = []
    for name, partitions in (("redis_server", 1), ("redis_cluster", CLUSTER_PARTITIONS)):
        url = request.getfixturevalue(name).url
        client = connect(url, decode_responses=True)
        client.flushall()
        try:
            app = create_app(
                {
                    "TESTING": True,
                    "REDIS_URL": url,
                    "EXPORT_DIR": str(tmp_path / name),
                    "UNIT_PARTITIONS": partitions,
                    "EVENT_PARTITIONS": partitions,
                }
            )
            api = Api(app.test_client(), app.extensions["abtest"].store)
            api.create_experiment(simple_config(**METRICS))
            _traffic(api, range(300))
            response = api.call("GET", "/v1/experiments/exp/results")
            assert response.status_code == 200, response.get_json()
            bodies.append(response.get_json())
        finally:
            client.flushall()
            client.close()
    assert len(list((tmp_path / "redis_cluster" / "exposures").rglob("*.p3.parquet"))) > 0
    for body in bodies:  # when each analysis ran: the one field that differs by design
        assert body["settings"].pop("as_of")
    assert bodies[0] == bodies[1]
    assert sum(v["units"] for v in bodies[0]["variants"]) == 300
