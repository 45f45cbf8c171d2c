"""Webhooks: owners' endpoints told about votes and closes, signed per Standard Webhooks,
sent by a background worker and retried with backoff for more than a day.

The flow, and why:
- A vote notes itself inside the Lua call that counts it (`note_step`, a step of
  lua/count.lua; `vote_created` on a Redis Cluster): if the poll's owner subscribes to
  `vote.created`, the ballot id joins the batch of its poll and (wall-clock) second.
  Nothing else, and it never raises: a webhook must never slow down or fail a vote.
- The dispatcher (`tick`, every second in the worker) turns each completed batch into
  one delivery per subscribed webhook, announces scheduled closes whose
  `closes_at` passed since its last look, and hands due deliveries to the runner.
  Manual closes (PATCH status closed) are announced by the PATCH itself.
- The runner sends: RQ jobs on the `pollbox-webhooks` queue when Redis is shared
  (`flask --app wsgi webhooks worker`), else a thread in the web process.
- The database is the record: every delivery and every attempt is a row, and a delivery
  whose job Redis lost is picked up again once its lease runs out.
"""

from __future__ import annotations

import http.client
import json
import logging
import secrets
import string
import threading
import time
import weakref
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from importlib import resources

import click
from flask import Flask, current_app, has_app_context
from flask.cli import AppGroup
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, selectinload

from service import keys, tallies, webhook_sender
from service.errors import Forbidden, NotFound, ValidationFailed
from service.extensions import RedisHandle, db, redis_handle
from service.models import Ballot, BallotChoice, Owner, Poll, Webhook, WebhookAttempt
from service.models import WebhookDelivery as Delivery
from service.webhook_sender import UnsafeUrl

log = logging.getLogger(__name__)

QUEUE_NAME = "pollbox-webhooks"
EVENTS = ("vote.created", "poll.closed")
TEST_EVENT = "webhook.test"
WEBHOOK_ID_ALPHABET = string.ascii_letters + string.digits
WEBHOOK_ID_LENGTH = 16
SEND_TIMEOUT_SECONDS = 10
TICK_SECONDS = 1.0
DRAIN_BATCH = 1000
DUE_BATCH = 200
# A delivery handed to a job and not finished within this time is handed out again.
ATTEMPT_LEASE_SECONDS = 300
# On its first look, the dispatcher announces closes that passed this long ago.
CLOSE_LOOKBACK_SECONDS = 3600
SUBSCRIBERS_SYNC_SECONDS = 60
# Batches waiting beyond this (no worker running) are dropped rather than filling Redis.
MAX_WAITING_BATCHES = 100_000
BATCH_TTL_SECONDS = 86_400
ERROR_MAX = 500
IN_PROCESS_SENDERS = 4
JOB_RESULT_TTL_SECONDS = 60
JOB_FAILURE_TTL_SECONDS = 86_400

# The dispatcher's script in service/lua (loaded once per Redis client); votes are noted
# by count.lua's 'webhook' step.
TAKE_BATCH_SCRIPT = "webhook_take_batch"
_scripts: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _now() -> datetime:
    return current_app.config["CLOCK"]()


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# Webhooks as resources ----------------------------------------------------------------


def create_webhook(*, session: Session, redis: RedisHandle, owner: Owner, url: str,
                   events: list[str], poll: Poll | None, allow_private: bool,
                   now: datetime) -> Webhook:
    """Create a webhook after the SSRF guard accepted its URL; its secret is on it."""
    try:
        webhook_sender.check_url(url, allow_private=allow_private)
    except UnsafeUrl as error:
        raise ValidationFailed({"url": [str(error)]}) from None
    webhook = Webhook(
        id="wh_" + "".join(secrets.choice(WEBHOOK_ID_ALPHABET) for _ in range(WEBHOOK_ID_LENGTH)),
        owner_id=owner.id, poll_id=poll.id if poll else None, url=url,
        events=list(dict.fromkeys(events)), secret=webhook_sender.new_secret(), created_at=now,
    )
    session.add(webhook)
    session.commit()
    sync_subscribers(session=session, redis=redis)
    start_in_process(current_app)
    return webhook


def list_webhooks(*, session: Session, owner: Owner, offset: int,
                  limit: int) -> tuple[list[Webhook], int]:
    """The owner's webhooks, newest first, and how many there are."""
    condition = Webhook.owner_id == owner.id
    total = session.scalar(select(func.count(Webhook.id)).where(condition)) or 0
    found = session.scalars(
        select(Webhook).where(condition).order_by(Webhook.created_at.desc(), Webhook.id)
        .offset(offset).limit(limit)
    ).all()
    return list(found), total


def get_owned_webhook(*, session: Session, owner: Owner, webhook_id: str) -> Webhook:
    """The owner's webhook; 404 if unknown, 403 if another owner's."""
    webhook = session.get(Webhook, webhook_id)
    if webhook is None:
        raise NotFound("No such webhook.")
    if webhook.owner_id != owner.id:
        raise Forbidden("This webhook belongs to another owner.")
    return webhook


def delete_webhook(*, session: Session, redis: RedisHandle, webhook: Webhook) -> None:
    """Delete the webhook with its deliveries; pending retries stop."""
    session.delete(webhook)
    session.commit()
    sync_subscribers(session=session, redis=redis)


def list_deliveries(*, session: Session, webhook: Webhook, offset: int,
                    limit: int) -> tuple[list[Delivery], int]:
    """The webhook's deliveries, newest first, with their attempts."""
    condition = Delivery.webhook_id == webhook.id
    total = session.scalar(select(func.count(Delivery.id)).where(condition)) or 0
    found = session.scalars(
        select(Delivery).where(condition).order_by(Delivery.id.desc())
        .offset(offset).limit(limit).options(selectinload(Delivery.attempts))
    ).all()
    return list(found), total


def send_test(*, session: Session, webhook: Webhook, now: datetime) -> Delivery:
    """Queue a `webhook.test` delivery to the webhook, sent like any other."""
    data = {"webhook_id": webhook.id, "message": "A test delivery from Pollbox."}
    delivery = _new_delivery(webhook, event=TEST_EVENT, data=data, now=now)
    session.add(delivery)
    session.commit()
    _hand_out(session=session, deliveries=[delivery])
    return delivery


# Events -------------------------------------------------------------------------------


def note_step(*, poll_id: str, owner_id: int) -> tuple[list[str], list]:
    """The keys and arguments of lua/count.lua's 'webhook' step, which notes an accepted
    vote for `vote.created` webhooks: if the owner subscribes, the ballot id joins the
    batch of its poll and second."""
    # Batches are per wall-clock second of noting, so the dispatcher knows when one is
    # complete (the second is over) whatever clock the votes were cast by.
    second = int(time.time())
    member = f"{poll_id}:{second}"
    return ([keys.webhook_subscribers(), keys.webhook_batches(), keys.webhook_batch(member)],
            ["webhook", owner_id, member, second, MAX_WAITING_BATCHES, BATCH_TTL_SECONDS])


def after_note(*, redis: RedisHandle, noted: int) -> None:
    """React to the 'webhook' step's answer: warn when batches pile up, and without a
    shared Redis start this process's sender."""
    if noted == -1:
        log.warning("too many vote batches wait for webhooks (is the worker running?)")
    elif noted == 1 and not redis.shared:
        start_in_process(current_app)


def vote_created(*, redis: RedisHandle, poll_id: str, owner_id: int, ballot_id: str) -> None:
    """Note an accepted vote for `vote.created` webhooks on its own: one Redis call that
    never raises. A vote does it inside its count (service/voting.py), except on a Redis
    Cluster, where one script cannot reach both the poll's slot and the webhooks' one."""
    try:
        note_keys, note_args = note_step(poll_id=poll_id, owner_id=owner_id)
        # count.lua with no tally scope and no option runs just the step.
        noted, _tally, _kept = redis.scripts.count(
            keys=note_keys, args=[ballot_id, 0, "0", 0, 0, 0, *note_args])
        after_note(redis=redis, noted=int(noted))
    except tallies.REDIS_ERRORS as error:  # logged once per outage, not per vote
        tallies.redis_incident.failed(error, "noting a vote for webhooks")
    except Exception:  # a vote never fails because of a webhook
        log.exception("could not note a vote for webhooks")


def _script(redis: RedisHandle, name: str):
    scripts = _scripts.setdefault(redis.client, {})
    if name not in scripts:
        source = resources.files("service").joinpath("lua", f"{name}.lua").read_text()
        scripts[name] = redis.client.register_script(source)
    return scripts[name]


def poll_closed(*, session: Session, poll: Poll, reason: str, now: datetime) -> None:
    """Announce a close to `poll.closed` webhooks; never raises (the close stands)."""
    try:
        _announce_close(session=session, poll=poll, reason=reason, now=now)
    except Exception:
        session.rollback()
        log.exception("could not announce a poll close to webhooks")


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
    try:
        pipe = redis.client.pipeline(transaction=True)
        pipe.delete(keys.webhook_subscribers())
        if owners:
            pipe.sadd(keys.webhook_subscribers(), *owners)
        pipe.execute()
    except Exception as error:
        log.warning("could not sync webhook subscribers to Redis: %s", type(error).__name__)


def _message_id(unique: str | None = None) -> str:
    return "msg_" + (unique or secrets.token_urlsafe(16))


def _new_delivery(webhook: Webhook, *, event: str, data: dict, now: datetime,
                  message_id: str | None = None) -> Delivery:
    body = {"type": event, "timestamp": _iso(now), "data": data}
    return Delivery(
        webhook_id=webhook.id, message_id=message_id or _message_id(), event=event,
        payload=json.dumps(body, ensure_ascii=False, separators=(",", ":")),
        status="pending", attempt_count=0,
        next_attempt_at=now + timedelta(seconds=ATTEMPT_LEASE_SECONDS), created_at=now,
    )


def _announce_close(*, session: Session, poll: Poll, reason: str, now: datetime) -> None:
    subscribed = _subscribed(session, owner_id=poll.owner_id, poll_id=poll.id,
                             event="poll.closed")
    if not subscribed:
        return
    moment = poll.closed_at or poll.closes_at or now
    total = session.scalar(select(func.count(Ballot.id)).where(Ballot.poll_id == poll.id))
    data = {"poll_id": poll.id, "question": poll.question, "closed_at": _iso(moment),
            "reason": reason, "total_votes": total or 0}
    created = []
    for webhook in subscribed:
        # One message per close, however many processes notice it.
        delivery = _new_delivery(webhook, event="poll.closed", data=data, now=now,
                                 message_id=_message_id(f"closed_{poll.id}_{int(moment.timestamp())}"))
        try:
            with session.begin_nested():
                session.add(delivery)
        except IntegrityError:
            continue
        created.append(delivery)
    session.commit()
    _hand_out(session=session, deliveries=created)


def _announce_votes(*, session: Session, poll_id: str, ballot_ids: list[str],
                    now: datetime) -> list[Delivery]:
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
    ):
        choices[ballot_id].append(option_id)
    data = {"poll_id": poll_id, "votes": [
        {"id": b.id, "created_at": _iso(b.created_at), "choices": sorted(choices[b.id]),
         "other": b.other, "comment": None if b.comment_hidden else b.comment,
         "context": b.context}
        for b in ballots
    ]}
    deliveries = [_new_delivery(w, event="vote.created", data=data, now=now) for w in subscribed]
    session.add_all(deliveries)
    return deliveries


# The dispatcher -------------------------------------------------------------------------


def tick(*, session: Session, redis: RedisHandle, now: datetime) -> None:
    """One round of the dispatcher: votes into batches, scheduled closes, due retries."""
    if redis.client.set(keys.webhook_subscribers_synced(), 1, nx=True,
                        ex=SUBSCRIBERS_SYNC_SECONDS):
        sync_subscribers(session=session, redis=redis)  # Redis may have lost the set
    _drain_votes(session=session, redis=redis, now=now)
    _announce_scheduled_closes(session=session, redis=redis, now=now)
    _hand_out_due(session=session, now=now)


def _drain_votes(*, session: Session, redis: RedisHandle, now: datetime) -> None:
    # Only batches of seconds that are over: votes of the current second may still come.
    complete = redis.client.zrangebyscore(keys.webhook_batches(), "-inf",
                                          f"({int(time.time())}", start=0, num=DRAIN_BATCH)
    take = _script(redis, TAKE_BATCH_SCRIPT)
    for member in complete:
        member = member.decode()
        ballot_ids = [ballot_id.decode() for ballot_id in take(
            keys=[keys.webhook_batches(), keys.webhook_batch(member)], args=[member])]
        if not ballot_ids:
            continue
        poll_id = member.rsplit(":", 1)[0]
        created = _announce_votes(session=session, poll_id=poll_id, ballot_ids=ballot_ids,
                                  now=now)
        session.commit()
        _hand_out(session=session, deliveries=created)


def _announce_scheduled_closes(*, session: Session, redis: RedisHandle, now: datetime) -> None:
    owners = {
        owner_id for owner_id, events in session.execute(
            select(Webhook.owner_id, Webhook.events)
        ) if "poll.closed" in events
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
            _announce_close(session=session, poll=poll, reason="scheduled", now=now)
    redis.client.set(keys.webhook_closes_checked(), str(now.timestamp()))


def _hand_out_due(*, session: Session, now: datetime) -> None:
    due = session.execute(
        select(Delivery.id, Delivery.next_attempt_at)
        .where(Delivery.status == "pending", Delivery.next_attempt_at <= now)
        .order_by(Delivery.next_attempt_at).limit(DUE_BATCH)
    ).all()
    lease = now + timedelta(seconds=ATTEMPT_LEASE_SECONDS)
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


def _hand_out(*, session: Session, deliveries: list[Delivery]) -> None:
    for delivery in deliveries:
        try:
            runner(current_app).submit(delivery.id)
        except Exception as error:
            # Its lease runs out and the dispatcher hands it out again.
            log.warning("could not queue webhook delivery %s: %s", delivery.id,
                        type(error).__name__)


# Sending --------------------------------------------------------------------------------


def attempt(*, session: Session, delivery_id: int) -> None:
    """Send one pending delivery once, log the attempt, and schedule a retry or stop."""
    delivery = session.get(Delivery, delivery_id)
    if delivery is None or delivery.status != "pending":
        return
    webhook = session.get(Webhook, delivery.webhook_id)
    if webhook is None:  # deleted meanwhile (its deliveries go with it)
        return
    config = current_app.config
    timestamp = int(time.time())
    body = delivery.payload.encode()
    headers = {
        "webhook-id": delivery.message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": webhook_sender.sign(webhook.secret, delivery.message_id,
                                                 timestamp, body),
    }
    started = time.monotonic()
    status, error = None, None
    try:
        status = webhook_sender.post(webhook.url, body, headers, timeout=SEND_TIMEOUT_SECONDS,
                                     allow_private=config["WEBHOOKS_ALLOW_PRIVATE"])
        if not 200 <= status < 300:
            error = f"HTTP {status}"
    except UnsafeUrl as refused:
        error = f"refused: {refused}"
    except (OSError, http.client.HTTPException) as failure:
        error = f"{type(failure).__name__}: {failure}"
    now = _now()
    delivery.attempt_count += 1
    session.add(WebhookAttempt(
        delivery_id=delivery.id, number=delivery.attempt_count, attempted_at=now,
        response_status=status, error=error[:ERROR_MAX] if error else None,
        duration_ms=int((time.monotonic() - started) * 1000),
    ))
    delays = config["WEBHOOK_RETRY_DELAYS"]
    if error is None:
        delivery.status, delivery.next_attempt_at = "succeeded", None
    elif delivery.attempt_count <= len(delays):
        delay = delays[delivery.attempt_count - 1]
        delivery.next_attempt_at = now + timedelta(seconds=delay)
    else:
        delivery.status, delivery.next_attempt_at = "failed", None
    session.commit()


def deliver_job(delivery_id: int) -> None:
    """The RQ job: send one delivery (in the worker's app, or one built from the env)."""
    app = current_app._get_current_object() if has_app_context() else _standalone_app()
    with app.app_context():
        attempt(session=db.session, delivery_id=delivery_id)


_standalone: list[Flask] = []


def _standalone_app() -> Flask:
    # For a bare `rq worker pollbox-webhooks`: the app, built once, from the environment.
    if not _standalone:
        from service import create_app

        _standalone.append(create_app())
    return _standalone[0]


# Runners --------------------------------------------------------------------------------


class RQRunner:
    """Deliveries as RQ jobs on Redis, sent by `flask --app wsgi webhooks worker`."""

    def __init__(self, redis: RedisHandle):
        from rq import Queue

        self.queue = Queue(QUEUE_NAME, connection=redis.client)

    def submit(self, delivery_id: int) -> None:
        self.queue.enqueue(deliver_job, delivery_id, result_ttl=JOB_RESULT_TTL_SECONDS,
                           failure_ttl=JOB_FAILURE_TTL_SECONDS,
                           job_timeout=SEND_TIMEOUT_SECONDS * 3)


class InProcessRunner:
    """Without a shared Redis (REDIS_URL unset): a dispatcher thread and sender threads
    in this process. Fine for one process, as the in-process Redis stand-in is."""

    def __init__(self, app: Flask):
        self.app = app
        self.senders = ThreadPoolExecutor(IN_PROCESS_SENDERS, thread_name_prefix="webhooks")
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()

    def submit(self, delivery_id: int) -> None:
        self.senders.submit(self._send, delivery_id)

    def _send(self, delivery_id: int) -> None:
        with self.app.app_context():
            try:
                attempt(session=db.session, delivery_id=delivery_id)
            except Exception:
                log.exception("webhook delivery %s failed to run", delivery_id)

    def start(self) -> None:
        if self.thread is not None:  # the common case, on every noted vote
            return
        with self.lock:
            if self.thread is None and not self.stopped.is_set():
                log.info("webhooks: no REDIS_URL, deliveries run in this process")
                self.thread = threading.Thread(target=self._loop, daemon=True,
                                               name="webhooks-dispatcher")
                self.thread.start()

    def _loop(self) -> None:
        interval = self.app.config.get("WEBHOOKS_TICK_SECONDS", TICK_SECONDS)
        while not self.stopped.wait(interval):
            run_tick(self.app)

    def stop(self) -> None:
        self.stopped.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
        self.senders.shutdown(wait=True)


def runner(app: Flask) -> RQRunner | InProcessRunner:
    """The app's runner: RQ on a shared Redis, else the in-process one."""
    app = app._get_current_object() if hasattr(app, "_get_current_object") else app
    found = app.extensions.get("pollbox.webhooks")
    if found is None:
        with app.app_context():
            handle = redis_handle()
        found = RQRunner(handle) if handle.shared else InProcessRunner(app)
        found = app.extensions.setdefault("pollbox.webhooks", found)
    return found


def start_in_process(app: Flask) -> None:
    """Start the in-process dispatcher, when this app runs deliveries itself."""
    found = runner(app)
    if isinstance(found, InProcessRunner):
        found.start()


def stop(app: Flask) -> None:
    """Stop the in-process dispatcher and senders (tests, shutdown)."""
    found = app.extensions.get("pollbox.webhooks")
    if isinstance(found, InProcessRunner):
        found.stop()


def run_tick(app: Flask) -> None:
    """One dispatcher round in its own app context; errors are logged, not raised."""
    with app.app_context():
        try:
            tick(session=db.session, redis=redis_handle(), now=_now())
        except Exception:
            db.session.rollback()
            log.exception("webhooks dispatcher round failed")


# Wiring ---------------------------------------------------------------------------------

webhooks_cli = AppGroup("webhooks", help="Send webhook deliveries.")


@webhooks_cli.command("worker")
@click.option("--burst", is_flag=True, help="Send what is due, then exit.")
def worker_command(burst: bool) -> None:
    """Run the dispatcher and an RQ worker on the `pollbox-webhooks` queue."""
    from rq import SimpleWorker

    app = current_app._get_current_object()
    handle = redis_handle()
    if not handle.shared:
        raise click.ClickException(
            "REDIS_URL is not set: the web process sends webhooks itself; no worker needed."
        )
    sync_subscribers(session=db.session, redis=handle)
    stopped = threading.Event()

    def dispatch() -> None:
        while not stopped.wait(app.config.get("WEBHOOKS_TICK_SECONDS", TICK_SECONDS)):
            run_tick(app)

    run_tick(app)
    thread = None
    if not burst:
        thread = threading.Thread(target=dispatch, daemon=True, name="webhooks-dispatcher")
        thread.start()
    # SimpleWorker: jobs run in this process (no fork), beside the dispatcher thread.
    try:
        SimpleWorker([runner(app).queue], connection=handle.client).work(burst=burst)
    finally:
        stopped.set()


def _start_if_configured() -> None:
    app = current_app._get_current_object()
    if app.extensions.get("pollbox.webhooks.checked", 0) > time.monotonic():
        return
    app.extensions["pollbox.webhooks.checked"] = float("inf")
    if redis_handle().shared:
        return
    try:
        with db.engine.connect() as connection:
            exists = connection.execute(select(Webhook.id).limit(1)).first() is not None
    except SQLAlchemyError:
        app.extensions["pollbox.webhooks.checked"] = time.monotonic() + SUBSCRIBERS_SYNC_SECONDS
        return
    if exists:
        with app.app_context():
            sync_subscribers(session=db.session, redis=redis_handle())
        start_in_process(app)


def init_app(app: Flask) -> None:
    app.cli.add_command(webhooks_cli)
    # Without a shared Redis, a process that has webhooks starts sending on its first request.
    app.before_request(_start_if_configured)
