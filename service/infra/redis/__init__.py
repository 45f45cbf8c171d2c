"""Redis in one place: the process's client (`client`), every Lua script (`scripts`) and
the outage policy (`outage`), bound to the app as one `RedisHandle`.

With REDIS_URL set, the client talks to one Redis server or a Redis Cluster; without it,
to an in-process stand-in (fakeredis), fine for one process. One client per process:
creating one per request costs more than half the throughput.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from flask import Flask, current_app

from service.infra.redis.client import LazyCluster, connect
from service.infra.redis.lease import ProcessLease
from service.infra.redis.outage import REDIS_ERRORS, Fallback, Scope, incident
from service.infra.redis.scripts import Scripts

__all__ = ["REDIS_ERRORS", "RedisHandle", "Scope", "incident", "init_app", "redis_handle"]

log = logging.getLogger(__name__)

EXTENSION = "pollbox.redis"
REDIS_SOCKET_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class RedisHandle:
    """One Redis client per process, its scripts, whether other processes share it, and
    the process's lease (how others tell its votes in flight from dead ones)."""

    client: object
    scripts: Scripts
    shared: bool
    lease: ProcessLease = field(default_factory=ProcessLease)

    @property
    def on_cluster(self) -> bool:
        """A Redis Cluster: one script reaches the keys of one hash slot only."""
        return isinstance(self.client, LazyCluster)

    def deliver(self) -> None:
        """Return once the change messages this process published so far are on every
        subscriber's socket, where other processes' tallies caches look for them
        (Scripts.delivered; nothing unless those caches are on)."""
        self.scripts.delivered()

    def fallback(self, doing: str, *, missed: tuple[Scope, ...] = ()) -> Fallback:
        """A context manager for Redis calls that degrade (see `outage`); `missed` names
        the tallies whose counts are lost if the calls fail."""
        return Fallback(self.client, doing, missed)


def init_app(app: Flask) -> None:
    """Create the process's Redis client: the real server, or an in-process stand-in."""
    url = app.config.get("REDIS_URL")
    if url:
        client = connect(url, timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
                         max_connections=app.config["REDIS_MAX_CONNECTIONS"])
    else:
        log.warning(
            "REDIS_URL is not set: using an in-process Redis stand-in. Duplicate checks and "
            "tallies are then per process; run one worker, or set REDIS_URL for more."
        )
        # Imported only here: with numpy, lupa and valkey it is ~13 MB of each worker's
        # memory, and a service with REDIS_URL set never needs it.
        import fakeredis

        client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    on_cluster = isinstance(client, LazyCluster)
    # Other processes' tallies caches trust what their subscription has not heard yet
    # only on one Redis server (service/tallies/stream.py StreamHub.unheard); a vote is
    # answered there only once its change message is on their sockets.
    deliver = bool(url) and not on_cluster and app.config["TALLIES_CACHE_MS"] > 0
    scripts = Scripts(client, batched=not on_cluster, deliver=deliver)
    app.extensions[EXTENSION] = RedisHandle(client=client, scripts=scripts, shared=bool(url))


def redis_handle() -> RedisHandle:
    """The current app's Redis client and scripts."""
    return current_app.extensions[EXTENSION]
