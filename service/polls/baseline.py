"""A poll's baseline: the votes it had before it moved to Pollbox, set and removed by its
owner, checked against the poll's options and kind.

The baseline is part of the record (`models.PollBaseline`), never ballots and never in
the Redis tallies; the read model adds it when tallies are shown (tallies/baseline.py).
A change commits, which announces a new version of the poll to every process (the poll
cache, hence the tallies' ETag), then wakes the poll's live streams.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from service.infra import kinds
from service.infra.errors import NotFound, ValidationFailed
from service.infra.models import Poll, PollBaseline, PollBaselineOption
from service.infra.redis import RedisHandle
from service.tallies import counts as tallies

CHANGE_REASON = "baseline"


class NoBaseline(NotFound):
    detail = "This poll has no baseline."


def get_baseline(*, poll: Poll) -> PollBaseline:
    """The poll's baseline, or raise NotFound."""
    if poll.baseline is None:
        raise NoBaseline()
    return poll.baseline


def set_baseline(*, session: Session, redis: RedisHandle, poll: Poll, data: dict,
                 now: datetime) -> PollBaseline:
    """Record the poll's baseline (replacing any) from validated fields, after checking
    it against the poll; raise ValidationFailed naming each field at fault."""
    votes = _option_votes(poll, data["options"])
    errors = baseline_errors(poll, total=data["total_votes"], votes=votes,
                             as_of=data["as_of"], now=now)
    if errors:
        raise ValidationFailed(errors)
    record = poll.baseline or PollBaseline(poll_id=poll.id)
    record.total_votes = data["total_votes"]
    record.source = data["source"]
    record.as_of = data["as_of"]
    record.set_at = now
    kept = {row.option_id: row for row in record.options}
    rows = []
    for option_id, n in sorted(votes.items()):
        row = kept.get(option_id) or PollBaselineOption(option_id=option_id)
        row.votes = n
        rows.append(row)
    record.options = rows
    poll.baseline = record
    session.commit()
    tallies.announce(redis=redis, poll_id=poll.id, reason=CHANGE_REASON)
    return record


def remove_baseline(*, session: Session, redis: RedisHandle, poll: Poll) -> None:
    """Remove the poll's baseline (nothing to do when it has none)."""
    if poll.baseline is None:
        return
    poll.baseline = None
    session.commit()
    tallies.announce(redis=redis, poll_id=poll.id, reason=CHANGE_REASON)


def _option_votes(poll: Poll, given: dict[str, int]) -> dict[int, int]:
    """The given counts by option id, without zeros; unknown ids raise ValidationFailed
    naming them."""
    known = {option.id for option in poll.options}
    unknown = sorted(int(key) for key in given if int(key) not in known)
    if unknown:
        raise ValidationFailed({"options": [f"Unknown option {i}." for i in unknown]})
    return {int(key): n for key, n in given.items() if n}


def baseline_errors(poll: Poll, *, total: int, votes: dict[int, int], as_of: datetime,
                    now: datetime) -> dict[str, list[str]]:
    """What a baseline breaks of the rules between its fields and the poll."""
    errors: dict[str, list[str]] = {}
    labels = {option.id: option.label for option in poll.options}
    over = [f"Option {option_id} ({labels[option_id]!r}) has {n} votes, more than "
            f"total_votes ({total})." for option_id, n in sorted(votes.items()) if n > total]
    if over:
        errors["options"] = over
    elif kinds.of(poll.kind).one_choice and sum(votes.values()) != total:
        errors["options"] = [
            f"The options add up to {sum(votes.values())}, not to total_votes ({total}): "
            f"each ballot of a {poll.kind} poll is for exactly one option."]
    if as_of > now:
        errors["as_of"] = ["Must not be in the future."]
    return errors


def baseline_view(record: PollBaseline) -> dict:
    """The baseline as the API answers it."""
    return {
        "poll_id": record.poll_id,
        "total_votes": record.total_votes,
        "options": {str(row.option_id): row.votes for row in record.options},
        "source": record.source,
        "as_of": record.as_of,
        "set_at": record.set_at,
    }
