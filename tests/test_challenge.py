"""Bot protection: a proof of work (ALTCHA, protocol v1) on every vote (`challenge: pow`)
or while a poll looks attacked (`auto`); each solution used once, also while Redis is
away."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import re
from datetime import UTC, datetime

import altcha
import pytest
import redis

from service.infra.db import db
from service.infra.models import Poll, SpentChallenge
from service.infra.redis.scripts import Scripts
from tests.test_integrity import report
from tests.test_votes import assert_problem

HOME_IP, OTHER_IPS = "203.0.113.7", [f"198.51.100.{n}" for n in range(1, 60)]
UNREACHABLE_REDIS_URL = "redis://127.0.0.1:1/0"


def challenge_of(client, poll: dict) -> dict:
    response = client.get(f"/api/v1/polls/{poll['id']}/challenge")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def payload(challenge: dict, **changes) -> str:
    """The `altcha` a browser sends: the challenge solved, in ALTCHA's base64 JSON."""
    solution = altcha.solve_challenge_v1(challenge["challenge"], challenge["salt"],
                                         challenge["algorithm"], challenge["maxnumber"])
    fields = {"algorithm": challenge["algorithm"], "challenge": challenge["challenge"],
              "number": solution.number, "salt": challenge["salt"],
              "signature": challenge["signature"], **changes}
    return base64.b64encode(json.dumps(fields).encode()).decode()


def solved(client, poll: dict) -> str:
    return payload(challenge_of(client, poll))


def tallies(client, poll: dict) -> dict:
    return client.get(f"/api/v1/polls/{poll['id']}/tallies").get_json()


def rejected(client, poll: dict, auth: dict) -> dict:
    return report(client, poll, auth)["totals"]["rejected"]


@contextlib.contextmanager
def redis_away(app):
    """Point the app's Redis client at a port nobody listens on, then back: an outage
    and its end, as one process sees them."""
    handle = app.extensions["pollbox.redis"]
    client, scripts = handle.client, handle.scripts
    broken = redis.Redis.from_url(UNREACHABLE_REDIS_URL, socket_connect_timeout=0.2)
    object.__setattr__(handle, "client", broken)
    object.__setattr__(handle, "scripts", Scripts(broken))
    try:
        yield
    finally:
        object.__setattr__(handle, "client", client)
        object.__setattr__(handle, "scripts", scripts)


# -- the challenge ---------------------------------------------------------------------


def test_a_challenge_is_an_altcha_challenge_for_the_poll_valid_ten_minutes(
    client, make_poll, clock
):
    clock.frozen = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    poll = make_poll(challenge="pow")

    response = client.get(f"/api/v1/polls/{poll['id']}/challenge")

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    challenge = response.get_json()
    assert set(challenge) == {"algorithm", "challenge", "salt", "signature", "maxnumber"}
    assert challenge["algorithm"] == "SHA-256"
    assert f"poll={poll['id']}" in challenge["salt"]
    expires = int(challenge["salt"].split("expires=")[1].split("&")[0])
    assert expires == int(clock.frozen.timestamp()) + 600
    assert challenge_of(client, poll)["challenge"] != challenge["challenge"]  # fresh each time
    assert_problem(client.get("/api/v1/polls/NoSuchPoll00/challenge"), 404, "not_found")


def test_challenge_is_a_poll_field_none_pow_or_auto(client, make_poll, auth):
    assert make_poll()["challenge"] == "none"
    poll = make_poll(challenge="auto")
    assert client.get(f"/api/v1/polls/{poll['id']}").get_json()["challenge"] == "auto"
    changed = client.patch(f"/api/v1/polls/{poll['id']}", json={"challenge": "pow"},
                           headers=auth)
    assert changed.get_json()["challenge"] == "pow"
    for bad in ("captcha", 1, None):
        response = client.post("/api/v1/polls", headers=auth,
                               json={"question": "Q?", "options": ["A", "B"], "challenge": bad})
        assert "challenge" in assert_problem(response, 422, "validation_error")["errors"]


# -- pow: every vote -------------------------------------------------------------------


def test_a_pow_poll_refuses_a_vote_without_a_solution_and_counts_nothing(
    client, make_poll, vote, auth
):
    poll = make_poll(challenge="pow")

    body = assert_problem(vote(poll), 403, "challenge_required")

    assert "proof of work" in body["detail"]
    assert tallies(client, poll)["total_votes"] == 0
    assert tallies(client, poll)["challenge"] is True
    assert rejected(client, poll, auth)["challenge_failed"] == 1


def test_a_pow_poll_counts_a_vote_with_a_fresh_solution(client, make_poll, vote):
    poll = make_poll(challenge="pow")

    response = vote(poll, altcha=solved(client, poll))

    assert response.status_code == 201, response.get_json()
    assert response.get_json()["tallies"]["total_votes"] == 1
    assert response.get_json()["tallies"]["challenge"] is True


def _reused(client, poll, other, vote):
    spent = solved(client, poll)
    assert vote(poll, altcha=spent, ip=OTHER_IPS[0]).status_code == 201
    return spent


def _expired(client, poll, other, vote, clock):
    made = solved(client, poll)
    clock.advance(seconds=601)
    return made


REFUSED = {
    "reused": lambda c, p, o, v, clock: _reused(c, p, o, v),
    "expired": lambda c, p, o, v, clock: _expired(c, p, o, v, clock),
    "for another poll": lambda c, p, o, v, clock: solved(c, o),
    "tampered signature": lambda c, p, o, v, clock: payload(
        challenge_of(c, p), signature="0" * 64),
    "wrong number": lambda c, p, o, v, clock: payload(challenge_of(c, p), number=-1),
    "another algorithm": lambda c, p, o, v, clock: payload(
        challenge_of(c, p), algorithm="SHA-1"),
    "not base64": lambda c, p, o, v, clock: "%%% not base64 %%%",
    "not a payload": lambda c, p, o, v, clock: base64.b64encode(b'{"number": []}').decode(),
}


@pytest.mark.parametrize("how", REFUSED)
def test_a_wrong_expired_reused_or_foreign_solution_is_refused_and_counted(
    client, make_poll, vote, auth, clock, how
):
    clock.frozen = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    poll, other = make_poll(challenge="pow"), make_poll(challenge="pow")
    sent = REFUSED[how](client, poll, other, vote, clock)
    before = tallies(client, poll)["total_votes"]

    assert_problem(vote(poll, altcha=sent), 403, "challenge_required")

    assert tallies(client, poll)["total_votes"] == before
    assert rejected(client, poll, auth)["challenge_failed"] == 1


def test_altcha_must_be_a_string_of_bounded_length(client, make_poll, vote):
    poll = make_poll(challenge="pow")
    for bad in (123, ["x"], "x" * 2001):
        body = assert_problem(vote(poll, altcha=bad), 422, "validation_error")
        assert "altcha" in body["errors"]


def test_a_retry_with_its_idempotency_key_gets_the_first_answer_not_a_refusal(
    app, client, make_poll
):
    poll = make_poll(challenge="pow")
    body = {"choices": [poll["options"][0]["id"]], "altcha": solved(client, poll)}
    headers = {"Idempotency-Key": "challenge-retry-1"}
    voter = app.test_client()
    first = voter.post(f"/api/v1/polls/{poll['id']}/votes", json=body, headers=headers)

    again = voter.post(f"/api/v1/polls/{poll['id']}/votes", json=body, headers=headers)

    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["vote"]["id"] == first.get_json()["vote"]["id"]
    assert tallies(client, poll)["total_votes"] == 1


def test_a_poll_without_a_challenge_neither_asks_nor_checks(client, make_poll, vote):
    poll = make_poll()
    assert tallies(client, poll)["challenge"] is False
    assert vote(poll, altcha="anything").status_code == 201


def test_a_changed_challenge_reaches_a_process_that_cached_the_poll(
    client, make_poll, make_app, vote, auth
):
    poll = make_poll()
    other = make_app().test_client()
    assert other.get(f"/api/v1/polls/{poll['id']}/tallies").get_json()["challenge"] is False

    client.patch(f"/api/v1/polls/{poll['id']}", json={"challenge": "pow"}, headers=auth)

    assert other.get(f"/api/v1/polls/{poll['id']}/tallies").get_json()["challenge"] is True
    response = other.post(f"/api/v1/polls/{poll['id']}/votes",
                          json={"choices": [poll["options"][0]["id"]]})
    assert_problem(response, 403, "challenge_required")


# -- while Redis is away -------------------------------------------------------------


def test_while_redis_is_away_a_solution_is_still_used_once(app, client, make_poll, vote):
    poll = make_poll(challenge="pow")
    spent, kept = solved(client, poll), solved(client, poll)

    with redis_away(app):
        assert vote(poll, altcha=spent).status_code == 201
        assert_problem(vote(poll, altcha=spent, ip=OTHER_IPS[1]), 403, "challenge_required")
    with app.app_context():
        assert db.session.query(SpentChallenge).count() == 1

    # Back: the solution spent in the database is refused by Redis's side too, and one
    # Redis never saw is still good once.
    assert_problem(vote(poll, altcha=spent, ip=OTHER_IPS[2]), 403, "challenge_required")
    assert vote(poll, altcha=kept, ip=OTHER_IPS[3]).status_code == 201
    assert_problem(vote(poll, altcha=kept, ip=OTHER_IPS[4]), 403, "challenge_required")
    assert tallies(client, poll)["total_votes"] == 2


def test_a_solution_spent_during_an_outage_is_refused_by_another_process_after_it(
    app, client, make_poll, make_app, vote
):
    """The process that spent solutions in the database tells Redis once it is back, and
    every process then asks the database too until those solutions have expired."""
    poll = make_poll(challenge="pow")
    spent, fresh = solved(client, poll), solved(client, poll)
    with redis_away(app):
        assert vote(poll, altcha=spent).status_code == 201
    assert vote(poll, altcha=fresh, ip=OTHER_IPS[5]).status_code == 201  # tells Redis

    elsewhere = make_app().test_client()
    response = elsewhere.post(f"/api/v1/polls/{poll['id']}/votes",
                              json={"choices": [poll["options"][0]["id"]], "altcha": spent},
                              environ_overrides={"REMOTE_ADDR": OTHER_IPS[6]})

    assert_problem(response, 403, "challenge_required")


def test_expired_solutions_spent_in_the_database_are_purged(app, client, make_poll, vote,
                                                             clock):
    from service import retention
    from service.infra.redis import redis_handle

    clock.frozen = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    poll = make_poll(challenge="pow")
    with redis_away(app):
        assert vote(poll, altcha=solved(client, poll)).status_code == 201
    clock.advance(seconds=601)
    with app.app_context():
        retention.purge(session=db.session, redis=redis_handle(), now=clock())
        assert db.session.query(SpentChallenge).count() == 0


# -- auto: while the poll looks attacked -----------------------------------------------

AUTO = {"CHALLENGE_AUTO_MIN_REFUSALS": 5, "CHALLENGE_AUTO_FACTOR": 10,
        "CHALLENGE_AUTO_QUIET_SECONDS": 300, "RATELIMIT_VOTES": "10000 per minute"}


def _attack(client, poll: dict, times: int) -> None:
    """Voters who try again: each second attempt is a refused duplicate."""
    for n in range(times):
        voter, ip = client.application.test_client(), OTHER_IPS[n % len(OTHER_IPS)]
        voter.post(f"/api/v1/polls/{poll['id']}/votes",
                   json={"choices": [poll["options"][0]["id"]]},
                   environ_overrides={"REMOTE_ADDR": ip})


def test_an_auto_poll_switches_its_challenge_on_while_attacked_and_off_when_quiet(
    make_app, make_poll, auth, clock, caplog
):
    caplog.set_level(logging.INFO, logger="service.voting.challenge")
    clock.frozen = datetime(2026, 12, 3, 12, 0, 5, tzinfo=UTC)
    client = make_app(**AUTO).test_client()
    poll = make_poll(challenge="auto", duplicate_check="ip")
    url = f"/api/v1/polls/{poll['id']}"
    assert client.get(f"{url}/tallies").get_json()["challenge"] is False
    _attack(client, poll, 4)  # 4 votes, then 4 refused duplicates: under the line
    _attack(client, poll, 4)
    assert client.get(f"{url}/tallies").get_json()["challenge"] is False

    _attack(client, poll, 1)  # the fifth refusal this minute

    assert client.get(f"{url}/tallies").get_json()["challenge"] is True
    assert "looks attacked" in caplog.text
    newcomer = client.post(f"{url}/votes", json={"choices": [poll["options"][1]["id"]]},
                           environ_overrides={"REMOTE_ADDR": "192.0.2.200"})
    assert_problem(newcomer, 403, "challenge_required")
    assert rejected(client, poll, auth)["challenge_failed"] == 1

    clock.advance(seconds=301)  # quiet since
    assert client.get(f"{url}/tallies").get_json()["challenge"] is False
    again = client.post(f"{url}/votes", json={"choices": [poll["options"][1]["id"]]},
                        environ_overrides={"REMOTE_ADDR": "192.0.2.200"})
    assert again.status_code == 201
    assert "quiet again" in caplog.text
    with client.application.app_context():
        assert db.session.get(Poll, poll["id"]).challenge_until is None


def test_an_auto_poll_learns_its_own_baseline(make_app, make_poll, clock):
    """A poll whose visitors often try twice has a higher line: a minute like its usual
    ones does not switch it on, ten times its usual one does."""
    clock.frozen = datetime(2026, 12, 3, 12, 0, 5, tzinfo=UTC)
    client = make_app(**{**AUTO, "CHALLENGE_AUTO_FACTOR": 3}).test_client()
    poll = make_poll(challenge="auto", duplicate_check="ip")
    url = f"/api/v1/polls/{poll['id']}/tallies"
    _attack(client, poll, 20)  # 20 voters vote; from now on each attempt is a duplicate
    clock.advance(minutes=1)
    for _minute in range(120):  # two hours of 4 refused duplicates a minute
        _attack(client, poll, 4)
        clock.advance(minutes=1)
    assert client.get(url).get_json()["challenge"] is False

    _attack(client, poll, 6)  # over the least line (5), under 3x the baseline (~12)
    assert client.get(url).get_json()["challenge"] is False
    _attack(client, poll, 10)
    assert client.get(url).get_json()["challenge"] is True


def test_a_poll_without_auto_is_never_switched_by_the_watch(make_app, make_poll, clock):
    clock.frozen = datetime(2026, 12, 3, 12, 0, 5, tzinfo=UTC)
    client = make_app(**AUTO).test_client()
    poll = make_poll(challenge="none", duplicate_check="ip")
    _attack(client, poll, 1)
    _attack(client, poll, 20)
    assert client.get(f"/api/v1/polls/{poll['id']}/tallies").get_json()["challenge"] is False
    with client.application.app_context():
        assert db.session.get(Poll, poll["id"]).challenge_until is None


# -- the console -----------------------------------------------------------------------


def test_the_console_sets_the_challenge_and_shows_when_auto_is_on(client, owner_key, clock):
    from tests.console.console_client import ConsoleClient

    clock.frozen = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    console = ConsoleClient(client, owner_key)
    created = console.post("/console/polls/new", {
        "question": "Bots?", "options": "Yes\nNo", "kind": "single",
        "duplicate_check": "cookie", "challenge": "auto", "results": "always",
        "results_min_votes": "0"})
    assert created.status_code == 302, created.get_data(as_text=True)
    poll_id = created.headers["Location"].rstrip("/").rsplit("/", 1)[1]
    assert client.get(f"/api/v1/polls/{poll_id}").get_json()["challenge"] == "auto"
    form = console.get(f"/console/polls/{poll_id}/edit").get_data(as_text=True)
    assert '<option value="auto" selected>' in form
    shown = console.get(f"/console/polls/{poll_id}").get_data(as_text=True)
    assert re.search(r'id="challenge-state">Automatic[^<]*: off</dd>', shown)

    with client.application.app_context():
        db.session.get(Poll, poll_id).challenge_until = datetime(2026, 12, 3, 12, 10,
                                                                 tzinfo=UTC)
        db.session.commit()
    shown = console.get(f"/console/polls/{poll_id}").get_data(as_text=True)
    assert "<strong>on</strong>, the poll looks attacked (until 2026-12-03 12:10 UTC" in shown
