"""Command line: `flask --app wsgi owners ...`, `... demo` and `... export`."""

from __future__ import annotations

import contextlib
import sys
from datetime import UTC, datetime
from typing import TextIO

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from marshmallow import ValidationError
from sqlalchemy import select

from service import owners
from service.exports import export as exports
from service.infra.clock import iso, now
from service.infra.db import db
from service.infra.errors import NotFound, ValidationFailed
from service.infra.fields import UTCDateTime
from service.infra.models import Owner, Poll
from service.infra.redis import redis_handle
from service.polls import baseline as baselines
from service.polls import manage as polls

# A progress bar on a terminal for exports at least this large, updated every so often.
EXPORT_PROGRESS_MIN_ROWS = 10_000
EXPORT_PROGRESS_STEP_ROWS = 1_000

owners_cli = AppGroup("owners", help="Manage poll owners and their API keys.")
keys_cli = AppGroup("keys", help="Manage an owner's API keys.")
owners_cli.add_command(keys_cli)

DEMO_OWNER = "Demo"
DEMO_POLL = {
    "question": "Are you currently taking or have you ever been prescribed anti-depressants?",
    "options": ["Yes, currently", "Yes, in the past", "No, never"],
}
# The 3,978 votes PsyWeb's poll had before it moved to Pollbox: a baseline, not ballots
# (API.md, "Carrying an existing poll over"), per option in DEMO_POLL's order.
DEMO_BASELINE_VOTES = (1203, 1012, 1763)
DEMO_BASELINE_SOURCE = "PsyWeb poll, 2009-2026"
DEMO_BASELINE_AS_OF = datetime(2026, 11, 30, tzinfo=UTC)


@owners_cli.command("create")
@click.argument("name")
def create_owner(name: str) -> None:
    """Create an owner; the last line printed is its API key (shown once)."""
    try:
        key = owners.create_owner(session=db.session, name=name)
    except owners.OwnerError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"Created owner {name!r}. Keep this API key; it is not shown again:", err=True)
    click.echo(key)


@keys_cli.command("create")
@click.argument("owner")
@click.option("--name", required=True, help="Who or what uses the key, e.g. analyst.")
@click.option("--scope", required=True, type=click.Choice(owners.SCOPES),
              help="read: every owner GET; write: also polls, comments, webhooks; "
                   "admin: also keys.")
def create_key(owner: str, name: str, scope: str) -> None:
    """Make the owner a key of a scope; the last line printed is the key (shown once)."""
    try:
        key = owners.create_key_for(session=db.session, owner_name=owner, name=name,
                                    scope=scope)
    except owners.OwnerError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"New {scope} key {name!r} for {owner!r}. Keep it; it is not shown again:",
               err=True)
    click.echo(key)


@keys_cli.command("rotate")
@click.argument("name")
def rotate_key(name: str) -> None:
    """Revoke the owner's admin keys and print a new one (last line); narrower keys stay."""
    try:
        key = owners.rotate_key(session=db.session, name=name)
    except owners.OwnerError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"New admin key for {name!r}; the old admin keys no longer work:", err=True)
    click.echo(key)


@owners_cli.command("list")
def list_owners() -> None:
    """List owners with their newest admin key's prefix and their number of polls."""
    rows = owners.list_owners(session=db.session)
    if not rows:
        click.echo("No owners yet: flask --app wsgi owners create NAME")
        return
    click.echo(f"{'NAME':<30} {'CREATED':<20} {'KEY':<16} POLLS")
    for row in rows:
        created = iso(row.created_at)
        click.echo(f"{row.name:<30} {created:<20} {(row.key_prefix or '-') + '…':<16} {row.polls}")


@click.command("demo")
@click.option("--base-url", default="http://127.0.0.1:8000", show_default=True,
              help="Where the service will be reached, for the printed URLs.")
@with_appcontext  # like the AppGroup commands: works wherever app.cli is invoked
def demo(base_url: str) -> None:
    """Seed the demo owner and poll (idempotent) and print their URLs and a fresh key."""
    session = db.session
    if session.scalar(select(Owner.id).where(Owner.name == DEMO_OWNER)) is None:
        key = owners.create_owner(session=session, name=DEMO_OWNER)
    else:
        key = owners.rotate_key(session=session, name=DEMO_OWNER)
    owner = session.scalar(select(Owner).where(Owner.name == DEMO_OWNER))
    poll = session.scalar(
        select(Poll).where(Poll.owner_id == owner.id, Poll.question == DEMO_POLL["question"])
    )
    if poll is None:
        data = {
            **{name: None for name in ("max_choices", "vote_window_seconds", "opens_at",
                                       "closes_at")},
            "kind": "single", "allow_other": False, "allow_comment": False,
            "duplicate_check": "cookie_and_ip", "results": "always", "results_min_votes": 0,
            "allowed_origins": [], "locale": "en", **DEMO_POLL,
        }
        poll = polls.create_poll(session=session, redis=redis_handle(), owner=owner, data=data,
                                 now=now())
    if poll.baseline is None and len(poll.options) == len(DEMO_BASELINE_VOTES):
        _seed_baseline(poll)
    base = base_url.rstrip("/")
    click.echo(f"Demo poll:    {base}/api/v1/polls/{poll.id}")
    click.echo(f"Widget:       {base}/polls/{poll.id}/widget")
    click.echo(f"Tallies:      {base}/api/v1/polls/{poll.id}/tallies")
    click.echo(f"API docs:     {base}/api/v1/docs")
    click.echo(f"Console:      {base}/console/  (sign in with the key below)")
    click.echo(f"Vote:         curl -X POST -H 'Content-Type: application/json' "
               f"-d '{{\"choices\": [{poll.options[0].id}]}}' {base}/api/v1/polls/{poll.id}/votes")
    click.echo(f"Owner API key ({DEMO_OWNER}):")
    click.echo(key)


def _seed_baseline(poll: Poll) -> None:
    """Carry the demo poll's earlier votes over, as a site moving to Pollbox would."""
    moment = now()
    baselines.set_baseline(session=db.session, redis=redis_handle(), poll=poll, now=moment, data={
        "total_votes": sum(DEMO_BASELINE_VOTES),
        "options": {str(option.id): votes
                    for option, votes in zip(poll.options, DEMO_BASELINE_VOTES, strict=True)},
        "source": DEMO_BASELINE_SOURCE,
        "as_of": min(DEMO_BASELINE_AS_OF, moment),  # never in the future
    })


class IsoTime(click.ParamType):
    """An ISO 8601 time, UTC when it has no offset (as the API reads `from`/`to`)."""

    name = "iso-time"

    def convert(self, value, param, ctx):
        try:
            return UTCDateTime().deserialize(value)
        except ValidationError:
            self.fail(f"{value!r} is not an ISO 8601 time such as 2026-11-29T12:00:00Z.",
                      param, ctx)


def _progress_stream() -> TextIO:
    """Where an export's progress goes: stderr, so that `-o -` output stays clean."""
    return sys.stderr


@click.command("export")
@click.argument("poll_id")
@click.option("--data", type=click.Choice(exports.DATA_KINDS), required=True)
@click.option("--format", "fmt", type=click.Choice(exports.FORMATS), default="csv",
              show_default=True)
@click.option("--interval", type=click.Choice(exports.INTERVALS),
              help="Bucket size for --data timeseries (default: day).")
@click.option("--from", "since", type=IsoTime(), help="Ballots cast at or after this time.")
@click.option("--to", "until", type=IsoTime(), help="Ballots cast before this time.")
@click.option("--context", help="Only ballots cast with this context.")
@click.option("--bom", is_flag=True, help="Start a CSV with a UTF-8 byte order mark (Excel).")
@click.option("-o", "--output", default="-", show_default=True,
              type=click.Path(dir_okay=False, allow_dash=True), help="File to write; - is stdout.")
@with_appcontext
def export(poll_id: str, data: str, fmt: str, interval: str | None, since, until,
           context: str | None, bom: bool, output: str) -> None:
    """Export a poll's tallies, time series or pseudonymous votes, as the API does."""
    try:
        params = exports.export_params(data=data, fmt=fmt, interval=interval, since=since,
                                       until=until, context=context, bom=bom)
        poll = polls.get_poll(session=db.session, poll_id=poll_id)
    except ValidationFailed as error:
        raise click.UsageError("; ".join(
            f"--{name}: {' '.join(messages)}" for name, messages in error.errors.items()
        )) from None
    except NotFound:
        raise click.ClickException(f"No poll with id {poll_id!r}.") from None
    made = exports.poll_export(session=db.session, poll=poll, params=params,
                               secret=current_app.config["SECRET_KEY"],
                               now=now())
    stderr = _progress_stream()
    to_file = output != "-"
    total = None
    if to_file and stderr.isatty():
        total = exports.count_rows(session=db.session, poll=poll, params=params)
    written = 0

    def counted(rows, update):
        nonlocal written
        for row in rows:
            yield row
            written += 1
            if written % EXPORT_PROGRESS_STEP_ROWS == 0:
                update(EXPORT_PROGRESS_STEP_ROWS)
        update(written % EXPORT_PROGRESS_STEP_ROWS)

    with contextlib.ExitStack() as stack:
        # atomic: a file that failed half way is never left behind looking complete.
        target = stack.enter_context(click.open_file(output, "wb", atomic=to_file))
        update = lambda _steps: None  # noqa: E731
        if total is not None and total >= EXPORT_PROGRESS_MIN_ROWS:
            update = stack.enter_context(
                click.progressbar(length=total, label=f"Exporting {data}", file=stderr)
            ).update
        made.rows = counted(made.rows, update)
        for chunk in exports.render(made, fmt=fmt, bom=bom):
            target.write(chunk)
    if to_file:
        click.echo(f"Exported {written} {data} rows to {output}.", err=True)


def init_app(app: Flask) -> None:
    app.cli.add_command(owners_cli)
    app.cli.add_command(demo)
    app.cli.add_command(export)
