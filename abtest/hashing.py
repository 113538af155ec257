"""Hashing spec v1: how a unit id becomes a bucket. Pure; any language can reimplement it.

The byte layout (all strings UTF-8, no normalisation, no trailing newline)::

    message = b"abtest/v1|" + purpose + b"|" + salt + b"|" + unit_id
    digest  = SHA-256(message)                       (FIPS 180-4)
    bucket  = big-endian unsigned 32-bit integer of digest[0:4]      in [0, 2**32)

``purpose`` is one of ``layer``, ``traffic``, ``variant`` or ``holdout``, so the draws a unit
makes for one experiment are separate hash computations and statistically independent.
``salt`` is the experiment's ``seed`` (a slug, so it cannot contain ``|``) for the traffic
and variant draws, and the layer's ``name`` for the layer draw: every experiment of a layer
must see the same slot for the unit, or they could not be mutually exclusive.  The
``holdout`` draw (added to v1 without changing any other draw) has the global holdout's
``name`` as its salt, so a unit is in or out of the holdout in every experiment alike, and
independently of all of their draws (`abtest.holdout`): a member has a bucket below
``threshold(share)``.

A fraction ``f`` in [0, 1] becomes the integer threshold ``floor(f * 2**32)`` computed in
IEEE-754 double arithmetic; a unit is *inside* when ``bucket < threshold``.  Variant
boundaries are the thresholds of the cumulative normalised weights, the last one forced to
``2**32`` so rounding can never leave a bucket unassigned.  The resolution is therefore
``2**-32`` of traffic (about 2.3e-10).

The file ``spec/hash_vectors_v1.json`` holds cases that every implementation must pass.
Never change what v1 computes: add a v2 with a new prefix instead.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable, Sequence
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

HASH_VERSION: Final = 1
BUCKET_SPACE: Final = 1 << 32
Purpose = Literal["layer", "traffic", "variant", "holdout"]

_PREFIX: Final = b"abtest/v1|"


def _fastest_sha256() -> Callable[[bytes], Any]:
    """CPython's own SHA-256 when present, else OpenSSL's through hashlib.

    For messages of a few dozen bytes, OpenSSL's per-call context setup costs more than
    the hashing; CPython's built-in module (``_sha2`` from 3.12, ``_sha256`` before)
    avoids it and is about 30% faster here.  Both are FIPS 180-4 SHA-256: the vector tests
    check the result against ``hashlib.sha256``.
    """
    for name in ("_sha2", "_sha256"):
        try:
            return importlib.import_module(name).sha256  # type: ignore[no-any-return]
        except (ImportError, AttributeError):
            continue
    return hashlib.sha256  # pragma: no cover


sha256: Final = _fastest_sha256()


def message_prefix(purpose: Purpose, salt: str) -> bytes:
    """The bytes that precede the unit id in every message of one draw."""
    return _PREFIX + purpose.encode() + b"|" + salt.encode("utf-8") + b"|"


def bucket(purpose: Purpose, salt: str, unit_id: str) -> int:
    """The unit's bucket in ``[0, 2**32)`` for one draw.

    Examples
    --------
    >>> bucket("variant", "demo", "user-1") < 2**32
    True
    """
    digest = sha256(message_prefix(purpose, salt) + unit_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big")


def buckets(purpose: Purpose, salt: str, unit_ids: Sequence[str]) -> npt.NDArray[np.uint32]:
    """The buckets of many unit ids at once, as a ``uint32`` array (same values as `bucket`)."""
    prefix = message_prefix(purpose, salt)
    # One encode of the joined ids is several times faster than an encode per id; NUL is
    # a safe separator because unit ids are validated to contain no NUL character.
    encoded = "\x00".join(unit_ids).encode("utf-8").split(b"\x00") if unit_ids else []
    if len(encoded) != len(unit_ids):
        raise ValueError("unit ids must not contain the NUL character")
    hash_function = sha256
    digests = b"".join([hash_function(prefix + uid).digest() for uid in encoded])
    return np.frombuffer(digests, dtype=">u4")[::8].astype(np.uint32)


def threshold(fraction: float) -> int:
    """The integer bucket bound of a fraction in [0, 1]: ``floor(fraction * 2**32)``."""
    return min(int(fraction * BUCKET_SPACE), BUCKET_SPACE)


def variant_boundaries(weights: Sequence[float]) -> tuple[int, ...]:
    """Upper bucket bound of each variant, from weights that need not sum to 1.

    Bucket ``b`` goes to the first variant ``i`` with ``b < boundaries[i]``.
    """
    total = float(sum(weights))
    cumulative = 0.0
    bounds = []
    for weight in weights:
        cumulative += weight
        bounds.append(threshold(cumulative / total))
    bounds[-1] = BUCKET_SPACE
    return tuple(bounds)
