"""Vote rate limits (moving window): per client address and poll.

API votes (`POST /api/v1/polls/<id>/votes`) are counted inside the vote's first Redis
round trip (lua/admit.lua), with the rate limit, the Idempotency-Key and the duplicate
check in one script: a list of attempt times per limit, address and poll, as the `limits`
library keeps a moving window, under the poll's `{poll id}` hash tag (one Redis Cluster
slot with the poll's other keys). Every attempt counts, refused ones too; one that fails
before the script ran (an invalid body, another site's origin) is counted by
`count_attempt`. While Redis is down attempts are counted in memory, per process.

The no-JS widget form keeps Flask-Limiter (service.extensions.limiter, its own window).
Limiter and vote keys hold a per-poll keyed hash of the address, never the address.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import lru_cache

from flask import Flask, Response, current_app, request
from flask_limiter import RequestLimit
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from service import keys
from service.errors import ServiceError
from service.identity import client_address, keyed_hash

REDIS_TIMEOUT_SECONDS = 2.0
KEY_PREFIX = "pollbox-ratelimit"
MIN_RETRY_AFTER_SECONDS = 1
FALLBACK_EXTENSION = "pollbox.vote_limits_in_memory"


class RateLimited(ServiceError):
    status, code = 429, "rate_limited"
    detail = "Too many votes from this address in this poll. Please retry later."

    def __init__(self, retry_after_seconds: float):
        seconds = max(MIN_RETRY_AFTER_SECONDS, math.ceil(retry_after_seconds))
        super().__init__(headers={"Retry-After": str(seconds)})


@dataclass(frozen=True)
class Limit:
    """One limit of RATELIMIT_VOTES: `amount` attempts per `window_ms`."""

    amount: int
    window_ms: int
    item: RateLimitItem  # the same limit for the in-memory fallback


@lru_cache(maxsize=8)
def parse_limits(text: str) -> tuple[Limit, ...]:
    """RATELIMIT_VOTES ("60 per minute", or several joined by ';'), parsed once."""
    return tuple(Limit(item.amount, item.get_expiry() * 1000, item) for item in parse_many(text))


def vote_limits() -> tuple[Limit, ...]:
    """The configured vote limits."""
    return parse_limits(vote_limit())


def vote_limit() -> str:
    """The configured vote limit, e.g. "60 per minute"."""
    return current_app.config["RATELIMIT_VOTES"]


def address_hash(*, secret: str, poll_id: str, address: str) -> str:
    """Who is limited: the client address (identity.client_address: IPv6 grouped by /64)
    in this poll, hashed."""
    return keyed_hash(secret, poll_id, "ratelimit", address)


def client_key() -> str:
    """Flask-Limiter's key (the widget form): the same keyed hash of the address."""
    poll_id = (request.view_args or {}).get("poll_id", "")
    return address_hash(secret=current_app.config["SECRET_KEY"], poll_id=poll_id,
                        address=client_address(request.remote_addr))


def limit_keys(*, poll_id: str, address: str, limits: tuple[Limit, ...]) -> list[str]:
    """The moving-window lists of these limits for one address hash in one poll."""
    return [keys.rate_limit(poll_id, address, limit.amount, limit.window_ms) for limit in limits]


def hit_in_memory(*, poll_id: str, address: str, limits: tuple[Limit, ...]) -> None:
    """Count an attempt in this process while Redis is down; RateLimited when over."""
    limiter: MovingWindowRateLimiter = current_app.extensions[FALLBACK_EXTENSION]
    for limit in limits:
        if not limiter.test(limit.item, poll_id, address):
            reset = limiter.get_window_stats(limit.item, poll_id, address).reset_time
            raise RateLimited(min(limit.window_ms / 1000, reset - time.time()))
    for limit in limits:
        limiter.hit(limit.item, poll_id, address)


def count_refusal(_limit: RequestLimit) -> None:
    """Count a rate-limited widget vote in the poll's integrity numbers."""
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
    app.extensions[FALLBACK_EXTENSION] = MovingWindowRateLimiter(MemoryStorage())
    app.after_request(_retry_after)
