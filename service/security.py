"""Bearer-key authentication and role checks, declared per view and denied by default.

Mark a view `public` (no key) or `requires(Role.SDK)`; a view with neither needs an admin
key, so a forgotten declaration fails closed.  The verified key is in ``g.api_key``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, TypeVar

from flask import Flask, g, request

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


class _Authenticator:
    """The before-request check of one app; the role each endpoint needs is looked up once."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._required: dict[str, Role | str | None] = {}

    def required(self, endpoint: str) -> Role | str | None:
        """The role ``endpoint`` needs, `_PUBLIC`, or None when no view has that name."""
        try:
            return self._required[endpoint]
        except KeyError:
            view = self.app.view_functions.get(endpoint)
            needed = None if view is None else getattr(view, _ATTRIBUTE, Role.ADMIN)
            # Routes cannot change once requests are served, so neither can the answer.
            self._required[endpoint] = needed
            return needed

    def __call__(self) -> None:
        # One proxy lookup instead of one per attribute: this runs on every request.
        req = request._get_current_object()  # type: ignore[attr-defined]
        required = self.required(req.endpoint or "")
        if required is None or required == _PUBLIC:
            return  # no route (Flask answers 404 / 405 itself) or an open view
        header = req.environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("send 'Authorization: Bearer <API key>'", "Authorization")
        ext = self.app.extensions["abtest"]
        key = ext.key_cache.verify(ext.store, token.strip())
        if not key.role.allows(required):
            raise Forbidden(f"this endpoint needs an {required} key", "Authorization")
        g.api_key = key


def register_auth(app: Flask) -> None:
    """Check keys before every request."""
    app.before_request(_Authenticator(app))
