"""``REFUSE_UNDECLARED_METRICS`` (the older spelling of ``UNKNOWN_METRICS=refuse``, now the
default): events for a metric no experiment names are refused."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from abtest.errors import InvalidInput
from service import create_app
from tests.conftest import Api, example_config, simple_config
from tests.stored import outcome_entries


@pytest.fixture
def strict_api(redis_url: str, redis_client: redis.Redis) -> Api:
    """The API of an app that refuses undeclared metrics."""
    app = create_app({"TESTING": True, "REDIS_URL": redis_url, "REFUSE_UNDECLARED_METRICS": True})
    return Api(app.test_client(), app.extensions["abtest"].store)


def _event(i: int, metric: str) -> dict[str, Any]:
    return {"event_id": f"e{i}", "unit_id": "u1", "metric": metric}


def test_declared_metrics_are_accepted_including_ratio_parts_and_quantile_bases(strict_api):
    """purchase, clicks and searches (of clicks/searches), latency_ms (of latency_ms:p95)."""
    strict_api.create_experiment(example_config())
    names = ["purchase", "revenue", "clicks", "searches", "latency_ms", "error"]
    response = strict_api.send_events([_event(i, name) for i, name in enumerate(names)])
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["accepted"] == len(names)


def test_a_misspelled_metric_is_refused_with_a_suggestion(strict_api, redis_client):
    """'purchse' is a 400 naming the event's metric and suggesting 'purchase'; the batch is
    refused whole, so nothing is stored."""
    strict_api.create_experiment(example_config())
    response = strict_api.send_events([_event(0, "purchase"), _event(1, "purchse")])
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["field"] == "events[1].metric"
    assert "'purchse'" in error["message"] and "did you mean 'purchase'" in error["message"]
    assert outcome_entries(redis_client) == []


def test_a_metric_declared_by_a_new_experiment_counts_at_once(strict_api):
    """The worker that stores an experiment reads the declared names again."""
    strict_api.create_experiment(simple_config("a", primary_metric="signup:binomial"))
    assert strict_api.send_events([_event(0, "signup")]).status_code == 202
    assert strict_api.send_events([_event(1, "refund")]).status_code == 400
    strict_api.create_experiment(simple_config("b", secondary_metrics=["refund:count"]))
    assert strict_api.send_events([_event(1, "refund")]).status_code == 202


def test_by_default_an_undeclared_metric_is_refused(api, redis_client):
    """Without either setting a typo is a 400 naming the event, and nothing is stored."""
    api.create_experiment(example_config())
    response = api.send_events([_event(0, "purchse")])
    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == "events[0].metric"
    assert outcome_entries(redis_client) == []


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_the_setting_must_be_a_boolean(value: object) -> None:
    """A value that is not true or false stops the app from being built, naming the setting."""
    with pytest.raises(InvalidInput) as raised:
        create_app({"REFUSE_UNDECLARED_METRICS": value})
    assert raised.value.field == "REFUSE_UNDECLARED_METRICS"
