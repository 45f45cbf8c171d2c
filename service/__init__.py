"""Pollbox: embeddable polls with atomic, de-duplicated votes and live tallies."""

from __future__ import annotations

import contextlib
import os
import weakref
from collections.abc import Callable, Mapping

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import make_url
from werkzeug.middleware.proxy_fix import ProxyFix

from service import config as settings
from service import logging_setup
from service.models import utcnow

SQLITE_BUSY_TIMEOUT_MS = 15_000


class Pollbox(Flask):
    """Flask, remembering which hooks and views are plain functions.

    Flask asks `inspect.iscoroutinefunction` about every hook and the view on every
    request (16 times for embed.js), about a tenth of the work of an answer without I/O.
    A function's answer never changes; it is kept for as long as the function lives."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._plain_functions: weakref.WeakSet = weakref.WeakSet()

    def ensure_sync(self, func: Callable) -> Callable:
        if func in self._plain_functions:
            return func
        ensured = super().ensure_sync(func)
        if ensured is func:
            with contextlib.suppress(TypeError):  # not weakly referable: asked every time
                self._plain_functions.add(func)
        return ensured


def create_app(config: Mapping | None = None) -> Flask:
    """Build the app from the environment, or from `config` (tests) over safe defaults."""
    app = Pollbox(__name__, instance_relative_config=True)
    environ = os.environ if config is None else {}
    app.config.update(settings.from_environ(environ, app.instance_path))
    app.config.update(
        API_TITLE="Pollbox",
        API_VERSION="1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api/v1",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL="/api/v1/docs/assets/",
        CLOCK=utcnow,
    )
    app.config.update(config or {})
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = settings.instance_secret_key(app.instance_path)
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", engine_options(app.config))
    app.json.ensure_ascii = False
    app.json.sort_keys = False
    # Logging is per process: the app built from the environment sets it up; tests, which
    # pass their config, keep pytest's unless they ask (LOG_FORMAT in their config).
    logging_setup.init_app(app, configure_logging=config is None or "LOG_FORMAT" in config)

    proxies = app.config["TRUSTED_PROXY_COUNT"]
    if proxies:
        app.wsgi_app = ProxyFix(
            app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies, x_port=proxies
        )

    _init_extensions(app)
    _register(app)
    return app


def engine_options(config: Mapping) -> dict:
    """Pool and driver settings for the configured database."""
    url = make_url(config["SQLALCHEMY_DATABASE_URI"])
    pool = {"pool_size": config["DATABASE_POOL_SIZE"],
            "max_overflow": config["DATABASE_MAX_OVERFLOW"]}
    if url.get_backend_name() == "sqlite":
        if url.database in (None, "", ":memory:"):
            pool = {}  # one in-memory database, one shared connection: nothing to size
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **pool}
    return {"pool_pre_ping": True, **pool}


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers and one writer work at once. Writers queue for the busy timeout,
    # set by the driver's `timeout` connect argument (engine_options, or the configured
    # SQLALCHEMY_ENGINE_OPTIONS): a PRAGMA here would override the configuration.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _init_extensions(app: Flask) -> None:
    from service import ratelimits
    from service.extensions import api, db, init_redis, migrate

    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    if uri.startswith("sqlite:///"):
        os.makedirs(os.path.dirname(uri.removeprefix("sqlite:///")) or ".", exist_ok=True)
    db.init_app(app)
    if uri.startswith("sqlite"):
        with app.app_context():
            event.listen(db.engine, "connect", _sqlite_pragmas)
    migrate.init_app(app, db, directory=os.path.join(os.path.dirname(app.root_path), "migrations"))
    init_redis(app)
    ratelimits.init_app(app)
    api.init_app(app)
    api.spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "description": "An owner's API key."}
    )


def _register(app: Flask) -> None:
    from service import cli, console, cors, errors, identity, metrics, ops, poll_cache, reconcile
    from service.api import exports as exports_api
    from service.api import integrity as integrity_api
    from service.api import polls, tallies, votes
    from service.api import receipts as receipts_api
    from service.extensions import api

    errors.init_app(app)
    poll_cache.init_app(app)
    identity.init_app(app)
    cors.init_app(app)
    for blueprint in (polls.blp, votes.blp, tallies.blp):
        api.register_blueprint(blueprint)
    api.register_blueprint(exports_api.blp)
    for blueprint in (receipts_api.blp, integrity_api.blp):
        api.register_blueprint(blueprint)
    from service import stream, widgets
    from service.api import stream as stream_api

    api.register_blueprint(stream_api.blp)
    stream.init_app(app)
    widgets.init_app(app)
    ops.init_app(app)
    metrics.init_app(app)
    cli.init_app(app)
    reconcile.init_app(app)
    from service import webhooks
    from service.api import feedback as feedback_api
    from service.api import webhooks as webhooks_api

    api.register_blueprint(feedback_api.blp)
    api.register_blueprint(webhooks_api.blp)
    webhooks.init_app(app)
    console.init_app(app)
