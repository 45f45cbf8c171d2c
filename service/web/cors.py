"""CORS for the public poll endpoints (which sites may vote is the vote use-case's rule:
service/voting/ballot.py).

An empty `allowed_origins` means "embeddable anywhere": answers carry
`Access-Control-Allow-Origin: *` (no credentials). Otherwise only a listed origin is
named, with credentials; an arbitrary origin is never reflected, `null` never allowed.
"""

from __future__ import annotations

from flask import Flask, Response, current_app, g, request
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from service.infra.db import db
from service.infra.models import Poll

# Endpoints a browser on another site may call; all take `poll_id`.
PUBLIC_ENDPOINTS = {"polls.PollById", "votes.Votes", "tallies.Tallies"}
PREFLIGHT_MAX_AGE_SECONDS = 600
ALLOWED_REQUEST_HEADERS = "Content-Type, Idempotency-Key"
ALLOWED_METHODS = "GET, POST, OPTIONS"
# Answer headers a page's script needs beyond the CORS-safelisted ones.
EXPOSED_HEADERS = "ETag, Retry-After, Idempotent-Replayed"


def allow(poll) -> None:
    """Mark the answer as CORS-readable by the poll's allowed origins."""
    g.cors_origins = poll.allowed_origins


def _cors_headers(allowed: list[str]) -> dict[str, str]:
    origin = request.headers.get("Origin")
    if origin is None:
        return {}
    if not allowed:
        return {"Access-Control-Allow-Origin": "*",
                "Access-Control-Expose-Headers": EXPOSED_HEADERS}
    if origin in allowed:
        return {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true",
                "Access-Control-Expose-Headers": EXPOSED_HEADERS}
    return {}


def _requested_poll_origins() -> list[str] | None:
    """The allowed origins of the poll in the URL, looked up when no view did it (a
    preflight, or an error raised before the view ran); None when unknown."""
    poll_id = (request.view_args or {}).get("poll_id")
    try:
        return db.session.scalar(select(Poll.allowed_origins).where(Poll.id == poll_id))
    except DBAPIError:
        db.session.rollback()
        return None


def _preflight() -> Response | None:
    if request.method != "OPTIONS" or request.endpoint not in PUBLIC_ENDPOINTS:
        return None
    response = current_app.response_class(status=204)
    response.headers.update(_cors_headers(_requested_poll_origins() or []))
    if "Access-Control-Allow-Origin" in response.headers:
        response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
        response.headers["Access-Control-Allow-Headers"] = ALLOWED_REQUEST_HEADERS
        response.headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE_SECONDS)
    vary_on_origin(response)
    return response


def _add_headers(response: Response) -> Response:
    origins = g.get("cors_origins")
    if origins is None and request.endpoint in PUBLIC_ENDPOINTS and request.method != "OPTIONS":
        # e.g. a 400/415/422 raised while parsing, before the view named the poll
        origins = _requested_poll_origins() if "Origin" in request.headers else None
    if origins is not None:
        response.headers.update(_cors_headers(origins))
        vary_on_origin(response)
    return response


def vary_on_origin(response: Response) -> None:
    """Add `Origin` to the answer's `Vary` header, once. Its text is edited as it is:
    werkzeug's `response.vary` parses it into a set and writes it back, a twentieth of
    a tallies read."""
    headers = response.headers
    vary = headers.get("Vary")
    if not vary:
        headers["Vary"] = "Origin"
    elif "origin" not in (name.strip().lower() for name in vary.split(",")):
        headers["Vary"] = f"{vary}, Origin"


def init_app(app: Flask) -> None:
    app.before_request(_preflight)
    app.after_request(_add_headers)
