"""The tally read model: Redis hashes kept in step with committed ballots, rebuilt from
the database (the record) whenever they are missing."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, Integer, cast, func, null, or_, select, union_all
from sqlalchemy.orm import Session

from service.infra import keys, kinds
from service.infra.clock import epoch_ms
from service.infra.models import Ballot, BallotChoice, Poll
from service.infra.redis import RedisHandle
from service.tallies import recent

# A rebuild holds its lock at most this long; one that overruns is abandoned.
REBUILD_LOCK_MS = 30_000
# Ballots this recent, when a rebuild's snapshot holds them, are remembered so that their
# late counts are not added twice. Longer than any request may take (gunicorn timeout).
RECENT_BALLOT_SECONDS = 120
INCLUDED_MEMORY_SECONDS = 300
IN_CLAUSE_BATCH = 500


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
            fields["updated"] = epoch_ms(self.updated)
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


def change_token(ballot_id: str, changed_at: datetime) -> str:
    """What names one change of a ballot in a tally's included set: a rebuild whose
    snapshot held the change notes it, so the change's late move is not applied twice
    (lua/change.lua)."""
    moment = changed_at.astimezone(UTC)
    return f"{ballot_id}@{int(moment.timestamp()) * 1_000_000 + moment.microsecond}"


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
        .join(Poll, Poll.id == Ballot.poll_id)
        # A ranked ballot counts for its first preference (the kind's `counted`).
        .where(*ballot_filter, or_(BallotChoice.rank == 1, Poll.kind.not_in(kinds.ORDERED)))
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
    with redis.fallback("starting a tally"):
        redis.client.hset(keys.tally(poll.id), mapping=counts.as_hash())


def read(*, session: Session, redis: RedisHandle, poll: Poll, context: str | None = None) -> Counts:
    """Current counts from Redis; rebuilt from the database when missing, read from it when
    Redis is down."""
    with redis.fallback("reading a tally") as call:
        raw = redis.client.hgetall(keys.tally(poll.id, context))
    if call.failed:
        return from_database(session=session, poll_id=poll.id, context=context)
    if raw:
        return Counts.from_hash(raw)
    return rebuild(engine=session.get_bind(), redis=redis, poll_id=poll.id, context=context)


def drop(*, redis: RedisHandle, poll_id: str, scopes: list[str | None], reason: str) -> None:
    """Delete tallies whose ballots changed other than by a count (a withdrawal, a
    purge), so the next read rebuilds them from the database exactly (counts only ever
    add). Their rebuild locks go too: a rebuild whose snapshot still held the old
    ballots then finds its lock lost and stores nothing (lua/rebuild.lua)."""
    doomed = []
    for scope in scopes:
        tally, _pending, lock, _included = keys.tally_scope(poll_id, scope)
        doomed += [tally, lock]
    missed = tuple((poll_id, scope) for scope in scopes)
    recent.changed(poll_id)
    # Should Redis fail, they are dropped once it answers again (outage.Outage.succeeded).
    with redis.fallback(f"dropping the tallies of a {reason} vote", missed=missed):
        redis.client.delete(*doomed)
        # Live streams re-read the (rebuilt) tally when told (service/tallies/stream.py).
        redis.client.publish(keys.tally_changes(poll_id), reason)
        redis.deliver()


def announce(*, redis: RedisHandle, poll_id: str, reason: str) -> None:
    """Tell live streams that the poll's tallies changed other than by a count (its
    baseline); they read them again (service/tallies/stream.py)."""
    recent.changed(poll_id)
    with redis.fallback(f"announcing a {reason} change"):
        redis.client.publish(keys.tally_changes(poll_id), reason)
        redis.deliver()


def rebuild(*, engine: Engine, redis: RedisHandle, poll_id: str,
            context: str | None = None) -> Counts:
    """Store the tally read from a database snapshot, exactly: ballots committed while it
    is built are counted once, whether or not the snapshot saw them (rebuild.lua and
    count.lua)."""
    _tally, pending, lock, _included = keys.tally_scope(poll_id, context)
    token = secrets.token_hex(8)
    locked = False
    with redis.fallback("rebuilding a tally"):
        locked = bool(redis.client.set(lock, token, nx=True, px=REBUILD_LOCK_MS))
        if locked:
            # Entries pushed before the lock belong to ballots the snapshot will hold.
            redis.client.delete(pending)
    with snapshot(engine) as connection:
        counts = from_database(session=connection, poll_id=poll_id, context=context)
        if not locked:  # another process is rebuilding it, or Redis is away
            return counts
        with redis.fallback("rebuilding a tally") as call:
            waiting = [entry.split(b"|", 1)[0].decode()
                       for entry in redis.client.lrange(pending, 0, -1)]
        if call.failed:
            return counts
        seen = _ballots_in_snapshot(connection, poll_id=poll_id, context=context,
                                    candidates=waiting)
    with redis.fallback("rebuilding a tally"):
        redis.scripts.rebuild(poll_id=poll_id, context=context, token=token,
                              included_seconds=INCLUDED_MEMORY_SECONDS,
                              counts=counts.as_hash(), seen=seen)
    return counts


def _ballots_in_snapshot(connection: Connection, *, poll_id: str, context: str | None,
                         candidates: list[str]) -> list[str]:
    """Ids the snapshot holds among recent ballots and the given candidates: the ones a
    late count must not add again; and the recent changes it holds (their tokens), which
    a late move must not apply again."""
    since = datetime.now(UTC) - timedelta(seconds=RECENT_BALLOT_SECONDS)
    found = set(connection.scalars(
        select(Ballot.id).where(*_ballot_filter(poll_id, context), Ballot.created_at >= since)
    ))
    found.update(change_token(ballot_id, changed_at) for ballot_id, changed_at in
                 connection.execute(select(Ballot.id, Ballot.changed_at).where(
                     *_ballot_filter(poll_id, context), Ballot.changed_at >= since)))
    for start in range(0, len(candidates), IN_CLAUSE_BATCH):
        batch = candidates[start : start + IN_CLAUSE_BATCH]
        found.update(connection.scalars(select(Ballot.id).where(Ballot.id.in_(batch))))
    return sorted(found)
