"""The one place the long-running process reads the time.

In: nothing (``SystemClock``) or a starting instant set by a test (``ManualClock``).
Out: timezone-aware UTC datetimes from ``now()``.

Everything below the scheduler takes ``now`` as an argument; the scheduler's jobs ask
their ``Clock`` for it when they start.  A test hands the service a ``ManualClock`` and
moves it forward itself, so a simulated day (or a daylight-saving change) runs in
milliseconds and gives the same result every time, without monkeypatching ``datetime``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""
        ...


class SystemClock:
    """The machine's wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to (tests, simulations)."""

    def __init__(self, start: datetime) -> None:
        self._now = _aware(start)

    def now(self) -> datetime:
        return self._now

    def set(self, when: datetime) -> None:
        """Jump to ``when``; going backwards is allowed (a wall clock can be set back too)."""
        self._now = _aware(when)

    def advance(self, delta: timedelta) -> datetime:
        """Move forward by ``delta`` and return the new time."""
        self._now += delta
        return self._now


def _aware(when: datetime) -> datetime:
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"naive datetime {when.isoformat()}: a clock needs a timezone-aware time")
    return when.astimezone(UTC)
