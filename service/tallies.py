"""The tally read model: Redis hashes kept in step with committed ballots, rebuilt from
the database (the record) whenever they are missing, and the statistics shown with them."""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from redis import RedisError
from redis.exceptions import RedisClusterException
from sqlalchemy import Connection, Engine, Integer, cast, func, null, select, union_all
from sqlalchemy.orm import Session

from service import keys, metrics
from service.extensions import RedisHandle
from service.models import Ballot, BallotChoice, Poll

log = logging.getLogger(__name__)

WILSON_Z95 = 1.959963984540054
PERCENT_DECIMALS = 2
# Connection trouble shows as RedisError or, from a dead socket, OSError; a Redis Cluster
# whose nodes all went away as RedisClusterException.
REDIS_ERRORS = (RedisError, OSError, RedisClusterException)
# A rebuild holds its lock at most this long; one that overruns is abandoned.
REBUILD_LOCK_MS = 30_000
# Ballots this recent, when a rebuild's snapshot holds them, are remembered so that their
# late counts are not added twice. Longer than any request may take (gunicorn timeout).
RECENT_BALLOT_SECONDS = 120
INCLUDED_MEMORY_SECONDS = 300
PENDING_SECONDS = 600
IN_CLAUSE_BATCH = 500


class RedisIncident:
    """Log a Redis outage once when it starts and once when it ends, not per request, and
    rebuild the tallies that missed counts during it once Redis answers again."""

    def __init__(self) -> None:
        self.active = False
        self.stale: set[tuple[str, str | None]] = set()

    def failed(self, error: Exception, doing: str, *, poll_id: str | None = None,
               context: str | None = None) -> None:
        metrics.REDIS_FALLBACKS.labels(doing).inc()
        if poll_id is not None:
            self.stale.add((poll_id, None))
            if context is not None:
                self.stale.add((poll_id, context))
        if not self.active:
            self.active = True
            log.warning("Redis unavailable while %s (%s); using the database", doing,
                        type(error).__name__)

    def missed(self, *, poll_id: str, context: str | None) -> None:
        """A committed ballot's count failed for another reason than an outage: its
        tallies are rebuilt at the next successful Redis call, as after an outage."""
        self.stale.add((poll_id, None))
        if context is not None:
            self.stale.add((poll_id, context))

    def succeeded(self, redis: RedisHandle) -> None:
        if self.active:
            self.active = False
            log.warning("Redis is answering again")
        if self.stale:
            stale, self.stale = self.stale, set()
            try:
                # Dropped tallies are rebuilt, exactly, from the database on their next read.
                redis.client.delete(*(keys.tally(poll_id, context) for poll_id, context in stale))
            except REDIS_ERRORS:
                self.stale |= stale


redis_incident = RedisIncident()


@dataclass
class Counts:
    total: int = 0
    other: int = 0
    options: dict[int, int] = field(default_factory=dict)
    updated: datetime | None = None

    def as_hash(self) -> dict[str, int]:
        fields = {"total": self.total, "other": self.other}
        fields.update({f"o:{option_id}": n for option_id, n in self.options.items()})
        if self.updated is not None:
            fields["updated"] = _ms(self.updated)
        return fields

    @classmethod
    def from_flat(cls, flat: list[bytes]) -> Counts:
        """From HGETALL's answer inside a Lua script: field, value, field, value, ..."""
        return cls.from_hash(dict(zip(flat[::2], flat[1::2], strict=True)))

    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes]) -> Counts:
        counts = cls()
        for key, value in raw.items():
            name = key.decode()
            if name == "total":
                counts.total = int(value)
            elif name == "other":
                counts.other = int(value)
            elif name == "updated":
                counts.updated = datetime.fromtimestamp(int(value) / 1000, UTC)
            elif name.startswith("o:"):
                counts.options[int(name[2:])] = int(value)
        return counts


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def from_database(*, session: Session | Connection, poll_id: str,
                  context: str | None = None) -> Counts:
    """Count the poll's ballots in the database (a session, or a snapshot connection).
    One statement, so one view of the table: a vote committed meanwhile can never leave
    an option with more votes than the total (two statements could, on PostgreSQL)."""
    ballot_filter = _ballot_filter(poll_id, context)
    totals = select(
        cast(null(), Integer), func.count(Ballot.id), func.count(Ballot.other),
        func.max(Ballot.created_at),
    ).where(*ballot_filter)
    per_option = (
        select(BallotChoice.option_id, func.count(), cast(null(), Integer),
               cast(null(), Ballot.created_at.type))
        .join(Ballot, Ballot.id == BallotChoice.ballot_id)
        .where(*ballot_filter)
        .group_by(BallotChoice.option_id)
    )
    rows = session.execute(union_all(totals, per_option)).all()
    total = other = 0
    updated = None
    options = {}
    for option_id, votes, others, latest in rows:
        if option_id is None:
            total, other, updated = votes, others, latest
        else:
            options[option_id] = votes
    if isinstance(updated, str):  # aggregates skip the column's type on SQLite
        updated = datetime.fromisoformat(updated)
    if isinstance(updated, datetime) and updated.tzinfo is None:
        updated = updated.replace(tzinfo=UTC)
    return Counts(total=total, other=other, options=options, updated=updated)


def _ballot_filter(poll_id: str, context: str | None) -> list:
    conditions = [Ballot.poll_id == poll_id]
    if context is not None:
        conditions.append(Ballot.context == context)
    return conditions


@contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """A connection whose queries all see one consistent state of the database."""
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            # pysqlite starts no transaction for SELECTs; in WAL mode an explicit one
            # pins the snapshot at its first read.
            connection.exec_driver_sql("BEGIN")
        else:
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
            connection.begin()
        try:
            yield connection
        finally:
            connection.rollback()


def initialize(*, redis: RedisHandle, poll: Poll) -> None:
    """Start a new poll's tally at zero."""
    counts = Counts(options={option.id: 0 for option in poll.options}, updated=poll.created_at)
    try:
        redis.client.hset(keys.tally(poll.id), mapping=counts.as_hash())
    except REDIS_ERRORS as error:
        redis_incident.failed(error, "starting a tally")


def read(*, session: Session, redis: RedisHandle, poll: Poll, context: str | None = None) -> Counts:
    """Current counts from Redis; rebuilt from the database when missing, read from it when
    Redis is down."""
    try:
        raw = redis.client.hgetall(keys.tally(poll.id, context))
    except REDIS_ERRORS as error:
        redis_incident.failed(error, "reading a tally")
        return from_database(session=session, poll_id=poll.id, context=context)
    redis_incident.succeeded(redis)
    if raw:
        return Counts.from_hash(raw)
    return rebuild(engine=session.get_bind(), redis=redis, poll_id=poll.id, context=context)


def rebuild(*, engine: Engine, redis: RedisHandle, poll_id: str,
            context: str | None = None) -> Counts:
    """Store the tally read from a database snapshot, exactly: ballots committed while it
    is built are counted once, whether or not the snapshot saw them (see lua/*.lua)."""
    _tally, pending, lock, _included = keys.tally_scope(poll_id, context)
    token = secrets.token_hex(8)
    try:
        locked = redis.client.set(lock, token, nx=True, px=REBUILD_LOCK_MS)
        if locked:
            # Entries pushed before the lock belong to ballots the snapshot will hold.
            redis.client.delete(pending)
    except REDIS_ERRORS as error:
        redis_incident.failed(error, "rebuilding a tally")
        locked = False
    with snapshot(engine) as connection:
        counts = from_database(session=connection, poll_id=poll_id, context=context)
        if not locked:  # another process is rebuilding it, or Redis is away
            return counts
        try:
            waiting = [entry.split(b"|", 1)[0].decode()
                       for entry in redis.client.lrange(pending, 0, -1)]
        except REDIS_ERRORS as error:
            redis_incident.failed(error, "rebuilding a tally")
            return counts
        seen = _ballots_in_snapshot(connection, poll_id=poll_id, context=context,
                                    candidates=waiting)
    try:
        redis.scripts.rebuild(
            keys=keys.tally_scope(poll_id, context),
            args=[token, INCLUDED_MEMORY_SECONDS, len(counts.as_hash()),
                  *_flat(counts.as_hash()), *seen],
        )
    except REDIS_ERRORS as error:
        redis_incident.failed(error, "rebuilding a tally")
    return counts


def _ballots_in_snapshot(connection: Connection, *, poll_id: str, context: str | None,
                         candidates: list[str]) -> list[str]:
    """Ids the snapshot holds among recent ballots and the given candidates: the ones a
    late count must not add again."""
    since = datetime.now(UTC) - timedelta(seconds=RECENT_BALLOT_SECONDS)
    found = set(connection.scalars(
        select(Ballot.id).where(*_ballot_filter(poll_id, context), Ballot.created_at >= since)
    ))
    for start in range(0, len(candidates), IN_CLAUSE_BATCH):
        batch = candidates[start : start + IN_CLAUSE_BATCH]
        found.update(connection.scalars(select(Ballot.id).where(Ballot.id.in_(batch))))
    return sorted(found)


def count_call(*, poll_id: str, ballot_id: str, context: str | None, option_ids: list[int],
               has_other: bool, at: datetime) -> tuple[list[str], list]:
    """The keys and arguments with which lua/count.lua counts a committed ballot in the
    poll's tally and its context's; the caller may append the script's further steps."""
    tally_keys = keys.tally_scope(poll_id)
    if context is not None:
        tally_keys += keys.tally_scope(poll_id, context)
    args = [ballot_id, _ms(at), "1" if has_other else "0", PENDING_SECONDS,
            len(tally_keys) // 4, len(option_ids), *option_ids]
    return tally_keys, args


def count_ballot(*, redis: RedisHandle, poll_id: str, ballot_id: str, context: str | None,
                 option_ids: list[int], has_other: bool, at: datetime) -> None:
    """Add a committed ballot to the poll's tally and its context's tally."""
    tally_keys, args = count_call(poll_id=poll_id, ballot_id=ballot_id, context=context,
                                  option_ids=option_ids, has_other=has_other, at=at)
    try:
        # Live streams (service/stream.py) re-read the tally when told; the message is a hint.
        redis.scripts.count(keys=tally_keys, args=[*args, "publish", keys.tally_changes(poll_id)])
    except REDIS_ERRORS as error:
        # The ballot is committed; its tallies are rebuilt once Redis answers again.
        redis_incident.failed(error, "counting a vote", poll_id=poll_id, context=context)


def wilson_interval(votes: int, total: int) -> tuple[float, float] | None:
    """The Wilson score interval at 95 %, in percent; None without ballots."""
    if total <= 0:
        return None
    z2 = WILSON_Z95**2
    share = votes / total
    denominator = 1 + z2 / total
    centre = (share + z2 / (2 * total)) / denominator
    half = WILSON_Z95 * math.sqrt(share * (1 - share) / total + z2 / (4 * total**2)) / denominator
    low, high = max(0.0, centre - half), min(1.0, centre + half)
    return round(low * 100, PERCENT_DECIMALS), round(high * 100, PERCENT_DECIMALS)


def tallies_view(poll: Poll, counts: Counts, *, now: datetime, suppressed: bool) -> dict:
    """The tallies answer as plain values."""
    total = counts.total
    options = []
    for option in poll.options:
        votes = counts.options.get(option.id, 0)
        if suppressed:
            options.append({"id": option.id, "label": option.label, "votes": None,
                            "percent": None, "ci95": None})
            continue
        interval = wilson_interval(votes, total)
        options.append({
            "id": option.id,
            "label": option.label,
            "votes": votes,
            "percent": round(votes / total * 100, PERCENT_DECIMALS) if total else 0.0,
            "ci95": list(interval) if interval else None,
        })
    updated = counts.updated or poll.created_at
    return {
        "poll_id": poll.id,
        "status": poll.status_at(now),
        "total_votes": total,
        "options": options,
        "other_votes": None if suppressed else counts.other,
        "suppressed": suppressed,
        "updated_at": updated.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def results_visible(poll: Poll, *, now: datetime, is_owner: bool, has_voted) -> bool:
    """Whether the `results` rule lets this reader see the tallies.

    `has_voted` is a callable, asked only when the rule depends on it.
    """
    if is_owner or poll.results == "always":
        return True
    if poll.results == "after_close":
        return poll.status_at(now) == "closed"
    if poll.results == "after_vote":
        return poll.status_at(now) == "closed" or has_voted()
    return False


def is_suppressed(poll: Poll, counts: Counts, *, is_owner: bool) -> bool:
    """Below `results_min_votes`, the public sees the total but no per-option numbers."""
    return not is_owner and counts.total < poll.results_min_votes


def _flat(mapping: dict) -> list:
    return [item for pair in mapping.items() for item in pair]
