"""`abtest keys` and `abtest export` find the store as `abtest serve` does, or refuse.

One variable, ``ABTEST_REDIS_URL``, names the service's Redis for every command; without
it, a data directory that holds no store is refused instead of getting a new, empty one
(a key made there would never reach the running service).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from abtest.auth import Role
from abtest.cli import main
from abtest.embedded import EmbeddedRedis
from abtest.store import Store


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory other than the service's, with no store in it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ABTEST_REDIS_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    return tmp_path


@pytest.fixture
def service_store(
    redis_url: str, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> Store:
    """The service's store, named by ABTEST_REDIS_URL as `abtest serve` reads it."""
    monkeypatch.setenv("ABTEST_REDIS_URL", redis_url)
    return Store(redis_client)


@pytest.mark.parametrize("action", ["create", "list", "revoke"])
def test_keys_use_abtest_redis_url(
    elsewhere: Path, service_store: Store, capsys: pytest.CaptureFixture[str], action: str
) -> None:
    """With ABTEST_REDIS_URL set (as for `abtest serve`), keys act on that Redis only."""
    store = service_store
    _, existing = store.create_api_key(Role.SDK, name="app")
    argv = {
        "create": ["keys", "create", "--role", "admin", "--name", "ops"],
        "list": ["keys", "list", "--json"],
        "revoke": ["keys", "revoke", existing.id],
    }[action]
    assert main(argv) == 0
    out = capsys.readouterr().out
    records = {r.name: r for r in store.list_api_keys()}
    if action == "create":
        assert records["ops"].role.value == "admin" and out.strip().startswith("abt_")
    elif action == "list":
        assert [r["id"] for r in json.loads(out)] == [existing.id]
    else:
        assert records["app"].revoked_at is not None
    assert not (elsewhere / ".abtest").exists()  # no second store was made


@pytest.mark.parametrize(
    "argv",
    [
        ["keys", "create", "--role", "sdk"],
        ["keys", "list"],
        ["keys", "revoke", "k0123456789ab"],
        ["export", "--out", "events"],
    ],
)
@pytest.mark.parametrize("data_dir", [None, "data"])
def test_no_store_is_refused_not_created(
    elsewhere: Path, capsys: pytest.CaptureFixture[str], argv: list[str], data_dir: str | None
) -> None:
    """Without a URL and with no store in the data dir: exit 2, one line, nothing created."""
    extra = [] if data_dir is None else ["--data-dir", data_dir]
    assert main([*argv, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("abtest: error: ")
    assert "no abtest store in" in err and "ABTEST_REDIS_URL" in err
    assert sorted(p.name for p in elsewhere.iterdir()) == []


def test_keys_reach_an_existing_store_without_a_server(
    elsewhere: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A data dir with a store (the service stopped) is opened for the command, then closed."""
    with EmbeddedRedis(elsewhere / ".abtest"):
        pass
    assert main(["keys", "create", "--role", "sdk", "--name", "later"]) == 0
    assert capsys.readouterr().out.startswith("abt_")
    with EmbeddedRedis(elsewhere / ".abtest") as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        try:
            assert [r.name for r in Store(client).list_api_keys()] == ["later"]
        finally:
            client.close()


def test_plain_redis_url_is_not_read(
    elsewhere: Path,
    redis_url: str,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A host's REDIS_URL (maybe another app's Redis) is not the store: one name only."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    assert main(["keys", "create", "--role", "sdk"]) == 2
    assert "ABTEST_REDIS_URL" in capsys.readouterr().err
    assert Store(redis_client).list_api_keys() == []


def test_a_password_on_the_command_line_is_warned_about(
    elsewhere: Path, redis_url: str, redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    """--redis-url with a password works, with a one-line warning naming the variable."""
    assert ":@" not in redis_url and "@" in redis_url  # the session server has a password
    assert main(["keys", "list", "--redis-url", redis_url]) == 0
    warning = capsys.readouterr().err.strip()
    assert warning.startswith("abtest: warning:") and "ABTEST_REDIS_URL" in warning
    assert "ps" in warning and redis_url not in warning


def test_data_dir_and_abtest_redis_url_together_are_refused(
    elsewhere: Path, service_store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    """--data-dir names another store than ABTEST_REDIS_URL: refused, nothing written."""
    assert main(["keys", "create", "--role", "sdk", "--data-dir", "data"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--data-dir" in err and "ABTEST_REDIS_URL" in err
    assert service_store.list_api_keys() == []
    assert not (elsewhere / "data").exists()
