"""Vote rate limits (Flask-Limiter, moving window): per client address and poll.

The limiter (service.extensions.limiter) counts in Redis when REDIS_URL is set, so every
worker and server shares one count; while that Redis is down it counts in memory, per
process. Its keys hold a per-poll keyed hash of the address, never the address.
"""

from __future__ import annotations

import math
import time

from flask import Flask, Response, current_app, request
from flask_limiter import RequestLimit

from service.identity import client_address, keyed_hash

REDIS_TIMEOUT_SECONDS = 2.0
KEY_PREFIX = "pollbox-ratelimit"
MIN_RETRY_AFTER_SECONDS = 1


def vote_limit() -> str:
    """The configured vote limit, e.g. "60 per minute"."""
    return current_app.config["RATELIMIT_VOTES"]


def client_key() -> str:
    """Who is limited: the client address (IPv6 grouped by /64) in this poll, hashed."""
    poll_id = (request.view_args or {}).get("poll_id", "")
    address = client_address(request.remote_addr)
    return keyed_hash(current_app.config["SECRET_KEY"], poll_id, "ratelimit", address)


def count_refusal(_limit: RequestLimit) -> None:
    """Count a rate-limited vote in the poll's integrity numbers."""
    from service import integrity
    from service.api.common import now
    from service.extensions import redis_handle

    poll_id = (request.view_args or {}).get("poll_id")
    if poll_id:
        integrity.record(redis=redis_handle(), poll_id=poll_id, outcome="rate_limited",
                         at=now())


def _retry_after(response: Response) -> Response:
    """A 429 tells the client when its window frees a request (RFC 9110 Retry-After)."""
    if response.status_code != 429 or "Retry-After" in response.headers:
        return response
    from service.extensions import limiter

    seconds = MIN_RETRY_AFTER_SECONDS
    breached = limiter.current_limit
    if breached is not None:
        window = breached.limit.get_expiry()
        try:
            # reset_at is rounded up to a whole second: never promise more than a window.
            seconds = min(window, math.ceil(breached.reset_at - time.time()))
        except Exception:  # the storage failed meanwhile: the window's length is safe
            seconds = window
    response.headers["Retry-After"] = str(max(MIN_RETRY_AFTER_SECONDS, seconds))
    return response


def init_app(app: Flask) -> None:
    """Bind the limiter: Redis storage when configured, in memory otherwise."""
    from service.extensions import limiter

    redis_url = app.config.get("REDIS_URL")
    app.config.setdefault("RATELIMIT_STORAGE_URI", redis_url or "memory://")
    if redis_url:
        app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", {
            "socket_timeout": REDIS_TIMEOUT_SECONDS,
            "socket_connect_timeout": REDIS_TIMEOUT_SECONDS,
        })
    limiter.init_app(app)
    app.after_request(_retry_after)
