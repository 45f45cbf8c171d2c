"""The process's Redis client from REDIS_URL: one server, or a Redis Cluster.

`redis+cluster://host:port` (or `rediss+cluster://`, the scheme the `limits` library of
Flask-Limiter also reads) names any node of a cluster; the client discovers the others.
Every key of a poll carries the `{poll id}` hash tag (service/infra/keys.py), so one poll's keys
share a slot and each Lua script runs on one node.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import redis
from redis.cluster import RedisCluster
from redis.commands.core import Script
from redis.connection import Encoder
from redis.exceptions import RedisClusterException

log = logging.getLogger(__name__)

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
HEALTH_CHECK_INTERVAL_SECONDS = 30


def connect(url: str, *, timeout: float, max_connections: int) -> redis.Redis | LazyCluster:
    """A client for REDIS_URL; for a cluster, one that connects on first use. At most
    `max_connections` (per node): further callers wait up to `timeout` for a free one
    rather than opening more."""
    options = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    scheme, rest = url.split("://", 1)
    if scheme in CLUSTER_SCHEMES:
        plain = f"{CLUSTER_SCHEMES[scheme]}://{rest}"
        return LazyCluster(lambda: RedisCluster.from_url(
            plain, max_connections=max_connections, **options))
    pool = redis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=timeout,
        health_check_interval=HEALTH_CHECK_INTERVAL_SECONDS, **options,
    )
    return redis.Redis(connection_pool=pool)


class LazyCluster:
    """A RedisCluster created on first use.

    Creating one asks a node for the cluster's layout: done in the factory, a cluster
    that is down at start would stop the app from starting, where the service is meant
    to run on the database until Redis is back. Until then, each use raises a
    ConnectionError, which callers handle as any Redis outage.
    """

    def __init__(self, factory: Callable[[], RedisCluster]):
        self._factory = factory
        self._client: RedisCluster | None = None
        self._lock = threading.Lock()
        self._encoder = Encoder(encoding="utf-8", encoding_errors="strict",
                                decode_responses=False)

    def client(self) -> RedisCluster:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    try:
                        self._client = self._factory()
                    except RedisClusterException as error:
                        raise redis.ConnectionError(f"Redis Cluster unreachable: {error}") \
                            from error
        return self._client

    def get_encoder(self) -> Encoder:
        """For redis-py's Script: encode a script without connecting."""
        return self._encoder

    def register_script(self, source: str) -> Script:
        return Script(self, source)

    def __getattr__(self, name: str):
        return getattr(self.client(), name)
