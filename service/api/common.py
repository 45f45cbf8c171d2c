"""Helpers shared by the API views."""

from __future__ import annotations

import functools
from datetime import datetime

from flask import current_app, request
from werkzeug.exceptions import UnsupportedMediaType

from service.owners import require_owner

OWNER_SECURITY = [{"bearerAuth": []}]
JSON_BODY_METHODS = {"POST", "PUT", "PATCH"}


def now() -> datetime:
    """The request's notion of now (tests may set `CLOCK`)."""
    return current_app.config["CLOCK"]()


def base_url() -> str:
    """The public base URL: `PUBLIC_BASE_URL`, else the one the request came in on."""
    return current_app.config.get("PUBLIC_BASE_URL") or request.host_url.rstrip("/")


def owner_only(view):
    """Check the owner's API key before anything else about the request (401 first)."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        require_owner()
        return view(*args, **kwargs)

    return wrapper


def require_json_body() -> None:
    """JSON endpoints answer 415 to any other content type."""
    if (
        request.method in JSON_BODY_METHODS
        and request.path.startswith("/api/")
        and not request.is_json
    ):
        raise UnsupportedMediaType("Send the body as JSON with 'Content-Type: application/json'.")
