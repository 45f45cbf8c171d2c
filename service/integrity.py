"""Integrity counts: accepted votes and refused attempts, by reason and UTC hour.

Counted in one Redis hash per poll and hour (keys.integrity), kept RETENTION_DAYS, once
an attempt's answer is decided. An API vote counts its outcome inside the Redis call it
makes anyway (lua/count.lua's 'integrity' step once accepted; lua/admit.lua when it
refuses a duplicate or a rate-limited attempt); other outcomes cost one pipelined round
trip (HINCRBY + EXPIRE). A Redis failure loses the count, never the vote.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from service import keys, tallies
from service.errors import DuplicateVote, ServiceError, Unavailable
from service.extensions import RedisHandle

RETENTION_DAYS = 30
RETENTION_SECONDS = RETENTION_DAYS * 24 * 3600
HOUR_FORMAT = "%Y%m%d%H"
ACCEPTED, WITHDRAWN = "accepted", "withdrawn"
DUPLICATE_KINDS = ("cookie", "ip", "user")
# Refusals counted, by their problem code; duplicate votes also by the identity seen.
REFUSALS = ("duplicate_vote", "rate_limited", "origin_not_allowed", "poll_closed")


def hour_of(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(HOUR_FORMAT)


def record(*, redis: RedisHandle, poll_id: str, outcome: str, at: datetime) -> None:
    """Count one attempt's outcome in its hour (one pipelined round trip)."""
    key = keys.integrity(poll_id, hour_of(at))
    try:
        pipeline = redis.client.pipeline(transaction=False)
        pipeline.hincrby(key, outcome, 1)
        pipeline.expire(key, RETENTION_SECONDS)
        pipeline.execute()
    except tallies.REDIS_ERRORS as error:
        tallies.redis_incident.failed(error, "counting a vote attempt")


def count_step(*, poll_id: str, outcome: str, at: datetime) -> tuple[list[str], list]:
    """The keys and arguments of lua/count.lua's 'integrity' step: count the outcome."""
    return [keys.integrity(poll_id, hour_of(at))], ["integrity", outcome, RETENTION_SECONDS]


def outcome_of(error: ServiceError) -> str | None:
    """The counted outcome of a refused vote, None for refusals not counted (422, 404)."""
    if isinstance(error, DuplicateVote):
        return f"duplicate_vote:{error.identity}" if error.identity else "duplicate_vote"
    return error.code if error.code in REFUSALS else None


def record_refusal(*, redis: RedisHandle, poll_id: str, error: ServiceError,
                   at: datetime) -> None:
    outcome = outcome_of(error)
    if outcome is not None:
        record(redis=redis, poll_id=poll_id, outcome=outcome, at=at)


def _counts(raw: dict[bytes, bytes]) -> dict:
    fields = {key.decode(): int(value) for key, value in raw.items()}
    duplicates = {kind: fields.get(f"duplicate_vote:{kind}", 0) for kind in DUPLICATE_KINDS}
    return {
        ACCEPTED: fields.get(ACCEPTED, 0),
        WITHDRAWN: fields.get(WITHDRAWN, 0),
        "rejected": {
            "duplicate_vote": {"total": sum(duplicates.values()), **duplicates},
            **{reason: fields.get(reason, 0) for reason in REFUSALS[1:]},
        },
    }


def _add(total: dict, counts: dict) -> None:
    for name, value in counts.items():
        if isinstance(value, dict):
            _add(total.setdefault(name, {}), value)
        else:
            total[name] = total.get(name, 0) + value


def report(*, redis: RedisHandle, poll_id: str, now: datetime) -> dict:
    """The retained hours that saw attempts, oldest first, and their totals."""
    last = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    hours = [last - timedelta(hours=n) for n in range(RETENTION_DAYS * 24 - 1, -1, -1)]
    try:
        # One poll's keys share a hash tag: one pipeline, one Redis Cluster slot.
        pipeline = redis.client.pipeline(transaction=False)
        for hour in hours:
            pipeline.hgetall(keys.integrity(poll_id, hour_of(hour)))
        found = pipeline.execute()
    except tallies.REDIS_ERRORS as error:
        tallies.redis_incident.failed(error, "reading integrity counts")
        raise Unavailable("The integrity counts live in Redis, which cannot be reached "
                          "right now. Please retry shortly.") from None
    totals = _counts({})
    buckets = []
    for hour, raw in zip(hours, found, strict=True):
        if not raw:
            continue
        counts = _counts(raw)
        _add(totals, counts)
        buckets.append({"hour": hour.strftime("%Y-%m-%dT%H:%M:%SZ"), **counts})
    return {
        "poll_id": poll_id,
        "from": hours[0].strftime("%Y-%m-%dT%H:%M:%SZ"),
        "retention_days": RETENTION_DAYS,
        "totals": totals,
        "hours": buckets,
    }
