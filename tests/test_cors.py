"""CORS and origin rules of the public poll endpoints: `*` for polls embeddable anywhere,
the exact listed origin (with credentials) otherwise, never a reflected stranger."""

from __future__ import annotations

import flask
import pytest

from service.web import cors

EMBEDDER = "https://www.psyweb.example"
STRANGER = "https://evil.example"
OWN_ORIGIN = "http://localhost"  # the Flask test client's host
PUBLIC_ENDPOINTS = ["get-poll", "get-tallies", "post-vote"]


def call(app, poll: dict, endpoint: str, origin: str | None):
    """Call one public endpoint from a fresh browser, with an Origin header."""
    browser = app.test_client()
    headers = {} if origin is None else {"Origin": origin}
    base = f"/api/v1/polls/{poll['id']}"
    if endpoint == "get-poll":
        return browser.get(base, headers=headers)
    if endpoint == "get-tallies":
        return browser.get(f"{base}/tallies", headers=headers)
    return browser.post(f"{base}/votes", json={"choices": [poll["options"][0]["id"]]},
                        headers=headers)


def preflight(app, poll: dict, origin: str):
    return app.test_client().options(
        f"/api/v1/polls/{poll['id']}/votes",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )


def total_votes(client, poll: dict, headers: dict | None = None) -> int:
    return client.get(f"/api/v1/polls/{poll['id']}/tallies", headers=headers).get_json()[
        "total_votes"
    ]


def vary(response) -> set[str]:
    return {value.strip().lower() for value in response.headers.get("Vary", "").split(",")}


@pytest.fixture
def open_poll(make_poll):
    """A poll embeddable anywhere; any number of votes from one address."""
    return make_poll(allowed_origins=[], duplicate_check="cookie")


@pytest.fixture
def listed_poll(make_poll):
    """A poll embeddable only on the embedder's site."""
    return make_poll(allowed_origins=[EMBEDDER], duplicate_check="cookie")


@pytest.mark.parametrize("endpoint", PUBLIC_ENDPOINTS)
def test_poll_embeddable_anywhere_allows_any_origin_without_credentials(
    app, open_poll, endpoint
):
    response = call(app, open_poll, endpoint, STRANGER)

    assert response.status_code in (200, 201)
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response.headers


@pytest.mark.parametrize("endpoint", PUBLIC_ENDPOINTS)
def test_listed_origin_is_named_exactly_with_credentials(app, listed_poll, endpoint):
    response = call(app, listed_poll, endpoint, EMBEDDER)

    assert response.status_code in (200, 201)
    assert response.headers["Access-Control-Allow-Origin"] == EMBEDDER
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert "origin" in vary(response)


@pytest.mark.parametrize("origin", [STRANGER, "null", "https://www.psyweb.example.evil.example"])
@pytest.mark.parametrize("endpoint", ["get-poll", "get-tallies"])
def test_unlisted_origin_is_never_reflected(app, listed_poll, endpoint, origin):
    response = call(app, listed_poll, endpoint, origin)

    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert "origin" in vary(response)


@pytest.mark.parametrize("endpoint", PUBLIC_ENDPOINTS)
def test_null_origin_is_not_echoed_on_a_poll_embeddable_anywhere(app, open_poll, endpoint):
    response = call(app, open_poll, endpoint, "null")

    assert response.headers.get("Access-Control-Allow-Origin") != "null"
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_null_cannot_be_listed_as_an_allowed_origin(client, auth):
    response = client.post(
        "/api/v1/polls",
        json={"question": "Q?", "options": ["A", "B"], "allowed_origins": ["null"]},
        headers=auth,
    )

    assert response.status_code == 422
    assert "allowed_origins.0" in response.get_json()["errors"]


def test_answer_without_origin_carries_no_cors_headers(app, listed_poll):
    response = call(app, listed_poll, "get-tallies", None)

    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers


# --- preflight ----------------------------------------------------------------------------


def test_preflight_for_a_listed_origin_allows_post_with_json(app, listed_poll):
    response = preflight(app, listed_poll, EMBEDDER)

    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == EMBEDDER
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    methods = {m.strip() for m in response.headers["Access-Control-Allow-Methods"].split(",")}
    assert "POST" in methods
    allowed_headers = {
        h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")
    }
    assert "content-type" in allowed_headers
    assert int(response.headers["Access-Control-Max-Age"]) > 0
    assert "origin" in vary(response)


def test_preflight_for_a_poll_embeddable_anywhere_allows_any_origin(app, open_poll):
    response = preflight(app, open_poll, STRANGER)

    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]


@pytest.mark.parametrize("origin", [STRANGER, "null"])
def test_preflight_for_an_unlisted_origin_grants_nothing(app, listed_poll, origin):
    response = preflight(app, listed_poll, origin)

    assert response.status_code == 204
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Methods" not in response.headers
    assert "Access-Control-Allow-Credentials" not in response.headers


# --- vote origin check --------------------------------------------------------------------


@pytest.mark.parametrize("origin", [STRANGER, "null", "http://www.psyweb.example"])
def test_vote_from_an_unlisted_origin_is_refused_and_counts_nothing(
    app, client, listed_poll, auth, origin
):
    browser = app.test_client()
    url = f"/api/v1/polls/{listed_poll['id']}/votes"
    body = {"choices": [listed_poll["options"][0]["id"]]}

    refused = browser.post(url, json=body, headers={"Origin": origin})

    assert refused.status_code == 403
    assert refused.mimetype == "application/problem+json"
    assert refused.get_json()["code"] == "origin_not_allowed"
    assert "Access-Control-Allow-Origin" not in refused.headers
    assert total_votes(client, listed_poll, auth) == 0
    # The refused attempt did not use up this browser's vote.
    assert browser.post(url, json=body, headers={"Origin": EMBEDDER}).status_code == 201
    assert total_votes(client, listed_poll, auth) == 1


def test_vote_error_is_readable_by_an_allowed_origin(app, listed_poll):
    browser = app.test_client()
    url = f"/api/v1/polls/{listed_poll['id']}/votes"
    body = {"choices": [listed_poll["options"][0]["id"]]}
    assert browser.post(url, json=body, headers={"Origin": EMBEDDER}).status_code == 201

    duplicate = browser.post(url, json=body, headers={"Origin": EMBEDDER})

    assert duplicate.status_code == 409
    assert duplicate.headers["Access-Control-Allow-Origin"] == EMBEDDER


@pytest.mark.parametrize("origin", [OWN_ORIGIN, EMBEDDER, None])
def test_own_origin_listed_origin_and_non_browser_clients_may_vote(
    app, client, listed_poll, auth, origin
):
    response = call(app, listed_poll, "post-vote", origin)

    assert response.status_code == 201, response.get_json()
    assert total_votes(client, listed_poll, auth) == 1


def test_origin_is_added_to_vary_once_beside_what_the_view_named(client, make_poll):
    poll = make_poll()
    response = client.get(f"/api/v1/polls/{poll['id']}/tallies",
                          headers={"Origin": "https://health.example"})
    names = [value.strip() for value in response.headers["Vary"].split(",")]
    assert names == ["Authorization", "Cookie", "Origin"]
    answer = flask.Response(headers={"Vary": "Accept, origin"})
    cors.vary_on_origin(answer)
    assert answer.headers["Vary"] == "Accept, origin"  # already there, in any case
    answer = flask.Response()
    cors.vary_on_origin(answer)
    assert answer.headers["Vary"] == "Origin"


@pytest.mark.parametrize(("host", "scheme", "expected"), [
    ("Polls.Example:8443", "https", "https://polls.example:8443"),
    # An internationalised host stays in the ASCII form a browser's Origin header has.
    ("xn--umfrage-gra.example", "http", "http://xn--umfrage-gra.example"),
])
def test_own_origin_is_the_request_s_as_browsers_write_it(app, host, scheme, expected):
    from service.web.urls import own_origin

    with app.test_request_context("/polls/x/widget", base_url=f"{scheme}://{host}"):
        assert own_origin() == expected
