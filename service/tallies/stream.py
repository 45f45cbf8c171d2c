"""Live tallies: one Redis pub/sub subscription per worker process, fanned out to every
open stream of that process.

A vote's count (count.lua's `publish` step) and a withdrawal publish on the poll's
`keys.tally_changes` channel. Each process runs one listener (a thread; a greenlet under
gunicorn's gevent worker, which patches threading) holding a single pattern
subscription; it only wakes the streams of the poll named by the channel, so it never
waits on a slow stream. A woken
stream then asks for the poll's answer at most every `SSE_MIN_INTERVAL_SECONDS`, so a
burst of votes becomes one event. The answer is rendered once per change for all the
process's streams of the poll (`StreamHub.render`): the first stream to ask reads the
tally and encodes the JSON, the others wait for it and write the same text. A thousand
streams then cost one tally read, not a thousand (which also emptied the Redis client's
connection pool and sent the overflow to the database).
The message is only a hint: the tally in Redis (or the database) stays the truth.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field

from flask import Flask, current_app

from service.infra import keys, metrics
from service.infra.redis import EXTENSION as REDIS_EXTENSION
from service.infra.redis import REDIS_ERRORS

log = logging.getLogger(__name__)

SSE_HEARTBEAT_SECONDS = 15
# Coalescing: at most one event per stream this often (4 per second).
SSE_MIN_INTERVAL_SECONDS = 0.25
# A stream ends after this long; EventSource reconnects (and lands on any worker).
SSE_MAX_SECONDS = 30 * 60
SSE_RETRY_MILLISECONDS = 3000
# A shared answer is rendered again after every change of its poll, and when older than
# this even without one (a change whose message was lost shows at the next heartbeat).
SHARED_RENDER_MAX_AGE_SECONDS = 1.0
LISTEN_WAIT_SECONDS = 1.0
SUBSCRIBE_WAIT_SECONDS = 5.0
RECONNECT_MIN_SECONDS = 0.5
RECONNECT_MAX_SECONDS = 10.0


@dataclass(eq=False)
class Subscription:
    """One open stream's interest in one poll; `changed` is set when the poll's tally may
    have changed. Streams of the same poll and `variant` (what their answer depends on
    besides the poll: whether the reader is its owner) share one rendered answer."""

    poll_id: str
    variant: Hashable = None
    changed: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class Rendered:
    """An answer shared by streams; valid while its poll has not changed since
    `generation` and for SHARED_RENDER_MAX_AGE_SECONDS from `at`."""

    generation: int
    at: float
    body: str


class StreamHub:
    """The process's single pub/sub listener, the streams waiting on it, and the answers
    they share."""

    def __init__(self, pubsub_factory: Callable,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._pubsub_factory = pubsub_factory
        self._clock = clock
        self._lock = threading.Lock()
        self._subscriptions: dict[str, set[Subscription]] = defaultdict(set)
        self._listener: threading.Thread | None = None
        self._socket: object = UNKNOWN_TRANSPORT  # the subscription's (see `unheard`)
        self._listening = threading.Event()
        self._hearing = False  # messages read off the socket, not yet all told
        # Every notify() counts one generation; a poll remembers the one of its last change.
        self._generation = 0
        self._changed: dict[str, int] = {}
        self._all_changed = 0
        self._rendered: dict[str, dict[Hashable, Rendered]] = {}
        self._rendering: dict[str, threading.Lock] = {}
        # Told of every change (the process's tallies cache), and keeping the listener up
        # while they want to hear: (on_change, wanted).
        self._watchers: list[tuple[Callable[[str | None], None], Callable[[], bool]]] = []
        self.closing = False  # the process stops: its streams end (see `close`)

    def subscribe(self, poll_id: str, variant: Hashable = None) -> Subscription:
        """Register a stream; the listener starts with the first one."""
        subscription = Subscription(poll_id, variant)
        with self._lock:
            self._subscriptions[poll_id].add(subscription)
            self._start_listening()
        return subscription

    def watch(self, on_change: Callable[[str | None], None],
              wanted: Callable[[], bool]) -> None:
        """Call `on_change(poll_id)` on every change message from now on (None: any poll
        may have changed, e.g. the subscription was lost or restored); the listener keeps
        listening while `wanted()` (see `keep_listening`)."""
        with self._lock:
            self._watchers.append((on_change, wanted))
            self._start_listening()

    def keep_listening(self) -> None:
        """Start the listener again if it rested (a watcher wants to hear once more)."""
        if self._listener is None:
            with self._lock:
                self._start_listening()

    @property
    def listening(self) -> bool:
        """Whether the subscription is in place now: a change would be heard."""
        return self._listening.is_set()

    def unheard(self) -> bool:
        """Whether a change message may wait untold: on the subscription's socket, or read
        off it and not yet told. A change announced before this is asked (its message on
        every subscriber's socket before the writer answers: RedisHandle.deliver) is then
        either told already or unheard. A subscription of unknown transport always
        answers yes."""
        sock = self._socket
        if sock is None:
            return False
        if sock is UNKNOWN_TRANSPORT:
            return True
        try:
            waiting = _pending(sock) or bool(select.select([sock], [], [], 0)[0])
        except (OSError, ValueError):
            return True
        # The socket first, then what the listener holds: a message read off the socket
        # after the first look is still in hand at the second, or told by then.
        return waiting or self._hearing

    def _start_listening(self) -> None:
        if self._listener is None:
            self._listener = threading.Thread(
                target=self._listen, name="pollbox-stream-listener", daemon=True
            )
            self._listener.start()

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            waiting = self._subscriptions.get(subscription.poll_id)
            if waiting is not None:
                waiting.discard(subscription)
                if not waiting:  # the poll's last stream here: forget what it shared
                    del self._subscriptions[subscription.poll_id]
                    self._changed.pop(subscription.poll_id, None)
                    self._rendered.pop(subscription.poll_id, None)
                    self._rendering.pop(subscription.poll_id, None)

    def close(self) -> None:
        """The process is stopping: every stream ends now, at its next wake-up, rather
        than holding the process up to its graceful timeout (a stream never ends by
        itself for 30 minutes). EventSource reconnects, to a process still serving."""
        self.closing = True
        with self._lock:
            waiting = [s for group in self._subscriptions.values() for s in group]
        for subscription in waiting:
            subscription.changed.set()

    def wait_until_listening(self, timeout: float) -> bool:
        """Whether the subscription is in place (tests use it to avoid a startup race)."""
        return self._listening.wait(timeout)

    def open_streams(self) -> int:
        with self._lock:
            return sum(len(waiting) for waiting in self._subscriptions.values())

    def notify(self, poll_id: str | None = None) -> None:
        """Wake the streams of one poll, or of every poll; their shared answers are stale
        from now on."""
        with self._lock:
            self._generation += 1
            if poll_id is None:
                self._all_changed = self._generation
                waiting = [s for group in self._subscriptions.values() for s in group]
            else:
                waiting = list(self._subscriptions.get(poll_id, ()))
                if waiting:
                    self._changed[poll_id] = self._generation
        for subscription in waiting:
            subscription.changed.set()
        for on_change, _wanted in self._watchers:
            on_change(poll_id)

    def render(self, subscription: Subscription, render: Callable[[], str]) -> str:
        """The current answer for the subscription's poll and variant: `render()`d by the
        first stream that asks after a change, shared with the others (they wait for it
        rather than read the same tally again)."""
        shared, generation = self._shared(subscription)
        if shared is not None:
            return shared
        with self._lock:
            lock = self._rendering.setdefault(subscription.poll_id, threading.Lock())
        with lock:
            shared, generation = self._shared(subscription)  # rendered while we waited?
            if shared is not None:
                return shared
            started = self._clock()
            body = render()
            with self._lock:
                if subscription.poll_id in self._subscriptions:
                    self._rendered.setdefault(subscription.poll_id, {})[subscription.variant] = (
                        Rendered(generation, started, body))
            return body

    def _shared(self, subscription: Subscription) -> tuple[str | None, int]:
        """The shared answer if still valid, and the generation a new one would have."""
        with self._lock:
            poll_id = subscription.poll_id
            shared = self._rendered.get(poll_id, {}).get(subscription.variant)
            changed = max(self._changed.get(poll_id, 0), self._all_changed)
            generation = self._generation
        if (shared is not None and shared.generation >= changed
                and self._clock() - shared.at < SHARED_RENDER_MAX_AGE_SECONDS):
            return shared.body, generation
        return None, generation

    def _listen(self) -> None:
        delay = RECONNECT_MIN_SECONDS
        while True:
            pubsub = None
            try:
                pubsub = self._pubsub_factory()
                pubsub.psubscribe(keys.TALLY_CHANGES_PATTERN)
                self._socket = _socket_of(pubsub)
                self._confirmed(pubsub)
                # Streams that started before the subscription was in place re-read once,
                # and what was kept while nothing listened is forgotten, before anything
                # heard from now on may be trusted.
                self.notify()
                self._listening.set()
                if delay > RECONNECT_MIN_SECONDS:
                    log.warning("tally change subscription restored")
                delay = RECONNECT_MIN_SECONDS
                while True:
                    if self._hear(pubsub):
                        continue
                    with self._lock:
                        if not self._subscriptions and not any(
                                wanted() for _on_change, wanted in self._watchers):
                            # the last stream ended, and no watcher wants more: rest
                            self._listener = None
                            self._listening.clear()
                            return
            except REDIS_ERRORS as error:
                self._listening.clear()  # before telling: nothing heard may be trusted
                self.notify()  # streams read the tally again (the database while Redis is away)
                if delay == RECONNECT_MIN_SECONDS:
                    log.warning("tally change subscription lost (%s); retrying",
                                type(error).__name__)
            except Exception:  # the listener must outlive anything a message can do
                self._listening.clear()
                log.exception("tally change listener failed; restarting")
            finally:
                self._hearing = False
                if pubsub is not None:
                    with contextlib.suppress(*REDIS_ERRORS):
                        pubsub.close()
            time.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_SECONDS)

    def _confirmed(self, pubsub) -> None:
        """Wait until Redis has taken the subscription: every message published from then
        on reaches it (a change published while it was on its way would be missed)."""
        deadline = time.monotonic() + SUBSCRIBE_WAIT_SECONDS
        while time.monotonic() < deadline:
            message = pubsub.get_message(timeout=LISTEN_WAIT_SECONDS)
            if message is not None and message["type"] == "psubscribe":
                return
            if message is not None:
                self._tell(message)
        raise TimeoutError("the tally change subscription was not confirmed")

    def _hear(self, pubsub) -> bool:
        """Wait up to LISTEN_WAIT_SECONDS for messages, and tell every one that arrived;
        False if none did. A message read off the socket is in hand (`_hearing`) until
        told: `unheard` counts it as waiting until then."""
        sock = self._socket
        if isinstance(sock, socket.socket):
            if not (_pending(sock) or select.select([sock], [], [], LISTEN_WAIT_SECONDS)[0]):
                return False
            message = None
        else:  # no socket to wait on: redis-py waits (unheard() never trusts these)
            message = pubsub.get_message(timeout=LISTEN_WAIT_SECONDS)
            if message is None:
                return False
        self._hearing = True
        try:
            while True:
                if message is not None:
                    self._tell(message)
                # Until nothing is left, buffered in the client or on the socket.
                message = pubsub.get_message(timeout=0)
                if message is None:
                    return True
        finally:
            self._hearing = False

    def _tell(self, message: dict) -> None:
        if message["type"] not in ("pmessage", "message"):
            return  # a subscription's confirmation
        channel = message["channel"]
        if isinstance(channel, bytes):
            channel = channel.decode()
        self.notify(keys.poll_id_of_channel(channel))


def _pending(sock: socket.socket) -> bool:
    """Whether a TLS socket holds decrypted bytes not yet read (select cannot see them)."""
    pending = getattr(sock, "pending", None)
    return bool(pending and pending())


UNKNOWN_TRANSPORT = object()


def _socket_of(pubsub) -> object:
    """The subscription's socket; None for the in-process stand-in (no other process
    writes to it), UNKNOWN_TRANSPORT when it cannot be told (e.g. a cluster's)."""
    connection = getattr(pubsub, "connection", None)
    if type(connection).__module__.startswith("fakeredis"):
        return None
    sock = getattr(connection, "_sock", None)
    return sock if isinstance(sock, socket.socket) else UNKNOWN_TRANSPORT


def event(name: str, data: str) -> str:
    """One Server-Sent Event (data lines may not hold newlines; JSON has none)."""
    return f"event: {name}\ndata: {data}\n\n"


def heartbeat() -> str:
    """A comment line: keeps proxies from closing a quiet stream."""
    return ": keepalive\n\n"


def follow(*, hub: StreamHub, poll_id: str, render: Callable[[], str],
           variant: Hashable = None,
           clock: Callable[[], float] = time.monotonic) -> Iterator[str]:
    """The event stream of one poll: its tallies at once, again after each change
    (coalesced), a comment line while nothing changes; ends after SSE_MAX_SECONDS, or
    at once when the process stops (StreamHub.close).
    Streams of the same poll and `variant` share each rendered answer (StreamHub.render)."""
    subscription = hub.subscribe(poll_id, variant)
    metrics.SSE_STREAMS.inc()
    try:
        body = hub.render(subscription, render)
        yield f"retry: {SSE_RETRY_MILLISECONDS}\n" + event("tallies", body)
        started = last_write = last_event = clock()
        while not hub.closing and clock() - started < SSE_MAX_SECONDS:
            quiet = SSE_HEARTBEAT_SECONDS - (clock() - last_write)
            if quiet > 0 and subscription.changed.wait(quiet):
                if hub.closing:
                    break
                pause = SSE_MIN_INTERVAL_SECONDS - (clock() - last_event)
                if pause > 0:
                    time.sleep(pause)  # let a burst of votes collapse into one event
                subscription.changed.clear()
                fresh = hub.render(subscription, render)
                if fresh != body:
                    body = fresh
                    last_event = last_write = clock()
                    yield event("tallies", body)
                    continue
            if clock() - last_write >= SSE_HEARTBEAT_SECONDS:
                # A quiet spell re-reads too: a change whose message was lost shows late,
                # never not at all.
                fresh = hub.render(subscription, render)
                last_write = clock()
                if fresh != body:
                    body = fresh
                    last_event = last_write
                    yield event("tallies", body)
                else:
                    yield heartbeat()
    finally:
        hub.unsubscribe(subscription)
        metrics.SSE_STREAMS.dec()


def hub() -> StreamHub:
    """The current app's hub."""
    return current_app.extensions["pollbox.stream"]


def init_app(app: Flask) -> None:
    """Create the app's hub; its listener starts with the first stream (after any fork)."""
    redis = app.extensions[REDIS_EXTENSION]
    app.extensions["pollbox.stream"] = StreamHub(lambda: redis.client.pubsub())
