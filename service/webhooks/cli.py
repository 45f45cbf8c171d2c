"""`flask --app wsgi webhooks worker`: the dispatcher and an RQ worker in one process."""

from __future__ import annotations

import threading

import click
from flask import current_app
from flask.cli import AppGroup

from service.infra.db import db
from service.infra.redis import redis_handle
from service.webhooks import dispatcher, events
from service.webhooks.runners import TICK_SECONDS, Worker

webhooks_cli = AppGroup("webhooks", help="Send webhook deliveries.")


@webhooks_cli.command("worker")
@click.option("--burst", is_flag=True, help="Send what is due, then exit.")
def worker_command(burst: bool) -> None:
    """Run the dispatcher and an RQ worker on the `pollbox-webhooks` queue."""
    app = current_app._get_current_object()
    handle = redis_handle()
    if not handle.shared:
        raise click.ClickException(
            "REDIS_URL is not set: the web process sends webhooks itself; no worker needed."
        )
    events.sync_subscribers(session=db.session, redis=handle)
    stopped = threading.Event()

    def dispatch() -> None:
        while not stopped.wait(app.config.get("WEBHOOKS_TICK_SECONDS", TICK_SECONDS)):
            dispatcher.run_tick(app)

    dispatcher.run_tick(app)
    if not burst:
        threading.Thread(target=dispatch, daemon=True, name="webhooks-dispatcher").start()
    # Jobs run in this process (no fork), beside the dispatcher thread.
    try:
        Worker([dispatcher.runner(app).queue], connection=handle.client).work(burst=burst)
    finally:
        stopped.set()
