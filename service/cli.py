"""Command line: `flask --app wsgi owners ...` and `flask --app wsgi demo`."""

from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from sqlalchemy import select

from service import owners, polls
from service.extensions import db, redis_handle
from service.models import Owner, Poll, utcnow

owners_cli = AppGroup("owners", help="Manage poll owners and their API keys.")
keys_cli = AppGroup("keys", help="Manage an owner's API keys.")
owners_cli.add_command(keys_cli)

DEMO_OWNER = "Demo"
DEMO_POLL = {
    "question": "Are you currently taking or have you ever been prescribed anti-depressants?",
    "options": ["Yes, currently", "Yes, in the past", "No, never"],
}


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


@keys_cli.command("rotate")
@click.argument("name")
def rotate_key(name: str) -> None:
    """Revoke the owner's keys and print a new one (last line)."""
    try:
        key = owners.rotate_key(session=db.session, name=name)
    except owners.OwnerError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"New API key for {name!r}; the old one no longer works:", err=True)
    click.echo(key)


@owners_cli.command("list")
def list_owners() -> None:
    """List owners with their active key's prefix and their number of polls."""
    rows = owners.list_owners(session=db.session)
    if not rows:
        click.echo("No owners yet: flask --app wsgi owners create NAME")
        return
    click.echo(f"{'NAME':<30} {'CREATED':<20} {'KEY':<16} POLLS")
    for row in rows:
        created = row.created_at.strftime("%Y-%m-%dT%H:%M:%SZ")
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
                                 now=utcnow())
    base = base_url.rstrip("/")
    click.echo(f"Demo poll:    {base}/api/v1/polls/{poll.id}")
    if "widgets.widget" in current_app.view_functions:
        click.echo(f"Widget:       {base}/polls/{poll.id}/widget")
    click.echo(f"Tallies:      {base}/api/v1/polls/{poll.id}/tallies")
    click.echo(f"API docs:     {base}/api/v1/docs")
    click.echo(f"Vote:         curl -X POST -H 'Content-Type: application/json' "
               f"-d '{{\"choices\": [{poll.options[0].id}]}}' {base}/api/v1/polls/{poll.id}/votes")
    click.echo(f"Owner API key ({DEMO_OWNER}):")
    click.echo(key)


def init_app(app: Flask) -> None:
    app.cli.add_command(owners_cli)
    app.cli.add_command(demo)
