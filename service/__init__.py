"""Pollbox: embeddable polls with atomic, de-duplicated votes and live tallies.

`create_app` wires; the packages do the work, in four layers that only import downwards
(checked by `lint-imports`, contracts in pyproject.toml):

- web adapters: `api` (the JSON API, OpenAPI), `widgets` (what visitors see), `console`
  (owners' pages), `cli` (flask commands); sharing `web` (cookies, owners' keys, CORS);
- use cases: `voting` (the vote, receipts, rate limits, idempotency, integrity), `polls`
  (polls, their cache and embedding), `feedback`, `exports`, `webhooks`, `owners`;
- read models: `tallies` (counts, results, live stream, reconcile);
- infrastructure: `infra` (config, clock, database and models, Redis with its scripts
  and outage policy, keys, identity hashes, errors, logs, metrics).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from service import api, cli, console, retention, webhooks, widgets
from service.infra import config as settings
from service.infra import db, errors, logs, metrics
from service.infra import redis as redis_store
from service.infra.clock import utcnow
from service.polls import cache as poll_cache
from service.tallies import recent, reconcile, stream
from service.voting import app as voting_app
from service.web import cors, hot, limiter, voter
from service.web.app import Pollbox

# What the factory registers, in order: extensions first, then what answers requests.
# Hooks run in this order too (before_request: CORS preflight before metrics' timer).
COMPONENTS: tuple[Callable[[Flask], None], ...] = (
    db.init_app,  # SQLAlchemy, Alembic migrations
    redis_store.init_app,  # the process's Redis client and scripts
    limiter.init_app,  # Flask-Limiter, for the console's sign-in
    api.init_app,  # the JSON API and its OpenAPI document; /healthz, /readyz
    errors.init_app,  # every error as problem+json
    poll_cache.init_app,  # polls cached per process, checked against a version token
    voting_app.init_app,  # the vote limits counted in memory while Redis is down
    voter.init_app,  # the signed voter cookie
    cors.init_app,  # CORS of the public poll endpoints
    stream.init_app,  # live tallies: one subscription per process
    recent.init_app,  # tallies read moments ago, kept per process while unchanged
    widgets.init_app,  # the widget, share page, oEmbed, SVG, embed.js
    metrics.init_app,  # /metrics and request timings
    cli.init_app,  # flask owners / demo / export
    reconcile.init_app,  # flask reconcile
    retention.init_app,  # flask purge
    webhooks.init_app,  # flask webhooks worker; in-process sending without a shared Redis
    console.init_app,  # the owner console at /console
    hot.init_app,  # public reads answered again from memory, in front of the rest
)


def create_app(config: Mapping | None = None) -> Flask:
    """Build the app from the environment, or from `config` (tests) over safe defaults."""
    environ = os.environ if config is None else {}
    # The instance folder (the SQLite file, the generated secret key): INSTANCE_PATH, or
    # Flask's default (./instance in a checkout; <prefix>/var/service-instance installed).
    instance = environ.get("INSTANCE_PATH") or (config or {}).get("INSTANCE_PATH")
    app = Pollbox(__name__, instance_relative_config=True,
                  instance_path=os.path.abspath(instance) if instance else None)
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
    app.json.ensure_ascii = False
    app.json.sort_keys = False
    # Logging is per process: the app built from the environment sets it up; tests, which
    # pass their config, keep pytest's unless they ask (LOG_FORMAT in their config).
    logs.init_app(app, configure_logging=config is None or "LOG_FORMAT" in config)
    proxies = app.config["TRUSTED_PROXY_COUNT"]
    if proxies:
        app.wsgi_app = ProxyFix(
            app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies, x_port=proxies
        )
    for register in COMPONENTS:
        register(app)
    return app
