"""A process's bounded memory of answers already worked out (rendered pages, voter
states, runoffs, tallies answers), keyed by what they are a function of: a changed input
is a new key, so nothing is ever stale, and the oldest entries go first once full."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Generic, TypeVar

Key = TypeVar("Key")
Value = TypeVar("Value")


class Kept(Generic[Key, Value]):
    """At most `most` entries; the one put first goes first, or, with `recent`, the one
    read least recently. Safe across threads and greenlets."""

    def __init__(self, most: int, *, recent: bool = False) -> None:
        self.most, self._recent = most, recent
        self._entries: OrderedDict[Key, Value] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Key) -> Value | None:
        if not self._recent:
            return self._entries.get(key)  # one atomic lookup: no lock on the hot path
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def put(self, key: Key, value: Value) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.most:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
