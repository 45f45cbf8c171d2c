"""The dispatcher: turns noted votes and closes into deliveries and hands them, and due
retries, to the runner."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

from flask import Flask, current_app
from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from service.infra import keys
from service.infra.clock import now
from service.infra.db import db
from service.infra.models import Poll, Webhook
from service.infra.models import WebhookDelivery as Delivery
from service.infra.redis import EXTENSION as REDIS_EXTENSION
from service.infra.redis import RedisHandle, redis_handle
from service.webhooks import events
from service.webhooks.runners import InProcessRunner, RQRunner

log = logging.getLogger(__name__)

RUNNER_EXTENSION = "pollbox.webhooks"
CHECKED_EXTENSION = "pollbox.webhooks.checked"
DRAIN_BATCH = 1000
DUE_BATCH = 200
# On its first look, the dispatcher announces closes that passed this long ago.
CLOSE_LOOKBACK_SECONDS = 3600
SUBSCRIBERS_SYNC_SECONDS = 60


def announce_close(*, session: Session, poll: Poll, reason: str, moment: datetime) -> None:
    """Announce a close to `poll.closed` webhooks; never raises (the close stands)."""
    try:
        hand_out(events.close_deliveries(session=session, poll=poll, reason=reason, now=moment))
    except Exception:
        session.rollback()
        log.exception("could not announce a poll close to webhooks")


def announce_change(*, session: Session, ballot_id: str, now: datetime) -> None:
    """Tell `vote.changed` webhooks about a committed change; never raises (the change
    stands)."""
    try:
        hand_out(events.change_deliveries(session=session, ballot_id=ballot_id, now=now))
    except Exception:
        session.rollback()
        log.exception("could not announce a changed vote to webhooks")


def tick(*, session: Session, redis: RedisHandle, now: datetime) -> None:
    """One round of the dispatcher: votes into batches, scheduled closes, due retries."""
    if redis.client.set(keys.webhook_subscribers_synced(), 1, nx=True,
                        ex=SUBSCRIBERS_SYNC_SECONDS):
        events.sync_subscribers(session=session, redis=redis)  # Redis may have lost the set
    _drain_votes(session=session, redis=redis, now=now)
    _announce_scheduled_closes(session=session, redis=redis, now=now)
    _hand_out_due(session=session, now=now)


def _drain_votes(*, session: Session, redis: RedisHandle, now: datetime) -> None:
    # Only batches of seconds that are over: votes of the current second may still come.
    complete = redis.client.zrangebyscore(keys.webhook_batches(), "-inf",
                                          f"({int(time.time())}", start=0, num=DRAIN_BATCH)
    for member in complete:
        member = member.decode()
        ballot_ids = redis.scripts.take_webhook_batch(member)
        if not ballot_ids:
            continue
        poll_id = member.rsplit(":", 1)[0]
        created = events.vote_deliveries(session=session, poll_id=poll_id,
                                         ballot_ids=ballot_ids, now=now)
        session.commit()
        hand_out(created)


def _announce_scheduled_closes(*, session: Session, redis: RedisHandle, now: datetime) -> None:
    owners = {
        owner_id for owner_id, subscribed in session.execute(
            select(Webhook.owner_id, Webhook.events)
        ) if "poll.closed" in subscribed
    }
    checked = redis.client.get(keys.webhook_closes_checked())
    since = (datetime.fromtimestamp(float(checked), UTC) if checked
             else now - timedelta(seconds=CLOSE_LOOKBACK_SECONDS))
    if owners:
        closed = session.scalars(
            select(Poll).where(Poll.owner_id.in_(owners), Poll.closed_at.is_(None),
                               Poll.closes_at > since, Poll.closes_at <= now)
        ).all()
        for poll in closed:
            hand_out(events.close_deliveries(session=session, poll=poll, reason="scheduled",
                                             now=now))
    redis.client.set(keys.webhook_closes_checked(), str(now.timestamp()))


def _hand_out_due(*, session: Session, now: datetime) -> None:
    due = session.execute(
        select(Delivery.id, Delivery.next_attempt_at)
        .where(Delivery.status == "pending", Delivery.next_attempt_at <= now)
        .order_by(Delivery.next_attempt_at).limit(DUE_BATCH)
    ).all()
    lease = now + timedelta(seconds=events.ATTEMPT_LEASE_SECONDS)
    claimed = []
    for delivery_id, due_at in due:
        # Claim with a compare-and-set: of several dispatchers, one hands it out.
        result = session.execute(
            update(Delivery).where(Delivery.id == delivery_id, Delivery.status == "pending",
                                   Delivery.next_attempt_at == due_at)
            .values(next_attempt_at=lease)
        )
        if result.rowcount == 1:
            claimed.append(delivery_id)
    session.commit()
    for delivery_id in claimed:
        runner(current_app).submit(delivery_id)


def hand_out(deliveries: list[Delivery]) -> None:
    """Give recorded deliveries to the runner now; one that cannot be queued is handed
    out again once its lease runs out."""
    for delivery in deliveries:
        try:
            runner(current_app).submit(delivery.id)
        except Exception as error:
            log.warning("could not queue webhook delivery %s: %s", delivery.id,
                        type(error).__name__)


def run_tick(app: Flask) -> None:
    """One dispatcher round in its own app context; errors are logged, not raised."""
    with app.app_context():
        try:
            tick(session=db.session, redis=redis_handle(), now=now())
        except Exception:
            db.session.rollback()
            log.exception("webhooks dispatcher round failed")


def runner(app: Flask) -> RQRunner | InProcessRunner:
    """The app's runner: RQ on a shared Redis, else the in-process one."""
    app = app._get_current_object() if hasattr(app, "_get_current_object") else app
    found = app.extensions.get(RUNNER_EXTENSION)
    if found is None:
        handle = app.extensions[REDIS_EXTENSION]
        found = RQRunner(handle) if handle.shared else InProcessRunner(app, tick=run_tick)
        found = app.extensions.setdefault(RUNNER_EXTENSION, found)
    return found


def start_in_process(app: Flask) -> None:
    """Start the in-process dispatcher, when this app runs deliveries itself."""
    found = runner(app)
    if isinstance(found, InProcessRunner):
        found.start()


def stop(app: Flask) -> None:
    """Stop the in-process dispatcher and senders (tests, shutdown)."""
    found = app.extensions.get(RUNNER_EXTENSION)
    if isinstance(found, InProcessRunner):
        found.stop()


def start_if_configured() -> None:
    """Without a shared Redis, a process whose database has webhooks starts sending on
    its first request."""
    app = current_app._get_current_object()
    if app.extensions.get(CHECKED_EXTENSION, 0) > time.monotonic():
        return
    app.extensions[CHECKED_EXTENSION] = float("inf")
    if redis_handle().shared:
        return
    try:
        with db.engine.connect() as connection:
            exists = connection.execute(select(Webhook.id).limit(1)).first() is not None
    except SQLAlchemyError:
        app.extensions[CHECKED_EXTENSION] = time.monotonic() + SUBSCRIBERS_SYNC_SECONDS
        return
    if exists:
        events.sync_subscribers(session=db.session, redis=redis_handle())
        start_in_process(app)
