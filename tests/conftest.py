"""Fixtures: the app on each stack, clients, owners, polls, a settable clock.

Stacks: SQLite + the in-process Redis stand-in (the embedded defaults), SQLite + the
real Redis, PostgreSQL + the real Redis. The real services are the machine's
(PostgreSQL 127.0.0.1:5432 database `test`, Redis 127.0.0.1:6379 database 13, or 15 in
the second pytest-xdist worker); with
POLLBOX_REQUIRE_SERVICES=1 a service that does not answer fails the run instead of
skipping its tests.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
import redis
import sqlalchemy as sa
from flask_migrate import upgrade

from service import create_app
from service.infra.db import db

# tests/run.sh runs two pytest-xdist workers; each has its own Redis databases (the
# PostgreSQL schemas are already one per process).
XDIST_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
REDIS_DATABASES = {0: (13, 14), 1: (15, 9)}[XDIST_WORKER]  # (unit tests, tests/e2e)
REDIS_URL = os.environ.get("POLLBOX_TEST_REDIS_URL",
                           f"redis://127.0.0.1:6379/{REDIS_DATABASES[0]}")
POSTGRES_BASE_URL = os.environ.get(
    "POLLBOX_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
# One schema per test run, dropped at its end: runs side by side do not collide.
POSTGRES_SCHEMA = f"pollbox_test_{os.getpid()}"
REQUIRE_SERVICES = os.environ.get("POLLBOX_REQUIRE_SERVICES") == "1"
SECRET = "test-secret-key"
STACKS = ("sqlite-fakeredis", "sqlite-redis", "postgresql-redis")
TABLES = ("vote_claims", "ballot_choices", "ballots", "options", "polls", "console_sessions",
          "api_keys", "owners")


def unavailable(what: str, error: Exception):
    message = f"{what} is not reachable: {type(error).__name__}: {error}"
    if REQUIRE_SERVICES:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def missing(what: str) -> None:
    """A program the tests need is not installed: a failure with
    POLLBOX_REQUIRE_SERVICES=1 (tests/run.sh installs them all), else a skip."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is missing (POLLBOX_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(f"{what} is missing")


def nginx_binary() -> str:
    """Debian's nginx, for the tests of deploy/nginx.conf (tests/run.sh installs it)."""
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if found is None:
        missing("nginx (apt-get install -y nginx-light)")
    return found


@pytest.fixture(scope="session")
def redis_url() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        unavailable("Redis", error)
    return REDIS_URL


def postgres_url_for(schema: str) -> str:
    return f"{POSTGRES_BASE_URL}?options=-csearch_path%3D{schema}"


@contextmanager
def migrated_postgres_schema(schema: str) -> Iterator[str]:
    """A fresh schema in the `test` database, migrated; dropped afterwards."""
    try:
        engine = sa.create_engine(POSTGRES_BASE_URL, connect_args={"connect_timeout": 3})
        with engine.begin() as connection:
            connection.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
            connection.execute(sa.text(f"CREATE SCHEMA {schema}"))
    except sa.exc.OperationalError as error:
        unavailable("PostgreSQL", error)
    url = postgres_url_for(schema)
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": SECRET})
    with app.app_context():
        upgrade()
        db.engine.dispose()
    try:
        yield url
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        engine.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with migrated_postgres_schema(POSTGRES_SCHEMA) as url:
        yield url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> str:
    """A migrated SQLite file, copied for each test."""
    path = tmp_path_factory.mktemp("template") / "pollbox.db"
    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}", "SECRET_KEY": SECRET})
    with app.app_context():
        upgrade()
        db.engine.dispose()
    return str(path)


class Clock:
    """A clock tests can move; the app reads it through `CLOCK`."""

    def __init__(self) -> None:
        self.frozen: datetime | None = None

    def __call__(self) -> datetime:
        return self.frozen or datetime.now(UTC)

    def advance(self, **delta) -> None:
        self.frozen = self() + timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=STACKS)
def stack(request) -> str:
    return request.param


@pytest.fixture
def database_url(stack, request, tmp_path) -> str:
    if stack.startswith("postgresql"):
        url = request.getfixturevalue("postgres_url")
        engine = sa.create_engine(url)
        with engine.begin() as connection:
            connection.execute(
                sa.text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
            )
        engine.dispose()
        return url
    template = request.getfixturevalue("sqlite_template")
    path = tmp_path / "pollbox.db"
    shutil.copyfile(template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def app(stack, database_url, clock, request):
    config = {
        "TESTING": True,
        "SECRET_KEY": SECRET,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "REDIS_URL": None,
        "CLOCK": clock,
        "RATELIMIT_VOTES": "10000 per minute",
        **getattr(request.module, "APP_CONFIG", {}),  # a test module's own settings
    }
    if stack.endswith("-redis"):
        url = request.getfixturevalue("redis_url")
        redis.Redis.from_url(url).flushdb()
        config["REDIS_URL"] = url
    app = create_app(config)
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def owner_key(app) -> str:
    from service import owners

    with app.app_context():
        return owners.create_owner(session=db.session, name="PsyWeb")


@pytest.fixture
def auth(owner_key) -> dict[str, str]:
    return {"Authorization": f"Bearer {owner_key}"}


@pytest.fixture
def other_auth(app) -> dict[str, str]:
    from service import owners

    with app.app_context():
        key = owners.create_owner(session=db.session, name="Someone else")
    return {"Authorization": f"Bearer {key}"}


SEED_POLL = {
    "question": "Are you currently taking or have you ever been prescribed anti-depressants?",
    "options": ["Yes, currently", "Yes, in the past", "No, never"],
}


@pytest.fixture
def make_poll(client, auth):
    """Create a poll through the API; returns its owner view."""

    def make(**fields) -> dict:
        body = {**SEED_POLL, **fields}
        response = client.post("/api/v1/polls", json=body, headers=auth)
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    return make


@pytest.fixture
def vote(app):
    """Vote as a given browser (cookie jar) from a given address."""

    def cast(poll: dict, choices=None, *, browser=None, ip="203.0.113.7", **fields):
        browser = browser or app.test_client()
        if choices is None:
            choices = [poll["options"][0]["id"]]
        body = {"choices": choices, **fields}
        return browser.post(
            f"/api/v1/polls/{poll['id']}/votes",
            json=body,
            environ_overrides={"REMOTE_ADDR": ip},
        )

    return cast


@pytest.fixture
def make_app(app, database_url):
    """Another app (another server) on the same database and the same Redis as `app`."""
    made = []

    def build(**config):
        extra = create_app({
            "TESTING": True,
            "SECRET_KEY": SECRET,
            "SQLALCHEMY_DATABASE_URI": database_url,
            "REDIS_URL": app.config["REDIS_URL"],
            "CLOCK": app.config["CLOCK"],
            **config,
        })
        if "REDIS_URL" not in config and not app.config["REDIS_URL"]:
            # Share the in-process stand-in, as servers share one real Redis.
            extra.extensions["pollbox.redis"] = app.extensions["pollbox.redis"]
        made.append(extra)
        return extra

    yield build
    for extra in made:
        with extra.app_context():
            db.engine.dispose()
