"""Default settings; each can be overridden by an ``ABTEST_<NAME>`` environment variable
(``ABTEST_REDIS_URL=redis://...``) or by the mapping given to `create_app`."""

from __future__ import annotations

import os
from typing import Any


def defaults() -> dict[str, Any]:
    """The defaults, read when an app is built (never at import time)."""
    return {
        # Redis: plain REDIS_URL is honoured too, as `abtest serve` and most hosts set it.
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        "REDIS_SOCKET_TIMEOUT": 2.0,  # seconds; past it a request fails with 503, not hangs
        # Bodies over this many bytes are refused with 413 before they are parsed.
        "MAX_CONTENT_LENGTH": 1024 * 1024,
        # A verified API key is trusted this long per worker: a revocation takes effect in
        # other workers after at most this delay (at once in the worker that revoked it).
        "KEY_CACHE_SECONDS": 5.0,
        # A console sign-in ends after this long without a request (and on sign-out).
        "CONSOLE_SESSION_SECONDS": 8 * 3600,
    }
