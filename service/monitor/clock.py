"""The clock of the monitor, and of the service in demo and test mode.

`Clock` is anything with ``now()`` (an aware UTC datetime).  `SystemClock` is the real one.
`SettableClock` is moved by the test that owns it.  `RedisClock` is the *controlled*
clock that the service uses when started with ``ABTEST_CLOCK=controlled`` (refused
otherwise): its time lives in Redis (`abtest.keys.controlled_clock`), is set through
``POST /v1/clock`` (admin) or `RedisClock.set`, never moves backwards, and every worker,
the monitor and the store read the same one, so a demo's traffic, its exposures, events,
audit entries and checks all spread over the days the demo simulates.  Until it is first
set it reads the system clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final, Protocol

from abtest import keys
from abtest.errors import InvalidInput
from abtest.redis_client import register_script

if TYPE_CHECKING:
    from abtest.redis_client import RedisClient

CLOCK_MODES: Final = ("system", "controlled")


class Clock(Protocol):
    """A source of the current time."""

    def now(self) -> datetime:
        """The current time, an aware UTC datetime."""
        ...  # pragma: no cover - a protocol


def to_us(moment: datetime) -> int:
    """Epoch microseconds of an aware datetime."""
    return round(moment.timestamp() * 1_000_000)


def from_us(epoch_us: int) -> datetime:
    """The aware UTC datetime of epoch microseconds."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=epoch_us)


class SystemClock:
    """The machine's clock."""

    def now(self) -> datetime:
        """``datetime.now(UTC)``."""
        return datetime.now(UTC)


class SettableClock:
    """A clock that stands still until it is set or advanced (tests)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise InvalidInput("the clock needs an aware datetime", "now")
        self._now = start

    def now(self) -> datetime:
        """The time it was last set to."""
        return self._now

    def set(self, moment: datetime) -> None:
        """Move to ``moment``."""
        self._now = moment

    def advance(self, delta: timedelta) -> None:
        """Move forward by ``delta``."""
        self._now += delta


class RedisClock:
    """The controlled clock shared through Redis (see the module docstring)."""

    def __init__(self, client: RedisClient) -> None:
        self.redis = client
        self._set = register_script(client, keys.SET_CLOCK_SCRIPT)

    def now_us(self) -> int:
        """The clock's time in epoch µs (the system's until first set)."""
        raw = self.redis.get(keys.controlled_clock())
        return int(raw) if raw else to_us(datetime.now(UTC))

    def now(self) -> datetime:
        """The clock's time."""
        return from_us(self.now_us())

    def set(self, moment: datetime) -> datetime:
        """Move the clock to ``moment``; its new time.  The first setting may be any time (a
        simulation may start days in the past); after that it never moves backwards
        (`InvalidInput`), so streams, audit entries and checks stay in order."""
        wanted = to_us(moment)
        current = self.redis.get(keys.controlled_clock())
        if current and wanted < int(current):
            raise InvalidInput(f"the controlled clock never moves backwards (it is at "
                               f"{from_us(int(current)).isoformat()})", "now")  # fmt: skip
        return from_us(int(self._set(keys=[keys.controlled_clock()], args=[wanted])))


def clock_mode(value: object) -> str:
    """A valid ``ABTEST_CLOCK`` value, else `InvalidInput`."""
    if value not in CLOCK_MODES:
        raise InvalidInput(f"must be {' or '.join(CLOCK_MODES)} (env ABTEST_CLOCK), got "
                           f"{value!r}", "CLOCK")  # fmt: skip
    return str(value)


def make_clock(mode: str, client: RedisClient) -> Clock:
    """The clock of a service or monitor in ``mode`` (see `clock_mode`)."""
    return RedisClock(client) if clock_mode(mode) == "controlled" else SystemClock()


__all__ = [
    "CLOCK_MODES",
    "Clock",
    "RedisClock",
    "SettableClock",
    "SystemClock",
    "clock_mode",
    "from_us",
    "make_clock",
    "to_us",
]
