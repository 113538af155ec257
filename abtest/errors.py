"""Typed errors raised by the core; the service and the CLI map them to 4xx / exit 2.

Every error carries a machine-readable ``code``, a human ``message`` and, where one input
is to blame, the ``field`` that names it (a dotted path such as ``variants[1].weight``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class AbtestError(Exception):
    """Base class of every error abtest raises on purpose."""

    code = "error"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_dict(self) -> dict[str, str | None]:
        """The JSON error body: ``{"code", "message", "field"}``."""
        return {"code": self.code, "message": self.message, "field": self.field}

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input, located by its field path."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class InvalidConfig(AbtestError):
    """An experiment definition breaks one or more rules; ``problems`` lists all of them."""

    code = "invalid_config"

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        first = self.problems[0]
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        super().__init__(first.message + more, first.field)


class InvalidInput(AbtestError):
    """A request or argument is malformed, missing, of the wrong type or out of range."""

    code = "invalid_input"


class NotFound(AbtestError):
    """The named experiment, variant or key does not exist."""

    code = "not_found"


class Conflict(AbtestError):
    """The request contradicts the stored state (e.g. it would move assigned units)."""

    code = "conflict"


class Unauthorized(AbtestError):
    """No API key, or one that is unknown or revoked."""

    code = "unauthorized"


class Forbidden(AbtestError):
    """The API key is valid but its role may not do this."""

    code = "forbidden"


class PayloadTooLarge(AbtestError):
    """A body or batch is over its documented limit."""

    code = "payload_too_large"


class StoreUnavailable(AbtestError):
    """Redis did not answer; nothing was written."""

    code = "store_unavailable"
