"""Bearer-key authentication and role checks, declared per view and denied by default.

Mark a view `public` (no key) or `requires(Role.SDK)`; a view with neither needs an admin
key, so a forgotten declaration fails closed.  The verified key is in ``g.api_key``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, TypeVar

from flask import Flask, current_app, g, request

from abtest.auth import Role
from abtest.errors import Forbidden, Unauthorized

F = TypeVar("F", bound=Callable[..., object])
_ATTRIBUTE: Final = "abtest_role"
_PUBLIC: Final = "public"


def requires(role: Role) -> Callable[[F], F]:
    """Declare the role a view needs (``admin`` keys may call ``sdk`` views too)."""

    def mark(view: F) -> F:
        setattr(view, _ATTRIBUTE, role)
        return view

    return mark


def public(view: F) -> F:
    """Declare a view open to everyone (health, metrics, the API description)."""
    setattr(view, _ATTRIBUTE, _PUBLIC)
    return view


def _authenticate() -> None:
    view = current_app.view_functions.get(request.endpoint or "")
    if view is None:
        return  # no route: Flask answers 404 / 405 itself
    required = getattr(view, _ATTRIBUTE, Role.ADMIN)
    if required == _PUBLIC:
        return
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send 'Authorization: Bearer <API key>'", "Authorization")
    from service.extension import abtest

    ext = abtest()
    key = ext.key_cache.verify(ext.store, token.strip())
    if not key.role.allows(required):
        raise Forbidden(f"this endpoint needs an {required} key", "Authorization")
    g.api_key = key


def register_auth(app: Flask) -> None:
    """Check keys before every request."""
    app.before_request(_authenticate)
