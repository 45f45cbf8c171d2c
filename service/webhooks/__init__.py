"""Webhooks: owners' endpoints told about votes and closes, signed per Standard Webhooks,
sent by a background worker and retried with backoff for more than a day.

The flow, and why:
- A vote notes itself inside the Lua call that counts it (count.lua's `webhook` step,
  named in service/infra/redis/scripts.py): if the poll's owner subscribes to
  `vote.created`, the ballot id joins the batch of its poll and (wall-clock) second.
  Nothing else, and it never raises: a webhook must never slow down or fail a vote.
- The dispatcher (`dispatcher.tick`, every second in the worker) turns each completed
  batch into one delivery per subscribed webhook (`events`), announces scheduled closes
  whose `closes_at` passed since its last look, and hands due deliveries to the runner.
  Manual closes are announced by the change that closes the poll (`dispatcher.announce_close`),
  a poll's close at max_votes by the vote that took the last place (through
  `service/infra/hooks.py`: the vote does not import webhooks).
- The runner (`runners`) sends: RQ jobs on the `pollbox-webhooks` queue when Redis is
  shared (`flask --app wsgi webhooks worker`, `cli`), else threads in the web process.
  Each send is one `delivery.attempt`, through `sender` (SSRF guard, signature, POST).
- The database is the record: every delivery and every attempt is a row, and a delivery
  whose job Redis lost is picked up again once its lease runs out.
- `resources`: the owner's webhooks and their deliveries (API and console).
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """The worker command, and (without a shared Redis) the in-process sender, started
    by the first request of a process whose database has webhooks."""
    from service.infra import hooks
    from service.webhooks import cli, dispatcher

    app.cli.add_command(cli.webhooks_cli)
    app.extensions[hooks.ANNOUNCE_CLOSE] = dispatcher.announce_close
    app.before_request(dispatcher.start_if_configured)
