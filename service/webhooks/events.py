"""What webhooks are told: the deliveries of a close, of a batch of votes, of a changed
vote and of a test, and Redis's copy of who subscribes to `vote.created`."""

from __future__ import annotations

import json
import secrets
from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.infra import keys, kinds
from service.infra.clock import iso
from service.infra.models import Ballot, BallotChoice, Poll, Webhook
from service.infra.models import WebhookDelivery as Delivery
from service.infra.redis import RedisHandle

EVENTS = ("vote.created", "vote.changed", "poll.closed")
TEST_EVENT = "webhook.test"
# A delivery handed to a job and not finished within this time is handed out again.
ATTEMPT_LEASE_SECONDS = 300


def _subscribed(session: Session, *, owner_id: int, poll_id: str, event: str) -> list[Webhook]:
    found = session.scalars(select(Webhook).where(Webhook.owner_id == owner_id)).all()
    return [w for w in found if event in w.events and w.poll_id in (None, poll_id)]


def sync_subscribers(*, session: Session, redis: RedisHandle) -> None:
    """Make Redis's set of owners with `vote.created` webhooks match the database."""
    owners = {
        str(owner_id) for owner_id, events in session.execute(
            select(Webhook.owner_id, Webhook.events)
        ) if "vote.created" in events
    }
    # Should Redis fail, the dispatcher syncs it again within SUBSCRIBERS_SYNC_SECONDS.
    with redis.fallback("syncing webhook subscribers"):
        pipe = redis.client.pipeline(transaction=True)
        pipe.delete(keys.webhook_subscribers())
        if owners:
            pipe.sadd(keys.webhook_subscribers(), *owners)
        pipe.execute()


def _message_id(unique: str | None = None) -> str:
    return "msg_" + (unique or secrets.token_urlsafe(16))


def _new_delivery(webhook: Webhook, *, event: str, data: dict, now: datetime,
                  message_id: str | None = None) -> Delivery:
    body = {"type": event, "timestamp": iso(now), "data": data}
    return Delivery(
        webhook_id=webhook.id, message_id=message_id or _message_id(), event=event,
        payload=json.dumps(body, ensure_ascii=False, separators=(",", ":")),
        status="pending", attempt_count=0,
        next_attempt_at=now + timedelta(seconds=ATTEMPT_LEASE_SECONDS), created_at=now,
    )


def close_deliveries(*, session: Session, poll: Poll, reason: str,
                     now: datetime) -> list[Delivery]:
    """Record one `poll.closed` delivery per subscribed webhook (one message per close,
    however many processes notice it); committed."""
    subscribed = _subscribed(session, owner_id=poll.owner_id, poll_id=poll.id,
                             event="poll.closed")
    if not subscribed:
        return []
    moment = poll.closed_at or poll.closes_at or now
    ballots = session.scalar(select(func.count(Ballot.id)).where(Ballot.poll_id == poll.id))
    # The total the tallies show: the ballots and the votes from before Pollbox.
    carried = poll.baseline.total_votes if poll.baseline is not None else 0
    data = {"poll_id": poll.id, "question": poll.question, "closed_at": iso(moment),
            "reason": reason, "total_votes": (ballots or 0) + carried,
            "baseline_votes": carried}
    message_id = _message_id(f"closed_{poll.id}_{int(moment.timestamp())}")
    created = []
    for webhook in subscribed:
        delivery = _new_delivery(webhook, event="poll.closed", data=data, now=now,
                                 message_id=message_id)
        try:
            with session.begin_nested():
                session.add(delivery)
        except IntegrityError:
            continue
        created.append(delivery)
    session.commit()
    return created


def vote_deliveries(*, session: Session, poll_id: str, ballot_ids: list[str],
                    now: datetime) -> list[Delivery]:
    """Add one `vote.created` delivery per subscribed webhook for a batch of the poll's
    votes (those not withdrawn meanwhile); the caller commits."""
    poll = session.get(Poll, poll_id)
    if poll is None:
        return []
    subscribed = _subscribed(session, owner_id=poll.owner_id, poll_id=poll_id,
                             event="vote.created")
    if not subscribed:
        return []
    ballots = session.scalars(
        select(Ballot).where(Ballot.id.in_(ballot_ids)).order_by(Ballot.created_at, Ballot.id)
    ).all()
    if not ballots:  # withdrawn meanwhile
        return []
    choices: dict[str, list[int]] = defaultdict(list)
    for ballot_id, option_id in session.execute(
        select(BallotChoice.ballot_id, BallotChoice.option_id)
        .where(BallotChoice.ballot_id.in_(ballot_ids))
        .order_by(BallotChoice.ballot_id, BallotChoice.rank)
    ):
        choices[ballot_id].append(option_id)
    # A ranked ballot's choices in the voter's order of preference; the others by id.
    ordered = kinds.of(poll.kind).ordered
    data = {"poll_id": poll_id, "votes": [
        {"id": b.id, "created_at": iso(b.created_at),
         "choices": choices[b.id] if ordered else sorted(choices[b.id]),
         "other": b.other, "comment": None if b.comment_hidden else b.comment,
         "context": b.context}
        for b in ballots
    ]}
    deliveries = [_new_delivery(w, event="vote.created", data=data, now=now) for w in subscribed]
    session.add_all(deliveries)
    return deliveries


def change_deliveries(*, session: Session, ballot_id: str,
                      now: datetime) -> list[Delivery]:
    """Record one `vote.changed` delivery per subscribed webhook: the vote as it is now;
    committed (the change is, already)."""
    ballot = session.get(Ballot, ballot_id, populate_existing=True)
    if ballot is None:  # withdrawn meanwhile
        return []
    poll = session.get(Poll, ballot.poll_id)
    subscribed = _subscribed(session, owner_id=poll.owner_id, poll_id=poll.id,
                             event="vote.changed")
    if not subscribed:
        return []
    choices = sorted(session.scalars(
        select(BallotChoice.option_id).where(BallotChoice.ballot_id == ballot_id)))
    data = {"poll_id": poll.id, "votes": [
        {"id": ballot.id, "created_at": iso(ballot.created_at),
         "changed_at": iso(ballot.changed_at or now), "choices": choices,
         "other": ballot.other, "comment": None if ballot.comment_hidden else ballot.comment,
         "context": ballot.context}]}
    deliveries = [_new_delivery(w, event="vote.changed", data=data, now=now)
                  for w in subscribed]
    session.add_all(deliveries)
    session.commit()
    return deliveries


def forget_vote_payloads(*, session: Session, poll: Poll, before: datetime) -> int:
    """Delete the poll's `vote.created` deliveries made before the time: their payloads
    carry comments, other text and contexts (the retention purge); the caller commits."""
    owned = select(Webhook.id).where(Webhook.owner_id == poll.owner_id)
    return session.execute(
        delete(Delivery).where(
            Delivery.webhook_id.in_(owned),
            Delivery.event.in_(("vote.created", "vote.changed")),
            Delivery.created_at < before,
            # The payload is written compactly by _new_delivery: the poll id comes first.
            Delivery.payload.like(f'%"data":{{"poll_id":"{poll.id}",%'),
        )
    ).rowcount


def test_delivery(*, session: Session, webhook: Webhook, now: datetime) -> Delivery:
    """Record a `webhook.test` delivery to the webhook; committed."""
    data = {"webhook_id": webhook.id, "message": "A test delivery from Pollbox."}
    delivery = _new_delivery(webhook, event=TEST_EVENT, data=data, now=now)
    session.add(delivery)
    session.commit()
    return delivery
