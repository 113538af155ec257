"""Versioned, audited definitions that are not experiments (the global holdout, catalogue
metrics): one Redis hash with the current version and config, one list of audit entries.

The same audit shape as experiments' (`abtest.store.Store.history`): each entry holds the
version, time, key id, action, the diff against the previous config, and the config.  Writes
are compare-and-set on the version (`keys.WRITE_DEFINITION_SCRIPT`), so two concurrent
writers cannot both succeed from the same version.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from abtest import keys
from abtest.changes import diff
from abtest.errors import Conflict
from abtest.redis_client import register_script

if TYPE_CHECKING:
    from abtest.redis_client import RedisClient


@dataclass(frozen=True)
class StoredDefinition:
    """A definition as stored: its config (None once removed), version and dates."""

    config: Mapping[str, Any] | None
    version: int
    created_at: str
    updated_at: str


def now_iso() -> str:
    """The current UTC time as the audit trail writes it."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def read_definition(redis: RedisClient, meta: str) -> StoredDefinition:
    """The definition in the hash ``meta`` (version 0 and no config when never written)."""
    raw = redis.hmget(meta, ["version", "config", "created_at", "updated_at"])
    config = json.loads(raw[1]) if raw[1] else None
    return StoredDefinition(config, int(raw[0] or 0), raw[2] or "", raw[3] or "")


def write_definition(
    redis: RedisClient,
    meta: str,
    history: str,
    current: StoredDefinition,
    config: Mapping[str, Any] | None,
    *,
    key_id: str,
    action: str,
    note: Mapping[str, Any] | None = None,
) -> StoredDefinition:
    """Store ``config`` as the version after ``current`` with its audit entry.

    Raises
    ------
    Conflict
        Another writer stored a version since ``current`` was read.
    """
    now = now_iso()
    version = current.version + 1
    entry = {
        "version": version,
        "time": now,
        "key_id": key_id,
        "action": action,
        "diff": diff(dict(current.config or {}), dict(config or {})),
        "config": None if config is None else dict(config),
        **(note or {}),
    }
    written = register_script(redis, keys.WRITE_DEFINITION_SCRIPT)(
        keys=[meta, history],
        args=[current.version, version, "" if config is None else json.dumps(config), now,
              json.dumps(entry)],
    )  # fmt: skip
    if not int(written):
        raise Conflict("changed concurrently; read it again and retry", "version")
    return StoredDefinition(config, version, current.created_at or now, now)


def read_history(redis: RedisClient, history: str) -> list[dict[str, Any]]:
    """Audit entries, oldest first."""
    return [json.loads(entry) for entry in redis.lrange(history, 0, -1)]
