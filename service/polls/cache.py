"""Polls as the read paths and the vote path see them: one cache per process of immutable
snapshots, checked against a version token in Redis on every use.

The database is the record. Every committed change of a poll, of its options or of its
baseline (any code path that changes them through the ORM: the API, the console, the
CLI) sets a new
random token at `keys.poll_version` right after the commit (`_bump_after_commit`);
deleting a poll deletes the key. A process serves its cached snapshot only while the
token in Redis is the one it was loaded under, so a change made in one worker is seen
by the next request in every worker. Reading the token costs one Redis GET, or nothing
extra when it rides in the same round trip as the tally (`get_poll_and_counts`).

- No token (Redis flushed, the key expired, a new or unknown poll): the poll is read
  from the database and a token is created; that answer is not cached, because the
  database read may predate the token, so the next request caches.
- Redis down: every request reads the poll from the database (as without a cache) and
  this process drops its cache; a token a writer could not set is set once Redis answers
  again. A snapshot is never used longer than SNAPSHOT_MAX_AGE_SECONDS, which bounds how
  late a change made during an outage can show in a process that did not see the outage.
- `closes_at` closes a poll by the clock, without any write: `status_at(now)` compares.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from itertools import chain
from typing import NamedTuple

from flask import Flask, current_app, has_app_context
from sqlalchemy import event, select
from sqlalchemy.orm import Session, selectinload

from service.infra import keys
from service.infra.db import db
from service.infra.errors import NotFound
from service.infra.models import Option, Poll, PollBaseline, PollBaselineOption, poll_status
from service.infra.redis import EXTENSION as REDIS_EXTENSION
from service.infra.redis import RedisHandle
from service.tallies import counts, recent, stream
from service.tallies.baseline import Baseline
from service.tallies.counts import Counts

log = logging.getLogger(__name__)

# A snapshot is re-read from the database at least this often, whatever its token says.
SNAPSHOT_MAX_AGE_SECONDS = 60
# Tokens of polls nobody reads expire; a missing token only costs one database read.
VERSION_TTL_SECONDS = 30 * 24 * 3600
VERSION_TOKEN_BYTES = 8
MAX_ENTRIES = 10_000
EXTENSION = "pollbox.poll_cache"
CHANGED_POLLS = "pollbox.changed_polls"


@dataclass(frozen=True, slots=True)
class OptionSnapshot:
    id: int
    label: str
    position: int
    value: int | None = None  # a scale point's number (rating, NPS)


@dataclass(frozen=True, slots=True)
class PollSnapshot:
    """A poll's fields and options as committed, detached from any session. It has the
    attributes of `models.Poll` that the read paths and the vote path use."""

    id: str
    owner_id: int
    question: str
    kind: str
    max_choices: int
    allow_other: bool
    allow_comment: bool
    shuffle_options: bool
    allow_change: bool
    challenge: str
    challenge_until: datetime | None
    duplicate_check: str
    vote_window_seconds: int | None
    results: str
    results_min_votes: int
    opens_at: datetime | None
    closes_at: datetime | None
    closed_at: datetime | None
    allowed_origins: tuple[str, ...]
    locale: str
    signing_secret: str
    created_at: datetime
    updated_at: datetime
    options: tuple[OptionSnapshot, ...]
    # The token it was loaded under; None when read without one (no token, Redis down).
    version: str | None
    # Votes from before Pollbox, added to the whole poll's tallies when they are shown.
    baseline: Baseline | None = None
    max_votes: int | None = None
    closed_reason: str | None = None
    # A rating's scale (models.Poll.scale).
    scale: dict | None = None

    def status_at(self, now: datetime) -> str:
        """Return `scheduled`, `open` or `closed` at the given time."""
        return poll_status(self, now)

    @classmethod
    def of(cls, poll: Poll, version: str | None) -> PollSnapshot:
        return cls(
            id=poll.id, owner_id=poll.owner_id, question=poll.question, kind=poll.kind,
            max_choices=poll.max_choices, allow_other=poll.allow_other,
            allow_comment=poll.allow_comment, shuffle_options=poll.shuffle_options,
            allow_change=poll.allow_change,
            challenge=poll.challenge, challenge_until=poll.challenge_until,
            duplicate_check=poll.duplicate_check,
            vote_window_seconds=poll.vote_window_seconds, results=poll.results,
            results_min_votes=poll.results_min_votes, opens_at=poll.opens_at,
            closes_at=poll.closes_at, closed_at=poll.closed_at,
            allowed_origins=tuple(poll.allowed_origins or ()), locale=poll.locale,
            signing_secret=poll.signing_secret, created_at=poll.created_at,
            updated_at=poll.updated_at,
            options=tuple(OptionSnapshot(o.id, o.label, o.position, o.value)
                          for o in poll.options),
            version=version,
            baseline=None if poll.baseline is None else Baseline.of(poll.baseline),
            max_votes=poll.max_votes, closed_reason=poll.closed_reason,
            scale=None if poll.scale is None else dict(poll.scale),
        )


class PollCache:
    """One process's snapshots by poll id. One loader per poll at a time: a burst of
    requests after a change costs one database read, not one each."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[str, tuple[PollSnapshot, float]] = {}
        self._loading: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        # Polls changed while Redis was away: their tokens are set once it answers.
        self.unannounced: set[str] = set()

    def get(self, poll_id: str, version: str) -> PollSnapshot | None:
        entry = self._entries.get(poll_id)
        if entry is None:
            return None
        snapshot, loaded = entry
        if snapshot.version != version or self._clock() - loaded > SNAPSHOT_MAX_AGE_SECONDS:
            return None
        return snapshot

    def peek(self, poll_id: str) -> PollSnapshot | None:
        """The cached snapshot WITHOUT checking its token (None when absent or older than
        SNAPSHOT_MAX_AGE_SECONDS): the caller must check `version` itself, as the vote
        path does inside its first Redis call (admit.lua)."""
        entry = self._entries.get(poll_id)
        if entry is None or self._clock() - entry[1] > SNAPSHOT_MAX_AGE_SECONDS:
            return None
        return entry[0]

    def put(self, snapshot: PollSnapshot) -> None:
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[snapshot.id] = (snapshot, self._clock())

    def forget(self, poll_id: str) -> None:
        self._entries.pop(poll_id, None)

    def clear(self) -> None:
        self._entries.clear()

    def loading(self, poll_id: str) -> threading.Lock:
        with self._guard:
            lock = self._loading.get(poll_id)
            if lock is None:
                if len(self._loading) >= MAX_ENTRIES:
                    self._loading.clear()
                lock = self._loading[poll_id] = threading.Lock()
            return lock


def cache() -> PollCache:
    """The current app's cache (one app per worker process)."""
    return current_app.extensions[EXTENSION]


def peek(poll_id: str) -> PollSnapshot | None:
    """This process's cached snapshot of the poll, unverified (see PollCache.peek)."""
    return cache().peek(poll_id)


def get_poll_snapshot(*, session: Session, redis: RedisHandle, poll_id: str) -> PollSnapshot:
    """The poll as committed now (one Redis GET while cached), or raise NotFound."""
    with redis.fallback("checking a poll's version") as call:
        version = redis.client.get(keys.poll_version(poll_id))
    if call.failed:
        return _without_redis(session=session, poll_id=poll_id)
    return _resolve(session=session, redis=redis, poll_id=poll_id, version=version)


def get_poll_and_counts(*, session: Session, redis: RedisHandle, poll_id: str,
                        context: str | None = None,
                        fresh: bool = False) -> tuple[PollSnapshot, Counts, bool]:
    """The poll and its tally (or its context's) in one Redis round trip, or from this
    process's TallyCache when read moments ago and unchanged since (not when `fresh`),
    or NotFound. The flag says whether both came through Redis: then the poll's version
    and the counts determine the tallies answer (its ETag may be derived from them)."""
    read = read_poll_and_counts(session=session, redis=redis, poll_id=poll_id,
                                context=context, fresh=fresh)
    return read.poll, read.counts, read.exact


class TallyRead(NamedTuple):
    poll: PollSnapshot
    counts: Counts
    exact: bool  # both came through Redis (see get_poll_and_counts)
    # The TallyCache entry the counts are (kept now or before), or None: while it is
    # still the poll's (`TallyCache.holds`), the poll and its counts are unchanged.
    entry: recent.Entry | None


def read_poll_and_counts(*, session: Session, redis: RedisHandle, poll_id: str,
                         context: str | None = None, fresh: bool = False) -> TallyRead:
    """`get_poll_and_counts`, with the TallyCache entry the answer came from or went to."""
    tallies = recent.cache()
    if not fresh and tallies.watching:
        hub = stream.hub()
        # Trusted while subscribed, with no change message untold; looked at before the
        # entry (a message told in between has forgotten it).
        kept = tallies.get(poll_id, context) if hub.listening and not hub.unheard() else None
        if kept is not None:
            version, flat, _generation, _at = kept
            poll = _resolve(session=session, redis=redis, poll_id=poll_id, version=version)
            return TallyRead(poll, Counts.from_flat(flat), True, kept)
    begun = tallies.begin()
    with redis.fallback("reading a tally") as call:
        # One script rather than a pipeline: a single command costs redis-py less.
        version, flat = redis.scripts.poll_and_tally(poll_id=poll_id, context=context)
    if call.failed:
        poll = _without_redis(session=session, poll_id=poll_id)
        return TallyRead(poll, counts.from_database(session=session, poll_id=poll_id,
                                                    context=context), False, None)
    poll = _resolve(session=session, redis=redis, poll_id=poll_id, version=version)
    if flat:
        entry = None
        if version is not None and tallies.trust_seconds > 0:
            recent.watch(tallies)
            entry = tallies.put(poll_id, context, version, flat, begun)
        return TallyRead(poll, Counts.from_flat(flat), True, entry)
    rebuilt = counts.rebuild(engine=session.get_bind(), redis=redis, poll_id=poll_id,
                             context=context)
    return TallyRead(poll, rebuilt, True, None)


def bump_version(*, redis: RedisHandle, poll_id: str) -> None:
    """Tell every process the poll changed (call after the change is committed): a new
    token, and a message on its tally channel (live streams and tallies caches hear it)."""
    recent.changed(poll_id)
    with redis.fallback("announcing a poll change") as call:
        announce = redis.client.pipeline(transaction=False)
        announce.set(keys.poll_version(poll_id), _new_token(), ex=VERSION_TTL_SECONDS)
        announce.publish(keys.tally_changes(poll_id), "poll")
        announce.execute()
        redis.deliver()
    if call.failed and has_app_context():
        cache().unannounced.add(poll_id)
        cache().forget(poll_id)


def forget(*, redis: RedisHandle, poll_id: str) -> None:
    """Drop a deleted poll's token: every process then reads the database and finds it
    gone."""
    with redis.fallback("announcing a poll change") as call:
        announce = redis.client.pipeline(transaction=False)
        announce.delete(keys.poll_version(poll_id))
        announce.publish(keys.tally_changes(poll_id), "poll")
        announce.execute()
        redis.deliver()
    recent.changed(poll_id)
    if has_app_context():
        if call.failed:
            cache().unannounced.add(poll_id)
        cache().forget(poll_id)


def _new_token() -> str:
    return secrets.token_hex(VERSION_TOKEN_BYTES)


def _resolve(*, session: Session, redis: RedisHandle, poll_id: str,
             version: bytes | None) -> PollSnapshot:
    polls = cache()
    if polls.unannounced:
        _announce(redis=redis, polls=polls)
    if version is None:
        # Read first, so an unknown id leaves no key behind; not cached (see above).
        snapshot = _load(session=session, poll_id=poll_id, version=None)
        with redis.fallback("creating a poll's version"):
            redis.client.set(keys.poll_version(poll_id), _new_token(), nx=True,
                             ex=VERSION_TTL_SECONDS)
        return snapshot
    token = version.decode()
    found = polls.get(poll_id, token)
    if found is not None:
        return found
    with polls.loading(poll_id):
        found = polls.get(poll_id, token)
        if found is None:
            try:
                found = _load(session=session, poll_id=poll_id, version=token)
            except NotFound:
                polls.forget(poll_id)
                raise
            polls.put(found)
    return found


def _without_redis(*, session: Session, poll_id: str) -> PollSnapshot:
    # Changes made meanwhile in other processes cannot be announced: trust nothing cached.
    cache().clear()
    return _load(session=session, poll_id=poll_id, version=None)


def _announce(*, redis: RedisHandle, polls: PollCache) -> None:
    waiting, polls.unannounced = polls.unannounced, set()
    for poll_id in waiting:
        bump_version(redis=redis, poll_id=poll_id)


def _load(*, session: Session, poll_id: str, version: str | None) -> PollSnapshot:
    poll = session.scalar(
        select(Poll).where(Poll.id == poll_id).options(
            selectinload(Poll.options),
            selectinload(Poll.baseline).selectinload(PollBaseline.options),
        )
    )
    if poll is None:
        raise NotFound()
    return PollSnapshot.of(poll, version)


# -- announcing changes --------------------------------------------------------------------


def _note_changes(session: Session, _flush_context) -> None:
    """Remember which polls this flush changed (their options and baselines included)."""
    changed = None
    for instance in chain(session.new, session.dirty, session.deleted):
        if isinstance(instance, Poll):
            poll_id = instance.id
        elif isinstance(instance, Option | PollBaseline | PollBaselineOption):
            poll_id = instance.poll_id
        else:
            continue
        if changed is None:
            changed = session.info.setdefault(CHANGED_POLLS, set())
        changed.add(poll_id)


def _bump_after_commit(session: Session) -> None:
    changed = session.info.pop(CHANGED_POLLS, None)
    if not changed or not has_app_context():
        return
    redis = current_app.extensions[REDIS_EXTENSION]
    for poll_id in changed:
        if poll_id is not None:
            bump_version(redis=redis, poll_id=poll_id)


def _discard_changes(session: Session, *_args) -> None:
    session.info.pop(CHANGED_POLLS, None)


def _listen_once() -> None:
    """Flask-SQLAlchemy's one session class serves every app of the process; the
    listeners find the app (and its Redis) through the app context of the commit."""
    target = db.session
    for name, listener in (("after_flush", _note_changes),
                           ("after_commit", _bump_after_commit),
                           ("after_rollback", _discard_changes)):
        if not event.contains(target, name, listener):
            event.listen(target, name, listener)


def init_app(app: Flask) -> None:
    app.extensions[EXTENSION] = PollCache()
    _listen_once()
