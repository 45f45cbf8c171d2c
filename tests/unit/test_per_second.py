"""Texts made once a second (service/infra/clock.py PerSecond): the log line's time and
a kept answer's HTTP Date."""

from __future__ import annotations

from service.infra import logs
from service.infra.clock import PerSecond


def test_a_second_is_made_once_and_the_next_anew():
    made = []

    def make(second: int) -> str:
        made.append(second)
        return f"text of {second}"

    text = PerSecond(make)
    assert [text(100), text(100), text(101), text(101), text(100)] == [
        "text of 100", "text of 100", "text of 101", "text of 101", "text of 100"]
    assert made == [100, 101, 100]


def test_the_log_time_is_the_seconds_utc_text():
    assert logs._utc_second(0) == "1970-01-01T00:00:00"
    assert logs._utc_second(1_796_000_000) == "2026-11-30T00:53:20"
