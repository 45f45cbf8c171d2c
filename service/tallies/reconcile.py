"""Reconciliation: compare the Redis tallies with the database (the record) and rebuild,
exactly, those that drifted or went missing.

Run it by hand (`flask --app wsgi reconcile [POLL_ID]`) or let the periodic job do it:
each gunicorn worker starts `start_periodic` (deploy/gunicorn.conf.py), and a Redis lock
held for one period lets one process in the whole deployment run per period.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass, field

import click
from flask import Flask
from flask.cli import with_appcontext
from sqlalchemy import Engine, select

from service.infra import keys, metrics, periodic
from service.infra.db import db
from service.infra.models import Ballot, Poll
from service.infra.redis import EXTENSION as REDIS_EXTENSION
from service.infra.redis import REDIS_ERRORS, RedisHandle, redis_handle
from service.tallies import counts as tallies

log = logging.getLogger(__name__)

# A tally that differs from the database is read again after this pause: it is drift
# when a stable reading differs DRIFT_CONFIRMATIONS times within CONFIRM_ATTEMPTS reads.
CONFIRM_PAUSE_SECONDS = 0.2
CONFIRM_ATTEMPTS = 4
DRIFT_CONFIRMATIONS = 2


@dataclass
class Report:
    polls: int = 0
    checked: int = 0
    drift: dict[str, int] = field(default_factory=lambda: {"mismatch": 0, "missing": 0})

    @property
    def rebuilt(self) -> int:
        return sum(self.drift.values())


def _same(stored: tallies.Counts, recorded: tallies.Counts) -> bool:
    def votes(counts: tallies.Counts) -> tuple:
        options = {option: n for option, n in counts.options.items() if n}
        return counts.total, counts.other, options

    return votes(stored) == votes(recorded)


def reconcile_scope(*, engine: Engine, redis: RedisHandle, poll_id: str,
                    context: str | None = None) -> str | None:
    """Check one tally; rebuild it if it differs from the database (`mismatch`) or, for a
    poll's main tally, is absent (`missing`). Returns the drift found, or None."""
    tally, _pending, lock, _included = keys.tally_scope(poll_id, context)
    disagreements = 0
    for attempt in range(CONFIRM_ATTEMPTS):
        if attempt:
            time.sleep(CONFIRM_PAUSE_SECONDS)
        before = redis.client.hgetall(tally)
        if redis.client.exists(lock):
            return None  # being rebuilt from the database right now
        if not before:
            if context is not None:
                return None  # a context's tally is built when first read
            log.info("tally of poll %s missing from Redis; rebuilding", poll_id)
            return _rebuild(engine=engine, redis=redis, poll_id=poll_id, context=context,
                            kind="missing")
        with tallies.snapshot(engine) as connection:
            recorded = tallies.from_database(session=connection, poll_id=poll_id,
                                             context=context)
        after = redis.client.hgetall(tally)
        if before != after:
            continue  # votes are being counted: no stable reading to compare yet
        stored = tallies.Counts.from_hash(after)
        if _same(stored, recorded):
            return None
        # A vote between its commit and its count differs for a moment, rightly: only a
        # difference seen twice, a pause apart, is drift.
        disagreements += 1
        if disagreements == DRIFT_CONFIRMATIONS:
            log.warning("tally drift in poll %s (%s): Redis has %s, the database %s; "
                        "rebuilding", poll_id, "a context" if context else "all votes",
                        _summary(stored), _summary(recorded))
            return _rebuild(engine=engine, redis=redis, poll_id=poll_id, context=context,
                            kind="mismatch")
    return None  # still moving or not confirmed: the next run looks again


def _rebuild(*, engine: Engine, redis: RedisHandle, poll_id: str, context: str | None,
             kind: str) -> str:
    metrics.RECONCILE_DRIFT.labels(kind).inc()
    # Removing the hash first makes this the exact rebuild of tallies.rebuild: counts
    # arriving meanwhile wait in the pending list and are added once.
    redis.client.delete(keys.tally(poll_id, context))
    tallies.rebuild(engine=engine, redis=redis, poll_id=poll_id, context=context)
    return kind


def _summary(counts: tallies.Counts) -> str:
    options = {option: n for option, n in sorted(counts.options.items()) if n}
    return f"total={counts.total} other={counts.other} options={options}"


def reconcile(*, engine: Engine, redis: RedisHandle, poll_ids: list[str] | None = None) -> Report:
    """Reconcile the given polls' tallies (every poll's when None), contexts included."""
    report = Report()
    with engine.connect() as connection:
        if poll_ids is None:
            poll_ids = list(connection.scalars(select(Poll.id).order_by(Poll.id)))
        contexts: dict[str, list[str]] = {}
        rows = connection.execute(
            select(Ballot.poll_id, Ballot.context)
            .where(Ballot.context.is_not(None), Ballot.poll_id.in_(poll_ids))
            .distinct()
        ) if poll_ids else []
        for poll_id, context in rows:
            contexts.setdefault(poll_id, []).append(context)
    for poll_id in poll_ids:
        report.polls += 1
        for context in [None, *contexts.get(poll_id, [])]:
            report.checked += 1
            kind = reconcile_scope(engine=engine, redis=redis, poll_id=poll_id, context=context)
            if kind:
                report.drift[kind] += 1
    return report


def run_once(app: Flask) -> Report | None:
    """One periodic run, if no other process has run in this period (Redis lock)."""
    interval = app.config["RECONCILE_INTERVAL_SECONDS"]
    with app.app_context():
        redis = redis_handle()
        mine = False
        with redis.fallback("taking the reconcile lock"):
            # Held, not released, for the whole period: one run per period in the deployment.
            mine = redis.client.set(keys.reconcile_lock(), secrets.token_hex(8), nx=True,
                                    px=interval * 1000)
        if not mine:
            return None
        try:
            report = reconcile(engine=db.engine, redis=redis)
        except Exception:  # the job must outlive one bad run; the reason is logged
            metrics.RECONCILE_RUNS.labels("failed").inc()
            log.exception("reconciliation failed")
            return None
        finally:
            db.session.remove()
        metrics.RECONCILE_RUNS.labels("ok").inc()
        log.info("reconciled %d tallies of %d polls: %d rebuilt", report.checked,
                 report.polls, report.rebuilt)
        return report


def start_periodic(app: Flask) -> threading.Thread | None:
    """Start this process's reconcile timer (a greenlet under gevent's patched threading).

    Every process tries once per period, starting at a random offset; the Redis lock lets
    the first one through. Needs a shared Redis; RECONCILE_INTERVAL_SECONDS=0 disables it.
    """
    interval = app.config["RECONCILE_INTERVAL_SECONDS"]
    if not interval or not app.extensions[REDIS_EXTENSION].shared:
        return None

    return periodic.start("pollbox-reconcile", interval, lambda: run_once(app))


@click.command("reconcile")
@click.argument("poll_id", required=False)
@with_appcontext
def reconcile_command(poll_id: str | None) -> None:
    """Rebuild Redis tallies that differ from the database (every poll's, or POLL_ID's)."""
    redis = redis_handle()
    if not redis.shared:
        click.echo("REDIS_URL is not set: no shared tallies to reconcile.", err=True)
        return
    if poll_id is not None and db.session.get(Poll, poll_id) is None:
        raise click.ClickException(f"No poll {poll_id!r}.")
    try:
        report = reconcile(engine=db.engine, redis=redis,
                           poll_ids=None if poll_id is None else [poll_id])
    except REDIS_ERRORS as error:
        raise click.ClickException(f"Redis is unavailable: {type(error).__name__}") from None
    metrics.RECONCILE_RUNS.labels("ok").inc()
    click.echo(
        f"Checked {report.checked} tallies of {report.polls} polls: "
        f"{report.drift['mismatch']} differed from the database, "
        f"{report.drift['missing']} were missing; {report.rebuilt} rebuilt."
    )


def init_app(app: Flask) -> None:
    app.cli.add_command(reconcile_command)
