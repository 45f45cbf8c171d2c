"""Tallies read moments ago, kept in the process (TallyCache): the reads of a poll that
nothing changed since are answered without a Redis round trip."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from flask import Flask, current_app, has_app_context

from service.tallies import stream

EXTENSION = "pollbox.tally_cache"
# A kept read: (the poll's version token, its HGETALL list, the generation and the
# monotonic time it was read at).
Entry = tuple[bytes, list, int, float]
MAX_ENTRIES = 10_000
# The listener keeps its subscription this long after the last entry was kept, then rests
# (stream.StreamHub); entries are trusted again once it listens anew.
LISTEN_AFTER_LAST_ENTRY_SECONDS = 5.0


class TallyCache:
    """One process's latest tallies read from Redis, with the poll's version token they
    came with: a read within `trust_seconds` (TALLIES_CACHE_MS) of another, with no
    change heard in between, is answered from memory, without a round trip.

    Every vote, change and withdrawal publishes on its poll's channel (count.lua,
    change.lua, counts.drop), and every change of a poll too (polls/cache.py
    `bump_version`); the process's listener (stream.py, the one live streams use)
    forgets the poll's entries when it hears one, and this process forgets them at once
    for what it writes itself (`changed`). An entry is trusted only while the
    subscription is in place, and never longer than `trust_seconds`: a message lost or
    late shows at most that late. A read that must see everything up to now (`fresh`)
    goes to Redis."""

    def __init__(self, trust_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.trust_seconds, self._clock = trust_seconds, clock
        self._lock = threading.Lock()
        # poll id -> context -> (version token, HGETALL list, generation read at, when)
        self._entries: dict[str, dict[str | None, tuple[bytes, list, int, float]]] = {}
        self._generation = 0  # counts changes heard
        self._changed: dict[str, int] = {}  # poll id -> the generation of its last change
        self._all_changed = 0
        self._last_put = float("-inf")
        self.watching = False

    def changed(self, poll_id: str | None) -> None:
        """The poll's tallies (None: any poll's) may have changed: forget them."""
        if self.trust_seconds <= 0:
            return  # off: nothing is ever kept, so a vote pays nothing here
        with self._lock:
            self._generation += 1
            if poll_id is None or len(self._changed) >= MAX_ENTRIES:
                self._all_changed = self._generation
                self._changed.clear()
                self._entries.clear()
            else:
                self._changed[poll_id] = self._generation
                self._entries.pop(poll_id, None)

    def wanted(self) -> bool:
        """Whether changes must still be heard: an entry was kept a moment ago."""
        return self._clock() - self._last_put < LISTEN_AFTER_LAST_ENTRY_SECONDS

    def begin(self) -> tuple[int, float]:
        """Taken before a read from Redis (pass it to `put`): its answer is kept only if
        nothing changed since, and trusted for `trust_seconds` from then."""
        return self._generation, self._clock()

    def get(self, poll_id: str, context: str | None) -> Entry | None:
        """The poll's (context's) entry while it is trusted: (version token, HGETALL list,
        generation, when read). The entry itself stands for what it was read from: it is
        the one found again exactly while nothing changed (`holds`)."""
        entry = self._entries.get(poll_id, {}).get(context)
        if entry is None:
            return None
        _version, _flat, generation, at = entry
        if self._clock() - at > self.trust_seconds or generation < max(
                self._changed.get(poll_id, 0), self._all_changed):
            return None
        return entry

    def put(self, poll_id: str, context: str | None, version: bytes, flat: list,
            begun: tuple[int, float]) -> Entry | None:
        """Keep a read's answer (None: a change was heard while it was read)."""
        generation, at = begun
        with self._lock:
            if generation < max(self._changed.get(poll_id, 0), self._all_changed):
                return None  # a change was heard while it was read: not kept
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            entry = (version, flat, generation, at)
            self._entries.setdefault(poll_id, {})[context] = entry
            self._last_put = self._clock()
            return entry

    def holds(self, poll_id: str, context: str | None, entry: Entry) -> Callable[[], bool]:
        """Whether `entry` is still the poll's trusted tally, asked later without the app:
        the listener subscribed, no change message waiting untold (asked first, as a
        read does), and the entry neither forgotten nor past its trust."""
        hub = stream.hub()

        def still() -> bool:
            return hub.listening and not hub.unheard() and \
                self.get(poll_id, context) is entry

        return still


def cache() -> TallyCache:
    """The current app's tallies cache."""
    return current_app.extensions[EXTENSION]


def changed(poll_id: str) -> None:
    """This process changed the poll's tallies (a vote counted, changed or withdrawn):
    its own next read goes to Redis, whatever its listener has heard yet."""
    if has_app_context():
        cache().changed(poll_id)


def watch(tallies: TallyCache) -> None:
    """Hear changes for the cache from now on (registered on its first entry, after any
    fork; the listener started again if it rested)."""
    hub = stream.hub()
    if not tallies.watching:
        tallies.watching = True
        hub.watch(tallies.changed, tallies.wanted)
    else:
        hub.keep_listening()


def init_app(app: Flask) -> None:
    app.extensions[EXTENSION] = TallyCache(app.config["TALLIES_CACHE_MS"] / 1000)
