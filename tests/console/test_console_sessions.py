"""Console sessions end on the server: after sign-out, a new sign-in or a key rotation a
copied cookie opens nothing, whether Redis answers, forgot the session or is down; while
Redis is down the database alone keeps live sessions working."""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from datetime import timedelta

import pytest
import redis
from sqlalchemy import select

from service.console.sessions import SESSION_SECONDS
from service.infra import keys
from service.infra.db import db
from service.infra.models import ApiKey, ConsoleSession, Owner
from service.infra.redis import redis_handle
from tests.console.console_client import ConsoleClient, sign_in

COOKIE = "pollbox_console"
SIGN_IN = "/console/sign-in"


def copied_cookie(client) -> str:
    return client.get_cookie(COOKIE).value


def replay(app, cookie: str):
    """A console page asked for by another browser holding a copy of the cookie."""
    thief = app.test_client()
    thief.set_cookie(COOKIE, cookie)
    return thief.get("/console/polls")


def assert_sent_to_sign_in(response) -> None:
    assert response.status_code == 302
    assert response.headers["Location"].startswith(SIGN_IN)


def session_hash_of(client) -> str:
    with client.session_transaction("/console/") as session:
        return hashlib.sha256(session["sid"].encode()).hexdigest()


def redis_client(app):
    with app.app_context():
        return redis_handle().client


@contextmanager
def redis_down(app):
    """Every Redis call fails, as when the server is unreachable."""

    def refuse(*_args, **_kwargs):
        raise redis.ConnectionError("Redis is down")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(redis_client(app), "execute_command", refuse)
        yield


def stored_sessions(app) -> list[ConsoleSession]:
    with app.app_context():
        rows = db.session.scalars(select(ConsoleSession).order_by(ConsoleSession.created_at))
        return list(rows)


@pytest.mark.parametrize("redis_then", ["answering", "down", "flushed"])
def test_a_copied_cookie_opens_nothing_after_sign_out(app, owner_key, redis_then):
    console = ConsoleClient(app.test_client(), owner_key)
    cookie = copied_cookie(console.client)
    assert replay(app, cookie).status_code == 200

    assert console.post("/console/sign-out").status_code == 302

    if redis_then == "flushed":
        redis_client(app).flushdb()
    if redis_then == "down":
        with redis_down(app):
            assert_sent_to_sign_in(replay(app, cookie))
    else:
        assert_sent_to_sign_in(replay(app, cookie))
    [row] = stored_sessions(app)
    assert row.revoked_at is not None


def test_a_sign_out_while_redis_is_down_holds_once_redis_is_back(app, owner_key):
    console = ConsoleClient(app.test_client(), owner_key)
    cookie = copied_cookie(console.client)
    key = keys.console_session(session_hash_of(console.client))

    with redis_down(app):
        assert console.post("/console/sign-out").status_code == 302

    assert redis_client(app).exists(key)  # Redis missed the sign-out ...
    assert_sent_to_sign_in(replay(app, cookie))  # ... the database did not


def test_a_session_redis_forgot_ends_for_good(app, console):
    cookie = copied_cookie(console.client)
    redis_client(app).flushdb()

    assert_sent_to_sign_in(console.get("/console/polls"))

    with redis_down(app):
        assert_sent_to_sign_in(replay(app, cookie))


def test_a_live_session_keeps_working_while_redis_is_down(app, console):
    cookie = copied_cookie(console.client)

    with redis_down(app):
        assert console.get("/console/polls").status_code == 200
        assert replay(app, cookie).status_code == 200
        assert console.post("/console/sign-out").status_code == 302
        assert_sent_to_sign_in(replay(app, cookie))


def test_signing_in_while_redis_is_down_opens_the_console(app, client, owner_key):
    with redis_down(app):
        assert sign_in(client, owner_key).status_code == 302
        assert client.get("/console/polls").status_code == 200

    [row] = stored_sessions(app)
    assert row.revoked_at is None


def test_rotating_the_key_ends_every_console_session_of_its_owner(
    app, owner_key, other_console
):
    consoles = [ConsoleClient(app.test_client(), owner_key) for _ in range(2)]
    cookies = [copied_cookie(console.client) for console in consoles]

    result = app.test_cli_runner().invoke(args=["owners", "keys", "rotate", "PsyWeb"])

    assert result.exit_code == 0, result.output
    for cookie in cookies:
        assert_sent_to_sign_in(replay(app, cookie))
        with redis_down(app):
            assert_sent_to_sign_in(replay(app, cookie))
    with app.app_context():
        revoked = db.session.execute(
            select(Owner.name, ConsoleSession.revoked_at.is_not(None))
            .join(ApiKey, ApiKey.owner_id == Owner.id)
            .join(ConsoleSession, ConsoleSession.api_key_id == ApiKey.id)
            .order_by(Owner.name)
        ).all()
    assert revoked == [("PsyWeb", True), ("PsyWeb", True), ("Someone else", False)]
    assert other_console.get("/console/polls").status_code == 200


def test_signing_in_again_ends_the_session_before(app, console, other_auth):
    before = copied_cookie(console.client)
    other_key = other_auth["Authorization"].removeprefix("Bearer ")

    assert console.post(SIGN_IN, {"api_key": other_key}).status_code == 302

    assert_sent_to_sign_in(replay(app, before))
    assert "Someone else" in console.get("/console/polls").get_data(as_text=True)


def test_only_the_hash_of_the_session_id_is_stored_for_the_session_lifetime(app, console):
    with console.client.session_transaction("/console/") as session:
        session_id = session["sid"]
        assert "key_id" not in session
    digest = hashlib.sha256(session_id.encode()).hexdigest()

    [row] = stored_sessions(app)

    assert row.id == digest
    assert session_id not in repr(vars(row))
    assert row.expires_at - row.created_at == timedelta(seconds=SESSION_SECONDS)
    store = redis_client(app)
    assert SESSION_SECONDS - 60 < store.ttl(keys.console_session(digest)) <= SESSION_SECONDS
    assert not store.exists(keys.console_session(session_id))


def test_expired_sessions_are_deleted_at_the_next_sign_in(app, client, owner_key, clock):
    sign_in(client, owner_key)
    revoked = ConsoleClient(app.test_client(), owner_key)
    revoked.post("/console/sign-out")
    clock.advance(seconds=SESSION_SECONDS)
    assert_sent_to_sign_in(client.get("/console/polls"))
    assert len(stored_sessions(app)) == 2

    fresh = ConsoleClient(app.test_client(), owner_key)

    [row] = stored_sessions(app)
    assert row.id == session_hash_of(fresh.client)
    assert row.expires_at == clock() + timedelta(seconds=SESSION_SECONDS)
