"""``/v1/keys``: create, list and revoke API keys (admin)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from abtest.auth import Role
from service.extension import abtest
from service.schemas import KeyBody
from service.validation import json_body

bp = Blueprint("keys", __name__, url_prefix="/v1/keys")


@bp.post("")
def create() -> tuple[Response, int]:
    """A new key ``{key, id, role, ...}``: the key is in this answer only."""
    body = json_body(KeyBody)
    token, record = abtest().store.create_api_key(Role(body.role), name=body.name)
    return jsonify({"key": token, **record.to_dict()}), 201


@bp.get("")
def listing() -> Response:
    """Every key's public record (never the key)."""
    return jsonify({"keys": [k.to_dict() for k in abtest().store.list_api_keys()]})


@bp.delete("/<key_id>")
def revoke(key_id: str) -> Response:
    """Revoke a key; it stops working at once here and within KEY_CACHE_SECONDS elsewhere."""
    ext = abtest()
    record = ext.store.revoke_api_key(key_id)
    ext.key_cache.clear()
    return jsonify(record.to_dict())
