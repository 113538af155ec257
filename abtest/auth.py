"""API keys with roles, stored only as SHA-256 hashes in Redis.

A key is ``abt_`` followed by 32 random bytes (URL-safe base64): with that much entropy a
plain SHA-256 is a safe verifier (no slow password hash is needed).  Each key has a short
public ``id`` that appears in listings and in the experiments' audit trail; the key itself
is shown once, when it is created, and can never be read back.

Roles: ``sdk`` may assign, send events and read experiment configs; ``admin`` may do
everything, including experiments and keys.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

from abtest import keys
from abtest.errors import InvalidInput, NotFound, Unauthorized
from abtest.redis_client import register_script

if TYPE_CHECKING:
    from abtest.redis_client import RedisClient

KEY_PREFIX: Final = "abt_"
_MAX_KEY_LENGTH: Final = 200
_KEY_ID_BYTES: Final = 6
KEY_ID_PATTERN: Final = f"k[0-9a-f]{{{2 * _KEY_ID_BYTES}}}"  # "k" and 12 hex digits


class Role(StrEnum):
    """What a key may do; ``admin`` includes everything ``sdk`` may do."""

    SDK = "sdk"
    ADMIN = "admin"

    def allows(self, required: Role) -> bool:
        """True when a key of this role may call an endpoint that requires ``required``."""
        return self is Role.ADMIN or self is required


@dataclass(frozen=True)
class ApiKey:
    """The public record of a key (never the key itself)."""

    id: str
    role: Role
    created_at: str
    name: str = ""
    revoked_at: str | None = None

    @property
    def revoked(self) -> bool:
        """True once revoked."""
        return self.revoked_at is not None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form."""
        return {
            "id": self.id,
            "role": self.role.value,
            "name": self.name,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ApiKey:
        """Inverse of `to_dict`."""
        return cls(data["id"], Role(data["role"]), data["created_at"], data.get("name", ""),
                   data.get("revoked_at"))  # fmt: skip

    @classmethod
    def from_json(cls, text: str) -> ApiKey:
        """Inverse of ``json.dumps(key.to_dict())``."""
        return cls.from_dict(json.loads(text))


def parse_role(value: object, field: str = "role") -> Role:
    """``"admin"`` / ``"sdk"`` -> `Role`, else `InvalidInput`."""
    try:
        return Role(str(value))
    except ValueError:
        raise InvalidInput("must be 'admin' or 'sdk'", field) from None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class ApiKeys:
    """Create, list, revoke and verify keys in one Redis database."""

    def __init__(self, client: RedisClient) -> None:
        self._redis = client
        self._create = register_script(client, keys.CREATE_API_KEY_SCRIPT)

    def create(
        self, role: Role, *, name: str = "", only_if_empty: bool = False
    ) -> tuple[str, ApiKey] | None:
        """A new key and its record; with ``only_if_empty``, None when any key exists."""
        if len(name) > 100:
            raise InvalidInput("longer than 100 characters", "name")
        token = KEY_PREFIX + secrets.token_urlsafe(32)
        record = ApiKey(id="k" + secrets.token_hex(_KEY_ID_BYTES), role=role, created_at=_now(),
                        name=name)  # fmt: skip
        created = self._create(
            keys=[keys.api_keys_by_hash(), keys.api_keys_by_id()],
            args=[_digest(token), record.id, "1" if only_if_empty else "0",
                  json.dumps(record.to_dict())],
        )  # fmt: skip
        return (token, record) if int(created) else None

    def list(self) -> list[ApiKey]:
        """Every key ever created, revoked ones included, oldest first."""
        records = [ApiKey.from_json(v) for v in self._redis.hvals(keys.api_keys_by_hash())]
        return sorted(records, key=lambda k: (k.created_at, k.id))

    def revoke(self, key_id: str) -> ApiKey:
        """Mark a key revoked (kept for the audit trail); `NotFound` for an unknown id."""
        digest = self._redis.hget(keys.api_keys_by_id(), key_id) if len(key_id) < 64 else None
        raw = None if digest is None else self._redis.hget(keys.api_keys_by_hash(), digest)
        if digest is None or raw is None:
            raise NotFound(f"no API key with id '{key_id}'", "key_id")
        record = ApiKey.from_json(raw)
        if not record.revoked:
            record = ApiKey(record.id, record.role, record.created_at, record.name, _now())
            self._redis.hset(keys.api_keys_by_hash(), digest, json.dumps(record.to_dict()))
        return record

    def verify(self, token: str) -> ApiKey:
        """The record of a valid, unrevoked key; `Unauthorized` otherwise."""
        if not token.startswith(KEY_PREFIX) or len(token) > _MAX_KEY_LENGTH:
            raise Unauthorized("unknown API key")
        return self.verify_digest(_digest(token))

    def verify_digest(self, digest: str) -> ApiKey:
        """`verify` for a key known only by its SHA-256 (hex), as a console session holds it."""
        raw = self._redis.hget(keys.api_keys_by_hash(), digest)
        if raw is None:
            raise Unauthorized("unknown API key")
        record = ApiKey.from_json(raw)
        if record.revoked:
            raise Unauthorized("this API key was revoked")
        return record


class ConsoleSessions:
    """Console sign-ins kept in Redis: the browser's cookie carries only a random token.

    Redis maps sha256(session token) to sha256(admin key), so neither the key nor a live
    token can be read from the cookie or from Redis, signing out ends the session even for
    a copied cookie, and a session idle for ``idle_seconds`` ends by itself (OWASP Session
    Management Cheat Sheet: server-side state, idle timeout, invalidation on logout).  The
    key is checked on every use, so revoking it ends its sessions too.
    """

    def __init__(self, client: RedisClient, api_keys: ApiKeys, idle_seconds: float) -> None:
        if idle_seconds <= 0:
            raise InvalidInput("must be a positive number of seconds", "idle_seconds")
        self._redis = client
        self._api_keys = api_keys
        self._idle_ms = max(1, int(idle_seconds * 1000))

    def start(self, api_key: str) -> str:
        """A new session token for ``api_key``, which the caller has verified."""
        token = secrets.token_urlsafe(32)
        self._redis.set(keys.console_session(_digest(token)), _digest(api_key), px=self._idle_ms)
        return token

    def key(self, token: str) -> ApiKey | None:
        """The session's key record, its idle time restarted; None if ended or revoked."""
        if len(token) > _MAX_KEY_LENGTH:
            return None
        name = keys.console_session(_digest(token))
        # GET then PEXPIRE in one MULTI, not GETEX: that would need Redis 6.2.
        pipe = self._redis.pipeline()
        pipe.get(name)
        pipe.pexpire(name, self._idle_ms)
        digest = pipe.execute()[0]
        if digest is None:
            return None
        try:
            return self._api_keys.verify_digest(digest)
        except Unauthorized:
            self._redis.delete(name)
            return None

    def end(self, token: str) -> None:
        """Sign out: the token is worthless from now on, wherever the cookie was copied."""
        if len(token) <= _MAX_KEY_LENGTH:
            self._redis.delete(keys.console_session(_digest(token)))
