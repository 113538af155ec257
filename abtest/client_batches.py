"""How `abtest.client` sends a batch the service may refuse in part. Standard library only.

A batch endpoint refuses a whole batch for one bad item (``POST /v1/events`` and
``POST /v1/assign/batch`` are all or nothing) and names it: ``events[3].metric``,
``requests[7].experiment``.  Resending the batch as it was would be refused again forever,
and dropping it would lose every good item with the bad one.  `deliver` drops just the
named item and resends the rest; a refusal that names no item (a body too large, say) is
split in halves until the bad items stand alone.  Refusals that are not about the content
(a revoked key) drop the batch, as resending cannot help.  An unreachable service stops the
round and leaves the unsettled items to be sent again later.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

from abtest import errors
from abtest.client_http import ServiceUnavailable

Item = TypeVar("Item")
Answer = TypeVar("Answer")

_NAMED_ITEM: Final = re.compile(r"(?:events|requests)\[(\d+)\]")
_SPLITTABLE: Final = (errors.InvalidInput, errors.PayloadTooLarge)


@dataclass
class Delivery(Generic[Item, Answer]):
    """What became of each item of a batch, by its index in the batch."""

    delivered: list[tuple[list[int], Answer]] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)
    unsettled: list[int] = field(default_factory=list)  # not sent: the service went away
    refusals: list[errors.AbtestError] = field(default_factory=list)
    unavailable: ServiceUnavailable | None = None


def deliver(items: Sequence[Item], send: Callable[[list[Item]], Answer]) -> Delivery[Item, Answer]:
    """Send ``items`` with ``send``, dropping only the items the service refuses."""
    result: Delivery[Item, Answer] = Delivery()
    pending = [list(range(len(items)))]
    while pending:
        chunk = pending.pop()
        try:
            result.delivered.append((chunk, send([items[i] for i in chunk])))
        except ServiceUnavailable as exc:
            result.unavailable = exc
            result.unsettled = sorted(i for part in [chunk, *pending] for i in part)
            return result
        except errors.AbtestError as exc:
            result.refusals.append(exc)
            named = _named_index(exc.field, len(chunk))
            if named is not None:  # e.g. events[3].metric, requests[7].experiment
                result.dropped.append(chunk[named])
                rest = chunk[:named] + chunk[named + 1 :]
                if rest:
                    pending.append(rest)
            elif isinstance(exc, _SPLITTABLE) and len(chunk) > 1:
                half = len(chunk) // 2
                pending += [chunk[half:], chunk[:half]]
            else:  # one bad item, or a refusal not about the content (a revoked key)
                result.dropped += chunk
    return result


def _named_index(field_path: str | None, size: int) -> int | None:
    match = _NAMED_ITEM.match(field_path or "")
    if match is None or int(match[1]) >= size:
        return None
    return int(match[1])
