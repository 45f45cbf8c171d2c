"""One clock and one time format.

The app reads the time through its `CLOCK` setting (tests move it); answers, exports and
webhooks write times as ISO 8601 UTC seconds with a `Z` suffix.
"""

from __future__ import annotations

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
