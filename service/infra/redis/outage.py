"""What happens when Redis fails, decided once.

Redis is speed and coordination; the database is the record. A Redis call that fails
must never fail the request: the caller falls back on the database, or skips what only
Redis would have done (a count that a rebuild redoes). Every such call runs inside
`RedisHandle.fallback(doing)` (the context manager below): it swallows the Redis error,
counts the fallback in `pollbox_redis_fallbacks{operation=doing}`, logs the outage once
when it starts and once when it ends, and remembers the tallies that missed a count, so
that they are rebuilt, exactly, from the database once Redis answers again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from redis import RedisError
from redis.exceptions import RedisClusterException

from service.infra import keys, metrics

log = logging.getLogger(__name__)

# Connection trouble shows as RedisError or, from a dead socket, OSError; a Redis Cluster
# whose nodes all went away as RedisClusterException.
REDIS_ERRORS = (RedisError, OSError, RedisClusterException)

# A tally scope: a poll's tally (context None) or the tally of one of its contexts.
Scope = tuple[str, str | None]


class Outage:
    """This process's view of a Redis outage: whether one is on, and which tallies
    missed counts during it."""

    def __init__(self) -> None:
        self.active = False
        self.stale: set[Scope] = set()

    def failed(self, error: BaseException, doing: str, *, missed: Iterable[Scope] = ()) -> None:
        metrics.REDIS_FALLBACKS.labels(doing).inc()
        self.stale.update(missed)
        if not self.active:
            self.active = True
            log.warning("Redis unavailable while %s (%s); using the database", doing,
                        type(error).__name__)

    def missed(self, scopes: Iterable[Scope]) -> None:
        """Counts that failed for another reason than an outage: their tallies are rebuilt
        after the next successful Redis call, as after an outage."""
        self.stale.update(scopes)

    def succeeded(self, client) -> None:
        """Redis answered: end the outage, and drop the tallies that missed counts (their
        next read rebuilds them from the database)."""
        if self.active:
            self.active = False
            log.warning("Redis is answering again")
        if self.stale:
            stale, self.stale = self.stale, set()
            try:
                client.delete(*(keys.tally(poll_id, context) for poll_id, context in stale))
            except REDIS_ERRORS:
                self.stale |= stale


incident = Outage()


class Fallback:
    """`with redis.fallback("reading a tally") as call:` runs Redis calls; on a Redis
    error the block ends, `call.failed` is True and the outage is noted (see the module
    docstring). Other errors pass through."""

    __slots__ = ("_client", "_doing", "_missed", "failed")

    def __init__(self, client, doing: str, missed: Iterable[Scope] = ()) -> None:
        self._client = client
        self._doing = doing
        self._missed = missed
        self.failed = False

    def __enter__(self) -> Fallback:
        return self

    def __exit__(self, kind, error, _traceback) -> bool:
        if kind is None:
            if incident.active or incident.stale:
                incident.succeeded(self._client)
            return False
        if issubclass(kind, REDIS_ERRORS):
            self.failed = True
            incident.failed(error, self._doing, missed=self._missed)
            return True
        return False
