"""Integrity counts: accepted votes and refused attempts, by reason and UTC hour.

Counted in one Redis hash per poll and hour (keys.integrity), kept RETENTION_DAYS, once
an attempt's answer is decided. A vote counts its outcome inside the Redis call it makes
anyway (count.lua's `integrity` step once accepted; admit.lua when it refuses a duplicate
or a rate-limited attempt); other outcomes cost one pipelined round trip (HINCRBY +
EXPIRE). A Redis failure loses the count, never the vote.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from service.infra import keys
from service.infra.clock import iso
from service.infra.errors import DuplicateVote, ServiceError, Unavailable
from service.infra.redis import RedisHandle

RETENTION_DAYS = 30
RETENTION_SECONDS = RETENTION_DAYS * 24 * 3600
HOUR_FORMAT = "%Y%m%d%H"
ACCEPTED, WITHDRAWN, CHANGED = "accepted", "withdrawn", "changed"
# A vote whose process died between its claim and its commit, released (cast.py).
RELEASED_DEAD_CLAIMS = "released_dead_claims"
DUPLICATE_KINDS = ("cookie", "ip", "user")
# Refusals counted, by their problem code; duplicate votes also by the identity seen.
REFUSALS = ("duplicate_vote", "rate_limited", "origin_not_allowed", "poll_closed",
            "vote_pending", "challenge_failed")
# Refusals counted under another name than their problem code.
# A full poll is a closed one (it closed itself at max_votes).
COUNTED_AS = {"challenge_required": "challenge_failed", "poll_full": "poll_closed"}


def hour_of(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(HOUR_FORMAT)


def record(*, redis: RedisHandle, poll_id: str, outcome: str, at: datetime) -> None:
    """Count one attempt's outcome in its hour (one pipelined round trip)."""
    key = keys.integrity(poll_id, hour_of(at))
    with redis.fallback("counting a vote attempt"):
        pipeline = redis.client.pipeline(transaction=False)
        pipeline.hincrby(key, outcome, 1)
        pipeline.expire(key, RETENTION_SECONDS)
        pipeline.execute()


def outcome_of(error: ServiceError) -> str | None:
    """The counted outcome of a refused vote, None for refusals not counted (422, 404)."""
    if isinstance(error, DuplicateVote):
        return f"duplicate_vote:{error.identity}" if error.identity else "duplicate_vote"
    code = COUNTED_AS.get(error.code, error.code)
    return code if code in REFUSALS else None


def _counts(raw: dict[bytes, bytes]) -> dict:
    fields = {key.decode(): int(value) for key, value in raw.items()}
    duplicates = {kind: fields.get(f"duplicate_vote:{kind}", 0) for kind in DUPLICATE_KINDS}
    return {
        ACCEPTED: fields.get(ACCEPTED, 0),
        WITHDRAWN: fields.get(WITHDRAWN, 0),
        CHANGED: fields.get(CHANGED, 0),
        "rejected": {
            "duplicate_vote": {"total": sum(duplicates.values()), **duplicates},
            **{reason: fields.get(reason, 0) for reason in REFUSALS[1:]},
        },
        RELEASED_DEAD_CLAIMS: fields.get(RELEASED_DEAD_CLAIMS, 0),
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
    with redis.fallback("reading integrity counts") as call:
        # One poll's keys share a hash tag: one pipeline, one Redis Cluster slot.
        pipeline = redis.client.pipeline(transaction=False)
        for hour in hours:
            pipeline.hgetall(keys.integrity(poll_id, hour_of(hour)))
        found = pipeline.execute()
    if call.failed:
        raise Unavailable("The integrity counts live in Redis, which cannot be reached "
                          "right now. Please retry shortly.") from None
    totals = _counts({})
    buckets = []
    for hour, raw in zip(hours, found, strict=True):
        if not raw:
            continue
        counts = _counts(raw)
        _add(totals, counts)
        buckets.append({"hour": iso(hour), **counts})
    return {
        "poll_id": poll_id,
        "from": iso(hours[0]),
        "retention_days": RETENTION_DAYS,
        "totals": totals,
        "hours": buckets,
    }
