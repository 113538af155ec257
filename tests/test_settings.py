"""Settings: defaults, then ``ABTEST_*`` environment variables, then the mapping; a value the
service could not run with is refused by name when the app is built."""

from __future__ import annotations

import pytest

from abtest.errors import InvalidInput
from service import create_app, settings


def test_environment_overrides_defaults_and_the_mapping_overrides_both(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Env values are read as JSON where they parse; the factory's mapping has the last word."""
    monkeypatch.setenv("ABTEST_KEY_CACHE_SECONDS", "0")
    monkeypatch.setenv("ABTEST_CONSOLE_SESSION_SECONDS", "600")
    monkeypatch.setenv("ABTEST_SESSION_COOKIE_SECURE", "true")
    config = settings.load({"CONSOLE_SESSION_SECONDS": 60})
    assert config["KEY_CACHE_SECONDS"] == 0
    assert config["CONSOLE_SESSION_SECONDS"] == 60
    assert config["SESSION_COOKIE_SECURE"] is True
    assert config["MAX_CONTENT_LENGTH"] == settings.defaults()["MAX_CONTENT_LENGTH"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KEY_CACHE_SECONDS", "soon"),
        ("KEY_CACHE_SECONDS", -1),
        ("CONSOLE_SESSION_SECONDS", 0),
        ("CONSOLE_SESSION_SECONDS", float("inf")),
        ("REDIS_SOCKET_TIMEOUT", 0),
        ("OBSERVATION_HOURS", 0),
        ("OBSERVATION_HOURS", "a day"),
        ("REDIS_SOCKET_TIMEOUT", True),
        ("MAX_CONTENT_LENGTH", None),
        ("MAX_CONTENT_LENGTH", "1MB"),
        ("REDIS_URL", "localhost:6379"),
        ("REDIS_URL", 6379),
        ("REDIS_URL", "redis+sentinel://host:26379"),
        ("EVENT_PARTITIONS", 0),
        ("EVENT_PARTITIONS", 2.5),
        ("UNIT_PARTITIONS", "many"),
        ("UNIT_PARTITIONS", True),
        ("REDIS_WAIT_REPLICAS", -1),
        ("REDIS_WAIT_TIMEOUT_MS", 0),
    ],
)
def test_a_bad_setting_is_refused_by_name(name: str, value: object) -> None:
    with pytest.raises(InvalidInput) as raised:
        create_app({name: value})
    assert raised.value.field == name
    assert f"ABTEST_{name}" in raised.value.message


def test_a_bad_redis_url_is_refused_without_echoing_its_password() -> None:
    with pytest.raises(InvalidInput) as raised:
        create_app({"REDIS_URL": "redis//:s3cret@host:6379/0"})
    assert raised.value.field == "REDIS_URL"
    assert "s3cret" not in raised.value.message


def test_a_bad_environment_value_is_refused_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ABTEST_CONSOLE_SESSION_SECONDS", "0")
    with pytest.raises(InvalidInput) as raised:
        create_app()
    assert raised.value.field == "CONSOLE_SESSION_SECONDS"


def test_zero_key_cache_seconds_is_allowed() -> None:
    """0 turns the key cache off (every request asks Redis), which is a valid choice."""
    assert create_app({"KEY_CACHE_SECONDS": 0}).config["KEY_CACHE_SECONDS"] == 0


def test_partitions_and_replica_waits_reach_the_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """ABTEST_EVENT_PARTITIONS and ABTEST_UNIT_PARTITIONS configure the app's store; a
    redis+cluster:// URL is accepted."""
    monkeypatch.setenv("ABTEST_EVENT_PARTITIONS", "8")
    config = settings.load({"UNIT_PARTITIONS": 4, "REDIS_URL": "redis+cluster://:pw@h1:7000"})
    assert (config["EVENT_PARTITIONS"], config["UNIT_PARTITIONS"]) == (8, 4)
    app = create_app({"UNIT_PARTITIONS": 4, "EVENT_PARTITIONS": 8})
    store = app.extensions["abtest"].store
    assert (store.unit_partitions, store.event_partitions) == (4, 8)
