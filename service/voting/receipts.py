"""Voter receipts: show a vote, or withdraw it, with the secret its 201 answer carried
(change.py changes it).

Only the receipt's SHA-256 is stored (ballots.receipt_hash).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import case, delete, exists, or_, select
from sqlalchemy.orm import Session

from service.infra import keys, kinds
from service.infra.errors import NotFound, PollClosed
from service.infra.models import Ballot, BallotChoice, Option, Poll
from service.infra.redis import RedisHandle
from service.tallies import counts as tallies
from service.voting import integrity
from service.voting.ballot import receipt_hash

IDENTITY_COLUMNS = {"cookie": "cookie_hash", "ip": "ip_hash", "user": "user_hash"}


class UnknownReceipt(NotFound):
    detail = "No vote has this receipt (it may have been withdrawn)."


def get_ballot(*, session: Session, receipt: str) -> Ballot:
    """The ballot a receipt belongs to, or raise NotFound."""
    ballot = session.scalar(
        select(Ballot).where(Ballot.receipt_hash == receipt_hash(receipt))
    )
    if ballot is None:
        raise UnknownReceipt()
    return ballot


def choices_of(session: Session, ballot_id: str) -> list[dict]:
    """A ballot's options (id, label): in the poll's order, or a ranked ballot's in the
    voter's order of preference."""
    choices = session.execute(
        select(Option.id, Option.label)
        .join(BallotChoice, BallotChoice.option_id == Option.id)
        .join(Poll, Poll.id == Option.poll_id)
        .where(BallotChoice.ballot_id == ballot_id)
        .order_by(case((Poll.kind.in_(kinds.ORDERED), BallotChoice.rank), else_=0),
                  Option.position)
    ).all()
    return [{"id": option_id, "label": label} for option_id, label in choices]


def vote_view(*, session: Session, ballot: Ballot) -> dict:
    """The vote as its voter sent it (a ranked ballot's choices in the voter's order)."""
    return {
        "poll_id": ballot.poll_id,
        "vote_id": ballot.id,
        "created_at": ballot.created_at,
        "changed_at": ballot.changed_at,
        "choices": choices_of(session, ballot.id),
        "other": ballot.other,
        "comment": ballot.comment,
        "context": ballot.context,
    }


def withdraw(*, session: Session, redis: RedisHandle, ballot: Ballot, now: datetime) -> None:
    """Delete the ballot (its choices and claims cascade) in one transaction, then free
    the voter's duplicate-check claims and make the poll's tallies exact again. A closed
    poll's results are final: PollClosed, and nothing changes."""
    poll_id, context = ballot.poll_id, ballot.context
    identities = [
        f"{kind}:{getattr(ballot, column)}"
        for kind, column in IDENTITY_COLUMNS.items()
        if getattr(ballot, column) is not None
    ]
    # The poll's openness is part of the DELETE, so a close that commits first wins; the
    # poll's row is locked first (PostgreSQL), as a vote of a poll with max_votes locks
    # it, so a withdrawal never frees a place of a poll that the last vote just closed.
    session.execute(select(Poll.id).where(Poll.id == poll_id).with_for_update())
    still_open = exists().where(
        Poll.id == poll_id, Poll.closed_at.is_(None),
        or_(Poll.closes_at.is_(None), Poll.closes_at > now),
    )
    deleted = session.execute(
        delete(Ballot).where(Ballot.id == ballot.id, still_open)
    ).rowcount
    session.commit()
    if not deleted:
        poll = session.get(Poll, poll_id)
        if poll is not None and poll.status_at(now) == "closed":
            raise PollClosed("This poll is closed: its votes can no longer be withdrawn.")
        raise UnknownReceipt()  # withdrawn by a concurrent request
    # Claims held by another ballot are kept (lua/release.lua checks the ballot id), so
    # every identity the ballot recorded can be offered, whatever the poll checks now.
    with redis.fallback("releasing a vote's claim"):
        redis.scripts.release(poll_id=poll_id, identities=identities, ballot_id=ballot.id)
    if ballot.idempotency_hash is not None:
        # Forget the key, so that a retry with it votes afresh.
        with redis.fallback("forgetting an Idempotency-Key"):
            redis.client.delete(keys.idempotency(poll_id, ballot.idempotency_hash))
    tallies.drop(redis=redis, poll_id=poll_id,
                 scopes=[None] if context is None else [None, context], reason="withdrawn")
    integrity.record(redis=redis, poll_id=poll_id, outcome=integrity.WITHDRAWN, at=now)
