"""The per-process poll cache (service/polls/cache.py) and the read paths built on it.

Two app instances sharing the database and Redis stand for two worker processes, each
with its own cache: a change made through one is seen by the next request of the other.
"""

from __future__ import annotations

import re
import threading
import time

import pytest
import redis as redis_lib
from sqlalchemy import text

from service import create_app
from service.infra import keys
from service.infra.db import db
from service.infra.redis import redis_handle
from service.polls import cache as poll_cache
from service.web.limiter import limiter


@pytest.fixture
def other_app(app, stack):
    """A second process's worth of app (its own caches) on the same database and Redis."""
    if stack == "sqlite-fakeredis":
        pytest.skip("the in-process Redis stand-in is not shared between app instances")
    names = ("TESTING", "SECRET_KEY", "SQLALCHEMY_DATABASE_URI", "REDIS_URL", "CLOCK",
             "RATELIMIT_VOTES")
    other = create_app({name: app.config[name] for name in names})
    yield other
    with other.app_context():
        db.engine.dispose()


@pytest.fixture
def other_client(other_app):
    return other_app.test_client()


def tallies_of(client, poll: dict, **kwargs):
    return client.get(f"/api/v1/polls/{poll['id']}/tallies", **kwargs)


def relabel(client, auth, poll: dict, label: str):
    options = [{"id": o["id"], "label": o["label"]} for o in poll["options"]]
    options[0]["label"] = label
    response = client.patch(f"/api/v1/polls/{poll['id']}", json={"options": options},
                            headers=auth)
    assert response.status_code == 200, response.get_json()


def status_line(html: str) -> str:
    """The widget's status paragraph (the notice shown instead of, or under, the form)."""
    return re.search(r'<p class="pb-status" id="pb-status" role="status">([^<]*)</p>', html)[1]


def version_of(app, poll: dict) -> bytes | None:
    with app.app_context():
        return redis_handle().client.get(keys.poll_version(poll["id"]))


# -- changes in one process are seen by the next request of every other ---------------------


def test_a_label_corrected_in_one_process_shows_at_once_in_another(client, other_client,
                                                                    make_poll, auth):
    poll = make_poll()
    assert tallies_of(other_client, poll).get_json()["options"][0]["label"] == "Yes, currently"

    relabel(client, auth, poll, "Yes, at the moment")

    assert tallies_of(other_client, poll).get_json()["options"][0]["label"] == \
        "Yes, at the moment"
    widget = other_client.get(f"/polls/{poll['id']}/widget").get_data(as_text=True)
    assert "Yes, at the moment" in widget


@pytest.mark.parametrize("change", [
    {"status": "closed"},
    {"closes_at": "2000-01-01T00:00:00Z", "status": "closed"},
])
def test_a_poll_closed_in_one_process_is_closed_in_another(client, other_client, make_poll,
                                                           auth, vote, change):
    poll = make_poll()
    assert tallies_of(other_client, poll).get_json()["status"] == "open"

    response = client.patch(f"/api/v1/polls/{poll['id']}", json=change, headers=auth)
    assert response.status_code == 200, response.get_json()

    assert tallies_of(other_client, poll).get_json()["status"] == "closed"
    refused = other_client.post(f"/api/v1/polls/{poll['id']}/votes",
                                json={"choices": [poll["options"][0]["id"]]})
    assert refused.status_code == 409
    assert refused.get_json()["code"] == "poll_closed"
    assert "This poll is closed." in other_client.get(
        f"/polls/{poll['id']}/widget").get_data(as_text=True)


def test_a_poll_reopened_and_given_an_option_in_one_process_shows_in_another(
        client, other_client, make_poll, auth):
    poll = make_poll()
    client.patch(f"/api/v1/polls/{poll['id']}", json={"status": "closed"}, headers=auth)
    assert tallies_of(other_client, poll).get_json()["status"] == "closed"

    options = [{"id": o["id"], "label": o["label"]} for o in poll["options"]]
    response = client.patch(f"/api/v1/polls/{poll['id']}",
                            json={"status": "open", "options": [*options, {"label": "Maybe"}]},
                            headers=auth)
    assert response.status_code == 200, response.get_json()

    seen = tallies_of(other_client, poll).get_json()
    assert seen["status"] == "open"
    assert [o["label"] for o in seen["options"]][-1] == "Maybe"


def test_a_poll_deleted_in_one_process_is_gone_in_another(client, other_client, make_poll,
                                                          auth):
    poll = make_poll()
    assert tallies_of(other_client, poll).status_code == 200
    assert other_client.get(f"/polls/{poll['id']}/widget").status_code == 200

    assert client.delete(f"/api/v1/polls/{poll['id']}", headers=auth).status_code == 204

    assert tallies_of(other_client, poll).status_code == 404
    assert other_client.get(f"/polls/{poll['id']}/widget").status_code == 404
    assert other_client.get(f"/api/v1/polls/{poll['id']}/tallies/stream").status_code == 404


def test_a_signing_secret_rotated_in_one_process_is_used_by_another(app, client, other_app,
                                                                    make_poll, auth):
    poll = make_poll(duplicate_check="user")
    with other_app.test_request_context():
        before = poll_cache.get_poll_snapshot(session=db.session, redis=redis_handle(),
                                              poll_id=poll["id"])
        # cached now: the next read costs no database query
        assert poll_cache.get_poll_snapshot(session=db.session, redis=redis_handle(),
                                            poll_id=poll["id"]) is before

    rotated = client.post(f"/api/v1/polls/{poll['id']}/signing-secret", headers=auth)
    assert rotated.status_code == 200

    with other_app.test_request_context():
        after = poll_cache.get_poll_snapshot(session=db.session, redis=redis_handle(),
                                             poll_id=poll["id"])
    assert after.signing_secret == rotated.get_json()["signing_secret"]
    assert after.signing_secret != before.signing_secret


def test_every_committed_change_sets_a_new_version(app, client, make_poll, auth):
    poll = make_poll()
    first = version_of(app, poll)
    assert first is not None  # set when the poll was created
    relabel(client, auth, poll, "Yes, at the moment")
    second = version_of(app, poll)
    client.post(f"/api/v1/polls/{poll['id']}/signing-secret", headers=auth)
    third = version_of(app, poll)
    assert len({first, second, third}) == 3


def test_a_refused_change_keeps_the_version(app, client, make_poll, auth):
    poll = make_poll()
    before = version_of(app, poll)
    refused = client.patch(f"/api/v1/polls/{poll['id']}", json={"max_choices": 3},
                           headers=auth)  # a single-choice poll: 422, rolled back
    assert refused.status_code == 422
    assert version_of(app, poll) == before


# -- Redis forgetting, Redis away, the clock ---------------------------------------------------


def test_a_flushed_redis_makes_every_process_read_the_database_again(app, other_client,
                                                                      make_poll):
    poll = make_poll()
    assert tallies_of(other_client, poll).get_json()["options"][0]["label"] == "Yes, currently"
    with app.app_context():  # a change no version announced: only the database knows
        db.session.execute(text("UPDATE options SET label = 'Changed' WHERE id = :id"),
                           {"id": poll["options"][0]["id"]})
        db.session.commit()
        redis_handle().client.flushdb()

    assert tallies_of(other_client, poll).get_json()["options"][0]["label"] == "Changed"
    assert version_of(app, poll) is not None  # made again by that read
    assert tallies_of(other_client, poll).get_json()["options"][0]["label"] == "Changed"


def test_a_cached_poll_is_used_without_the_database(app, client, make_poll, monkeypatch):
    poll = make_poll()
    assert tallies_of(client, poll).status_code == 200
    tallies_of(client, poll)  # the first read after a change caches
    queries = []
    with app.app_context():
        from sqlalchemy import event
        engine = db.engine

        def count(*_args):
            queries.append(1)

        event.listen(engine, "before_cursor_execute", count)
        try:
            assert tallies_of(client, poll).status_code == 200
            assert client.get(f"/polls/{poll['id']}/widget").status_code == 200
        finally:
            event.remove(engine, "before_cursor_execute", count)
    # the tallies read none; the widget asks once whether this visitor voted
    assert len(queries) <= 1


def test_many_requests_for_an_uncached_poll_read_the_database_once(app, make_poll,
                                                                   monkeypatch):
    """A burst of requests (say streams opening) for a poll this process has not cached
    yet costs one database read: one loader per poll, the others wait for its answer."""
    poll = make_poll()
    with app.app_context():
        poll_cache.get_poll_snapshot(session=db.session, redis=redis_handle(),
                                     poll_id=poll["id"])  # its version exists from now on
        poll_cache.cache().clear()
    loads = []
    load = poll_cache._load

    def slow_load(**kwargs):
        loads.append(kwargs["poll_id"])
        time.sleep(0.05)  # the others arrive while the first is loading
        return load(**kwargs)

    monkeypatch.setattr(poll_cache, "_load", slow_load)
    found = []

    def request():
        with app.app_context():
            try:
                found.append(poll_cache.get_poll_snapshot(
                    session=db.session, redis=redis_handle(), poll_id=poll["id"]).question)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=request) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert found == [poll["question"]] * 20
    assert loads == [poll["id"]]


def test_closes_at_passing_closes_the_poll_without_any_write(app, client, clock, make_poll,
                                                             vote):
    from datetime import UTC, datetime, timedelta
    clock.frozen = datetime.now(UTC)
    closes = (clock.frozen + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    poll = make_poll(closes_at=closes)
    assert tallies_of(client, poll).get_json()["status"] == "open"
    version = version_of(app, poll)

    clock.advance(hours=2)

    assert tallies_of(client, poll).get_json()["status"] == "closed"
    assert vote(poll).get_json()["code"] == "poll_closed"
    assert "This poll is closed." in client.get(
        f"/polls/{poll['id']}/widget").get_data(as_text=True)
    assert version_of(app, poll) == version


def test_with_redis_down_polls_come_from_the_database(app, client, make_poll, stack,
                                                      monkeypatch):
    if stack == "sqlite-fakeredis":
        pytest.skip("needs a Redis client to break")
    poll = make_poll()
    tallies_of(client, poll)
    tallies_of(client, poll)
    with app.app_context():
        handle = redis_handle()
        db.session.execute(text("UPDATE options SET label = 'Changed' WHERE id = :id"),
                           {"id": poll["options"][0]["id"]})
        db.session.commit()

    def refuse(*_args, **_kwargs):
        raise redis_lib.ConnectionError("Redis is down")

    monkeypatch.setattr(handle.client, "execute_command", refuse)
    # Past the process's tallies cache: only the command client is broken here, the
    # subscription that would drop the cache's trust in a real outage is not.
    down = tallies_of(client, poll, headers={"Cache-Control": "no-cache"})
    assert down.status_code == 200
    assert down.get_json()["options"][0]["label"] == "Changed"
    with app.app_context():
        assert app.extensions[poll_cache.EXTENSION].get(poll["id"], "any") is None


# -- conditional requests ------------------------------------------------------------------


def test_etag_follows_votes_and_a_304_has_the_headers_and_no_body(client, make_poll, vote):
    poll = make_poll(duplicate_check="none")
    first = tallies_of(client, poll)
    assert tallies_of(client, poll, headers={"If-None-Match": first.headers["ETag"]}
                      ).status_code == 304

    assert vote(poll).status_code == 201
    after_vote = tallies_of(client, poll, headers={"If-None-Match": first.headers["ETag"]})
    assert after_vote.status_code == 200
    assert after_vote.get_json()["total_votes"] == 1

    again = tallies_of(client, poll, headers={"If-None-Match": after_vote.headers["ETag"]})
    assert again.status_code == 304
    assert again.data == b""
    assert again.headers["ETag"] == after_vote.headers["ETag"]
    assert again.headers["Cache-Control"] == "no-cache"
    assert {"Authorization", "Cookie"} <= set(again.headers["Vary"].replace(" ", "").split(","))


def test_etag_differs_between_the_suppressed_public_view_and_the_owners(client, make_poll,
                                                                        vote, auth):
    poll = make_poll(results_min_votes=5)
    vote(poll)
    public = tallies_of(client, poll)
    owner = tallies_of(client, poll, headers=auth)
    assert public.get_json()["suppressed"] and not owner.get_json()["suppressed"]
    assert public.headers["ETag"] != owner.headers["ETag"]
    assert tallies_of(client, poll, headers={**auth, "If-None-Match": public.headers["ETag"]}
                      ).status_code == 200


def test_a_withdrawn_vote_changes_the_etag(client, make_poll, vote):
    poll = make_poll(duplicate_check="none")
    vote(poll)
    receipt = vote(poll).get_json()["vote"]["receipt"]
    etag = tallies_of(client, poll).headers["ETag"]

    assert client.delete(f"/api/v1/receipts/{receipt}").status_code == 204

    response = tallies_of(client, poll, headers={"If-None-Match": etag})
    assert response.status_code == 200
    assert response.get_json()["total_votes"] == 1


# -- the widget's cached pages are per visitor state -------------------------------------------


def test_one_visitors_voted_page_is_never_served_to_another(app, make_poll, vote):
    poll = make_poll(results="after_vote", duplicate_check="cookie")
    voter, stranger = app.test_client(), app.test_client()
    url = f"/polls/{poll['id']}/widget"
    assert 'id="pb-form"' in stranger.get(url).get_data(as_text=True)
    assert 'id="pb-form"' in voter.get(url).get_data(as_text=True)

    assert vote(poll, browser=voter, ip="198.51.100.1").status_code == 201

    voted = voter.get(url).get_data(as_text=True)
    assert 'id="pb-form"' not in voted
    assert status_line(voted) == "You have already voted in this poll."
    assert "#pb-fill-" in voted  # the results
    other = stranger.get(url).get_data(as_text=True)
    assert 'id="pb-form"' in other
    assert status_line(other) == ""
    assert "#pb-fill-" not in other  # no results for a visitor who has not voted


def test_a_vote_in_one_process_shows_as_voted_in_another(app, other_app, make_poll, vote):
    poll = make_poll(results="after_vote", duplicate_check="ip")
    url = f"/polls/{poll['id']}/widget"
    visitor = other_app.test_client()
    ip = {"REMOTE_ADDR": "198.51.100.9"}
    assert 'id="pb-form"' in visitor.get(url, environ_overrides=ip).get_data(as_text=True)

    assert vote(poll, ip="198.51.100.9").status_code == 201  # through the first app

    page = visitor.get(url, environ_overrides=ip).get_data(as_text=True)
    assert status_line(page) == "You have already voted in this poll."


def test_each_widget_answer_has_its_own_nonce_and_form_token(client, make_poll, clock):
    poll = make_poll()
    url = f"/polls/{poll['id']}/widget"
    first = client.get(url)
    clock.advance(seconds=2)
    second = client.get(url)
    nonces = []
    for response in (first, second):
        html = response.get_data(as_text=True)
        nonce = re.search(r'<style nonce="([^"]+)"', html)[1]
        assert f"style-src 'nonce-{nonce}'" in response.headers["Content-Security-Policy"]
        nonces.append((nonce, re.search(r'name="csrf_token" value="([^"]+)"', html)[1]))
    assert nonces[0][0] != nonces[1][0]
    assert nonces[0][1] != nonces[1][1]


def test_every_error_code_of_the_widget_has_a_message(app):
    from service.widgets import texts
    with app.test_request_context():
        assert set(texts.messages()) == texts.MESSAGE_CODES


# -- per-request overhead --------------------------------------------------------------------


def test_requests_without_a_limit_do_not_consult_the_limiter(client, make_poll, monkeypatch):
    poll = make_poll()
    checked = []
    monkeypatch.setattr(type(limiter).__mro__[1], "_check_request_limit",
                        lambda *args, **kwargs: checked.append(kwargs))
    client.get(f"/api/v1/polls/{poll['id']}/tallies")
    client.get("/embed.js")
    assert checked == []


def test_application_wide_limits_would_still_be_checked(app, database_url, clock):
    manager = limiter.limit_manager
    saved = manager._application_limits
    try:
        limited = create_app({"TESTING": True, "SECRET_KEY": "x", "CLOCK": clock,
                              "SQLALCHEMY_DATABASE_URI": database_url,
                              "RATELIMIT_APPLICATION": "2 per minute"})
        client = limited.test_client()
        statuses = [client.get("/embed.js").status_code for _ in range(3)]
    finally:  # the limiter object is shared by every app of the test process
        manager.set_application_limits(saved)
    assert statuses == [200, 200, 429]


def test_embed_js_answers_304_to_its_etag(client):
    first = client.get("/embed.js")
    assert first.headers["ETag"]
    again = client.get("/embed.js", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    assert again.headers["Access-Control-Allow-Origin"] == "*"
    assert again.headers["Cross-Origin-Resource-Policy"] == "cross-origin"
