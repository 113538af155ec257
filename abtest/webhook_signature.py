"""Signing and verifying abtest's webhook deliveries (stdlib only, for receivers too).

Every delivery carries two headers:

- ``X-Abtest-Timestamp``: the Unix time (seconds) of the attempt;
- ``X-Abtest-Signature``: ``sha256=<hex>``, the HMAC-SHA256 with the webhook's secret of
  the timestamp, a dot and the raw body (``b"1700000000." + body``).

Signing the timestamp with the body is what stops a replay: a captured delivery sent again
later carries an old timestamp, which `verify_signature` refuses beyond its tolerance, and
changing the timestamp breaks the signature.  This is Stripe's scheme (``t.payload``);
GitHub's ``X-Hub-Signature-256`` signs the body alone and leaves replays to the receiver.
A receiver should compare in constant time (``hmac.compare_digest``) over the raw bytes,
before parsing the JSON, and may drop a repeated ``X-Abtest-Delivery`` id (retries reuse it).

Example (a receiver)::

    ok = verify_signature(secret, request.get_data(),
                          request.headers["X-Abtest-Timestamp"],
                          request.headers["X-Abtest-Signature"])
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Final

SIGNATURE_HEADER: Final = "X-Abtest-Signature"
TIMESTAMP_HEADER: Final = "X-Abtest-Timestamp"
DELIVERY_HEADER: Final = "X-Abtest-Delivery"
EVENT_HEADER: Final = "X-Abtest-Event"
TOLERANCE_SECONDS: Final = 300  # Stripe's default window


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Abtest-Signature`` value: ``sha256=`` and the hex HMAC of ``t.body``.

    Examples
    --------
    >>> sign("s3cret", 1700000000, b'{"text": "hi"}')[:15]
    'sha256=d900b650'
    """
    message = str(int(timestamp)).encode("ascii") + b"." + body
    return "sha256=" + hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def verify_signature(
    secret: str,
    body: bytes,
    timestamp: str | int,
    signature: str,
    *,
    tolerance: float = TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """Whether ``signature`` signs ``body`` at ``timestamp`` with ``secret``, and the
    timestamp is within ``tolerance`` seconds of ``now`` (default: the current time).

    Examples
    --------
    >>> body = b'{"text": "hi"}'
    >>> verify_signature("s3cret", body, 1700000000, sign("s3cret", 1700000000, body),
    ...                  now=1700000010)
    True
    >>> verify_signature("s3cret", body, 1700000000, sign("s3cret", 1700000000, body),
    ...                  now=1700009999)
    False
    """
    try:
        stamp = int(timestamp)
    except (TypeError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - stamp) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, stamp, body), signature)


__all__ = [
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "TOLERANCE_SECONDS",
    "sign",
    "verify_signature",
]
