"""Hostile input found by attack: each once answered 500; now each is a 4xx problem naming
what is wrong, counts nothing and leaves no trace in Redis."""

from __future__ import annotations

import io
import json

import pytest
import redis as redis_py

from service.infra.redis import redis_handle
from tests.test_errors import assert_problem, first_choice, votes_url

DEEP_NESTING = "[" * 10_000
HUGE_INTEGER = "9" * 5_000  # past CPython's 4,300-digit limit for int()
LONE_SURROGATE = '"\\ud800"'
OVERFLOWING_TIME = "0001-01-01T00:00:00+14:00"  # before year 1 once in UTC
HUGE_PAGE = "4611686018427387904"  # (page - 1) * page_size overflows SQLite's integers


def total_votes(client, poll: dict) -> int:
    return client.get(f"/api/v1/polls/{poll['id']}/tallies").get_json()["total_votes"]


@pytest.mark.parametrize("body", [
    DEEP_NESTING,
    f'{{"choices": [{HUGE_INTEGER}]}}',
    '{"choices": [18446744073709551616]}',
    f'{{"choices": [1], "comment": {LONE_SURROGATE}}}',
], ids=["deep-nesting", "huge-integer", "past-64-bits", "lone-surrogate"])
@pytest.mark.parametrize("keyed", [False, True], ids=["plain", "idempotency-key"])
def test_a_hostile_vote_body_is_a_4xx_that_counts_nothing(client, make_poll, body, keyed):
    poll = make_poll(allow_comment=True)
    headers = {"Idempotency-Key": "hostile-body-0001"} if keyed else {}

    response = client.post(votes_url(poll), data=body, content_type="application/json",
                           headers=headers)

    assert response.status_code in (400, 422), response.get_data(as_text=True)
    assert_problem(response, response.status_code, response.get_json()["code"])
    assert total_votes(client, poll) == 0


@pytest.mark.parametrize("body", [
    f'{{"question": {LONE_SURROGATE}, "options": ["A", "B"]}}',
    f'{{"question": "Q?", "options": ["A", {LONE_SURROGATE}]}}',
    f'{{"question": "Q?", "options": ["A", "B"], "max_choices": {HUGE_INTEGER}}}',
    f'{{"question": "Q?", "options": {DEEP_NESTING}}}',
], ids=["surrogate-question", "surrogate-option", "huge-integer", "deep-nesting"])
def test_a_hostile_poll_body_is_a_400(client, auth, body):
    response = client.post("/api/v1/polls", data=body, content_type="application/json",
                           headers=auth)

    body = assert_problem(response, 400, "bad_request")
    assert body["detail"].startswith("The request body is not valid JSON: ")


@pytest.mark.parametrize(("field", "body"), [
    ("comment", {"comment": "a\x00b"}),
    ("context", {"context": "/a\x00b"}),
    ("other", {"other": "x\x00"}),
])
def test_a_nul_character_in_a_vote_is_422_naming_the_field(client, make_poll, field, body):
    poll = make_poll(allow_comment=True, allow_other=True)

    response = client.post(votes_url(poll), json={**first_choice(poll), **body})

    errors = assert_problem(response, 422, "validation_error")["errors"]
    assert errors == {field: ["Must not contain NUL characters."]}
    assert total_votes(client, poll) == 0


@pytest.mark.parametrize("path", [
    "/api/v1/polls/{id}/export?data=votes&context=a%00b",
    "/api/v1/polls/{id}/tallies?context=a%00b",
    "/api/v1/polls/{id}/comments?context=a%00b",
])
def test_a_nul_character_in_a_query_is_422_before_anything_streams(client, make_poll, vote,
                                                                   auth, path):
    poll = make_poll()
    vote(poll)

    response = client.get(path.format(id=poll["id"]), headers=auth)

    assert assert_problem(response, 422, "validation_error")["errors"] == {
        "context": ["Must not contain NUL characters."]}


@pytest.mark.parametrize("path", [
    "/api/v1/polls/{id}/export?data=votes&from=" + OVERFLOWING_TIME.replace("+", "%2B"),
    "/api/v1/polls/{id}/export?data=timeseries&to=9999-12-31T23:59:59-14:00",
    "/api/v1/polls/{id}/export?data=votes&from=1969-12-31T23:59:59Z",
])
def test_an_export_time_out_of_range_is_422_naming_it(client, make_poll, auth, path):
    poll = make_poll()

    response = client.get(path.format(id=poll["id"]), headers=auth)

    errors = assert_problem(response, 422, "validation_error")["errors"]
    assert list(errors) in (["from"], ["to"])


@pytest.mark.parametrize("field", ["opens_at", "closes_at"])
def test_a_poll_time_out_of_range_is_422_naming_it(client, auth, field):
    response = client.post("/api/v1/polls", headers=auth, json={
        "question": "Q?", "options": ["A", "B"], field: OVERFLOWING_TIME})

    assert list(assert_problem(response, 422, "validation_error")["errors"]) == [field]


@pytest.mark.parametrize("path", [
    "/api/v1/polls", "/api/v1/polls/{id}/contexts", "/api/v1/polls/{id}/comments",
    "/api/v1/webhooks",
])
@pytest.mark.parametrize("page", [HUGE_PAGE, "1000001"])
def test_a_page_past_any_list_is_422_naming_page(client, make_poll, auth, path, page):
    poll = make_poll()

    response = client.get(path.format(id=poll["id"]), query_string={"page": page},
                          headers=auth)

    assert list(assert_problem(response, 422, "validation_error")["errors"]) == ["page"]


def test_the_last_allowed_page_is_an_empty_list(client, auth):
    response = client.get("/api/v1/polls", query_string={"page": "1000000"}, headers=auth)

    assert response.status_code == 200 and response.get_json() == []


@pytest.mark.parametrize("value", ["%C2%B2", "%D9%A3", "1e3", "-1"])
def test_oembed_sizes_take_ascii_digits_only(client, make_poll, value):
    poll = make_poll()

    response = client.get(f"/oembed?url=http://localhost/p/{poll['id']}&maxwidth={value}")

    assert list(assert_problem(response, 422, "validation_error")["errors"]) == ["maxwidth"]


def test_a_chunked_body_over_the_limit_is_413_not_a_truncated_400(client, make_poll):
    poll = make_poll(allow_comment=True)
    body = b'{"comment": "' + b"x" * 100_000 + b'"}'

    response = client.post(votes_url(poll), input_stream=io.BytesIO(body),
                           content_type="application/json",
                           headers={"Transfer-Encoding": "chunked"},
                           environ_overrides={"wsgi.input_terminated": True})

    assert_problem(response, 413, "payload_too_large")


def test_a_chunked_body_under_the_limit_is_read_whole(client, make_poll):
    poll = make_poll(allow_comment=True)
    body = json.dumps({"choices": [poll["options"][0]["id"]], "comment": "x" * 1500}).encode()

    response = client.post(votes_url(poll), input_stream=io.BytesIO(body),
                           content_type="application/json",
                           headers={"Transfer-Encoding": "chunked"},
                           environ_overrides={"wsgi.input_terminated": True})

    assert response.status_code == 201, response.get_json()


def _keys(app) -> list[bytes]:
    with app.app_context():
        try:
            return list(redis_handle().client.scan_iter(match="*"))
        except redis_py.RedisError:
            return []


@pytest.mark.parametrize("body", [{"choices": [1]}, "{not json"], ids=["ballot", "bad-body"])
def test_a_vote_in_an_unknown_poll_is_404_and_makes_no_redis_key(app, client, body):
    before = set(_keys(app))
    kwargs = ({"json": body} if isinstance(body, dict)
              else {"data": body, "content_type": "application/json"})

    response = client.post("/api/v1/polls/NoSuchPoll01/votes", **kwargs)

    assert_problem(response, 404, "not_found")
    assert set(_keys(app)) == before


@pytest.mark.parametrize("path", [
    "/api/v1/polls/{long}/votes", "/api/v1/polls/{long}/tallies", "/polls/{long}/widget",
    "/api/v1/polls/a.b/tallies", "/api/v1/receipts/{long}",
])
def test_an_overlong_or_odd_id_is_404_from_routing(app, client, path):
    before = set(_keys(app))

    response = client.post(path.format(long="x" * 8000), json={"choices": [1]}) \
        if path.endswith("/votes") else client.get(path.format(long="x" * 8000))

    assert response.status_code == 404
    assert set(_keys(app)) == before
