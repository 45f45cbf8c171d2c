"""Changing a vote with its receipt, on a poll with `allow_change`: the ballot keeps its
id and receipt, its choices (and other answer, comment) become the new ones, and its
tallies move exactly.

The database is the record: the change is one transaction that first locks the ballot's
row (an UPDATE: a row lock on PostgreSQL, the write lock on SQLite), so changes of one
ballot run one after another and each reads the choices the previous one committed. The
tallies then move by what the database had before and has now, in one Lua call
(lua/change.lua): moves add up, so they may arrive in any order and still end exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, exists, insert, or_, select, update
from sqlalchemy.orm import Session

from service.infra import kinds
from service.infra.clock import epoch_ms, iso
from service.infra.errors import ChangeNotAllowed, PollClosed
from service.infra.models import Ballot as BallotRow
from service.infra.models import BallotChoice, Poll
from service.infra.redis import RedisHandle
from service.infra.redis.scripts import ChangeCall
from service.polls import cache as poll_cache
from service.tallies import counts as tallies
from service.tallies import recent
from service.tallies.results import is_suppressed, results_visible, tallies_view
from service.voting import integrity
from service.voting.ballot import Ballot, validate
from service.voting.receipts import UnknownReceipt, choices_of, get_ballot

CLOSED_DETAIL = "This poll is closed: its votes can no longer be changed."


@dataclass(frozen=True)
class Changed:
    """A committed change: the ballot as it is now, and what it was before."""

    poll_id: str
    ballot_id: str
    context: str | None
    changed_at: datetime
    old_option_ids: tuple[int, ...]
    new_option_ids: tuple[int, ...]
    had_other: bool
    has_other: bool


def change_by_receipt(*, session: Session, redis: RedisHandle, receipt: str, ballot: Ballot,
                      now: datetime) -> dict:
    """Change the receipt's vote (see `change`); the answer's vote shows the receipt."""
    answer = change(session=session, redis=redis, row=get_ballot(session=session,
                                                                 receipt=receipt),
                    ballot=ballot, now=now)
    answer["vote"]["receipt"] = receipt
    return answer


def change(*, session: Session, redis: RedisHandle, row: BallotRow, ballot: Ballot,
           now: datetime) -> dict:
    """Change the vote `row` to `ballot` (choices, other, comment), checked as a new vote
    is; answer the vote as it is now and the tallies the voter may see."""
    poll = poll_cache.get_poll_snapshot(session=session, redis=redis, poll_id=row.poll_id)
    if not poll.allow_change:
        raise ChangeNotAllowed()
    if poll.status_at(now) != "open":
        raise PollClosed(CLOSED_DETAIL)
    validate(poll, ballot, check_user=False)
    changed = _record(session=session, ballot_id=row.id, poll_id=poll.id, ballot=ballot,
                      kind=kinds.of(poll.kind), now=now)
    _move(redis=redis, changed=changed)
    shown = results_visible(poll, now=now, is_owner=False, has_voted=lambda: True)
    answer = {"vote": _vote_of(session, row.id), "tallies": None}
    # The session gives its connection back: a tally rebuilt from the database takes one
    # of its own, and no request may hold two (with the pool full of such requests, none
    # would get its second).
    session.commit()
    if shown:
        counts = tallies.read(session=session, redis=redis, poll=poll)
        answer["tallies"] = tallies_view(poll, counts, now=now,
                                         suppressed=is_suppressed(poll, counts, is_owner=False))
    return answer


def _record(*, session: Session, ballot_id: str, poll_id: str, ballot: Ballot,
            kind: kinds.Kind, now: datetime) -> Changed:
    """One transaction: lock the ballot (while its poll is open and allows changes), read
    what it holds, write what it holds now; committed."""
    session.commit()  # what the request read is done with: the change starts afresh
    changeable = exists().where(
        Poll.id == poll_id, Poll.allow_change.is_(True), Poll.closed_at.is_(None),
        or_(Poll.closes_at.is_(None), Poll.closes_at > now),
    )
    # The UPDATE comes first: it takes the lock before anything is read.
    locked = session.execute(
        update(BallotRow).where(BallotRow.id == ballot_id, changeable)
        .values(changed_at=now).execution_options(synchronize_session=False)
    ).rowcount
    if not locked:
        session.rollback()
        _refuse(session, poll_id=poll_id, now=now)
    had_other, context = session.execute(
        select(BallotRow.other.is_not(None), BallotRow.context).where(BallotRow.id == ballot_id)
    ).one()
    old = tuple(session.scalars(
        select(BallotChoice.option_id).where(BallotChoice.ballot_id == ballot_id)
        .order_by(BallotChoice.rank)))
    session.execute(update(BallotRow).where(BallotRow.id == ballot_id)
                    .values(other=ballot.other, comment=ballot.comment,
                            ranking=kind.ranking(ballot.choices))
                    .execution_options(synchronize_session=False))
    session.execute(delete(BallotChoice).where(BallotChoice.ballot_id == ballot_id))
    if ballot.choices:
        session.execute(insert(BallotChoice), [
            {"ballot_id": ballot_id, "option_id": option_id, "rank": rank}
            for rank, option_id in enumerate(ballot.choices, start=1)])
    session.commit()
    # The tallies count what a ballot's kind counts: a ranked ballot's first preference.
    return Changed(poll_id=poll_id, ballot_id=ballot_id, context=context, changed_at=now,
                   old_option_ids=kind.counted(old),
                   new_option_ids=kind.counted(ballot.choices),
                   had_other=bool(had_other), has_other=ballot.other is not None)


def _refuse(session: Session, *, poll_id: str, now: datetime) -> None:
    """Why the ballot could not be locked, as it is committed now."""
    poll = session.get(Poll, poll_id)
    if poll is None:
        raise UnknownReceipt()
    if not poll.allow_change:
        raise ChangeNotAllowed()
    if poll.status_at(now) != "open":
        raise PollClosed(CLOSED_DETAIL)
    raise UnknownReceipt()  # withdrawn by a concurrent request


def _move(*, redis: RedisHandle, changed: Changed) -> None:
    """Move the committed change in the tallies. Should Redis fail, the tallies it would
    have moved are rebuilt from the database once it answers (outage.Outage)."""
    scopes = [None] if changed.context is None else [None, changed.context]
    call = ChangeCall(
        poll_id=changed.poll_id,
        token=tallies.change_token(changed.ballot_id, changed.changed_at),
        at_ms=epoch_ms(changed.changed_at), old_option_ids=changed.old_option_ids,
        new_option_ids=changed.new_option_ids, had_other=changed.had_other,
        has_other=changed.has_other, context=changed.context,
        integrity_hour=integrity.hour_of(changed.changed_at),
        integrity_field=integrity.CHANGED, retention_seconds=integrity.RETENTION_SECONDS)
    missed = tuple((changed.poll_id, scope) for scope in scopes)
    with redis.fallback("moving a changed vote", missed=missed):
        redis.scripts.change(call)
    recent.changed(changed.poll_id)  # this process's next read sees it, heard or not


def _vote_of(session: Session, ballot_id: str) -> dict:
    """The vote as it is now, as the answer shows it."""
    row = session.get(BallotRow, ballot_id, populate_existing=True)
    if row is None:
        raise UnknownReceipt()  # withdrawn since
    return {
        "id": row.id, "created_at": iso(row.created_at),
        "changed_at": iso(row.changed_at),
        "choices": choices_of(session, ballot_id),
        "other": row.other, "comment": row.comment, "context": row.context,
    }
