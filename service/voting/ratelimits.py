"""Vote rate limits (moving window): per client address and poll.

Every vote attempt counts, refused ones too, from the JSON API and the no-JS widget form
alike: inside the vote's first Redis round trip (admit.lua, with the Idempotency-Key and
the duplicate check), in a list of attempt times per limit, address and poll, as the
`limits` library keeps a moving window, under the poll's `{poll id}` hash tag. While
Redis is down, attempts are counted in memory, per process (`MemoryLimits`). Keys hold a
per-poll keyed hash of the address, never the address.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import lru_cache

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from service.infra.errors import ServiceError
from service.infra.identity import keyed_hash
from service.infra.redis.scripts import LimitWindow

MIN_RETRY_AFTER_SECONDS = 1


class RateLimited(ServiceError):
    status, code = 429, "rate_limited"
    detail = "Too many votes from this address in this poll. Please retry later."

    def __init__(self, retry_after_seconds: float):
        seconds = max(MIN_RETRY_AFTER_SECONDS, math.ceil(retry_after_seconds))
        super().__init__(headers={"Retry-After": str(seconds)})


@dataclass(frozen=True)
class Limit:
    """One limit of RATELIMIT_VOTES: `amount` attempts per `window_ms`."""

    window: LimitWindow
    item: RateLimitItem  # the same limit for the in-memory fallback


@lru_cache(maxsize=8)
def parse_limits(text: str) -> tuple[Limit, ...]:
    """RATELIMIT_VOTES ("60 per minute", or several joined by ';'), parsed once."""
    return tuple(Limit(LimitWindow(item.amount, item.get_expiry() * 1000), item)
                 for item in parse_many(text))


def address_hash(*, secret: str, poll_id: str, address: str) -> str:
    """Who is limited: the client address (identity.client_address: IPv6 grouped by /64)
    in this poll, hashed."""
    return keyed_hash(secret, poll_id, "ratelimit", address)


class MemoryLimits:
    """The limits counted in this process while Redis is down."""

    def __init__(self) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def hit(self, *, poll_id: str, address: str, limits: tuple[Limit, ...]) -> None:
        """Count one attempt; RateLimited (counting nothing) when over a limit."""
        for limit in limits:
            if not self._limiter.test(limit.item, poll_id, address):
                reset = self._limiter.get_window_stats(limit.item, poll_id, address).reset_time
                raise RateLimited(min(limit.window.window_ms / 1000, reset - time.time()))
        for limit in limits:
            self._limiter.hit(limit.item, poll_id, address)
