"""Extensions, created unbound and bound to an app by the factory."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial, wraps
from importlib import resources

import fakeredis
import flask_limiter
import redis
from flask import Flask, current_app
from flask.globals import request_ctx
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy

from service import redis_client
from service.api.base import Api
from service.models import Base
from service.ratelimits import KEY_PREFIX, client_key

log = logging.getLogger(__name__)

REDIS_SOCKET_TIMEOUT_SECONDS = 2.0

db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})
migrate = Migrate(render_as_batch=True, compare_type=True)
api = Api()


class Limiter(flask_limiter.Limiter):
    """Flask-Limiter without its before-request pass when that pass has nothing to check.

    The pass applies application-wide, default and blueprint limits only; a view's own
    `@limiter.limit` is checked by its decorator when the view runs. This service sets
    limits on views alone, so on every other request (/embed.js, tallies, widgets) the
    pass only cost time: about 0.1 ms of CPU per request.
    """

    def _check_request_limit(self, callable_name: str | None = None,
                             in_middleware: bool = True) -> None:
        if in_middleware and not self._has_request_wide_limits():
            return
        super()._check_request_limit(callable_name=callable_name, in_middleware=in_middleware)

    def _has_request_wide_limits(self) -> bool:
        manager = self.limit_manager
        return bool(manager._application_limits or manager._default_limits
                    or manager._blueprint_limits or self._meta_limits)

    def init_app(self, app: Flask) -> None:
        """Its after-request (headers, conditional deductions) and teardown (reset) hooks
        run only on requests where a limit was checked: the others have no limiter state,
        and each hook would build an empty one just to find nothing in it (~5 µs)."""
        super().init_app(app)
        for table in (app.after_request_funcs, app.teardown_request_funcs):
            hooks = table.get(None, [])
            for index, hook in enumerate(hooks):
                if getattr(hook, "__self__", None) is self or (
                        isinstance(hook, partial) and hook.args == (self,)):
                    hooks[index] = _only_if_limiter_used(hook)


def _limiter_used() -> bool:
    """Whether the current request holds Flask-Limiter state (a limit was checked)."""
    return hasattr(request_ctx._get_current_object(), "_limiter_request_context")


def _only_if_limiter_used(hook):
    @wraps(hook)
    def run(value):
        return hook(value) if _limiter_used() else value

    run.limiter_hook = hook
    return run


# Bound by service.ratelimits.init_app: Redis storage from REDIS_URL, else memory.
limiter = Limiter(
    client_key,
    strategy="moving-window",
    in_memory_fallback_enabled=True,
    # Requests already talking to Redis when it dies are not covered by the fallback
    # (it switches once): without this they answered 500 (tests/faults, Redis SIGKILL).
    swallow_errors=True,
    key_prefix=KEY_PREFIX,
)


class Scripts:
    """The Lua scripts of `service/lua`, registered once per client (EVALSHA, NOSCRIPT
    handled by redis-py)."""

    NAMES = ("admit", "release", "count", "rebuild", "idempotency", "poll_and_tally")

    def __init__(self, client: redis.Redis):
        folder = resources.files("service").joinpath("lua")
        for name in self.NAMES:
            source = folder.joinpath(f"{name}.lua").read_text()
            setattr(self, name, client.register_script(source))


@dataclass(frozen=True)
class RedisHandle:
    """One Redis client per process, its scripts, and whether other processes share it."""

    client: redis.Redis
    scripts: Scripts
    shared: bool


def init_redis(app: Flask) -> None:
    """Create the process's Redis client: the real server, or an in-process stand-in."""
    url = app.config.get("REDIS_URL")
    if url:
        # One server, or a Redis Cluster (`redis+cluster://`): see service/redis_client.py.
        client = redis_client.connect(url, timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
                                      max_connections=app.config["REDIS_MAX_CONNECTIONS"])
        handle = RedisHandle(client=client, scripts=Scripts(client), shared=True)
    else:
        log.warning(
            "REDIS_URL is not set: using an in-process Redis stand-in. Duplicate checks and "
            "tallies are then per process; run one worker, or set REDIS_URL for more."
        )
        client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
        handle = RedisHandle(client=client, scripts=Scripts(client), shared=False)
    app.extensions["pollbox.redis"] = handle


def redis_handle() -> RedisHandle:
    """Return the current app's Redis client and scripts."""
    return current_app.extensions["pollbox.redis"]
