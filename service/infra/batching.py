"""Coalescing concurrent calls of a process into batches: the vote's ballots into one
database commit (service/voting/records.py, group commit), its Redis scripts into one
pipeline (service/infra/redis/scripts.py).

Leader and followers, as a database's group commit does it. The first call to arrive
leads: it lets the process's other ready requests run once (under gevent, a greenlet
switch; with threads, the GIL), so that those about to make the same call queue behind
it; it takes the queue, runs it as one batch, hands every call its own outcome, and
hands the lead to the first call queued meanwhile. No call waits longer than the batch
before its own; under load, batches grow by themselves while one is running, and
alone a call runs at once, as a batch of one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")

MAX_BATCH = 128


class Interrupted(RuntimeError):
    """The call's batch was stopped (its leader killed) before the call got an outcome."""


class _Waiting(Generic[Item]):
    __slots__ = ("decided", "done", "error", "item", "lead", "result")

    def __init__(self, item: Item) -> None:
        self.item = item
        self.done = threading.Event()
        self.lead = False  # handed the lead: this call runs the next batch
        self.decided = False
        self.result = None
        self.error: BaseException | None = None


class Coalescer(Generic[Item, Outcome]):
    """Runs concurrent `submit` calls in batches through `run`, which is given the items
    and returns an outcome per item, in order: a value, or an exception to raise in that
    item's caller. An exception raised by `run` itself is every caller's."""

    def __init__(self, run: Callable[[list[Item]], list[Outcome | BaseException]],
                 max_batch: int = MAX_BATCH) -> None:
        self._run, self.max_batch = run, max_batch
        self._lock = threading.Lock()
        self._queue: list[_Waiting[Item]] = []
        self._leading = False

    def submit(self, item: Item) -> Outcome:
        waiting = _Waiting(item)
        with self._lock:
            self._queue.append(waiting)
            lead = not self._leading
            self._leading = True
        if not lead:
            waiting.done.wait()
            lead = waiting.lead
        if lead:
            self._lead()
        if waiting.error is not None:
            raise waiting.error
        if not waiting.decided:
            raise Interrupted("the call's batch was stopped before it was run")
        return waiting.result

    def _lead(self) -> None:
        time.sleep(0)  # the process's other ready requests queue their calls first
        with self._lock:
            batch = self._queue[:self.max_batch]
            del self._queue[:self.max_batch]
        try:
            try:
                outcomes = self._run([waiting.item for waiting in batch])
            except Exception as error:  # every caller's: each raises it
                outcomes = [error] * len(batch)
            for waiting, outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    waiting.error = outcome
                else:
                    waiting.result = outcome
                waiting.decided = True
        finally:
            with self._lock:
                if self._queue:
                    self._queue[0].lead = True
                    self._queue[0].done.set()
                else:
                    self._leading = False
            for waiting in batch:
                waiting.done.set()

    @property
    def idle(self) -> bool:
        """Nothing queued and no batch running."""
        with self._lock:
            return not self._leading and not self._queue
