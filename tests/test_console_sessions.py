"""Console sessions in a real redis-server: what Redis holds, idle expiry, sign-out, revocation."""

from __future__ import annotations

import time

import pytest
import redis

from abtest.auth import ApiKey, ApiKeys, ConsoleSessions, Role
from abtest.errors import InvalidInput


@pytest.fixture
def api_keys(redis_client: redis.Redis) -> ApiKeys:
    return ApiKeys(redis_client)


def _admin_key(api_keys: ApiKeys) -> tuple[str, ApiKey]:
    created = api_keys.create(Role.ADMIN)
    assert created is not None
    return created


def _session_names(client: redis.Redis) -> list[str]:
    return list(client.scan_iter("abtest:console:session:*"))


def test_a_session_names_its_key_and_redis_holds_neither_secret(
    redis_client: redis.Redis, api_keys: ApiKeys
) -> None:
    """The token finds the key's record; Redis has only hashes of the token and of the key."""
    key, record = _admin_key(api_keys)
    sessions = ConsoleSessions(redis_client, api_keys, idle_seconds=60)
    token = sessions.start(key)
    assert sessions.key(token) == record
    assert sessions.key(token + "x") is None
    (name,) = _session_names(redis_client)
    stored = redis_client.get(name)
    assert stored is not None and len(stored) == 64  # a SHA-256, hex
    dump = name + stored
    assert token not in dump and key not in dump


def test_each_use_restarts_the_idle_time_and_an_idle_session_ends(
    redis_client: redis.Redis, api_keys: ApiKeys
) -> None:
    """The expiry is the idle time, restarted on every use; once it passes, the token fails."""
    key, _ = _admin_key(api_keys)
    sessions = ConsoleSessions(redis_client, api_keys, idle_seconds=60)
    token = sessions.start(key)
    (name,) = _session_names(redis_client)
    assert 59_000 < redis_client.pttl(name) <= 60_000
    redis_client.pexpire(name, 5_000)  # as if 55 s had passed without a request
    assert sessions.key(token) is not None
    assert redis_client.pttl(name) > 59_000
    short = ConsoleSessions(redis_client, api_keys, idle_seconds=0.05)
    token = short.start(key)
    time.sleep(0.2)
    assert short.key(token) is None


def test_sign_out_and_revocation_end_the_session(
    redis_client: redis.Redis, api_keys: ApiKeys
) -> None:
    """An ended session stays ended; a revoked key's session is refused and removed."""
    key, record = _admin_key(api_keys)
    sessions = ConsoleSessions(redis_client, api_keys, idle_seconds=60)
    first, second = sessions.start(key), sessions.start(key)
    sessions.end(first)
    assert sessions.key(first) is None
    assert sessions.key(second) == record
    api_keys.revoke(record.id)
    assert sessions.key(second) is None
    assert _session_names(redis_client) == []


def test_oversized_tokens_are_refused_without_a_lookup(
    redis_client: redis.Redis, api_keys: ApiKeys
) -> None:
    """A token longer than any we issue is not a session (and ending one is a no-op)."""
    sessions = ConsoleSessions(redis_client, api_keys, idle_seconds=60)
    assert sessions.key("x" * 10_000) is None
    sessions.end("x" * 10_000)


def test_the_idle_time_must_be_positive(redis_client: redis.Redis, api_keys: ApiKeys) -> None:
    with pytest.raises(InvalidInput) as raised:
        ConsoleSessions(redis_client, api_keys, idle_seconds=0)
    assert raised.value.field == "idle_seconds"
