"""One clock and one time format.

The app reads the time through its `CLOCK` setting (tests move it); answers, exports and
webhooks write times as ISO 8601 UTC seconds with a `Z` suffix.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from flask import current_app

ISO_SECONDS = "%Y-%m-%dT%H:%M:%SZ"


def utcnow() -> datetime:
    """The current time, aware, in UTC (the default `CLOCK`)."""
    return datetime.now(UTC)


def now() -> datetime:
    """The current app's notion of now (tests may set `CLOCK`)."""
    return current_app.config["CLOCK"]()


def iso(moment: datetime) -> str:
    """`moment` as the answers write times: `2026-12-03T09:39:38Z`."""
    return moment.astimezone(UTC).strftime(ISO_SECONDS)


def parse_iso(text: str) -> datetime:
    """A time written by `iso`, back as an aware UTC datetime."""
    return datetime.strptime(text, ISO_SECONDS).replace(tzinfo=UTC)


def epoch_ms(moment: datetime) -> int:
    """Milliseconds since the epoch, as Redis keeps times."""
    return int(moment.timestamp() * 1000)


class PerSecond:
    """A text that changes only with the whole second (a log line's time, an HTTP
    `Date`), made once a second rather than on every use. The second and its text are
    swapped as one tuple: a thread never reads one second's text for another."""

    __slots__ = ("_made", "_make")

    def __init__(self, make: Callable[[int], str]) -> None:
        self._make = make
        self._made: tuple[int, str] = (-1, "")

    def __call__(self, second: int) -> str:
        made = self._made
        if made[0] != second:
            made = self._made = (second, self._make(second))
        return made[1]
