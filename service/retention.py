"""Retention for health-grade polls: after a poll's `retention_days`, what identifies a
ballot is purged.

Purged: the voter hashes (cookie, address, signed user), the database's claims and
Redis's duplicate-check claims, the Idempotency-Key hash, the comment, the other text,
the context, and the webhook deliveries that carried them. Kept: the ballot itself, its
options and its time, so counts, tallies, time series and exports stay exact.

A purged voter is forgotten, so they may vote again; polls/manage.py allows
`retention_days` with a duplicate check only when the vote window is no longer than it,
so a purge never lets anyone vote sooner than the window would.

Run by `flask --app wsgi purge [POLL_ID]`, and every RETENTION_PURGE_INTERVAL_SECONDS by
each gunicorn worker (deploy/gunicorn.conf.py). A purge is idempotent: workers that run
it at the same time repeat nothing harmful. A purge of every poll also deletes the
proof-of-work solutions spent in the database (service/voting/challenge.py) once expired.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from service.infra import metrics, periodic
from service.infra.db import db
from service.infra.models import Ballot, Poll, SpentChallenge, VoteClaim
from service.infra.redis import RedisHandle, redis_handle
from service.tallies import counts as tallies
from service.voting.receipts import IDENTITY_COLUMNS
from service.webhooks import events

log = logging.getLogger(__name__)

PURGE_BATCH = 500
IDENTIFYING_COLUMNS = ("cookie_hash", "ip_hash", "user_hash", "idempotency_hash", "comment",
                       "other", "context")


@dataclass
class PurgeReport:
    polls: int = 0
    ballots: int = 0
    deliveries: int = 0


def purge(*, session: Session, redis: RedisHandle, now: datetime,
          poll_ids: list[str] | None = None) -> PurgeReport:
    """Purge what identifies the ballots older than their poll's retention."""
    query = select(Poll).where(Poll.retention_days.is_not(None))
    if poll_ids is not None:
        query = query.where(Poll.id.in_(poll_ids))
    report = PurgeReport()
    for poll in session.scalars(query).all():
        before = now - timedelta(days=poll.retention_days)
        report.polls += 1
        report.ballots += _purge_ballots(session=session, redis=redis, poll_id=poll.id,
                                         before=before)
        report.deliveries += events.forget_vote_payloads(session=session, poll=poll,
                                                         before=before)
        session.commit()
    if poll_ids is None:
        # Proof-of-work solutions spent while Redis was away, once they have expired.
        session.execute(delete(SpentChallenge).where(SpentChallenge.expires_at <= now))
        session.commit()
    metrics.RETENTION_PURGED.inc(report.ballots)
    return report


def _purge_ballots(*, session: Session, redis: RedisHandle, poll_id: str,
                   before: datetime) -> int:
    """Purge the poll's ballots made before the time, a batch at a time: the database
    first (the record), then Redis's claims and the context tallies they were in."""
    columns = [getattr(Ballot, name) for name in IDENTIFYING_COLUMNS]
    purged = 0
    while True:
        rows = session.execute(
            select(Ballot.id, Ballot.cookie_hash, Ballot.ip_hash, Ballot.user_hash,
                   Ballot.context)
            .where(Ballot.poll_id == poll_id, Ballot.created_at < before,
                   or_(*(column.is_not(None) for column in columns)))
            .limit(PURGE_BATCH)
        ).all()
        if not rows:
            return purged
        ids = [row.id for row in rows]
        session.execute(update(Ballot).where(Ballot.id.in_(ids))
                        .values(dict.fromkeys(IDENTIFYING_COLUMNS)))
        session.execute(delete(VoteClaim).where(VoteClaim.ballot_id.in_(ids)))
        session.commit()
        _release_claims(redis=redis, poll_id=poll_id, rows=rows)
        contexts = sorted({row.context for row in rows if row.context is not None})
        if contexts:
            tallies.drop(redis=redis, poll_id=poll_id, scopes=contexts, reason="purged")
        purged += len(rows)


def _release_claims(*, redis: RedisHandle, poll_id: str, rows) -> None:
    """Delete the purged ballots' duplicate-check claims in Redis (a claim held by
    another ballot is kept: lua/release.lua checks the ballot id)."""
    with redis.fallback("releasing purged ballots' claims"):
        for row in rows:
            identities = [f"{kind}:{getattr(row, column)}"
                          for kind, column in IDENTITY_COLUMNS.items()
                          if getattr(row, column) is not None]
            if identities:
                redis.scripts.release(poll_id=poll_id, identities=identities,
                                      ballot_id=row.id)


def run_once(app: Flask) -> PurgeReport | None:
    """One periodic purge; a failure is logged and the next period tries again."""
    with app.app_context():
        try:
            report = purge(session=db.session, redis=redis_handle(),
                           now=app.config["CLOCK"]())
        except Exception:  # the job must outlive one bad run; the reason is logged
            log.exception("retention purge failed")
            return None
        finally:
            db.session.remove()
    if report.ballots or report.deliveries:
        log.info("purged %d ballots and %d webhook deliveries of %d polls", report.ballots,
                 report.deliveries, report.polls)
    return report


def start_periodic(app: Flask) -> threading.Thread | None:
    """Start this process's purge timer (a greenlet under gevent's patched threading),
    at a random offset; RETENTION_PURGE_INTERVAL_SECONDS=0 disables it."""
    interval = app.config["RETENTION_PURGE_INTERVAL_SECONDS"]
    if not interval:
        return None

    return periodic.start("pollbox-retention", interval, lambda: run_once(app))


@click.command("purge")
@click.argument("poll_id", required=False)
@with_appcontext
def purge_command(poll_id: str | None) -> None:
    """Purge what identifies ballots older than their poll's retention_days (every
    poll's, or POLL_ID's)."""
    if poll_id is not None and db.session.get(Poll, poll_id) is None:
        raise click.ClickException(f"No poll {poll_id!r}.")
    report = purge(session=db.session, redis=redis_handle(), now=current_app.config["CLOCK"](),
                   poll_ids=None if poll_id is None else [poll_id])
    click.echo(f"Purged {report.ballots} ballots and {report.deliveries} webhook deliveries "
               f"of {report.polls} polls with a retention.")


def init_app(app: Flask) -> None:
    app.cli.add_command(purge_command)
