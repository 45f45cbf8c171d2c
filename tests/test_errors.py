"""Every 4xx/5xx under /api/ is RFC 9457 problem+json with a stable `code`, and no 5xx
leaks a traceback, SQL, a driver message or a secret."""

from __future__ import annotations

from http import HTTPStatus

import pytest

from service import create_app
from service.infra.db import db
from tests.conftest import SECRET

SMALL_MAX_CONTENT_LENGTH = 2048
UNREACHABLE_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:1/test?connect_timeout=1"
SECRET_MESSAGE = "password=hunter2 for postgresql://admin:s3cr3t@db.internal:5432/prod"
BOOM_PATH = "/api/v1/boom"


def assert_problem(response, status: int, code: str) -> dict:
    """Check the problem+json envelope and return its body."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["type"] == "about:blank"
    assert body["title"] == HTTPStatus(status).phrase
    assert body["status"] == status
    assert body["code"] == code
    assert isinstance(body["detail"], str) and body["detail"]
    return body


def votes_url(poll: dict) -> str:
    return f"/api/v1/polls/{poll['id']}/votes"


def first_choice(poll: dict) -> dict:
    return {"choices": [poll["options"][0]["id"]]}


# --- 400 / 401 / 403 / 404 / 405 ---------------------------------------------------------


@pytest.mark.parametrize("body", ["{", '{"choices": [1,]}', "not json at all", "\xff"])
def test_invalid_json_body_is_400_bad_request(client, make_poll, body):
    poll = make_poll()

    response = client.post(votes_url(poll), data=body.encode("latin-1"),
                           content_type="application/json")

    assert_problem(response, 400, "bad_request")


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer pbk_not-a-real-key"}, {"Authorization": "Basic YTpi"},
     {"Authorization": "Bearer "}],
    ids=["no-key", "unknown-key", "wrong-scheme", "empty-key"],
)
def test_owner_endpoint_without_a_valid_key_is_401_unauthorized(client, headers):
    response = client.post(
        "/api/v1/polls", json={"question": "Q?", "options": ["A", "B"]}, headers=headers
    )

    assert_problem(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("method", "json"),
    [("patch", {"question": "Mine now?"}), ("delete", None)],
)
def test_another_owners_poll_is_403_forbidden(client, make_poll, other_auth, auth, method,
                                               json):
    poll = make_poll()

    response = client.open(f"/api/v1/polls/{poll['id']}", method=method.upper(), json=json,
                           headers=other_auth)

    assert_problem(response, 403, "forbidden")
    untouched = client.get(f"/api/v1/polls/{poll['id']}", headers=auth)
    assert untouched.status_code == 200
    assert untouched.get_json()["question"] == poll["question"]


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/v1/polls/unknownpoll1"),
     ("GET", "/api/v1/polls/unknownpoll1/tallies"),
     ("POST", "/api/v1/polls/unknownpoll1/votes"),
     ("GET", "/api/v1/nothing-here"),
     ("POST", "/api/v1/nothing-here"),
     ("GET", "/api/v2/polls")],
)
def test_unknown_poll_or_api_path_is_404_not_found(client, method, path):
    response = client.open(path, method=method, json={"choices": [1]} if method == "POST"
                           else None)

    assert_problem(response, 404, "not_found")


@pytest.mark.parametrize("content_type", [None, "text/plain"])
def test_unknown_api_path_is_404_whatever_the_body(client, content_type):
    response = client.post("/api/v1/nothing-here", data="x", content_type=content_type)

    assert_problem(response, 404, "not_found")


def test_deleted_poll_is_404_not_found(client, make_poll, auth):
    poll = make_poll()
    assert client.delete(f"/api/v1/polls/{poll['id']}", headers=auth).status_code == 204

    assert_problem(client.get(f"/api/v1/polls/{poll['id']}"), 404, "not_found")
    assert_problem(client.post(votes_url(poll), json=first_choice(poll)), 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [("PUT", "/api/v1/polls", {"GET", "POST"}),
     ("DELETE", "/api/v1/polls", {"GET", "POST"}),
     ("PUT", "/api/v1/polls/{id}", {"GET", "PATCH", "DELETE"}),
     ("POST", "/api/v1/polls/{id}/tallies", {"GET"}),
     ("DELETE", "/api/v1/polls/{id}/tallies", {"GET"}),
     ("GET", "/api/v1/polls/{id}/votes", {"POST"})],
)
def test_wrong_method_is_405_with_an_allow_header(client, make_poll, auth, method, path,
                                                   allowed):
    poll = make_poll()

    response = client.open(path.format(id=poll["id"]), method=method, headers=auth)

    assert_problem(response, 405, "method_not_allowed")
    assert allowed <= {m.strip() for m in response.headers["Allow"].split(",")}


# --- 409 ---------------------------------------------------------------------------------


def _duplicate_vote(app, client, auth, poll):
    browser = app.test_client()
    assert browser.post(votes_url(poll), json=first_choice(poll)).status_code == 201
    return browser.post(votes_url(poll), json=first_choice(poll))


def _poll_closed(app, client, auth, poll):
    closed = client.patch(f"/api/v1/polls/{poll['id']}", json={"status": "closed"},
                          headers=auth)
    assert closed.status_code == 200
    return app.test_client().post(votes_url(poll), json=first_choice(poll))


def _poll_has_votes(app, client, auth, poll):
    assert app.test_client().post(votes_url(poll), json=first_choice(poll)).status_code == 201
    return client.patch(f"/api/v1/polls/{poll['id']}", json={"kind": "multiple"},
                        headers=auth)


@pytest.mark.parametrize(
    ("provoke", "code"),
    [(_duplicate_vote, "duplicate_vote"), (_poll_closed, "poll_closed"),
     (_poll_has_votes, "poll_has_votes")],
    ids=["duplicate_vote", "poll_closed", "poll_has_votes"],
)
def test_conflicts_are_409_with_their_code(app, client, make_poll, auth, provoke, code):
    poll = make_poll()

    assert_problem(provoke(app, client, auth, poll), 409, code)


# --- 413 ---------------------------------------------------------------------------------


@pytest.fixture
def small_body_app(app):
    """The stack's app again, accepting request bodies of at most 2 KiB."""
    small = create_app({
        "TESTING": True,
        "SECRET_KEY": SECRET,
        "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
        "REDIS_URL": app.config["REDIS_URL"],
        "CLOCK": app.config["CLOCK"],
        "MAX_CONTENT_LENGTH": SMALL_MAX_CONTENT_LENGTH,
    })
    yield small
    with small.app_context():
        db.engine.dispose()


@pytest.mark.parametrize("endpoint", ["vote", "create-poll"])
def test_body_over_max_content_length_is_413_payload_too_large(
    small_body_app, make_poll, auth, endpoint
):
    poll = make_poll(allow_comment=True)
    padding = "x" * (SMALL_MAX_CONTENT_LENGTH + 1)
    client = small_body_app.test_client()
    if endpoint == "vote":
        response = client.post(votes_url(poll), json={**first_choice(poll), "comment": padding})
    else:
        response = client.post("/api/v1/polls", headers=auth,
                               json={"question": padding, "options": ["A", "B"]})

    assert_problem(response, 413, "payload_too_large")


def test_body_under_max_content_length_is_accepted(small_body_app, make_poll):
    poll = make_poll(allow_comment=True)
    comment = "x" * (SMALL_MAX_CONTENT_LENGTH // 2)

    response = small_body_app.test_client().post(
        votes_url(poll), json={**first_choice(poll), "comment": comment}
    )

    assert response.status_code == 201, response.get_json()


# --- 415 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x"])
@pytest.mark.parametrize("endpoint", ["vote", "create-poll", "update-poll"])
def test_json_endpoint_without_json_content_type_is_415(client, make_poll, auth, endpoint,
                                                        content_type):
    poll = make_poll()
    method, path = {
        "vote": ("POST", votes_url(poll)),
        "create-poll": ("POST", "/api/v1/polls"),
        "update-poll": ("PATCH", f"/api/v1/polls/{poll['id']}"),
    }[endpoint]

    response = client.open(path, method=method, data='{"question": "Q?"}',
                           content_type=content_type, headers=auth)

    assert_problem(response, 415, "unsupported_media_type")
    assert client.get(f"/api/v1/polls/{poll['id']}/tallies").get_json()["total_votes"] == 0


# --- 422 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [({"question": "Q?", "options": ["Only one"]}, "options"),
     ({"options": ["A", "B"]}, "question"),
     ({"question": "Q?", "options": ["A", "B"], "colour": "red"}, "colour"),
     ({"question": "Q?", "options": ["A", "B"], "kind": "borda"}, "kind"),
     ({"question": "Q?", "options": ["A", "a"]}, "options")],
    ids=["too-few-options", "missing-question", "unknown-field", "bad-kind", "repeated-label"],
)
def test_invalid_poll_is_422_naming_the_field(client, auth, body, field):
    response = client.post("/api/v1/polls", json=body, headers=auth)

    errors = assert_problem(response, 422, "validation_error")["errors"]
    assert field in errors
    assert all(isinstance(message, str) for message in errors[field])


@pytest.mark.parametrize(
    ("body", "field"),
    [({"choices": [999_999]}, "choices"),
     ({"choices": []}, "choices"),
     ({"choices": ["1"]}, "choices.0"),
     ({"choices": [1], "tip": 5}, "tip")],
    ids=["unknown-option", "no-choice", "string-id", "unknown-field"],
)
def test_invalid_vote_is_422_naming_the_field_and_counts_nothing(client, make_poll, body,
                                                                 field):
    poll = make_poll()

    response = client.post(votes_url(poll), json=body)

    assert field in assert_problem(response, 422, "validation_error")["errors"]
    assert client.get(f"/api/v1/polls/{poll['id']}/tallies").get_json()["total_votes"] == 0


# --- 5xx -----------------------------------------------------------------------------------


LEAK_MARKERS = ("127.0.0.1", "psycopg", "sqlalchemy", "operationalerror", "select ",
                "traceback", "connection refused", "postgres")


@pytest.fixture
def database_down_app():
    """The app pointed at a PostgreSQL port nothing listens on."""
    app = create_app({
        "SECRET_KEY": SECRET,
        "SQLALCHEMY_DATABASE_URI": UNREACHABLE_POSTGRES_URL,
    })
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [("GET", "/api/v1/polls/somepoll", {}),
     ("GET", "/api/v1/polls/somepoll/tallies", {}),
     ("POST", "/api/v1/polls/somepoll/votes", {"json": {"choices": [1]}}),
     ("GET", "/api/v1/polls", {"headers": {"Authorization": "Bearer pbk_whatever"}}),
     ("POST", "/api/v1/polls", {"json": {"question": "Q?", "options": ["A", "B"]},
                                "headers": {"Authorization": "Bearer pbk_whatever"}})],
)
def test_unreachable_database_is_503_with_retry_after_and_no_details(
    database_down_app, method, path, kwargs
):
    response = database_down_app.test_client().open(path, method=method, **kwargs)

    assert_problem(response, 503, "unavailable")
    assert int(response.headers["Retry-After"]) > 0
    text = response.get_data(as_text=True).lower()
    assert not [marker for marker in LEAK_MARKERS if marker in text]


@pytest.fixture
def exploding_app(tmp_path):
    """A production-like app (exceptions not propagated) with a route that raises."""
    app = create_app({
        "SECRET_KEY": SECRET,
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'pollbox.db'}",
    })

    def boom():
        raise RuntimeError(SECRET_MESSAGE)

    app.add_url_rule(BOOM_PATH, "boom", boom)
    yield app
    with app.app_context():
        db.engine.dispose()


def test_unexpected_exception_is_a_generic_500_without_traceback_or_message(exploding_app):
    response = exploding_app.test_client().get(BOOM_PATH)

    body = assert_problem(response, 500, "internal_error")
    assert set(body) == {"type", "title", "status", "code", "detail"}
    text = response.get_data(as_text=True)
    for leaked in ("hunter2", "s3cr3t", "db.internal", "RuntimeError", "Traceback", "boom"):
        assert leaked not in text


@pytest.mark.parametrize("stack", ["sqlite-fakeredis"], indirect=True)
def test_every_owner_endpoint_documents_401_and_for_one_resource_403_and_404(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    owner_operations = [
        (method, path, set(operation["responses"]))
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if isinstance(operation, dict) and operation.get("security")
    ]
    assert len(owner_operations) >= 19
    for method, path, statuses in owner_operations:
        assert "401" in statuses, (method, path)
        if "{" in path:  # one poll's or webhook's: another owner's, or unknown
            assert {"403", "404"} <= statuses, (method, path)
