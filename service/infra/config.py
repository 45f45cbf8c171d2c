"""Every setting, read once from the environment and coerced."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path

DEFAULT_MAX_CONTENT_LENGTH = 64 * 1024
DEFAULT_RATELIMIT_VOTES = "60 per minute"
# The numbers a browser may have to try for a proof of work (half of them on average).
# Measured (bench/challenge_solve.py, bench/README.md): Chromium on a CPU 4x slower, as a
# mid-range phone's, solves 90 % of challenges in 0.8 s at 20,000 (1.0 s at 25,000, 1.6 s
# at 50,000).
DEFAULT_CHALLENGE_MAX_NUMBER = 20_000
DEFAULT_CHALLENGE_AUTO_MIN_REFUSALS = 30
DEFAULT_CHALLENGE_AUTO_FACTOR = 10
DEFAULT_CHALLENGE_AUTO_QUIET_SECONDS = 600
DEFAULT_CAPTCHA_TIMEOUT_SECONDS = 3
CAPTCHA_PROVIDERS = ("", "turnstile", "hcaptcha")
DEFAULT_CONSOLE_SIGNIN_LIMIT = "10 per minute"
SECRET_KEY_FILE = "secret_key"
LOG_FORMATS = ("json", "text")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_RECONCILE_INTERVAL_SECONDS = 300
# How long a process answers tallies read moments ago from memory, when it has heard of
# no change since (service/tallies/recent.py TallyCache); 0: every read asks Redis.
DEFAULT_TALLIES_CACHE_MS = 250
DEFAULT_RETENTION_PURGE_INTERVAL_SECONDS = 3600
# Per worker process: gunicorn runs WEB_CONCURRENCY of them, so a deployment opens up to
# workers x (pool + overflow) database connections; keep that below PostgreSQL's
# max_connections (100 by default). Reads of polls and tallies use no connection while
# cached (service/polls/cache.py): connections serve votes, new visitors' widgets and
# owners' requests. No overflow: a gevent worker serves far more requests at once than
# it has connections, and an overflow connection is closed as soon as it is given back,
# so under load every request past the pool opened and closed one of its own (on
# PostgreSQL a new server process each time: the bench's votes and new visitors' widget
# reads ran at about half their speed). The pool keeps the 20 it may open.
DEFAULT_DATABASE_POOL_SIZE = 20
DEFAULT_DATABASE_MAX_OVERFLOW = 0
# Per worker process: a gevent worker serves up to 1,000 requests at once; beyond this
# many Redis connections, requests wait (up to the socket timeout) for a free one.
DEFAULT_REDIS_MAX_CONNECTIONS = 64
# Seconds before each retry of a failed webhook delivery: 8 attempts over about 27.6 h.
DEFAULT_WEBHOOK_RETRY_DELAYS = (5, 300, 1800, 7200, 18000, 36000, 36000)
# Ports a webhook URL may name (unless WEBHOOKS_ALLOW_PRIVATE): https ones, not the admin
# or database services a public host may also listen on.
DEFAULT_WEBHOOK_ALLOWED_PORTS = (443, 8443)
PORT_MAX = 65535


class ConfigError(ValueError):
    """A setting in the environment cannot be used."""


def from_environ(environ: Mapping[str, str], instance_path: str) -> dict:
    """Read the service's settings from an environment mapping."""
    config = {
        "SQLALCHEMY_DATABASE_URI": database_uri(environ.get("DATABASE_URL"), instance_path),
        "REDIS_URL": environ.get("REDIS_URL") or None,
        "REDIS_MAX_CONNECTIONS": _int(
            environ, "REDIS_MAX_CONNECTIONS", DEFAULT_REDIS_MAX_CONNECTIONS, minimum=1
        ),
        "DATABASE_POOL_SIZE": _int(
            environ, "DATABASE_POOL_SIZE", DEFAULT_DATABASE_POOL_SIZE, minimum=1
        ),
        "DATABASE_MAX_OVERFLOW": _int(
            environ, "DATABASE_MAX_OVERFLOW", DEFAULT_DATABASE_MAX_OVERFLOW, minimum=0
        ),
        "TRUSTED_PROXY_COUNT": _int(environ, "TRUSTED_PROXY_COUNT", 0, minimum=0),
        "MAX_CONTENT_LENGTH": _int(
            environ, "MAX_CONTENT_LENGTH", DEFAULT_MAX_CONTENT_LENGTH, minimum=1024
        ),
        "RATELIMIT_VOTES": environ.get("RATELIMIT_VOTES") or DEFAULT_RATELIMIT_VOTES,
        # Owner console sign-in attempts per client address (Flask-Limiter syntax).
        "CONSOLE_SIGNIN_LIMIT": (
            environ.get("CONSOLE_SIGNIN_LIMIT") or DEFAULT_CONSOLE_SIGNIN_LIMIT
        ),
        "PUBLIC_BASE_URL": (environ.get("PUBLIC_BASE_URL") or "").rstrip("/") or None,
        # Flask's own: when set, a request for any other Host is a 400. When unset and
        # PUBLIC_BASE_URL is unset too, absolute URLs are built only for loopback hosts.
        "TRUSTED_HOSTS": _names(environ, "TRUSTED_HOSTS"),
        "LOG_FORMAT": _choice(environ, "LOG_FORMAT", "json", LOG_FORMATS),
        "LOG_LEVEL": _choice(environ, "LOG_LEVEL", "INFO", LOG_LEVELS, upper=True),
        # Set (by deploy/gunicorn.conf.py) when several worker processes share metrics.
        "PROMETHEUS_MULTIPROC_DIR": environ.get("PROMETHEUS_MULTIPROC_DIR") or None,
        "RETENTION_PURGE_INTERVAL_SECONDS": _int(
            environ, "RETENTION_PURGE_INTERVAL_SECONDS",
            DEFAULT_RETENTION_PURGE_INTERVAL_SECONDS, minimum=0,
        ),
        "RECONCILE_INTERVAL_SECONDS": _int(
            environ, "RECONCILE_INTERVAL_SECONDS", DEFAULT_RECONCILE_INTERVAL_SECONDS, minimum=0
        ),
        # Development only: webhooks to http:// and to loopback/private/link-local addresses.
        "WEBHOOKS_ALLOW_PRIVATE": environ.get("WEBHOOKS_ALLOW_PRIVATE") in ("1", "true"),
        "WEBHOOK_RETRY_DELAYS": DEFAULT_WEBHOOK_RETRY_DELAYS,
        "TALLIES_CACHE_MS": _int(environ, "TALLIES_CACHE_MS", DEFAULT_TALLIES_CACHE_MS,
                                 minimum=0),
        # Bot protection (service/voting/challenge.py): the numbers a browser may have to
        # try, and when an `auto` poll looks attacked.
        "CHALLENGE_MAX_NUMBER": _int(environ, "CHALLENGE_MAX_NUMBER",
                                     DEFAULT_CHALLENGE_MAX_NUMBER, minimum=1000),
        "CHALLENGE_AUTO_MIN_REFUSALS": _int(environ, "CHALLENGE_AUTO_MIN_REFUSALS",
                                            DEFAULT_CHALLENGE_AUTO_MIN_REFUSALS, minimum=1),
        "CHALLENGE_AUTO_FACTOR": _int(environ, "CHALLENGE_AUTO_FACTOR",
                                      DEFAULT_CHALLENGE_AUTO_FACTOR, minimum=1),
        "CHALLENGE_AUTO_QUIET_SECONDS": _int(environ, "CHALLENGE_AUTO_QUIET_SECONDS",
                                             DEFAULT_CHALLENGE_AUTO_QUIET_SECONDS, minimum=1),
        "WEBHOOK_ALLOWED_PORTS": _ports(
            environ, "WEBHOOK_ALLOWED_PORTS", DEFAULT_WEBHOOK_ALLOWED_PORTS
        ),
        **_captcha(environ),
    }
    if environ.get("SECRET_KEY"):
        config["SECRET_KEY"] = environ["SECRET_KEY"]
    return config


def _captcha(environ: Mapping[str, str]) -> dict:
    """The optional third-party captcha: a provider needs both of its keys."""
    provider = _choice(environ, "CAPTCHA_PROVIDER", "", CAPTCHA_PROVIDERS)
    site_key = environ.get("CAPTCHA_SITE_KEY") or None
    secret_key = environ.get("CAPTCHA_SECRET_KEY") or None
    if provider and not (site_key and secret_key):
        raise ConfigError("CAPTCHA_PROVIDER needs CAPTCHA_SITE_KEY and CAPTCHA_SECRET_KEY")
    return {
        "CAPTCHA_PROVIDER": provider or None,
        "CAPTCHA_SITE_KEY": site_key,
        "CAPTCHA_SECRET_KEY": secret_key,
        # The provider's siteverify endpoint unless set (tests point it at a fake).
        "CAPTCHA_VERIFY_URL": environ.get("CAPTCHA_VERIFY_URL") or None,
        "CAPTCHA_TIMEOUT_SECONDS": _int(environ, "CAPTCHA_TIMEOUT_SECONDS",
                                        DEFAULT_CAPTCHA_TIMEOUT_SECONDS, minimum=1),
    }


def database_uri(url: str | None, instance_path: str) -> str:
    """Turn DATABASE_URL into an SQLAlchemy URI using psycopg 3 for PostgreSQL."""
    if not url:
        return f"sqlite:///{Path(instance_path) / 'pollbox.db'}"
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def instance_secret_key(instance_path: str) -> str:
    """Return the secret kept in the instance folder, creating it on first run."""
    path = Path(instance_path) / SECRET_KEY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: two workers starting together must agree on one key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_text().strip()
        if key:
            return key
        raise ConfigError(f"{path} is empty; delete it or set SECRET_KEY") from None
    key = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


def _int(environ: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    raw = environ.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _ports(environ: Mapping[str, str], name: str,
           default: tuple[int, ...]) -> frozenset[int]:
    raw = environ.get(name) or ""
    if not raw.strip():
        return frozenset(default)
    try:
        ports = frozenset(int(part) for part in raw.split(","))
    except ValueError:
        raise ConfigError(f"{name} must be comma-separated port numbers, got {raw!r}") from None
    if not all(1 <= port <= PORT_MAX for port in ports):
        raise ConfigError(f"{name} must hold ports from 1 to {PORT_MAX}, got {raw!r}")
    return ports


def _names(environ: Mapping[str, str], name: str) -> list[str] | None:
    """A comma-separated list, or None when unset."""
    names = [part.strip() for part in (environ.get(name) or "").split(",") if part.strip()]
    return names or None


def _choice(environ: Mapping[str, str], name: str, default: str, choices: tuple[str, ...],
            *, upper: bool = False) -> str:
    raw = (environ.get(name) or default).strip()
    value = raw.upper() if upper else raw.lower()
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return value
