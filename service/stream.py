"""Live tallies: one Redis pub/sub subscription per worker process, fanned out to every
open stream of that process.

`tallies.count_ballot` publishes on the poll's `keys.tally_changes` channel after each
count. Each process runs one listener (a thread; a greenlet under gunicorn's gevent
worker, which patches threading) holding a single pattern subscription; it wakes the
streams of the poll named by the channel. A stream then re-reads the tally itself, at
most every `SSE_MIN_INTERVAL_SECONDS`, so a burst of votes becomes one event.
The message is only a hint: the tally in Redis (or the database) stays the truth.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from flask import Flask, current_app

from service import keys
from service.tallies import REDIS_ERRORS

log = logging.getLogger(__name__)

SSE_HEARTBEAT_SECONDS = 15
# Coalescing: at most one event per stream this often (4 per second).
SSE_MIN_INTERVAL_SECONDS = 0.25
# A stream ends after this long; EventSource reconnects (and lands on any worker).
SSE_MAX_SECONDS = 30 * 60
SSE_RETRY_MILLISECONDS = 3000
LISTEN_WAIT_SECONDS = 1.0
RECONNECT_MIN_SECONDS = 0.5
RECONNECT_MAX_SECONDS = 10.0


@dataclass(eq=False)
class Subscription:
    """One open stream's interest in one poll; `changed` is set when the poll's tally may
    have changed."""

    poll_id: str
    changed: threading.Event = field(default_factory=threading.Event)


class StreamHub:
    """The process's single pub/sub listener and the streams waiting on it."""

    def __init__(self, pubsub_factory: Callable) -> None:
        self._pubsub_factory = pubsub_factory
        self._lock = threading.Lock()
        self._subscriptions: dict[str, set[Subscription]] = defaultdict(set)
        self._listener: threading.Thread | None = None
        self._listening = threading.Event()

    def subscribe(self, poll_id: str) -> Subscription:
        """Register a stream; the listener starts with the first one."""
        subscription = Subscription(poll_id)
        with self._lock:
            self._subscriptions[poll_id].add(subscription)
            if self._listener is None:
                self._listener = threading.Thread(
                    target=self._listen, name="pollbox-stream-listener", daemon=True
                )
                self._listener.start()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            waiting = self._subscriptions.get(subscription.poll_id)
            if waiting is not None:
                waiting.discard(subscription)
                if not waiting:
                    del self._subscriptions[subscription.poll_id]

    def wait_until_listening(self, timeout: float) -> bool:
        """Whether the subscription is in place (tests use it to avoid a startup race)."""
        return self._listening.wait(timeout)

    def open_streams(self) -> int:
        with self._lock:
            return sum(len(waiting) for waiting in self._subscriptions.values())

    def notify(self, poll_id: str | None = None) -> None:
        """Wake the streams of one poll, or of every poll."""
        with self._lock:
            if poll_id is None:
                waiting = [s for group in self._subscriptions.values() for s in group]
            else:
                waiting = list(self._subscriptions.get(poll_id, ()))
        for subscription in waiting:
            subscription.changed.set()

    def _listen(self) -> None:
        delay = RECONNECT_MIN_SECONDS
        while True:
            pubsub = None
            try:
                pubsub = self._pubsub_factory()
                pubsub.psubscribe(keys.TALLY_CHANGES_PATTERN)
                self._listening.set()
                if delay > RECONNECT_MIN_SECONDS:
                    log.warning("tally change subscription restored")
                # Streams that started before the subscription was in place re-read once.
                self.notify()
                delay = RECONNECT_MIN_SECONDS
                while True:
                    message = pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=LISTEN_WAIT_SECONDS
                    )
                    if message is None:
                        with self._lock:
                            if not self._subscriptions:  # the last stream ended: rest
                                self._listener = None
                                self._listening.clear()
                                return
                        continue
                    channel = message["channel"]
                    if isinstance(channel, bytes):
                        channel = channel.decode()
                    self.notify(keys.poll_id_of_channel(channel))
            except REDIS_ERRORS as error:
                self._listening.clear()
                self.notify()  # streams fall back to reading the tally themselves
                if delay == RECONNECT_MIN_SECONDS:
                    log.warning("tally change subscription lost (%s); retrying",
                                type(error).__name__)
            except Exception:  # the listener must outlive anything a message can do
                self._listening.clear()
                log.exception("tally change listener failed; restarting")
            finally:
                if pubsub is not None:
                    with contextlib.suppress(*REDIS_ERRORS):
                        pubsub.close()
            time.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_SECONDS)


class PollCache:
    """Polls as streams see them, re-read at most every `ttl` seconds per process: a
    burst of streams opening for one poll costs one database read, not one each (and
    an open stream holds no connection). One loader per poll at a time; the others wait
    for its answer."""

    MAX_ENTRIES = 10_000

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[str, tuple[object, float]] = {}
        self._loading: dict[str, threading.Lock] = defaultdict(threading.Lock)
        self._guard = threading.Lock()

    def _fresh(self, poll_id: str):
        entry = self._entries.get(poll_id)
        if entry is not None and self._clock() - entry[1] < self._ttl:
            return entry[0]
        return None

    def get(self, poll_id: str, load: Callable[[], object]):
        """The cached poll, or `load()` (whose exceptions, e.g. NotFound, pass through)."""
        found = self._fresh(poll_id)
        if found is not None:
            return found
        with self._guard:
            lock = self._loading[poll_id]
        with lock:
            found = self._fresh(poll_id)
            if found is None:
                found = load()
                if len(self._entries) >= self.MAX_ENTRIES:
                    self._entries.clear()
                self._entries[poll_id] = (found, self._clock())
        return found


def event(name: str, data: str) -> str:
    """One Server-Sent Event; `data` must be a single line (compact JSON is)."""
    return f"event: {name}\ndata: {data}\n\n"


def heartbeat() -> str:
    return ": keepalive\n\n"


def follow(*, hub: StreamHub, poll_id: str, render: Callable[[], str],
           clock: Callable[[], float] = time.monotonic) -> Iterator[str]:
    """The event stream of one poll: its tallies at once, again after each change
    (coalesced), a comment line while nothing changes; ends after SSE_MAX_SECONDS."""
    subscription = hub.subscribe(poll_id)
    try:
        body = render()
        yield f"retry: {SSE_RETRY_MILLISECONDS}\n" + event("tallies", body)
        started = last_write = last_event = clock()
        while clock() - started < SSE_MAX_SECONDS:
            quiet = SSE_HEARTBEAT_SECONDS - (clock() - last_write)
            if quiet > 0 and subscription.changed.wait(quiet):
                pause = SSE_MIN_INTERVAL_SECONDS - (clock() - last_event)
                if pause > 0:
                    time.sleep(pause)  # let a burst of votes collapse into one event
                subscription.changed.clear()
                fresh = render()
                if fresh != body:
                    body = fresh
                    last_event = last_write = clock()
                    yield event("tallies", body)
                    continue
            if clock() - last_write >= SSE_HEARTBEAT_SECONDS:
                # A quiet spell re-reads too: a change whose message was lost shows late,
                # never not at all.
                fresh = render()
                last_write = clock()
                if fresh != body:
                    body = fresh
                    last_event = last_write
                    yield event("tallies", body)
                else:
                    yield heartbeat()
    finally:
        hub.unsubscribe(subscription)


def hub() -> StreamHub:
    """The current app's hub."""
    return current_app.extensions["pollbox.stream"]


def init_app(app: Flask) -> None:
    """Create the app's hub; its listener starts with the first stream (after any fork)."""
    redis = app.extensions["pollbox.redis"]
    app.extensions["pollbox.stream"] = StreamHub(lambda: redis.client.pubsub())
    app.extensions["pollbox.stream.polls"] = PollCache(SSE_HEARTBEAT_SECONDS)


def poll_cache() -> PollCache:
    """The current app's cache of polls for streams."""
    return current_app.extensions["pollbox.stream.polls"]
