"""Console webhook pages: the list, the create form (secret shown once, the SSRF guard's
refusals on the URL field), a webhook's deliveries log with every attempt, test sends and
delete after confirmation, for the signed-in owner only.

Deliveries go to a loopback receiver started by each test (tests/test_webhooks.py's, with
the development setting WEBHOOKS_ALLOW_PRIVATE on); refusals happen before any connection.
"""

# Fixtures imported from tests/test_webhooks.py are used as parameters of the same name.
# ruff: noqa: F401, F811

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from service.infra.db import db
from service.infra.models import Webhook
from tests.console.console_client import ConsoleClient
from tests.console.test_console_feedback import Sections
from tests.test_webhooks import hooks_app, receiver, settle, verify

EVENTS = ["vote.created", "poll.closed"]
SECRET_ON_PAGE = re.compile(r'id="webhook-secret"[^>]*><code>(whsec_[^<]+)</code>')


def create(console, url: str, events=EVENTS, poll_id: str = ""):
    return console.post("/console/webhooks/new", {"url": url, "events": list(events),
                                                  "poll_id": poll_id})


@pytest.fixture
def hook(console, hooks_app, receiver) -> dict:
    """A webhook to the loopback receiver, created through the console's form."""
    response = create(console, receiver.url)
    assert response.status_code == 201, response.get_data(as_text=True)
    page = response.get_data(as_text=True)
    return {"id": response.headers["Location"].rsplit("/", 1)[1],
            "secret": SECRET_ON_PAGE.search(page).group(1), "page": page}


def api_deliveries(client, auth, hook, **query) -> list[dict]:
    response = client.get(f"/api/v1/webhooks/{hook['id']}/deliveries", headers=auth,
                          query_string=query)
    assert response.status_code == 200
    return response.get_json()


def settled(client, auth, hook, count=1, attempts=1):
    def done() -> bool:
        found = api_deliveries(client, auth, hook)
        return len(found) >= count and all(len(d["attempts"]) >= attempts for d in found)

    return done


def show_url(hook: dict) -> str:
    return f"/console/webhooks/{hook['id']}"


@pytest.mark.parametrize("path", ["/console/webhooks", "/console/webhooks/new",
                                  "/console/webhooks/wh_x", "/console/webhooks/wh_x/delete"])
def test_signed_out_visitors_are_sent_to_sign_in(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/console/sign-in?next=")


def test_creating_a_webhook_shows_its_secret_once(app, console, hook, client, auth):
    with app.app_context():
        stored = db.session.get(Webhook, hook["id"])
        assert (stored.secret, stored.url, stored.events, stored.poll_id) == (
            hook["secret"], stored.url, EVENTS, None)
    assert "Shown once." in hook["page"]
    assert 'data-copy-target="#webhook-secret"' in hook["page"]
    for url in ("/console/webhooks", show_url(hook)):
        page = console.get(url)
        assert page.status_code == 200
        assert hook["secret"] not in page.get_data(as_text=True)
    listed = client.get("/api/v1/webhooks", headers=auth).get_json()
    assert [webhook["id"] for webhook in listed] == [hook["id"]]


@pytest.mark.parametrize("url, message", [
    ("http://hooks.example/pollbox", "The URL must use https."),
    ("https://127.0.0.1/hook", "non-public address (127.0.0.1)"),
    ("https://localhost/hook", "non-public address"),
    ("https://10.1.2.3/hook", "non-public address (10.1.2.3)"),
    ("https://[::ffff:192.168.0.1]/hook", "non-public address"),
    ("https://user:secret@hooks.example/", "may not carry credentials"),
])
def test_urls_must_be_https_and_public_shown_on_the_url_field(console, client, auth, url,
                                                              message):
    response = create(console, url)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert re.search(r'id="url"[^>]*aria-invalid="true"', page, re.S)
    error = re.search(r'<p class="pb-field-error" id="url-error">([^<]*)</p>', page).group(1)
    assert message in error.replace("&#39;", "'")
    assert f'value="{url}"' in page  # the form keeps what was typed
    assert client.get("/api/v1/webhooks", headers=auth).get_json() == []


def test_loopback_http_is_allowed_only_with_the_development_setting(app, console, receiver):
    app.config["WEBHOOKS_ALLOW_PRIVATE"] = False
    assert create(console, receiver.url).status_code == 422
    app.config["WEBHOOKS_ALLOW_PRIVATE"] = True
    try:
        assert create(console, receiver.url).status_code == 201
    finally:
        from service.webhooks import dispatcher as webhooks

        webhooks.stop(app)


@pytest.mark.parametrize("form, field, message", [
    ({"url": ""}, "url", "Enter the https URL"),
    ({"events": []}, "events", "Choose at least one event."),
    ({"events": ["vote.deleted"]}, "events", "Choose among the events listed."),
    ({"poll_id": "nosuchpoll"}, "poll_id", "Choose one of your polls"),
])
def test_create_form_names_the_invalid_field(console, hooks_app, form, field, message):
    response = console.post("/console/webhooks/new", {
        "url": "http://127.0.0.1:9/hook", "events": EVENTS, "poll_id": "", **form})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert f'<p class="pb-field-error" id="{field}-error">{message}' in page


def test_another_owners_poll_cannot_scope_a_webhook(console, hooks_app, other_auth, client):
    theirs = client.post("/api/v1/polls", headers=other_auth,
                         json={"question": "Theirs?", "options": ["A", "B"]}).get_json()
    response = create(console, "http://127.0.0.1:9/hook", poll_id=theirs["id"])
    assert response.status_code == 422
    assert "Theirs?" not in response.get_data(as_text=True)


def test_a_webhook_scoped_to_one_poll_is_listed_with_it(console, hooks_app, receiver,
                                                        make_poll, client, auth):
    first, second = make_poll(question="First?"), make_poll(question="Second?")
    form = console.get("/console/webhooks/new").get_data(as_text=True)
    assert f'<option value="{first["id"]}">First? ({first["id"]})</option>' in form
    assert f'<option value="{second["id"]}">Second? ({second["id"]})</option>' in form
    linked = console.get("/console/webhooks/new", query_string={"poll": second["id"]})
    assert f'<option value="{second["id"]}" selected>' in linked.get_data(as_text=True)
    created = create(console, receiver.url, events=["poll.closed"], poll_id=second["id"])
    assert created.status_code == 201
    assert "of \u201cSecond?\u201d" in " ".join(created.get_data(as_text=True).split())
    [listed] = client.get("/api/v1/webhooks", headers=auth).get_json()
    assert (listed["poll_id"], listed["events"]) == (second["id"], ["poll.closed"])
    rows = Sections(console.get("/console/webhooks").get_data(as_text=True)).rows[""][1:]
    assert [row[:3] for row in rows] == [[receiver.url, "poll.closed", "Second?"]]
    assert rows[0][4] == "None yet"


def test_another_owners_webhook_is_not_found(other_console, hook, client, auth):
    assert other_console.get(show_url(hook)).status_code == 404
    assert other_console.get(f"{show_url(hook)}/delete").status_code == 404
    assert other_console.post(f"{show_url(hook)}/delete").status_code == 404
    assert other_console.post(f"{show_url(hook)}/test").status_code == 404
    assert other_console.get("/console/webhooks/wh_nosuchhook").status_code == 404
    assert api_deliveries(client, auth, hook) == []
    assert client.get(f"/api/v1/webhooks/{hook['id']}", headers=auth).status_code == 200


def test_posting_without_the_csrf_token_is_refused(console, hook, receiver, client, auth):
    assert console.post("/console/webhooks/new", {"url": receiver.url, "events": EVENTS},
                        token=False).status_code == 400
    assert console.post(f"{show_url(hook)}/test", token=False).status_code == 400
    assert console.post(f"{show_url(hook)}/delete", token=False).status_code == 400
    assert len(client.get("/api/v1/webhooks", headers=auth).get_json()) == 1
    assert api_deliveries(client, auth, hook) == []


def test_send_test_delivers_a_signed_message_that_the_log_shows(hooks_app, console, hook,
                                                               receiver, client, auth):
    sent = console.post(f"{show_url(hook)}/test")
    assert sent.status_code == 302
    assert sent.headers["Location"] == show_url(hook)
    settle(hooks_app, settled(client, auth, hook))
    [delivery] = api_deliveries(client, auth, hook)
    assert (delivery["event"], delivery["status"]) == ("webhook.test", "succeeded")
    [request] = receiver.requests
    body = verify(hook["secret"], request["headers"], request["body"])
    assert body["type"] == "webhook.test" and body["data"]["webhook_id"] == hook["id"]

    page = console.get(show_url(hook)).get_data(as_text=True)
    assert f"Test delivery {delivery['id']} is queued" in page
    [row] = Sections(page).body("deliveries")
    assert row[1:3] == ["webhook.test", "Succeeded"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC: HTTP 200, \d+ ms", row[3]), row
    assert row[4] == "None"
    assert request["headers"]["webhook-id"] in page  # the message id, under Payload

    rows = Sections(console.get("/console/webhooks").get_data(as_text=True)).rows[""][1:]
    assert rows[0][4].startswith("Succeeded webhook.test") and rows[0][4].endswith("HTTP 200")


@pytest.mark.parametrize("answer, outcome", [(500, "HTTP 500"),
                                             (None, "ConnectionRefusedError")])
def test_failed_attempts_show_their_outcome_and_the_next_retry(hooks_app, console, hook,
                                                              receiver, client, auth, answer,
                                                              outcome):
    hooks_app.config["WEBHOOK_RETRY_DELAYS"] = (3600,)
    if answer is None:
        receiver.close()  # nothing listens there any more
    else:
        receiver.statuses = [answer]
    console.post(f"{show_url(hook)}/test")
    settle(hooks_app, settled(client, auth, hook))
    [delivery] = api_deliveries(client, auth, hook)
    assert delivery["status"] == "pending"
    [attempt] = delivery["attempts"]
    row = Sections(console.get(show_url(hook)).get_data(as_text=True)).body("deliveries")[0]
    assert row[2] == "Retrying"
    assert outcome in row[3] and row[3].endswith(f", {attempt['duration_ms']} ms")
    next_at = datetime.fromisoformat(delivery["next_attempt_at"])
    assert next_at - datetime.now(UTC) > timedelta(minutes=55)
    assert row[4] == next_at.strftime("%Y-%m-%d %H:%M:%S UTC")


def test_deliveries_log_is_newest_first_and_paginated(hooks_app, console, hook, client, auth):
    for _ in range(3):
        assert console.post(f"{show_url(hook)}/test").status_code == 302
    settle(hooks_app, settled(client, auth, hook, count=3))
    ids = [str(delivery["id"]) for delivery in api_deliveries(client, auth, hook)]
    first = console.get(show_url(hook), query_string={"page_size": 2}).get_data(as_text=True)
    second = console.get(show_url(hook), query_string={"page_size": 2, "page": 2})
    shown = [row[0].split()[0] for row in Sections(first).body("deliveries")]
    shown += [row[0].split()[0] for row in
              Sections(second.get_data(as_text=True)).body("deliveries")]
    assert shown == ids == sorted(ids, key=int, reverse=True)
    assert "Page 1 of 2 (3 in all)" in first


def test_deleting_asks_first_then_deletes(console, hook, client, auth):
    question = console.get(f"{show_url(hook)}/delete")
    assert question.status_code == 200
    page = question.get_data(as_text=True)
    assert "This cannot be undone." in page
    [form] = [f for f in Sections(page).forms if f.get("action") == f"{show_url(hook)}/delete"]
    assert form["method"] == "post" and form["inputs"]["csrf_token"] == console.token
    assert client.get(f"/api/v1/webhooks/{hook['id']}", headers=auth).status_code == 200

    deleted = console.post(f"{show_url(hook)}/delete")
    assert deleted.status_code == 302 and deleted.headers["Location"] == "/console/webhooks"
    assert client.get(f"/api/v1/webhooks/{hook['id']}", headers=auth).status_code == 404
    assert "Deleted the webhook" in console.get("/console/webhooks").get_data(as_text=True)
    assert console.get(show_url(hook)).status_code == 404
