"""Segments end to end over HTTP against a real Redis: attributes sent at assignment are kept
with the first exposure (POST /v1/assign, /v1/assign/batch, GET /v1/assignments, the
client's local evaluation), bad ones are refused by name with nothing stored, and the
export, the results endpoint, the CLI and the console break every metric down by them."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from abtest.cli import main
from abtest.client import Client
from abtest.errors import InvalidInput
from abtest.export import export
from tests.conftest import Api, simple_config
from tests.stored import exposure_rows
from tests.test_console import Console

REDIS_TOPOLOGIES = ("single", "cluster")  # the cluster's partitioned, compact layout too


@pytest.fixture
def app(redis_url: str, redis_client: redis.Redis, partitions: dict[str, int],
        tmp_path: Path) -> Any:  # fmt: skip
    """The real app, exporting into a temporary directory."""
    from service import create_app

    return create_app({"TESTING": True, "REDIS_URL": redis_url,
                       "EXPORT_DIR": str(tmp_path / "export"),
                       "UNIT_PARTITIONS": partitions["unit_partitions"],
                       "EVENT_PARTITIONS": partitions["event_partitions"]})  # fmt: skip


def http(url: str, method: str, path: str, key: str, body: Any = None) -> tuple[int, Any]:
    """One real HTTP request; the status and the JSON body."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, method=method,
                                     headers={"Authorization": f"Bearer {key}",
                                              "Content-Type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def kept(client: redis.Redis, experiment: str = "segs") -> dict[str, dict[str, str] | None]:
    """unit_id -> the attributes kept with its exposure (None: none kept)."""
    return {row["unit_id"]: None if row["attributes"] is None else dict(row["attributes"])
            for row in exposure_rows(client, experiment)}  # fmt: skip


def test_attributes_are_kept_with_the_first_exposure(api: Api, url: str,
                                                    redis_client: redis.Redis) -> None:  # fmt: skip
    """Every assign path keeps the attributes as text; null is not kept; a later call with
    other attributes changes nothing (the first exposure's stay)."""
    api.create_experiment(simple_config("segs"))
    sdk = api.sdk_key
    status, _ = http(url, "POST", "/v1/assign", sdk, {
        "experiment": "segs", "unit_id": "u1",
        "attributes": {"country": "DE", "platform": "ios", "app_version": 500, "beta": True,
                       "score": 0.5, "build": 7.0, "plan": None},
    })  # fmt: skip
    assert status == 200
    assert http(url, "POST", "/v1/assign", sdk, {"experiment": "segs", "unit_id": "u1",
                "attributes": {"country": "FR"}})[0] == 200  # fmt: skip
    status, body = http(url, "POST", "/v1/assign/batch", sdk, {"requests": [
        {"experiment": "segs", "unit_id": "u2", "attributes": {"country": "FR"}},
        {"experiment": "segs", "unit_id": "u3"}]})  # fmt: skip
    assert status == 200 and len(body["assignments"]) == 2
    status, _ = http(url, "GET", "/v1/assignments?unit_id=u4&attr.country=BR&attr.app_version=42",
                     sdk)  # fmt: skip
    assert status == 200
    assert kept(redis_client) == {
        "u1": {"country": "DE", "platform": "ios", "app_version": "500", "beta": "true",
               "score": "0.5", "build": "7"},
        "u2": {"country": "FR"}, "u3": None, "u4": {"country": "BR", "app_version": "42"},
    }  # fmt: skip


def test_local_evaluation_keeps_the_attributes(api: Api, url: str,
                                              redis_client: redis.Redis) -> None:  # fmt: skip
    """The client's in-process assignment reports its exposure with the attributes, and
    refuses a bad one before anything is queued."""
    api.create_experiment(simple_config("segs"))
    with Client(url, api.sdk_key, local_evaluation=True, flush_interval=30) as client:
        assert client.assign("segs", "local-1", {"country": "JP", "platform": "android"})
        with pytest.raises(InvalidInput) as info:
            client.assign("segs", "local-2", {"country": ["JP"]})
        assert info.value.field == "attributes.country"
        assert client.flush(timeout=30)
        assert client.stats().rejected == 0
    assert kept(redis_client) == {"local-1": {"country": "JP", "platform": "android"}}


LONG = "x" * 65
BAD = [
    ("POST", "/v1/assign", {"country": LONG}, "attributes.country"),
    ("POST", "/v1/assign", {"country": ["DE"]}, "attributes.country"),
    ("POST", "/v1/assign", {"country": {"code": "DE"}}, "attributes.country"),
    ("POST", "/v1/assign", {"bad name": "x"}, "attributes"),
    ("POST", "/v1/assign", {"x" * 41: "x"}, "attributes"),
    ("POST", "/v1/assign", {f"a{i}": "x" for i in range(21)}, "attributes"),
    ("POST", "/v1/assign", ["DE"], "attributes"),
    ("POST", "/v1/assign/batch", {"country": LONG}, "requests[1].attributes.country"),
    ("GET", "/v1/assignments", {"country": LONG}, "attr.country"),
]


@pytest.mark.parametrize(("method", "path", "attributes", "field"), BAD)
def test_bad_attributes_are_refused_by_name_and_nothing_is_stored(
    api: Api, url: str, redis_client: redis.Redis, *, method: str, path: str, attributes: Any,
    field: str,
) -> None:  # fmt: skip
    """Too long, not a scalar, a bad or over-long name, too many, not an object: 400 naming
    the field, and no unit of the request is assigned."""
    api.create_experiment(simple_config("segs"))
    if method == "GET":
        query = "&".join(f"attr.{k}={quote(v)}" for k, v in attributes.items())
        status, body = http(url, "GET", f"{path}?unit_id=u1&{query}", api.sdk_key)
    elif path.endswith("batch"):
        status, body = http(url, method, path, api.sdk_key, {"requests": [
            {"experiment": "segs", "unit_id": "u0", "attributes": {"country": "DE"}},
            {"experiment": "segs", "unit_id": "u1", "attributes": attributes}]})  # fmt: skip
    else:
        one = {"experiment": "segs", "unit_id": "u1", "attributes": attributes}
        status, body = http(url, method, path, api.sdk_key, one)
    assert status == 400, body
    assert body["error"]["field"] == field and body["error"]["code"] == "invalid_input"
    assert kept(redis_client) == {}


def _buys(variant: str, i: int) -> bool:
    """One unit in five buys, except treatment in FR (odd units): one in two."""
    if variant == "treatment" and i % 2:
        return i % 4 == 1
    return i % 10 in (0, 1)


def _traffic(url: str, sdk: str, units: int) -> None:
    """Units alternate DE / FR and buy right after their assignment (`_buys`)."""
    for start in range(0, units, 100):
        batch = [{"experiment": "segs", "unit_id": f"user-{i}",
                  "attributes": {"country": "FR" if i % 2 else "DE", "platform": "web"}}
                 for i in range(start, start + 100)]  # fmt: skip
        status, body = http(url, "POST", "/v1/assign/batch", sdk, {"requests": batch})
        assert status == 200, body
        events = [{"event_id": f"e{i}", "unit_id": f"user-{i}", "metric": "purchase"}
                  for i, answer in enumerate(body["assignments"], start)
                  if _buys(answer["variant"], i)]  # fmt: skip
        assert http(url, "POST", "/v1/events", sdk, {"events": events})[0] == 202


@pytest.mark.slow
def test_segments_from_assignment_to_analysis(
    api: Api, url: str, app: Any, *, capsys: pytest.CaptureFixture[str]
) -> None:
    """Assign 1,600 units with a country over HTTP, track purchases, then: the export's
    exposure files carry the attributes, GET .../results?segment=country finds the effect
    planted in FR only (heterogeneity test rejects), ``abtest analyze --segment country``
    prints the table, and the console shows it."""
    api.create_experiment(simple_config("segs", primary_metric={"name": "purchase",
                                                                "type": "binomial"}))  # fmt: skip
    _traffic(url, api.sdk_key, 1600)

    status, body = http(url, "GET", "/v1/experiments/segs/results?segment=country"
                        "&min_segment_units=50", api.admin_key)  # fmt: skip
    assert status == 200, body
    table = body["segments"]
    assert table["attribute"] == "country" and sorted(table["values"]) == ["DE", "FR"]
    [comparison] = table["comparisons"]
    rows = {row["segment"]: row for row in comparison["segments"]}
    assert rows["FR"]["significant"] and not rows["DE"]["significant"]
    assert comparison["heterogeneity"]["p_value"] < 0.001

    export_dir = Path(app.config["EXPORT_DIR"])
    files = sorted((export_dir / "exposures" / "segs").rglob("*.parquet"))
    attributes = [dict(a) for f in files for a in pq.read_table(f).column("attributes").to_pylist()]
    assert len(attributes) == 1600 and {a["platform"] for a in attributes} == {"web"}

    assert main(["analyze", "--exposures", str(export_dir / "exposures" / "segs"),
                 "--outcomes", str(export_dir / "outcomes"), "--metric", "purchase:binomial",
                 "--segment", "country", "--min-segment-units", "50"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "segments by country" in out and "Cochran's Q" in out

    console = Console(app.test_client())
    assert console.login(api.admin_key).status_code == 302
    page = console.client.get("/experiments/segs?segment=country&min_segment_units=50")
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and 'id="segment-table"' in text
    assert "Cochran&#39;s Q" in text and "platform" in text  # the attributes to choose from
    bad = console.client.get("/experiments/segs?segment=no%20such")
    assert bad.status_code == 400


def test_export_writes_the_attributes_and_null_for_none(api: Api, redis_client: redis.Redis,
                                                       tmp_path: Path) -> None:  # fmt: skip
    """The exposure files' ``attributes`` column is a map of text, null for a unit sent
    without attributes."""
    api.create_experiment(simple_config("segs"))
    api.assign("segs", "u1", {"country": "DE"})
    api.assign("segs", "u2")
    export(redis_client, out_dir=tmp_path)
    files = sorted((tmp_path / "exposures" / "segs").rglob("*.parquet"))  # one per partition
    table = pa.concat_tables([pq.read_table(f) for f in files])
    kind = table.schema.field("attributes").type
    assert pa.types.is_map(kind) and kind.key_type == kind.item_type == pa.string()
    by_unit = dict(zip(table.column("unit_id").to_pylist(),
                       table.column("attributes").to_pylist(), strict=True))  # fmt: skip
    assert by_unit == {"u1": [("country", "DE")], "u2": None}


@pytest.mark.parametrize(
    ("query", "field"),
    [("segment=no%20such", "segment"), ("segment=country&min_segment_units=0", "min_segment_units"),
     ("segment=country&min_segment_units=x", "min_segment_units")],
)  # fmt: skip
def test_results_refuse_a_bad_segment_query(api: Api, url: str, query: str, field: str) -> None:
    """A bad attribute name or minimum size is a 400 naming the parameter."""
    api.create_experiment(simple_config("segs", primary_metric={"name": "purchase",
                                                                "type": "binomial"}))  # fmt: skip
    status, body = http(url, "GET", f"/v1/experiments/segs/results?{query}", api.admin_key)
    assert status == 400 and body["error"]["field"] == field
