"""Helpers shared by the API views."""

from __future__ import annotations

import functools
from datetime import datetime

from flask import current_app, request

from service.infra.errors import ResultsHidden
from service.tallies import results
from service.voting.records import has_voted as voted
from service.web.owner import request_owner, require_owner
from service.web.voter import read_voter

OWNER_SECURITY = [{"bearerAuth": []}]


def owner_only(view=None, *, scope: str | None = None):
    """Check the owner's API key and its scope before anything else about the request
    (401, then 403 `insufficient_scope`); by default reading needs `read`, changing
    `write`."""

    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            require_owner(scope)
            return view(*args, **kwargs)

        return wrapper

    return decorator if view is None else decorator(view)


SCOPE_REFUSAL = "`insufficient_scope`: the key's scope does not allow this call"


def key_errors(blp):
    """Document what an owner endpoint that names no poll or webhook may refuse: 401 (no
    or a bad key) and 403 (a key of too narrow a scope)."""

    def document(view):
        view = blp.alt_response(403, description=SCOPE_REFUSAL)(view)
        return blp.alt_response(401, description="Missing or invalid API key")(view)

    return document


def owner_errors(blp, resource: str, *, not_found: str | None = None):
    """Document what every owner endpoint of one poll or webhook may answer besides its
    success: 401 (no or a bad key), 403 (another owner's, or a key of too narrow a
    scope), 404 (unknown)."""

    def document(view):
        view = blp.alt_response(404, description=not_found or f"Unknown {resource}")(view)
        view = blp.alt_response(403, description=f"`forbidden`: another owner's {resource}; "
                                                 + SCOPE_REFUSAL)(view)
        return blp.alt_response(401, description="Missing or invalid API key")(view)

    return document


def is_poll_owner(poll) -> bool:
    """Whether the request carries the poll's owner's key (401 for a bad key)."""
    owner = request_owner()
    return owner is not None and owner.id == poll.owner_id


def require_results_visible(poll, *, session, moment: datetime, is_owner: bool) -> None:
    """403 `results_hidden` unless the poll's `results` rule shows them to this reader."""
    secret = current_app.config["SECRET_KEY"]

    def has_voted() -> bool:
        voter = read_voter(request, secret)
        return voted(session=session, poll=poll, voter=voter, secret=secret)

    if not results.results_visible(poll, now=moment, is_owner=is_owner, has_voted=has_voted):
        raise ResultsHidden()
