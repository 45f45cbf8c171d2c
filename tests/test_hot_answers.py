"""Public tallies read again and again are answered from memory without Flask's request
cycle (service/web/hot.py): the same bytes the cycle wrote, with the request's own id,
log line and latency; never for a request with credentials or asking past caches; and
never once the tally, the poll or the clock changed what the cycle would answer."""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from email.utils import parsedate_to_datetime

import pytest
from flask import Flask, Response, request_started
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from service.infra import logs
from service.tallies import recent, stream
from service.web import hot
from tests.test_poll_cache import relabel
from tests.test_tallies_cache import deaf, shared_redis_only, warm

APP_CONFIG = {"TALLIES_CACHE_MS": 250}
TALLIES = "/api/v1/polls/{}/tallies"


@contextmanager
def cycles(app):
    """The requests that went through the request cycle while inside (a list of paths)."""
    seen: list[str] = []

    def started(sender, **_extra):
        from flask import request

        seen.append(request.full_path.rstrip("?"))

    request_started.connect(started, app)
    try:
        yield seen
    finally:
        request_started.disconnect(started, app)


def steady(app, client, poll, monkeypatch):
    """The poll's tally kept and trusted until the test changes something (no message
    heard, a clock that stands still), its path known to offer answers, and no answer
    kept yet. Returns the tally's clock."""
    warm(app, client, poll)
    tally_clock = deaf(app, monkeypatch)
    client.get(TALLIES.format(poll["id"]))  # the path offers answers (or poll: none)
    app.extensions[hot.EXTENSION].kept.clear()
    return tally_clock


def without_hot_answers(app):
    """The same app as the request cycle alone answers it."""
    return app.extensions[hot.EXTENSION].wsgi_app


def answer_of(app, wsgi_app, path: str, headers: dict) -> tuple[str, list, bytes]:
    """One request through `wsgi_app`: its status, headers but X-Request-ID, and body."""
    from werkzeug.test import EnvironBuilder

    environ = EnvironBuilder(path=path, headers=headers).get_environ()
    started = []
    body = b"".join(wsgi_app(environ, lambda status, hdrs, exc=None: started.extend(
        [status, hdrs])))
    status, answered = started
    # Its own per answer: the request id, and the date (its text, not whether there is one).
    headers = sorted((n, "<date>" if n == "Date" else v) for n, v in answered
                     if n != logs.REQUEST_ID_HEADER)
    return status, headers, body


@pytest.mark.parametrize("headers", [
    {},
    {"Origin": "https://psyweb.example"},  # allowed: its CORS headers kept with the rest
    {"Origin": "https://elsewhere.example"},  # not allowed: none
    {"Accept-Language": "de", "Accept": "application/json"},
    {"Host": "polls.example", "X-Forwarded-Proto": "https"},
], ids=["plain", "allowed-origin", "foreign-origin", "language", "host"])
@pytest.mark.parametrize("query", ["", "?context=article-12"], ids=["poll", "context"])
def test_a_read_again_is_answered_with_the_request_cycle_s_bytes(app, client, make_poll,
                                                                 monkeypatch, headers, query):
    poll = make_poll(allowed_origins=["https://psyweb.example"])
    steady(app, client, poll, monkeypatch)
    path = TALLIES.format(poll["id"]) + query
    cycle_only = without_hot_answers(app)
    expected = answer_of(app, cycle_only, path, headers)
    with cycles(app) as cycled:
        kept = answer_of(app, app.wsgi_app, path, headers)  # kept...
        again = answer_of(app, app.wsgi_app, path, headers)  # ...and answered again
    assert cycled == [path]
    assert kept == again == expected
    assert expected[0] == "200 OK"
    etag = dict(expected[1])["ETag"]
    with cycles(app) as cycled:
        not_modified = [answer_of(app, app.wsgi_app, path, {**headers, "If-None-Match": etag})
                        for _ in range(3)]
    assert cycled == [path]
    assert not_modified[0][0] == "304 NOT MODIFIED"
    assert not_modified == [answer_of(app, cycle_only, path,
                                      {**headers, "If-None-Match": etag})] * 3


# Header values as a client may send them, hostile ones included (printable ASCII: what
# a header line can carry).
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
REQUEST_HEADERS = st.fixed_dictionaries({}, optional={
    "Origin": st.one_of(st.just("https://psyweb.example"), st.just("null"), HEADER_TEXT),
    "Accept": st.one_of(st.just("application/json"), HEADER_TEXT),
    "Accept-Language": st.one_of(st.just("de-DE,de;q=0.9"), HEADER_TEXT),
    "If-None-Match": st.one_of(st.just("*"), HEADER_TEXT),
    "X-Request-ID": HEADER_TEXT,
    "Referer": HEADER_TEXT,
    "User-Agent": HEADER_TEXT,
    "X-Forwarded-Host": HEADER_TEXT,
    "Range": st.one_of(st.just("bytes=0-10"), HEADER_TEXT),
    "If-Modified-Since": st.one_of(st.just("Sun, 06 Dec 2026 04:00:00 GMT"), HEADER_TEXT),
})
SVG = "/polls/{}/results.svg"
QUERIES = st.one_of(st.just(""), st.builds("?context={}".format, st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="#%&+"),
    max_size=20)), st.builds("?{}".format, HEADER_TEXT.filter(lambda q: "#" not in q)))


@pytest.mark.parametrize("stack", ["sqlite-redis"], indirect=True)
@pytest.mark.parametrize("read", [TALLIES, SVG], ids=["tallies", "svg"])
def test_any_read_answered_from_memory_is_what_the_cycle_answers(app, client, make_poll,
                                                                 monkeypatch, read):
    """Whatever a client sends, a read answered from memory (its second and third asking)
    is, but for its request id, what the request cycle alone answers the same request."""
    poll = make_poll(allowed_origins=["https://psyweb.example"])
    steady(app, client, poll, monkeypatch)
    client.get(read.format(poll["id"]))  # the path offers answers
    cycle_only = without_hot_answers(app)

    @settings(max_examples=40, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(headers=REQUEST_HEADERS, query=QUERIES)
    def same(headers, query):
        path = read.format(poll["id"]) + query
        expected = answer_of(app, cycle_only, path, headers)
        with cycles(app) as cycled:
            answers = [answer_of(app, app.wsgi_app, path, headers) for _ in range(3)]
        assert answers == [expected] * 3
        from_memory.append(3 - len(cycled))

    from_memory: list[int] = []
    same()
    assert sum(from_memory) >= len(from_memory)  # most answers of 200 or 304 were kept


def test_an_answer_from_memory_has_its_own_id_log_line_and_timing(app, client, make_poll,
                                                                   caplog, monkeypatch):
    poll = make_poll()
    steady(app, client, poll, monkeypatch)
    path = TALLIES.format(poll["id"])
    client.get(path)  # kept
    labels = {"endpoint": "tallies.Tallies", "method": "GET", "status": "200"}
    timed = REGISTRY.get_sample_value("pollbox_request_duration_seconds_count", labels)
    caplog.set_level(logging.INFO, logger=logs.REQUEST_LOGGER)
    with cycles(app) as cycled:
        asked = client.get(path, headers={"X-Request-ID": "reader-42"})
        fresh = [client.get(path).headers[logs.REQUEST_ID_HEADER] for _ in range(2)]
    assert cycled == []  # all three from memory
    assert asked.headers[logs.REQUEST_ID_HEADER] == "reader-42"
    assert len(set(fresh)) == 2 and all(len(one) == 32 for one in fresh)
    lines = [r for r in caplog.records if r.name == logs.REQUEST_LOGGER]
    assert [(r.method, r.path, r.status, r.request_id) for r in lines] == [
        ("GET", path, 200, "reader-42"), ("GET", path, 200, fresh[0]),
        ("GET", path, 200, fresh[1])]
    assert all(r.duration_ms >= 0 for r in lines)
    assert REGISTRY.get_sample_value(
        "pollbox_request_duration_seconds_count", labels) == timed + 3


@pytest.mark.parametrize("headers", [
    {"Cookie": "anything=1"},
    {"Cache-Control": "no-cache"},
    {"Pragma": "no-cache"},
], ids=["cookie", "cache-control", "pragma"])
def test_a_personal_or_uncached_read_always_goes_through_the_cycle(app, client, make_poll,
                                                                   monkeypatch, headers):
    poll = make_poll()
    steady(app, client, poll, monkeypatch)
    path = TALLIES.format(poll["id"])
    client.get(path)
    with cycles(app) as cycled:
        for _ in range(3):
            assert app.test_client(use_cookies=False).get(path, headers=headers).status_code \
                == 200
    assert cycled == [path] * 3


def test_the_owner_s_read_is_never_kept_nor_given_another_s(app, client, make_poll, auth,
                                                            monkeypatch):
    steady(app, client, make_poll(), monkeypatch)  # the process hears changes
    poll = make_poll(results="after_close")
    path = TALLIES.format(poll["id"])
    with cycles(app) as cycled:
        for _ in range(3):
            assert client.get(path, headers=auth).status_code == 200  # the owner sees them
            assert client.get(path).status_code == 403  # the public does not
    assert cycled == [path] * 6


def test_results_shown_by_a_rule_other_than_always_are_not_kept(app, client, make_poll,
                                                                clock, monkeypatch):
    poll = make_poll(results="after_close", closes_at=_iso(clock, minutes=1))
    clock.advance(minutes=2)
    steady(app, client, poll, monkeypatch)  # the tally kept and trusted all along
    path = TALLIES.format(poll["id"])
    with cycles(app) as cycled:
        for _ in range(3):
            assert client.get(path).status_code == 200  # closed: shown to all
    assert cycled == [path] * 3


def test_only_a_whole_200_or_304_without_a_cookie_is_kept():
    app = Flask(__name__)

    @app.get("/<kind>")
    def offered(kind):
        hot.keep(lambda: True)
        body = "x" * (hot.KEPT_BODY_MAX_BYTES + 1) if kind == "large" else kind
        response = Response(body, status=404 if kind == "missing" else 200)
        if kind == "cookie":
            response.set_cookie("voter", "1")
        return response

    app.wsgi_app = hot.HotAnswers(app.wsgi_app)
    browser = app.test_client(use_cookies=False)
    paths = ["/plain", "/cookie", "/missing", "/large"]
    with cycles(app) as cycled:
        # The first read of a path tells that it offers; the second is kept; the third
        # is answered from memory if the second could be kept.
        answers = [browser.get(path) for path in paths * 3]
    assert cycled == paths * 2 + ["/cookie", "/missing", "/large"]
    assert [(a.status_code, len(a.data)) for a in answers[8:]] == [
        (200, 5), (200, 6), (404, 7), (200, hot.KEPT_BODY_MAX_BYTES + 1)]
    assert answers[9].headers["Set-Cookie"].startswith("voter=1")


def _iso(clock, **delta) -> str:
    from datetime import timedelta

    return (clock() + timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_the_results_image_read_again_shows_a_vote_at_once(app, client, make_poll, vote,
                                                           monkeypatch):
    poll = make_poll(duplicate_check="none")
    steady(app, client, poll, monkeypatch)
    path = SVG.format(poll["id"])
    client.get(path)  # the path offers answers
    with cycles(app) as cycled:
        answers = [client.get(path) for _ in range(2)]
        time.sleep(1.01)  # the next second: its answer has its own date
        answers.append(client.get(path))
    assert cycled == [path]  # kept once, then answered from memory
    images = [answer.get_data(as_text=True) for answer in answers]
    assert images[0] == images[1] == images[2]
    assert "Total votes: 0" in images[0]
    dates = [parsedate_to_datetime(answer.headers["Date"]) for answer in answers]
    assert dates[0] <= dates[1] < dates[2]
    assert vote(poll).status_code == 201
    assert "Total votes: 1" in client.get(path).get_data(as_text=True)


def test_a_vote_in_the_process_shows_in_the_next_read(app, client, make_poll, vote,
                                                      monkeypatch):
    poll = make_poll(duplicate_check="none")
    steady(app, client, poll, monkeypatch)  # no message heard: the process forgets itself
    path = TALLIES.format(poll["id"])
    with cycles(app) as cycled:
        assert [client.get(path).get_json()["total_votes"] for _ in range(2)] == [0, 0]
    assert cycled == [path]
    assert vote(poll).status_code == 201
    assert client.get(path).get_json()["total_votes"] == 1


def test_another_process_s_vote_shows_once_heard(app, client, make_app, make_poll, stack):
    shared_redis_only(stack)
    poll = make_poll(duplicate_check="none")
    other = make_app().test_client()
    assert other.get(TALLIES.format(poll["id"])).status_code == 200
    warm(app, client, poll)
    path = TALLIES.format(poll["id"])
    with cycles(app) as cycled:
        assert client.get(path).get_json()["total_votes"] == 0
    assert cycled == []  # answered from memory
    assert other.post(f"/api/v1/polls/{poll['id']}/votes",
                      json={"choices": [poll["options"][0]["id"]]}).status_code == 201
    started = time.monotonic()
    while client.get(path).get_json()["total_votes"] != 1:
        assert time.monotonic() - started < app.config["TALLIES_CACHE_MS"] / 1000


def test_an_answer_lapses_with_its_tally_s_trust(app, client, make_poll, monkeypatch):
    poll = make_poll()
    tally_clock = steady(app, client, poll, monkeypatch)
    path = TALLIES.format(poll["id"])
    client.get(path)  # kept on the test's clock
    with cycles(app) as cycled:
        client.get(path)
        tally_clock.now += app.config["TALLIES_CACHE_MS"] / 1000 + 0.001
        client.get(path)
    assert cycled == [path]


def test_an_answer_lapses_when_the_listener_stops_or_a_message_waits(app, client, make_poll,
                                                                     monkeypatch):
    poll = make_poll()
    steady(app, client, poll, monkeypatch)
    path = TALLIES.format(poll["id"])
    client.get(path)
    with app.app_context():
        hub = stream.hub()
    with cycles(app) as cycled:
        client.get(path)  # from memory
        monkeypatch.setattr(hub, "unheard", lambda: True)
        client.get(path)
        monkeypatch.setattr(hub, "unheard", lambda: False)
        monkeypatch.setattr(type(hub), "listening", property(lambda _hub: False))
        client.get(path)
    assert cycled == [path] * 2


def test_a_changed_poll_shows_at_once(app, client, make_poll, auth, monkeypatch):
    poll = make_poll()
    steady(app, client, poll, monkeypatch)
    path = TALLIES.format(poll["id"])
    assert client.get(path).get_json()["options"][0]["label"] == "Yes, currently"
    relabel(client, auth, poll, "Yes, now")
    assert client.get(path).get_json()["options"][0]["label"] == "Yes, now"


def test_the_clock_closing_the_poll_shows_at_once(app, client, make_poll, clock,
                                                  monkeypatch):
    poll = make_poll(closes_at=_iso(clock, minutes=5))
    steady(app, client, poll, monkeypatch)
    path = TALLIES.format(poll["id"])
    with cycles(app) as cycled:
        assert [client.get(path).get_json()["status"] for _ in range(2)] == ["open", "open"]
    assert cycled == [path]
    clock.advance(minutes=5, seconds=1)
    with app.app_context():
        assert recent.cache().get(poll["id"], None) is not None  # the tally still trusted
    assert client.get(path).get_json()["status"] == "closed"
