"""Flask-Limiter, for limits on views (the console's sign-in).

Votes are not limited here: the vote use-case counts every attempt, from the API and the
no-JS widget form alike, inside its own Redis call (service/voting/ratelimits.py).
"""

from __future__ import annotations

import math
import time
from functools import partial, wraps

import flask_limiter
from flask import Flask, Response, current_app, request
from flask.globals import request_ctx

from service.infra.identity import client_address, keyed_hash

REDIS_TIMEOUT_SECONDS = 2.0
KEY_PREFIX = "pollbox-ratelimit"
MIN_RETRY_AFTER_SECONDS = 1


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


def client_key() -> str:
    """Who a limit counts, unless it names its own key: a keyed hash of the client
    address (identity.client_address: IPv6 grouped by /64), never the address."""
    return keyed_hash(current_app.config["SECRET_KEY"], "", "ratelimit",
                      client_address(request.remote_addr))


limiter = Limiter(
    client_key,
    strategy="moving-window",
    in_memory_fallback_enabled=True,
    # Requests already talking to Redis when it dies are not covered by the fallback
    # (it switches once): without this they answered 500 (tests/faults, Redis SIGKILL).
    swallow_errors=True,
    key_prefix=KEY_PREFIX,
)


def _retry_after(response: Response) -> Response:
    """A 429 tells the client when its window frees a request (RFC 9110 Retry-After)."""
    if response.status_code != 429 or "Retry-After" in response.headers:
        return response
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
    redis_url = app.config.get("REDIS_URL")
    app.config.setdefault("RATELIMIT_STORAGE_URI", redis_url or "memory://")
    if redis_url:
        app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", {
            "socket_timeout": REDIS_TIMEOUT_SECONDS,
            "socket_connect_timeout": REDIS_TIMEOUT_SECONDS,
        })
    limiter.init_app(app)
    app.after_request(_retry_after)
