"""Scoped API keys: admin, write and read; made over the API and on the command line;
last use kept without a database write per request; every owner operation checked
against every scope."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from service import owners
from service.infra.db import db
from service.webhooks import dispatcher as webhooks
from tests.test_webhooks import Receiver

SCOPES = ("read", "write", "admin")


@pytest.fixture
def make_key(client, auth):
    """Make a key of a scope over the API with the owner's admin key; return its header."""

    def make(scope: str, name: str | None = None) -> dict[str, str]:
        response = client.post("/api/v1/keys", headers=auth,
                               json={"name": name or f"{scope} key", "scope": scope})
        assert response.status_code == 201, response.get_json()
        return {"Authorization": f"Bearer {response.get_json()['key']}"}

    return make


def problem(response) -> tuple[int, str]:
    return response.status_code, response.get_json()["code"]


# Making, listing and revoking keys ------------------------------------------------------


def test_an_admin_key_makes_a_key_shown_once_and_listed_without_its_secret(client, auth):
    response = client.post("/api/v1/keys", headers=auth,
                           json={"name": "analyst", "scope": "read"})
    assert response.status_code == 201
    made = response.get_json()
    assert made["key"].startswith(owners.KEY_PREFIX) and made["key"].startswith(made["prefix"])
    assert (made["name"], made["scope"], made["last_used_at"]) == ("analyst", "read", None)
    assert response.headers["Location"].endswith(f"/api/v1/keys/{made['id']}")
    listed = client.get("/api/v1/keys", headers=auth).get_json()
    assert [(key["name"], key["scope"]) for key in listed] == [
        ("default", "admin"), ("analyst", "read")]
    assert all("key" not in key for key in listed)
    assert made["key"] not in str(listed)
    assert listed[1]["created_at"] == made["created_at"]


@pytest.mark.parametrize("body, field", [
    ({"name": "analyst", "scope": "owner"}, "scope"),
    ({"name": "analyst"}, "scope"),
    ({"scope": "read"}, "name"),
    ({"name": "", "scope": "read"}, "name"),
    ({"name": "x" * 101, "scope": "read"}, "name"),
    ({"name": "analyst", "scope": "read", "expires": "never"}, "expires"),
])
def test_a_bad_key_request_names_the_field(client, auth, body, field):
    response = client.post("/api/v1/keys", headers=auth, json=body)
    assert problem(response) == (422, "validation_error")
    assert field in response.get_json()["errors"]


@pytest.mark.parametrize("scope", ["read", "write"])
def test_only_an_admin_key_manages_keys(client, make_key, scope):
    headers = make_key(scope)
    assert problem(client.get("/api/v1/keys", headers=headers)) == (403, "insufficient_scope")
    made = client.post("/api/v1/keys", headers=headers, json={"name": "x", "scope": "read"})
    assert problem(made) == (403, "insufficient_scope")
    assert "'admin'" in made.get_json()["detail"]


def test_a_revoked_key_stops_working_at_once(client, auth, make_key):
    headers = make_key("write")
    key_id = client.get("/api/v1/keys", headers=auth).get_json()[1]["id"]
    assert client.get("/api/v1/polls", headers=headers).status_code == 200
    assert client.delete(f"/api/v1/keys/{key_id}", headers=auth).status_code == 204
    assert problem(client.get("/api/v1/polls", headers=headers)) == (401, "unauthorized")
    assert [key["name"] for key in client.get("/api/v1/keys", headers=auth).get_json()] == [
        "default"]
    assert problem(client.delete(f"/api/v1/keys/{key_id}", headers=auth)) == (404, "not_found")


def test_another_owners_key_and_unknown_ids_are_not_found(client, auth, other_auth):
    other_id = client.get("/api/v1/keys", headers=other_auth).get_json()[0]["id"]
    for key_id in (other_id, 999_999, 2**40):
        assert problem(client.delete(f"/api/v1/keys/{key_id}", headers=auth)) == (
            404, "not_found")
    assert client.get("/api/v1/polls", headers=other_auth).status_code == 200


def test_the_owners_last_admin_key_is_not_revoked(client, auth, make_key):
    own_id = client.get("/api/v1/keys", headers=auth).get_json()[0]["id"]
    assert problem(client.delete(f"/api/v1/keys/{own_id}", headers=auth)) == (
        409, "last_admin_key")
    second_admin = make_key("admin")
    assert client.delete(f"/api/v1/keys/{own_id}", headers=second_admin).status_code == 204
    assert problem(client.get("/api/v1/keys", headers=auth)) == (401, "unauthorized")


def test_a_read_key_sees_hidden_results(client, make_poll, make_key):
    poll = make_poll(results="owner_only")
    url = f"/api/v1/polls/{poll['id']}/tallies"
    assert problem(client.get(url)) == (403, "results_hidden")
    assert client.get(url, headers=make_key("read")).status_code == 200


# Last use --------------------------------------------------------------------------------


def test_last_use_is_written_at_most_once_a_minute_per_key(app, client, auth, clock):
    clock.advance(seconds=0)
    updates = []

    def count(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("UPDATE API_KEYS"):
            updates.append(statement)

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        for _ in range(10):
            assert client.get("/api/v1/polls", headers=auth).status_code == 200
        first = client.get("/api/v1/keys", headers=auth).get_json()[0]["last_used_at"]
        assert len(updates) == 1
        clock.advance(seconds=61)
        later = client.get("/api/v1/keys", headers=auth).get_json()[0]["last_used_at"]
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    assert len(updates) == 2
    assert first is not None and later > first


def test_a_key_has_no_last_use_until_it_is_used(client, auth, make_key):
    read = make_key("read")
    assert client.get("/api/v1/keys", headers=auth).get_json()[1]["last_used_at"] is None
    client.get("/api/v1/polls", headers=read)
    assert client.get("/api/v1/keys", headers=auth).get_json()[1]["last_used_at"]


# The command line ------------------------------------------------------------------------


def test_the_command_line_makes_a_key_of_a_scope(app, client, owner_key):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["owners", "keys", "create", "PsyWeb", "--name", "analyst",
                                 "--scope", "read"])
    assert result.exit_code == 0, result.output
    key = result.stdout.strip().splitlines()[-1]
    headers = {"Authorization": f"Bearer {key}"}
    assert client.get("/api/v1/polls", headers=headers).status_code == 200
    assert problem(client.post("/api/v1/polls", headers=headers, json={})) == (
        403, "insufficient_scope")
    listed = client.get("/api/v1/keys", headers={"Authorization": f"Bearer {owner_key}"})
    assert [(k["name"], k["scope"]) for k in listed.get_json()][-1] == ("analyst", "read")


@pytest.mark.parametrize("args, message", [
    (["Nobody", "--name", "a", "--scope", "read"], "no owner named 'Nobody'"),
    (["PsyWeb", "--name", "a", "--scope", "owner"], "'owner' is not one of"),
    (["PsyWeb", "--name", " ", "--scope", "read"], "1..100 characters"),
])
def test_the_command_line_refuses_a_bad_key_clearly(app, owner_key, args, message):
    result = app.test_cli_runner().invoke(args=["owners", "keys", "create", *args])
    assert result.exit_code != 0
    assert message in result.output


def test_rotating_revokes_the_admin_keys_and_keeps_narrower_ones(app, client, auth, make_key):
    read = make_key("read")
    result = app.test_cli_runner().invoke(args=["owners", "keys", "rotate", "PsyWeb"])
    assert result.exit_code == 0, result.output
    new_admin = {"Authorization": f"Bearer {result.stdout.strip().splitlines()[-1]}"}
    assert client.get("/api/v1/polls", headers=auth).status_code == 401
    assert client.get("/api/v1/polls", headers=read).status_code == 200
    assert [k["scope"] for k in client.get("/api/v1/keys", headers=new_admin).get_json()] == [
        "read", "admin"]


# The scope matrix: every owner operation of the OpenAPI document, against each scope ----

NEEDED = {"get": "read"}  # any other method needs `write`; /api/v1/keys needs `admin`


def needed_scope(method: str, path: str) -> str:
    if path.startswith("/api/v1/keys"):
        return "admin"
    return NEEDED.get(method, "write")


def owner_operations(client) -> list[tuple[str, str, str]]:
    """(method, path, success status) of every operation the document says takes a key."""
    spec = client.get("/api/v1/openapi.json").get_json()
    found = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if isinstance(operation, dict) and operation.get("security"):
                success = min(code for code in operation["responses"] if code.startswith("2"))
                found.append((method, path, success))
    return found


def test_every_owner_operation_documents_the_scope_refusal(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    undocumented = [
        f"{method.upper()} {path}" for path, item in spec["paths"].items()
        for method, operation in item.items()
        if isinstance(operation, dict) and operation.get("security")
        and "insufficient_scope" not in operation["responses"].get("403", {}).get(
            "description", "")
    ]
    assert undocumented == []
    assert "`403 insufficient_scope`" in spec["components"]["securitySchemes"]["bearerAuth"][
        "description"]


# A request that succeeds for each operation, given the resources made in `world`.
REQUESTS = {
    ("get", "/api/v1/polls"): {},
    ("post", "/api/v1/polls"): {"json": {"question": "Tea?", "options": ["Yes", "No"]}},
    ("patch", "/api/v1/polls/{poll_id}"): {"json": {"status": "closed"}},
    ("delete", "/api/v1/polls/{poll_id}"): {},
    ("post", "/api/v1/polls/{poll_id}/signing-secret"): {},
    ("get", "/api/v1/polls/{poll_id}/export"): {"query_string": {"data": "votes"}},
    ("get", "/api/v1/export"): {},
    ("get", "/api/v1/polls/{poll_id}/timeseries.svg"): {},
    ("get", "/api/v1/polls/{poll_id}/integrity"): {},
    ("get", "/api/v1/polls/{poll_id}/contexts"): {},
    ("get", "/api/v1/polls/{poll_id}/comments"): {},
    ("patch", "/api/v1/polls/{poll_id}/comments/{vote_id}"): {"json": {"hidden": True}},
    ("post", "/api/v1/polls/presets/page-feedback"): {"json": {}},
    ("get", "/api/v1/webhooks"): {},
    ("post", "/api/v1/webhooks"): {"json": {"url": "{hook_url}", "events": ["poll.closed"]}},
    ("get", "/api/v1/webhooks/{webhook_id}"): {},
    ("delete", "/api/v1/webhooks/{webhook_id}"): {},
    ("get", "/api/v1/webhooks/{webhook_id}/deliveries"): {},
    ("post", "/api/v1/webhooks/{webhook_id}/test"): {},
    ("get", "/api/v1/polls/{poll_id}/baseline"): {},
    ("put", "/api/v1/polls/{poll_id}/baseline"): {"json": {
        "total_votes": 10, "options": {"{yes_id}": 6, "{no_id}": 4}, "source": "Before",
        "as_of": "2026-01-01T00:00:00Z"}},
    ("delete", "/api/v1/polls/{poll_id}/baseline"): {},
    ("get", "/api/v1/keys"): {},
    ("post", "/api/v1/keys"): {"json": {"name": "another", "scope": "read"}},
    ("delete", "/api/v1/keys/{key_id}"): {},
}


@pytest.fixture
def scoped_app(app):
    app.config.update(WEBHOOKS_ALLOW_PRIVATE=True, WEBHOOKS_TICK_SECONDS=3600)
    receiver = Receiver()
    yield app, receiver
    webhooks.stop(app)
    receiver.close()


def world(client, auth, vote, receiver) -> dict[str, str]:
    """A poll with a commented vote, a baseline, a webhook and a spare key: what the paths
    name."""
    poll = client.post("/api/v1/polls", headers=auth, json={
        "question": "Tea?", "options": ["Yes", "No"], "allow_comment": True}).get_json()
    yes_id, no_id = (str(option["id"]) for option in poll["options"])
    baseline = client.put(f"/api/v1/polls/{poll['id']}/baseline", headers=auth, json={
        "total_votes": 3, "options": {yes_id: 2, no_id: 1}, "source": "Before",
        "as_of": "2026-01-01T00:00:00Z"})
    assert baseline.status_code == 200, baseline.get_json()
    voted = vote(poll, comment="Lovely")
    hook = client.post("/api/v1/webhooks", headers=auth, json={
        "url": receiver.url, "events": ["vote.created"]}).get_json()
    spare = client.post("/api/v1/keys", headers=auth, json={"name": "spare", "scope": "read"})
    return {"poll_id": poll["id"], "vote_id": voted.get_json()["vote"]["id"],
            "webhook_id": hook["id"], "key_id": str(spare.get_json()["id"]),
            "hook_url": receiver.url, "yes_id": yes_id, "no_id": no_id}


def filled(value, names):
    """The request body with the resources' ids in place of their `{names}`."""
    if isinstance(value, str):
        return value.format(**names)
    if isinstance(value, dict):
        return {filled(key, names): filled(item, names) for key, item in value.items()}
    return value


def send(client, method, path, headers, names):
    request = dict(REQUESTS[(method, path)])
    if "json" in request:
        request["json"] = filled(request["json"], names)
    response = getattr(client, method)(path.format(**names), headers=headers, **request)
    response.get_data()
    response.close()  # a streamed export holds its request's context until closed
    return response


@pytest.mark.parametrize("scope", SCOPES)
def test_every_owner_operation_is_allowed_exactly_to_the_scopes_that_include_it(
        scoped_app, auth, make_key, vote, scope):
    app, receiver = scoped_app
    client = app.test_client()
    headers = make_key(scope)
    operations = owner_operations(client)
    assert {(method, path) for method, path, _ in operations} == set(REQUESTS)
    outcomes = {}
    for method, path, success in operations:
        names = world(client, auth, vote, receiver)
        response = send(client, method, path, headers, names)
        allowed = SCOPES.index(scope) >= SCOPES.index(needed_scope(method, path))
        expected = (int(success), None) if allowed else (403, "insufficient_scope")
        body = response.get_json(silent=True)
        code = body.get("code") if isinstance(body, dict) else None
        outcomes[f"{method.upper()} {path}"] = (response.status_code, code), expected
    wrong = {op: got for op, (got, expected) in outcomes.items()
             if got[0] != expected[0] or (expected[1] and got[1] != expected[1])}
    assert wrong == {}, wrong
    assert len(outcomes) == len(REQUESTS)


def test_a_read_key_never_sees_a_polls_signing_secret(client, auth, make_poll, make_key):
    poll = make_poll(duplicate_check="user")
    assert poll["signing_secret"]
    read, write = make_key("read"), make_key("write")
    for url in (f"/api/v1/polls/{poll['id']}", "/api/v1/polls"):
        seen = client.get(url, headers=read).get_json()
        view = seen[0] if isinstance(seen, list) else seen
        assert "signing_secret" not in view and view["duplicate_check"] == "user"
        written = client.get(url, headers=write).get_json()
        view = written[0] if isinstance(written, list) else written
        assert view["signing_secret"] == poll["signing_secret"]
