"""What one vote costs, counted on the real clients: Redis round trips and SQL statements.

A vote makes two Redis round trips (admit.lua before the commit, count.lua after
it) and, with its poll cached, writes its ballot without reading anything from the
database: one statement on PostgreSQL. These numbers are the vote path's performance
budget: a change that adds a round trip or a query fails here.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from service.infra.db import db
from service.infra.redis import redis_handle
from service.polls import cache as poll_cache

VOTER_IP = "203.0.113.7"


class RoundTrips:
    """Counts the commands a real Redis client sends, a pipeline as one round trip."""

    def __init__(self, client, monkeypatch):
        self.commands: list[str] = []
        execute_command = client.execute_command
        pipeline = client.pipeline

        def counted(*args, **options):
            self.commands.append(str(args[0]))
            return execute_command(*args, **options)

        def counted_pipeline(*args, **kwargs):
            pipe = pipeline(*args, **kwargs)
            execute = pipe.execute

            def run(*a, **k):
                self.commands.append("PIPELINE")
                return execute(*a, **k)

            pipe.execute = run
            return pipe

        monkeypatch.setattr(client, "execute_command", counted)
        monkeypatch.setattr(client, "pipeline", counted_pipeline)


class Statements:
    """Counts the SQL statements the app's engine runs (each executemany as one)."""

    def __init__(self, engine):
        self.statements: list[str] = []
        self.engine = engine
        sa.event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn, _cursor, statement, *_args) -> None:
        self.statements.append(statement.split(None, 3)[:3][-1] if statement.startswith(
            "INSERT") else statement.split(None, 1)[0])

    def close(self) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._seen)


@pytest.fixture
def counters(app, monkeypatch):
    with app.app_context():
        trips = RoundTrips(redis_handle().client, monkeypatch)
        statements = Statements(db.engine)

    def reset():
        trips.commands.clear()
        statements.statements.clear()
        return trips, statements

    yield reset
    statements.close()


@pytest.mark.parametrize("policy", ["none", "cookie_and_ip"])
def test_a_vote_is_its_two_scripts_one_ping_and_its_inserts_only(app, stack, make_poll, vote,
                                                                 counters, policy):
    """The PING follows the count's change message, so that other processes' tallies
    caches have it before the voter has her answer (Scripts.delivered); not on the
    in-process stand-in, which no other process reads."""
    poll = make_poll(duplicate_check=policy)
    assert vote(poll, ip="198.51.100.1").status_code == 201  # the poll is now cached
    trips, statements = counters()

    response = vote(poll, ip=VOTER_IP)

    assert response.status_code == 201
    assert response.get_json()["tallies"]["total_votes"] == 2  # the tally came back too
    delivered = ["PING"] if app.config["REDIS_URL"] else []
    assert trips.commands == ["EVALSHA", "EVALSHA", *delivered]  # admit.lua, count.lua
    if stack.startswith("postgresql"):  # one statement, run in autocommit: one round trip
        assert statements.statements == ["WITH"]
    else:  # SQLite: in-process, three inserts in one transaction
        expected = ["ballots", "ballot_choices"] + (["vote_claims"] if policy != "none" else [])
        assert statements.statements == expected


@pytest.mark.parametrize(("page", "sql"), [
    ("/api/v1/polls/{id}/tallies", []),
    # The visitor's own state (has this address voted?) is the database's to say.
    ("/polls/{id}/widget", ["SELECT"]),
])
def test_a_read_is_one_redis_call_for_the_poll_and_its_tally(make_poll, client, counters,
                                                               page, sql):
    poll = make_poll(duplicate_check="ip")
    path = page.format(id=poll["id"])
    assert client.get(path).status_code == 200  # the first read caches the poll
    trips, statements = counters()
    # Past the process's tallies cache (tests/test_tallies_cache.py: a read moments after
    # another makes none).
    assert client.get(path, headers={"Cache-Control": "no-cache"}).status_code == 200
    assert trips.commands == ["EVALSHA"]  # lua/poll_and_tally.lua
    assert statements.statements == sql


def test_a_duplicate_is_refused_and_counted_in_one_round_trip(app, make_poll, vote, counters):
    poll = make_poll(duplicate_check="ip")
    assert vote(poll, ip=VOTER_IP).status_code == 201
    trips, statements = counters()

    response = vote(poll, ip=VOTER_IP)

    assert response.status_code == 409
    assert trips.commands == ["EVALSHA"]  # admit.lua: refused and counted in integrity
    assert statements.statements == []


def test_a_keyed_vote_stores_its_answer_for_retries(app, make_poll, counters):
    poll = make_poll(duplicate_check="none")
    voter = app.test_client()
    url = f"/api/v1/polls/{poll['id']}/votes"
    body = {"choices": [poll["options"][0]["id"]]}
    warm_up = app.test_client().post(url, json=body, headers={"Idempotency-Key": "k-0"})
    assert warm_up.status_code == 201  # the poll is cached, the scripts loaded
    trips, _statements = counters()

    first = voter.post(url, json=body, headers={"Idempotency-Key": "k-1"})
    sent = len(trips.commands)
    again = voter.post(url, json=body, headers={"Idempotency-Key": "k-1"})

    assert first.status_code == again.status_code == 201
    # admit.lua, count.lua (which keeps the answer too), and the PING that delivers it
    delivered = ["PING"] if app.config["REDIS_URL"] else []
    assert trips.commands[:sent] == ["EVALSHA", "EVALSHA", *delivered]
    assert trips.commands[sent:] == ["EVALSHA"]  # a retry: one round trip, nothing counted
    assert again.get_json() == first.get_json()


def test_a_vote_sees_the_poll_as_another_process_changed_it(app, make_poll, vote, auth,
                                                            client):
    """The process's cached copy is checked inside the vote's first Redis call."""
    poll = make_poll(duplicate_check="none")
    assert vote(poll).status_code == 201
    with app.app_context():
        cached = poll_cache.peek(poll["id"])
    assert cached is not None  # what the next vote would start from

    # Another process closes the poll: its commit sets a new version token in Redis.
    assert client.patch(f"/api/v1/polls/{poll['id']}", json={"status": "closed"},
                        headers=auth).status_code == 200
    with app.app_context():
        poll_cache.cache().put(cached)  # this process still holds the open poll

    response = vote(poll)

    assert response.status_code == 409
    assert response.get_json()["code"] == "poll_closed"


def test_a_refusal_is_decided_by_the_poll_as_it_is_now(app, make_poll, vote, auth, client):
    """A stale cached copy that would refuse the vote (closed) is checked first."""
    poll = make_poll(duplicate_check="none")
    client.patch(f"/api/v1/polls/{poll['id']}", json={"status": "closed"}, headers=auth)
    assert vote(poll).status_code == 409
    with app.app_context():
        closed = poll_cache.peek(poll["id"])
    assert closed is not None and closed.closed_at is not None
    client.patch(f"/api/v1/polls/{poll['id']}", json={"status": "open"}, headers=auth)
    with app.app_context():
        poll_cache.cache().put(closed)

    assert vote(poll).status_code == 201


@pytest.mark.parametrize("stack", ["sqlite-redis", "postgresql-redis"], indirect=True)
def test_a_vote_holds_one_database_connection_at_a_time(make_app, make_poll):
    """A vote whose poll was read from the database (not cached) gives that connection
    back before writing its ballot: with every connection of the pool held by such
    votes, none could get a second one."""
    poll = make_poll(duplicate_check="none")
    server = make_app(RATELIMIT_VOTES="1000 per minute", SQLALCHEMY_ENGINE_OPTIONS={
        "pool_size": 1, "max_overflow": 0, "pool_timeout": 2})

    response = server.test_client().post(f"/api/v1/polls/{poll['id']}/votes",
                                          json={"choices": [poll["options"][0]["id"]]})

    assert response.status_code == 201


def test_a_new_visitors_widget_asks_the_database_once_in_autocommit(app, stack, make_poll,
                                                                    client):
    """Whether a visitor not seen before voted is the database's to say, on every widget
    read of hers: one SELECT on a connection of its own in autocommit (on PostgreSQL no
    BEGIN and ROLLBACK round trips around it), given back before the page is made."""
    poll = make_poll(duplicate_check="ip")
    path = f"/polls/{poll['id']}/widget"
    assert client.get(path).status_code == 200  # the poll is cached
    seen: list[tuple[str, str | None, int]] = []

    def record(conn, _cursor, statement, *_args) -> None:
        seen.append((statement.split(None, 1)[0],
                     conn.get_execution_options().get("isolation_level"),
                     conn.engine.pool.checkedout()))

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        response = client.get(path, environ_overrides={"REMOTE_ADDR": "198.51.100.20"})
        checked_out_after = engine.pool.checkedout()
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)

    assert response.status_code == 200
    assert seen == [("SELECT", "AUTOCOMMIT", 1)]  # the only connection held, its own
    assert checked_out_after == 0


@pytest.mark.parametrize("stack", ["sqlite-redis", "postgresql-redis"], indirect=True)
def test_a_widget_read_holds_one_database_connection_at_a_time(make_app, make_poll):
    """A widget read whose poll came from the database (not cached) asks whether its
    visitor voted in the same transaction: with every connection of the pool held by
    such reads, none could get a second one."""
    poll = make_poll(duplicate_check="ip")
    server = make_app(SQLALCHEMY_ENGINE_OPTIONS={
        "pool_size": 1, "max_overflow": 0, "pool_timeout": 2})

    response = server.test_client().get(f"/polls/{poll['id']}/widget")

    assert response.status_code == 200
    assert b'name="choice"' in response.data  # not voted: the form


@pytest.mark.parametrize("stack", ["sqlite-redis", "postgresql-redis"], indirect=True)
def test_the_pool_keeps_every_connection_it_opens(app):
    """No connection is opened for one request and closed after it: a gevent worker
    serves far more requests at once than it has connections, and each one past the
    pool would open its own (on PostgreSQL a new server process). Holding as many as the
    pool may open, then giving them back, closes none."""
    opened, closed = [], []
    with app.app_context():
        engine = db.engine
    sa.event.listen(engine.pool, "connect", lambda *_args: opened.append(1))
    sa.event.listen(engine.pool, "close", lambda *_args: closed.append(1))
    most = app.config["DATABASE_POOL_SIZE"] + app.config["DATABASE_MAX_OVERFLOW"]
    kept_before = engine.pool.checkedin()  # what creating the app and its owner opened

    held = [engine.connect() for _ in range(most)]
    for connection in held:
        connection.close()

    assert len(opened) == most - kept_before
    assert closed == []
    assert engine.pool.checkedin() == most
    with engine.connect():  # one of those kept, not a new one
        assert len(opened) == most - kept_before
