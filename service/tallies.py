"""The tally read model: Redis hashes kept in step with committed ballots, rebuilt from
the database (the record) whenever they are missing, and the statistics shown with them."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

from redis import RedisError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service import keys
from service.extensions import RedisHandle
from service.models import Ballot, BallotChoice, Poll

log = logging.getLogger(__name__)

WILSON_Z95 = 1.959963984540054
PERCENT_DECIMALS = 2
# Connection trouble shows as RedisError or, from a dead socket, OSError.
REDIS_ERRORS = (RedisError, OSError)


class RedisIncident:
    """Log a Redis outage once when it starts and once when it ends, not per request."""

    def __init__(self) -> None:
        self.active = False

    def failed(self, error: Exception, doing: str) -> None:
        if not self.active:
            self.active = True
            log.warning("Redis unavailable while %s (%s); using the database", doing,
                        type(error).__name__)

    def succeeded(self) -> None:
        if self.active:
            self.active = False
            log.warning("Redis is answering again")


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


def from_database(*, session: Session, poll_id: str, context: str | None = None) -> Counts:
    """Count the poll's ballots in the database."""
    ballot_filter = [Ballot.poll_id == poll_id]
    if context is not None:
        ballot_filter.append(Ballot.context == context)
    total, other, updated = session.execute(
        select(func.count(Ballot.id), func.count(Ballot.other), func.max(Ballot.created_at))
        .where(*ballot_filter)
    ).one()
    rows = session.execute(
        select(BallotChoice.option_id, func.count())
        .join(Ballot, Ballot.id == BallotChoice.ballot_id)
        .where(*ballot_filter)
        .group_by(BallotChoice.option_id)
    )
    if isinstance(updated, datetime) and updated.tzinfo is None:
        updated = updated.replace(tzinfo=UTC)  # aggregates skip the column's type on SQLite
    elif isinstance(updated, str):
        updated = datetime.fromisoformat(updated).replace(tzinfo=UTC)
    return Counts(total=total, other=other, options=dict(rows.all()), updated=updated)


def initialize(*, redis: RedisHandle, poll: Poll) -> None:
    """Start a new poll's tally at zero."""
    counts = Counts(options={option.id: 0 for option in poll.options}, updated=poll.created_at)
    try:
        redis.scripts.rebuild(keys=[keys.tally(poll.id)], args=_flat(counts.as_hash()))
    except REDIS_ERRORS as error:
        redis_incident.failed(error, "starting a tally")


def read(*, session: Session, redis: RedisHandle, poll: Poll, context: str | None = None) -> Counts:
    """Current counts from Redis; from the database when Redis lacks them or is down."""
    key = keys.tally(poll.id, context)
    try:
        raw = redis.client.hgetall(key)
    except REDIS_ERRORS as error:
        redis_incident.failed(error, "reading a tally")
        return from_database(session=session, poll_id=poll.id, context=context)
    redis_incident.succeeded()
    if raw:
        return Counts.from_hash(raw)
    counts = from_database(session=session, poll_id=poll.id, context=context)
    try:
        redis.scripts.rebuild(keys=[key], args=_flat(counts.as_hash()))
    except REDIS_ERRORS as error:
        redis_incident.failed(error, "rebuilding a tally")
    return counts


def count_ballot(*, redis: RedisHandle, poll_id: str, context: str | None, option_ids: list[int],
                 has_other: bool, at: datetime, delta: int = 1) -> None:
    """Add a committed ballot to the tallies (or take a withdrawn one away)."""
    tally_keys = [keys.tally(poll_id)]
    if context is not None:
        tally_keys.append(keys.tally(poll_id, context))
    args = [delta, _ms(at), "1" if has_other else "0", *option_ids]
    try:
        redis.scripts.count(keys=tally_keys, args=args)
    except REDIS_ERRORS as error:
        # The ballot is committed; the tally is rebuilt from the database later.
        redis_incident.failed(error, "counting a vote")
        forget(redis=redis, poll_id=poll_id, context=context)


def forget(*, redis: RedisHandle, poll_id: str, context: str | None = None) -> None:
    """Drop cached tallies so the next read rebuilds them from the database."""
    tally_keys = [keys.tally(poll_id)]
    if context is not None:
        tally_keys.append(keys.tally(poll_id, context))
    try:
        redis.client.delete(*tally_keys)
    except REDIS_ERRORS as error:
        redis_incident.failed(error, "dropping a tally")


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
