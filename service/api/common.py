"""Helpers shared by the API views."""

from __future__ import annotations

import functools
from datetime import datetime

from flask import current_app, request

from service.owners import require_owner

OWNER_SECURITY = [{"bearerAuth": []}]


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
