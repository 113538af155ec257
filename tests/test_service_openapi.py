"""/openapi.json documents exactly the routes the app serves."""

import re

import pytest

from abtest.events import MAX_BATCH_EVENTS, MAX_EVENT_ID_LENGTH, latest_us, now_us
from abtest.store import MAX_BATCH_ASSIGNMENTS
from service.schemas import AssignBatchBody, AssignBody, EventBatch, KeyBody, ShipBody

SYSTEM = {"/healthz", "/metrics", "/openapi.json"}


def _routes(app):
    """(path, method) of every JSON API route; the console's HTML pages are not API."""
    found = set()
    for rule in app.url_map.iter_rules():
        if not (rule.rule.startswith("/v1/") or rule.rule in SYSTEM):
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            found.add((path, method.lower()))
    return found


def test_openapi_matches_the_routes(client, app):
    """Every route is documented and every documented operation is a route."""
    spec = client.get("/openapi.json").get_json()
    documented = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    assert documented == _routes(app)


def test_openapi_roles_match_the_views(client):
    """An operation documented as public answers without a key; the others need one."""
    spec = client.get("/openapi.json").get_json()
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            url = path.replace("{key}", "exp").replace("{key_id}", "k0")
            status = client.open(url, method=method.upper()).status_code
            assert (status == 401) == (op["x-role"] is not None), (path, method, status)


def test_metrics_is_documented_as_text(client):
    """/metrics answers Prometheus text, and the document says so."""
    spec = client.get("/openapi.json").get_json()
    content = spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    [media_type] = content
    assert media_type.startswith("text/plain")
    assert client.get("/metrics").mimetype == "text/plain"


@pytest.mark.parametrize(
    ("path", "method", "model"),
    [("/v1/assign", "post", AssignBody), ("/v1/assign/batch", "post", AssignBatchBody),
     ("/v1/events", "post", EventBatch), ("/v1/experiments/{key}/ship", "post", ShipBody),
     ("/v1/keys", "post", KeyBody)],
)  # fmt: skip
def test_request_bodies_are_the_models_the_views_validate_with(client, path, method, model):
    """Each body is a reference to the JSON Schema of the pydantic model its view uses."""
    spec = client.get("/openapi.json").get_json()
    body = spec["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": f"#/components/schemas/{model.__name__}"}
    published = spec["components"]["schemas"][model.__name__]
    rendered = model.model_json_schema(ref_template="#/components/schemas/{model}")
    rendered.pop("$defs", None)
    assert published == rendered
    assert published["additionalProperties"] is False


def test_published_constraints_are_the_real_ones(client):
    """Lengths, patterns, list sizes and ranges in the schema are the ones enforced."""
    schemas = client.get("/openapi.json").get_json()["components"]["schemas"]
    event = schemas["EventInput"]["properties"]
    assert event["event_id"]["maxLength"] == MAX_EVENT_ID_LENGTH
    assert event["unit_id"]["maxLength"] == 256
    assert event["metric"]["pattern"] == "^[A-Za-z0-9_.-]{1,64}$"
    seconds = event["timestamp"]["anyOf"][0]
    assert seconds["maximum"] * 1_000_000 == latest_us(now_us())
    assert schemas["EventBatch"]["properties"]["events"]["maxItems"] == MAX_BATCH_EVENTS
    assert schemas["AssignBatchBody"]["properties"]["requests"]["maxItems"] == (
        MAX_BATCH_ASSIGNMENTS)  # fmt: skip
    experiment = schemas["Experiment"]
    assert experiment["properties"]["key"]["pattern"] == "^[a-z0-9][a-z0-9_.-]{0,63}$"
    assert "key" not in schemas["ExperimentVersion"]["properties"]
