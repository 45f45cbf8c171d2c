"""Feedback: one poll across many pages (results per `context`), its comments, hiding
them, and the one-click "Was this page helpful?" poll."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from service.infra.errors import NotFound
from service.infra.models import Ballot, BallotChoice, Owner, Poll
from service.infra.redis import RedisHandle
from service.polls import manage as polls
from service.polls.schemas import PollCreateSchema
from service.tallies.results import PERCENT_DECIMALS

PAGE_FEEDBACK_QUESTION = "Was this page helpful?"
PAGE_FEEDBACK = {
    "options": ["Yes", "No"],
    "allow_comment": True,
    "results": "owner_only",
    "duplicate_check": "cookie",
    "vote_window_seconds": None,
}


def create_page_feedback_poll(*, session: Session, redis: RedisHandle, owner: Owner,
                              data: dict, now: datetime) -> Poll:
    """Create a Yes / No poll with comments, results for the owner only, one vote per
    browser; each page sends its path as the vote's `context`."""
    fields = PollCreateSchema().load({
        "question": data.get("question") or PAGE_FEEDBACK_QUESTION,
        **PAGE_FEEDBACK,
        **{name: data[name] for name in ("allowed_origins", "locale") if name in data},
    })
    return polls.create_poll(session=session, redis=redis, owner=owner, data=fields, now=now)


def contexts(*, session: Session, poll: Poll, offset: int,
             limit: int) -> tuple[list[dict], int]:
    """Per-context totals and option counts, most votes first (ties by context)."""
    grouped = (
        select(Ballot.context, func.count(Ballot.id).label("total"))
        .where(Ballot.poll_id == poll.id).group_by(Ballot.context)
    )
    count = session.scalar(select(func.count()).select_from(grouped.subquery())) or 0
    page = session.execute(
        grouped.order_by(func.count(Ballot.id).desc(), Ballot.context.is_(None),
                         Ballot.context).offset(offset).limit(limit)
    ).all()
    if not page:
        return [], count
    named = [context for context, _ in page if context is not None]
    in_page = or_(Ballot.context.in_(named), *([Ballot.context.is_(None)]
                                               if len(named) < len(page) else []))
    votes: dict[str | None, dict[int, int]] = defaultdict(dict)
    for context, option_id, n in session.execute(
        select(Ballot.context, BallotChoice.option_id, func.count())
        .join(BallotChoice, BallotChoice.ballot_id == Ballot.id)
        .where(Ballot.poll_id == poll.id, in_page)
        .group_by(Ballot.context, BallotChoice.option_id)
    ):
        votes[context][option_id] = n
    others = dict(session.execute(
        select(Ballot.context, func.count()).where(
            Ballot.poll_id == poll.id, Ballot.other.is_not(None), in_page
        ).group_by(Ballot.context)
    ).all())
    found = []
    for context, total in page:
        counts = votes.get(context, {})
        found.append({
            "context": context,
            "total_votes": total,
            "options": [
                {"id": option.id, "label": option.label,
                 "votes": counts.get(option.id, 0),
                 "percent": round(counts.get(option.id, 0) / total * 100, PERCENT_DECIMALS)}
                for option in poll.options
            ],
            "other_votes": others.get(context, 0),
        })
    return found, count


def comments(*, session: Session, poll: Poll, context: str | None, hidden: bool | None,
             offset: int, limit: int) -> tuple[list[dict], int]:
    """Comments newest first, each with its vote's choices, context and time."""
    conditions = [Ballot.poll_id == poll.id, Ballot.comment.is_not(None)]
    if context is not None:
        conditions.append(Ballot.context == context)
    if hidden is not None:
        conditions.append(Ballot.comment_hidden.is_(hidden))
    total = session.scalar(select(func.count(Ballot.id)).where(*conditions)) or 0
    ballots = session.scalars(
        select(Ballot).where(*conditions)
        .order_by(Ballot.created_at.desc(), Ballot.id.desc()).offset(offset).limit(limit)
    ).all()
    return [comment_view(ballot, choices) for ballot, choices in
            zip(ballots, _choices(session, poll, [b.id for b in ballots]), strict=True)], total


def _choices(session: Session, poll: Poll, ballot_ids: list[str]) -> list[list[dict]]:
    labels = {option.id: (option.position, option.label) for option in poll.options}
    chosen: dict[str, list[int]] = defaultdict(list)
    if ballot_ids:
        for ballot_id, option_id in session.execute(
            select(BallotChoice.ballot_id, BallotChoice.option_id)
            .where(BallotChoice.ballot_id.in_(ballot_ids))
        ):
            chosen[ballot_id].append(option_id)
    return [
        [{"id": option_id, "label": labels[option_id][1]}
         for option_id in sorted(chosen[ballot_id], key=lambda o: labels[o][0])]
        for ballot_id in ballot_ids
    ]


def comment_view(ballot: Ballot, choices: list[dict]) -> dict:
    return {
        "vote_id": ballot.id,
        "created_at": ballot.created_at,
        "comment": ballot.comment,
        "hidden": ballot.comment_hidden,
        "context": ballot.context,
        "choices": choices,
        "other": ballot.other,
    }


def set_comment_hidden(*, session: Session, poll: Poll, vote_id: str, hidden: bool) -> dict:
    """Hide (or show again) a vote's comment; 404 for a vote without a comment."""
    ballot = session.scalar(
        select(Ballot).where(and_(Ballot.id == vote_id, Ballot.poll_id == poll.id,
                                  Ballot.comment.is_not(None)))
    )
    if ballot is None:
        raise NotFound("No such comment.")
    ballot.comment_hidden = hidden
    session.commit()
    return comment_view(ballot, _choices(session, poll, [ballot.id])[0])
