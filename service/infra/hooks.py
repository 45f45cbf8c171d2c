"""Hooks a lower layer calls and a higher one provides, by name in `app.extensions`.

The vote must not import the webhook machinery (pyproject.toml's contracts), yet the vote
that takes a poll's last place (max_votes) closes it and `poll.closed` webhooks are told:
service/webhooks registers the announcement here, the vote calls it.
"""

from __future__ import annotations

from datetime import datetime

from flask import current_app

ANNOUNCE_CLOSE = "pollbox.hooks.announce_close"


def announce_close(*, session, poll, reason: str, moment: datetime) -> None:
    """Tell `poll.closed` webhooks that the poll closed, if webhooks are wired."""
    announce = current_app.extensions.get(ANNOUNCE_CLOSE)
    if announce is not None:
        announce(session=session, poll=poll, reason=reason, moment=moment)
