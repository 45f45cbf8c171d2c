"""Where the service is reached."""

from __future__ import annotations

from flask import current_app, request


def base_url() -> str:
    """The public base URL: `PUBLIC_BASE_URL`, else the one the request came in on."""
    return current_app.config.get("PUBLIC_BASE_URL") or request.host_url.rstrip("/")


def own_origin() -> str:
    """The origin this service is reached at (the widget's own pages vote from it)."""
    base = current_app.config.get("PUBLIC_BASE_URL") or request.host_url
    scheme, _, rest = base.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}".lower()
