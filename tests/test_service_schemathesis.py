"""Schema-driven fuzzing of the API with schemathesis, in process over the real app and Redis.

Positive cases (requests valid under ``/openapi.json``) must be accepted, and negative cases
(requests the schema forbids) refused with a 4xx; neither may ever get a 5xx.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.config import SchemathesisConfig
from schemathesis.generation import GenerationMode

from abtest.events import latest_us, now_us
from tests.conftest import Api, simple_config

_EXAMPLES = 15  # per operation and mode: about a minute for both modes on 2 cores
# Statuses the checks accept beyond their defaults, and why.
_TOO_LARGE = "413"  # a list over its documented maxItems: PayloadTooLarge, as documented
_BROKEN_RULE = "422"  # an experiment breaking a cross-field rule JSON Schema cannot state


def _event_times() -> st.SearchStrategy[str]:
    """ISO-8601 times the service accepts: 2000-01-01 to the end of tomorrow (UTC).

    The number form's bounds are in the schema; a date-time string's cannot be (JSON Schema
    has no range for formats), so the generator is told them.
    """
    latest = datetime.fromtimestamp(latest_us(now_us()) / 1e6, UTC).replace(tzinfo=None)
    return st.datetimes(datetime(2000, 1, 1), latest, timezones=st.just(UTC)).map(
        datetime.isoformat
    )


@pytest.fixture
def app(redis_url: str, redis_client: Any) -> Any:
    """The real app, counting events for unknown metrics: the generated metric names are
    random, and refusing them (the default) would leave no positive event case stored."""
    from service import create_app

    return create_app({"TESTING": True, "REDIS_URL": redis_url, "UNKNOWN_METRICS": "count"})


@pytest.fixture
def api_schema(app: Any, api: Api) -> Any:
    """The app's own /openapi.json, with an admin key and one running experiment ('exp')."""
    schemathesis.openapi.format("date-time", _event_times())
    api.create_experiment(simple_config(primary_metric="purchase:binomial"))
    config = SchemathesisConfig.from_dict({
        "headers": {"Authorization": f"Bearer {api.admin_key}"},
        "checks": {
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "401", "403", "404", "409"]},
            "negative_data_rejection": {
                "expected-statuses": ["400", "401", "403", "404", "405", "409", _TOO_LARGE,
                                      "422"]},
        },
        "operations": [{
            "include-path-regex": "^/v1/(experiments(/\\{key\\})?|metrics)$",
            "include-method": ["POST", "PUT"],
            "checks": {"positive_data_acceptance": {
                "expected-statuses": ["2xx", "401", "403", "404", "409", _BROKEN_RULE]}},
        }],
    })  # fmt: skip
    return schemathesis.openapi.from_wsgi("/openapi.json", app, config=config)


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_api_keeps_its_schema(api_schema: Any, mode: GenerationMode) -> None:
    """Every generated request gets the answer its kind calls for, and never a 5xx."""
    unsatisfiable = []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        inputs = [*operation.path_parameters, *operation.query, *operation.body]
        if mode is GenerationMode.NEGATIVE and not inputs:
            continue  # nothing to make invalid (/healthz, /metrics, GET /v1/keys, ...)

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=_EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        def check(case: Any) -> None:
            case.call_and_validate()

        try:
            check()
        except Unsatisfiable:
            unsatisfiable.append(operation.label)
    assert unsatisfiable == []
