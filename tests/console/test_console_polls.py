"""Console poll pages: list, create, edit, the poll page, close/reopen/delete, downloads,
the chart, the integrity report and the signing secret (the Flask test client, three
stacks). The browser's view: tests/e2e/test_console_browser.py."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta
from html import unescape
from xml.etree import ElementTree

import openpyxl
import pytest

from service.console import polls as console_polls
from service.exports import export as exports
from service.infra import kinds
from tests.conftest import SEED_POLL

SVG_NAMESPACE = "{http://www.w3.org/2000/svg}"


def api_poll(client, auth, poll_id: str) -> dict:
    return client.get(f"/api/v1/polls/{poll_id}", headers=auth).get_json()


def field_error(page: str, name: str) -> str | None:
    found = re.search(rf'<p class="pb-field-error" id="{name}-error">([^<]*)</p>', page)
    return unescape(found.group(1)) if found else None


def create_form(**fields) -> dict:
    return {"question": SEED_POLL["question"], "options": "\n".join(SEED_POLL["options"]),
            "kind": "single", **fields}


def created_id(response) -> str:
    assert response.status_code == 302, response.get_data(as_text=True)
    return response.headers["Location"].rsplit("/", 1)[1]


# --- list -------------------------------------------------------------------------------


def test_the_list_shows_the_owners_polls_with_status_and_votes(
    console, client, auth, other_auth, make_poll, vote, clock
):
    open_poll = make_poll(question="Open one?")
    closed = make_poll(question="Closed one?")
    scheduled = make_poll(question="Later one?",
                          opens_at=(clock() + timedelta(days=1)).isoformat())
    client.patch(f"/api/v1/polls/{closed['id']}", json={"status": "closed"}, headers=auth)
    vote(open_poll)
    vote(open_poll, ip="203.0.113.8")
    client.post("/api/v1/polls", json={**SEED_POLL, "question": "Not mine?"}, headers=other_auth)

    page = console.get("/console/polls").get_data(as_text=True)

    rows = {poll_id: (status, int(votes)) for poll_id, status, votes in re.findall(
        r'<tr data-poll-id="(\w+)">.*?pb-badge-(\w+).*?<td class="pb-num">(\d+)</td>',
        page, re.DOTALL)}
    assert rows == {open_poll["id"]: ("open", 2), closed["id"]: ("closed", 0),
                    scheduled["id"]: ("scheduled", 0)}
    assert "Not mine?" not in page
    assert page.index("Later one?") < page.index("Closed one?") < page.index("Open one?")


def test_the_list_is_paginated(console, make_poll, monkeypatch):
    monkeypatch.setattr(console_polls, "PAGE_SIZE", 2)
    for number in range(5):
        make_poll(question=f"Poll {number}?")

    first = console.get("/console/polls").get_data(as_text=True)
    last = console.get("/console/polls?page=3").get_data(as_text=True)

    assert first.count("<tr data-poll-id=") == 2
    assert "Page 1 of 3 (5 polls)" in first and 'rel="next"' in first
    assert last.count("<tr data-poll-id=") == 1 and "Poll 0?" in last
    assert 'rel="prev"' in last and 'rel="next"' not in last


# What a browser sends; every one is the first page, as a console user expects.
NOT_A_PAGE_NUMBER = [
    "%C2%B2",  # "²": str.isdigit() says yes, int() says no
    "%EF%BC%92",  # a full-width "2"
    "%D9%A2",  # an Arabic-Indic "2"
    "+2", "%202", "2%20", "1_0", "-2", "0", "2.0", "", "two",
    "4611686018427387904",  # beyond SQLite's OFFSET once multiplied by the page size
    "1000001",  # beyond PAGE_NUMBER_MAX
    pytest.param("9" * 5000, id="5000-digits"),  # beyond what int() reads
]


@pytest.mark.parametrize("page", NOT_A_PAGE_NUMBER)
def test_a_page_number_that_is_not_a_plain_number_shows_the_first_page(console, page):
    response = console.get(f"/console/polls?page={page}")

    assert response.status_code == 200
    assert "You have no polls yet." in response.get_data(as_text=True)


@pytest.mark.parametrize("page", ["2", "1000000"])
def test_a_page_beyond_the_last_offers_the_first(console, page):
    response = console.get(f"/console/polls?page={page}")

    assert response.status_code == 200
    assert "No polls on this page." in response.get_data(as_text=True)


def test_an_owner_without_polls_is_invited_to_create_one(console):
    page = console.get("/console/polls").get_data(as_text=True)

    assert "You have no polls yet." in page


# --- create -----------------------------------------------------------------------------


def test_creating_the_seed_poll_with_defaults(console, client, auth):
    poll_id = created_id(console.post("/console/polls/new", create_form()))

    poll = api_poll(client, auth, poll_id)
    assert poll["question"] == SEED_POLL["question"]
    assert [option["label"] for option in poll["options"]] == SEED_POLL["options"]
    assert {key: poll[key] for key in (
        "kind", "max_choices", "allow_other", "allow_comment", "duplicate_check",
        "vote_window_seconds", "results", "results_min_votes", "opens_at", "closes_at",
        "allowed_origins", "locale")} == {
        "kind": "single", "max_choices": 1, "allow_other": False, "allow_comment": False,
        "duplicate_check": "cookie_and_ip", "vote_window_seconds": None, "results": "always",
        "results_min_votes": 0, "opens_at": None, "closes_at": None, "allowed_origins": [],
        "locale": "en"}
    page = console.get(f"/console/polls/{poll_id}").get_data(as_text=True)
    assert "Poll created." in page


def test_creating_a_poll_with_every_field(console, client, auth, clock):
    opens = (clock() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    closes = (clock() + timedelta(days=8)).strftime("%Y-%m-%dT%H:%M")

    poll_id = created_id(console.post("/console/polls/new", {
        "question": "  Which languages do you read?  ",
        "options": "English\n\n  German \nFrench\n",
        "kind": "multiple", "max_choices": "2", "allow_other": "on", "allow_comment": "on",
        "duplicate_check": "user", "vote_window_seconds": "86400", "results": "after_close",
        "results_min_votes": "10", "opens_at": opens, "closes_at": closes,
        "allowed_origins": "https://www.psyweb.example\nHTTPS://Blog.Example:443/",
        "locale": "de",
    }))

    poll = api_poll(client, auth, poll_id)
    assert poll["question"] == "Which languages do you read?"
    assert [option["label"] for option in poll["options"]] == ["English", "German", "French"]
    assert {key: poll[key] for key in (
        "kind", "max_choices", "allow_other", "allow_comment", "duplicate_check",
        "vote_window_seconds", "results", "results_min_votes", "opens_at", "closes_at",
        "allowed_origins", "locale", "status")} == {
        "kind": "multiple", "max_choices": 2, "allow_other": True, "allow_comment": True,
        "duplicate_check": "user", "vote_window_seconds": 86400, "results": "after_close",
        "results_min_votes": 10, "opens_at": f"{opens}:00Z", "closes_at": f"{closes}:00Z",
        "allowed_origins": ["https://www.psyweb.example", "https://blog.example"],
        "locale": "de", "status": "scheduled"}


def test_letting_voters_change_their_vote_is_set_and_shown_in_the_console(console, client,
                                                                          auth):
    poll_id = created_id(console.post("/console/polls/new", create_form(allow_change="on")))

    assert api_poll(client, auth, poll_id)["allow_change"] is True
    page = console.get(f"/console/polls/{poll_id}").get_data(as_text=True)
    assert '<dd id="allow-change">yes, while the poll is open</dd>' in page
    edit = console.get(f"/console/polls/{poll_id}/edit").get_data(as_text=True)
    assert 'id="allow_change" name="allow_change" checked' in edit
    plain = created_id(console.post("/console/polls/new", create_form()))
    assert api_poll(client, auth, plain)["allow_change"] is False


def test_a_retention_is_set_shown_and_cleared_in_the_console(console, client, auth):
    poll_id = created_id(console.post("/console/polls/new", create_form(
        retention_days="30", vote_window_seconds="86400")))
    assert api_poll(client, auth, poll_id)["retention_days"] == 30
    page = console.get(f"/console/polls/{poll_id}").get_data(as_text=True)
    assert "who voted is forgotten after 30 days" in page
    edit = console.get(f"/console/polls/{poll_id}/edit").get_data(as_text=True)
    assert 'name="retention_days" min="1" max="3650" value="30"' in edit

    poll = api_poll(client, auth, poll_id)
    response = console.post(f"/console/polls/{poll_id}/edit", {
        "question": poll["question"], "kind": "single", "duplicate_check": "cookie_and_ip",
        "results": "always", "results_min_votes": "0", "locale": "en",
        "vote_window_seconds": "86400", "retention_days": "",
        **{f"option_{o['id']}": o["label"] for o in poll["options"]},
    })

    assert response.status_code == 302, response.get_data(as_text=True)
    assert api_poll(client, auth, poll_id)["retention_days"] is None


def test_a_multiple_choice_poll_without_a_limit_allows_every_option(console, client, auth):
    poll_id = created_id(console.post("/console/polls/new", create_form(kind="multiple")))

    assert api_poll(client, auth, poll_id)["max_choices"] == 3


@pytest.mark.parametrize("fields, name, message", [
    ({"question": "  "}, "question", "Enter the question (up to 500 characters)."),
    ({"question": "x" * 501}, "question", "Enter the question (up to 500 characters)."),
    ({"options": "Only one"}, "options", "Enter 2 to 50 options, one per line."),
    ({"options": "Yes\nyes"}, "options", "Option 'yes' appears more than once."),
    ({"options": "Yes\n" + "n" * 201}, "options", "Option 2: Length must be between 1 and 200."),
    ({"kind": "pairwise"}, "kind", f"Must be one of: {', '.join(kinds.NAMES)}."),
    ({"kind": "multiple", "max_choices": "4"}, "max_choices",
     "Must be at most the number of options (3)."),
    ({"kind": "multiple", "max_choices": "two"}, "max_choices", "Not a valid integer."),
    # int() reads these; the form, like the API's JSON, takes ASCII digits only
    ({"kind": "multiple", "max_choices": "\uff12"}, "max_choices", "Not a valid integer."),
    ({"results_min_votes": "1_0"}, "results_min_votes", "Not a valid integer."),
    ({"results_min_votes": "+5"}, "results_min_votes", "Not a valid integer."),
    ({"duplicate_check": "psychic"}, "duplicate_check",
     "Must be one of: none, cookie, ip, cookie_and_ip, user."),
    ({"vote_window_seconds": "10"}, "vote_window_seconds",
     "Must be greater than or equal to 60 and less than or equal to 31536000."),
    ({"retention_days": "30"}, "retention_days",
     "A poll that forgets its voters after retention_days cannot promise one vote ever: "
     "set vote_window_seconds to at most retention_days days, or duplicate_check to none."),
    ({"retention_days": "0", "duplicate_check": "none"}, "retention_days",
     "Must be greater than or equal to 1 and less than or equal to 3650."),
    ({"results": "never"}, "results",
     "Must be one of: always, after_vote, after_close, owner_only."),
    ({"results_min_votes": "-1"}, "results_min_votes",
     "Must be greater than or equal to 0 and less than or equal to 100000."),
    ({"opens_at": "2030-01-02T00:00", "closes_at": "2030-01-01T00:00"}, "closes_at",
     "Must be after opens_at."),
    ({"closes_at": "2001-01-01T00:00"}, "closes_at", "Must be in the future."),
    ({"opens_at": "tomorrow"}, "opens_at", "Not a valid datetime."),
    ({"allowed_origins": "ftp://files.example"}, "allowed_origins",
     "'ftp://files.example' is not an origin of the form scheme://host[:port]."),
    ({"locale": "english!"}, "locale",
     "Not a BCP 47 language tag such as 'en' or 'pt-BR'."),
])
def test_invalid_fields_are_named_next_to_the_field_keeping_the_input(
    console, client, auth, fields, name, message
):
    form = create_form(**fields)

    response = console.post("/console/polls/new", form)

    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert field_error(page, name) == message
    assert re.search(rf'id="{name}"[^>]*aria-invalid="true"', page) or \
        re.search(rf'id="{name}"[^>]*aria-describedby="[^"]*{name}-error', page)
    assert f'<a href="#{name}">' in page
    assert form["question"].strip() in unescape(page) or name == "question"
    assert client.get("/api/v1/polls", headers=auth).get_json() == []


def test_the_form_keeps_every_value_after_an_error(console):
    form = create_form(question="", kind="multiple", max_choices="2", allow_comment="on",
                       duplicate_check="ip", results="after_vote", locale="fr",
                       allowed_origins="https://a.example", vote_window_seconds="3600")

    page = unescape(console.post("/console/polls/new", form).get_data(as_text=True))

    assert "Yes, currently\nYes, in the past\nNo, never</textarea>" in page
    assert 'value="multiple" checked' in page
    assert 'name="max_choices" min="1" max="50" value="2"' in page
    assert 'name="allow_comment" checked' in page
    assert 'name="allow_other">' in page  # unchecked
    assert '<option value="ip" selected>' in page
    assert '<option value="after_vote" selected>' in page
    assert 'value="fr"' in page and 'value="3600"' in page
    assert "https://a.example</textarea>" in page


# --- edit -------------------------------------------------------------------------------


def test_editing_relabels_adds_and_removes_options_and_changes_settings(
    console, client, auth, make_poll
):
    poll = make_poll()
    first, second, third = (option["id"] for option in poll["options"])
    page = console.get(f"/console/polls/{poll['id']}/edit").get_data(as_text=True)
    assert f'name="option_{first}" maxlength="200" value="Yes, currently"' in page

    response = console.post(f"/console/polls/{poll['id']}/edit", {
        "question": "Have you ever taken anti-depressants?",
        f"option_{first}": "Yes, now", f"option_{second}": "Yes, before",
        f"option_{third}": "No", f"remove_{third}": "on",
        "new_options": "Never\nPrefer not to say",
        "kind": "single", "duplicate_check": "cookie", "results": "after_vote",
        "results_min_votes": "5", "locale": "es", "allow_comment": "on",
        "allowed_origins": "https://www.psyweb.example",
    })

    assert response.status_code == 302
    changed = api_poll(client, auth, poll["id"])
    assert changed["question"] == "Have you ever taken anti-depressants?"
    assert [(o["id"] in (first, second), o["label"]) for o in changed["options"]] == [
        (True, "Yes, now"), (True, "Yes, before"), (False, "Never"),
        (False, "Prefer not to say")]
    assert (changed["duplicate_check"], changed["results"], changed["results_min_votes"],
            changed["locale"], changed["allow_comment"], changed["allowed_origins"]) == (
        "cookie", "after_vote", 5, "es", True, ["https://www.psyweb.example"])
    assert "Poll saved." in console.get(f"/console/polls/{poll['id']}").get_data(as_text=True)


def test_the_edit_form_shows_the_current_values(console, make_poll):
    poll = make_poll(kind="multiple", max_choices=2, vote_window_seconds=3600,
                     closes_at="2099-05-06T07:08:00Z", allowed_origins=["https://a.example"])

    page = console.get(f"/console/polls/{poll['id']}/edit").get_data(as_text=True)

    assert 'value="multiple" checked' in page
    assert 'name="max_choices" min="1" max="50" value="2"' in page
    assert 'value="3600"' in page
    assert 'name="closes_at" value="2099-05-06T07:08"' in page
    assert "https://a.example</textarea>" in page


def test_an_edit_error_names_the_field(console, make_poll):
    poll = make_poll()
    first = poll["options"][0]["id"]

    response = console.post(f"/console/polls/{poll['id']}/edit", {
        "question": "Q?", f"option_{first}": "No, never", "kind": "single",
        **{f"option_{o['id']}": o["label"] for o in poll["options"][1:]},
    })

    assert response.status_code == 422
    assert field_error(response.get_data(as_text=True), "options") == \
        "Option 'No, never' appears more than once."


def test_editing_a_poll_with_votes_explains_what_cannot_change(console, client, auth,
                                                               make_poll, vote):
    poll = make_poll()
    voted = poll["options"][0]["id"]
    vote(poll, [voted])
    labels = {f"option_{o['id']}": o["label"] for o in poll["options"]}

    page = console.get(f"/console/polls/{poll['id']}/edit").get_data(as_text=True)
    assert "This poll has 1 vote." in page
    assert re.search(rf'name="remove_{voted}"[^>]*disabled', page)
    assert re.search(r'value="multiple"[^>]*disabled', page)

    kind = console.post(f"/console/polls/{poll['id']}/edit",
                        {"question": "Q?", "kind": "multiple", **labels})
    removed = console.post(f"/console/polls/{poll['id']}/edit",
                           {"question": "Q?", "kind": "single", **labels,
                            f"remove_{voted}": "on"})

    assert kind.status_code == removed.status_code == 409
    assert field_error(kind.get_data(as_text=True), "kind").startswith(
        "The kind of a poll cannot change after its first vote. This poll already has votes")
    assert "have votes and cannot be removed" in field_error(
        removed.get_data(as_text=True), "options")
    assert api_poll(client, auth, poll["id"])["question"] == SEED_POLL["question"]


def test_labels_of_a_poll_with_votes_may_be_corrected(console, client, auth, make_poll, vote):
    poll = make_poll()
    vote(poll)
    labels = {f"option_{o['id']}": o["label"] for o in poll["options"]}
    labels[f"option_{poll['options'][0]['id']}"] = "Yes, at the moment"

    response = console.post(f"/console/polls/{poll['id']}/edit",
                            {"question": SEED_POLL["question"], "kind": "single", **labels,
                             "new_options": "Prefer not to say"})

    assert response.status_code == 302
    labels = [o["label"] for o in api_poll(client, auth, poll["id"])["options"]]
    assert labels == ["Yes, at the moment", "Yes, in the past", "No, never",
                      "Prefer not to say"]


# --- owners only ------------------------------------------------------------------------


OWNER_PAGES = ("", "/edit", "/delete", "/integrity", "/timeseries.svg",
               "/export?data=tallies&format=csv", "/stream")


@pytest.mark.parametrize("suffix", OWNER_PAGES)
def test_another_owners_poll_is_forbidden(console, client, other_auth, suffix):
    poll = client.post("/api/v1/polls", json=SEED_POLL, headers=other_auth).get_json()

    response = console.get(f"/console/polls/{poll['id']}{suffix}")

    assert response.status_code == 403
    assert response.mimetype == "text/html"
    assert "This poll belongs to another owner." in response.get_data(as_text=True)


@pytest.mark.parametrize("suffix", OWNER_PAGES)
def test_poll_pages_need_a_signed_in_owner(client, make_poll, suffix):
    poll = make_poll()

    response = client.get(f"/console/polls/{poll['id']}{suffix}")

    assert response.status_code == 302
    assert response.headers["Location"].startswith("/console/sign-in?next=")


@pytest.mark.parametrize("action, form", [
    ("status", {"status": "closed"}), ("delete", {"confirm": "yes"}),
    ("signing-secret", {}), ("edit", {"question": "Changed?"}),
])
def test_changes_without_the_csrf_token_are_refused(console, client, auth, make_poll,
                                                    action, form):
    poll = make_poll()

    response = console.post(f"/console/polls/{poll['id']}/{action}", form, token=False)

    assert response.status_code == 400
    assert api_poll(client, auth, poll["id"]) == poll


# --- the poll page ----------------------------------------------------------------------


def test_the_poll_page_shows_results_snippets_preview_and_downloads(
    console, make_poll, vote
):
    poll = make_poll(results="owner_only", results_min_votes=100)
    vote(poll, [poll["options"][1]["id"]])

    page = console.get(f"/console/polls/{poll['id']}").get_data(as_text=True)

    assert '<span id="total-votes">1</span>' in page
    bar = re.search(rf'data-option-id="{poll["options"][1]["id"]}">.*?</li>', page, re.DOTALL)
    assert '<span class="pb-votes">1</span>' in bar.group(0)
    assert '<span class="pb-percent">100.00</span>' in bar.group(0)
    assert f'data-stream-url="/console/polls/{poll["id"]}/stream"' in page
    for name, key in (("iframe", "iframe"), ("script", "script"), ("widget-url", "widget_url"),
                      ("oembed", "oembed_url"), ("svg", "svg_url")):
        snippet = re.search(rf'id="snippet-{name}"[^>]*><code>(.*?)</code>', page, re.DOTALL)
        assert unescape(snippet.group(1)) == poll["embed"][key]
        assert f'data-copy-target="#snippet-{name}"' in page
    assert f'id="widget-preview" title="Widget preview: {SEED_POLL["question"]}" ' \
           f'src="/polls/{poll["id"]}/widget?theme=auto"' in page
    for data in exports.DATA_KINDS:
        for fmt in exports.FORMATS:
            assert (f'href="/console/polls/{poll["id"]}/export?data={data}&amp;format={fmt}"'
                    in page)
    assert f'src="/console/polls/{poll["id"]}/timeseries.svg?interval=day"' in page
    assert f'href="/console/polls/{poll["id"]}/integrity"' in page
    assert poll["signing_secret"] in page
    assert 'id="close-poll"' in page


def test_the_preview_theme_can_be_chosen(console, make_poll):
    poll = make_poll()

    page = console.get(f"/console/polls/{poll['id']}?theme=dark").get_data(as_text=True)

    assert f'src="/polls/{poll["id"]}/widget?theme=dark"' in page
    assert "<strong>dark</strong>" in page


def read_event(response) -> tuple[str, dict]:
    chunk = next(iter(response.response)).decode()
    name = re.search(r"^event: (.*)$", chunk, re.MULTILINE).group(1)
    data = json.loads(re.search(r"^data: (.*)$", chunk, re.MULTILINE).group(1))
    return name, data


def test_the_owners_stream_shows_what_the_public_may_not_see(console, client, make_poll,
                                                              vote):
    poll = make_poll(results="owner_only", results_min_votes=100)
    vote(poll)
    assert client.get(f"/api/v1/polls/{poll['id']}/tallies/stream").status_code == 403

    response = console.get(f"/console/polls/{poll['id']}/stream", buffered=False)
    try:
        assert response.status_code == 200
        assert response.mimetype == "text/event-stream"
        name, data = read_event(response)
    finally:
        response.close()

    assert name == "tallies"
    assert data["total_votes"] == 1 and data["suppressed"] is False
    assert data["options"][0]["votes"] == 1


# --- close, reopen, delete --------------------------------------------------------------


def test_closing_and_reopening_a_poll(console, client, auth, make_poll):
    poll = make_poll()

    closed = console.post(f"/console/polls/{poll['id']}/status", {"status": "closed"})
    assert closed.status_code == 302
    assert api_poll(client, auth, poll["id"])["status"] == "closed"
    page = console.get(f"/console/polls/{poll['id']}").get_data(as_text=True)
    assert "Poll closed: no more votes are accepted." in page and 'id="reopen-poll"' in page

    console.post(f"/console/polls/{poll['id']}/status", {"status": "open"})
    assert api_poll(client, auth, poll["id"])["status"] == "open"
    assert "Poll reopened" in console.get(f"/console/polls/{poll['id']}").get_data(
        as_text=True)


def test_a_poll_past_its_closing_time_cannot_reopen_and_says_why(console, client, auth,
                                                                  make_poll, clock):
    poll = make_poll(closes_at=(clock() + timedelta(hours=1)).isoformat())
    clock.advance(hours=2)

    console.post(f"/console/polls/{poll['id']}/status", {"status": "open"})

    page = console.get(f"/console/polls/{poll['id']}").get_data(as_text=True)
    assert "closes_at has passed" in page and "pb-flash-error" in page
    assert api_poll(client, auth, poll["id"])["status"] == "closed"


def test_deleting_asks_for_confirmation_first(console, client, auth, make_poll, vote):
    poll = make_poll()
    vote(poll)

    page = console.get(f"/console/polls/{poll['id']}/delete").get_data(as_text=True)
    unconfirmed = console.post(f"/console/polls/{poll['id']}/delete", {})

    assert "Yes, delete this poll and its 1 vote" in page
    assert unconfirmed.status_code == 422
    assert "Tick the box to confirm" in unconfirmed.get_data(as_text=True)
    assert api_poll(client, auth, poll["id"])["id"] == poll["id"]

    deleted = console.post(f"/console/polls/{poll['id']}/delete", {"confirm": "yes"})

    assert deleted.headers["Location"] == "/console/polls"
    assert client.get(f"/api/v1/polls/{poll['id']}").status_code == 404
    assert "and its 1 vote." in console.get("/console/polls").get_data(as_text=True)


# --- downloads --------------------------------------------------------------------------


@pytest.fixture
def voted_poll(make_poll, vote):
    poll = make_poll(allow_comment=True)
    vote(poll, [poll["options"][0]["id"]], comment="=SUM(A1)", context="/a")
    vote(poll, [poll["options"][1]["id"]], ip="203.0.113.8")
    return poll


def parse(data: str, fmt: str, body: bytes):
    if fmt == "xlsx":
        rows = openpyxl.load_workbook(io.BytesIO(body)).worksheets[0].iter_rows(values_only=True)
        header = next(rows)
        return [dict(zip(header, row, strict=True)) for row in rows]
    text = body.decode("utf-8")
    if fmt == "csv":
        return list(csv.DictReader(io.StringIO(text)))
    if fmt == "json":
        return json.loads(text)["rows"]
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.parametrize("fmt", exports.FORMATS)
@pytest.mark.parametrize("data", exports.DATA_KINDS)
def test_every_export_downloads_and_parses(console, client, auth, voted_poll, data, fmt):
    url = f"/console/polls/{voted_poll['id']}/export?data={data}&format={fmt}"

    response = console.get(url)

    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == \
        f'attachment; filename="{voted_poll["id"]}-{data}.{fmt}"'
    assert response.content_type == exports.MEDIA_TYPES[fmt]
    rows = parse(data, fmt, response.data)
    api = client.get(f"/api/v1/polls/{voted_poll['id']}/export?data={data}&format={fmt}",
                     headers=auth)
    assert rows == parse(data, fmt, api.data)
    assert len(rows) == {"tallies": 3, "timeseries": 3, "votes": 2}[data]


def test_export_options_go_through_to_the_export(console, voted_poll):
    response = console.get(
        f"/console/polls/{voted_poll['id']}/export?data=votes&format=csv&context=/a"
        "&from=&to=&interval=&bom=1")

    assert response.data.startswith("\ufeff".encode())
    rows = list(csv.DictReader(io.StringIO(response.data.decode("utf-8-sig"))))
    assert [(row["context"], row["comment"]) for row in rows] == [("/a", "'=SUM(A1)")]


@pytest.mark.parametrize("query, name", [
    ("data=everything&format=csv", "data"),
    ("data=votes&format=xls", "format"),
    ("data=votes&format=csv&interval=hour", "interval"),
    ("data=votes&from=2030-01-02T00:00&to=2030-01-01T00:00", "to"),
])
def test_a_wrong_export_request_is_an_html_page_naming_the_field(console, voted_poll, query,
                                                                 name):
    response = console.get(f"/console/polls/{voted_poll['id']}/export?{query}")

    assert response.status_code == 422
    assert response.mimetype == "text/html"
    assert f"<dt>{name}</dt>" in response.get_data(as_text=True)


@pytest.mark.parametrize("fmt", exports.FORMATS)
def test_all_polls_tallies_download(console, voted_poll, fmt):
    response = console.get(f"/console/export?format={fmt}")

    assert response.status_code == 200
    assert "attachment" in response.headers["Content-Disposition"]
    assert len(parse("tallies", fmt, response.data)) == 3


@pytest.mark.parametrize("interval", ["day", "hour"])
def test_the_timeseries_chart_is_an_svg(console, voted_poll, interval):
    response = console.get(
        f"/console/polls/{voted_poll['id']}/timeseries.svg?interval={interval}")

    assert response.status_code == 200
    assert response.mimetype == "image/svg+xml"
    assert response.headers["Content-Security-Policy"] == \
        "default-src 'none'; style-src 'unsafe-inline'"
    root = ElementTree.fromstring(response.data)
    assert root.tag == f"{SVG_NAMESPACE}svg"
    texts = "".join(root.itertext())
    assert all(label in texts for label in SEED_POLL["options"])
    assert "Content-Disposition" not in response.headers


def test_the_chart_downloads(console, voted_poll):
    response = console.get(f"/console/polls/{voted_poll['id']}/timeseries.svg?download=1")

    assert response.headers["Content-Disposition"] == \
        f'attachment; filename="{voted_poll["id"]}-timeseries-day.svg"'


def test_the_integrity_report_counts_votes_and_refusals(console, make_poll, vote):
    poll = make_poll(duplicate_check="ip")
    assert vote(poll).status_code == 201
    assert vote(poll).status_code == 409

    page = console.get(f"/console/polls/{poll['id']}/integrity").get_data(as_text=True)

    cells = dict(re.findall(
        r'<tr><th scope="row">([^<]+)</th><td class="pb-num">(\d+)</td></tr>', page))
    assert cells["Accepted votes"] == "1"
    assert cells["Refused: already voted (total)"] == "1"
    assert cells["… seen by network address"] == "1"
    assert cells["Refused: rate limited"] == "0"
    assert page.count("<tr><td>") == 1  # one hour with attempts


def test_the_integrity_report_of_a_quiet_poll(console, make_poll):
    poll = make_poll()

    page = console.get(f"/console/polls/{poll['id']}/integrity").get_data(as_text=True)

    assert "No votes or attempts in the last 30 days." in page


# --- signing secret ---------------------------------------------------------------------


def test_rotating_the_signing_secret(console, client, auth, make_poll):
    poll = make_poll(duplicate_check="user")

    response = console.post(f"/console/polls/{poll['id']}/signing-secret")

    assert response.headers["Location"] == f"/console/polls/{poll['id']}#signing-secret"
    secret = api_poll(client, auth, poll["id"])["signing_secret"]
    assert re.fullmatch(r"[0-9a-f]{64}", secret) and secret != poll["signing_secret"]
    page = console.get(f"/console/polls/{poll['id']}").get_data(as_text=True)
    assert secret in page and poll["signing_secret"] not in page
    assert "New signing secret created." in page


# --- max_votes ----------------------------------------------------------------------------


def test_a_poll_created_with_max_votes_says_where_it_closes_then_that_it_is_full(
        console, client, auth, vote):
    poll_id = created_id(console.post("/console/polls/new", create_form(max_votes="2")))
    assert api_poll(client, auth, poll_id)["max_votes"] == 2
    page = console.get(f"/console/polls/{poll_id}").get_data(as_text=True)
    assert '<span id="poll-max-votes">closes at 2 votes</span>' in page

    for number in range(2):
        assert vote({"id": poll_id, "options": api_poll(client, auth, poll_id)["options"]},
                    ip=f"198.51.100.{number + 1}").status_code == 201

    page = console.get(f"/console/polls/{poll_id}").get_data(as_text=True)
    assert '<span id="poll-max-votes">full: closed at 2 votes</span>' in page


def test_the_edit_form_sets_shows_and_clears_max_votes(console, client, auth, make_poll):
    poll = make_poll(max_votes=5)
    form = {"question": poll["question"], "kind": "single",
            **{f"option_{o['id']}": o["label"] for o in poll["options"]}}
    page = console.get(f"/console/polls/{poll['id']}/edit").get_data(as_text=True)
    assert 'name="max_votes" min="1" max="10000000" value="5"' in page

    assert console.post(f"/console/polls/{poll['id']}/edit",
                        {**form, "max_votes": "7"}).status_code == 302
    assert api_poll(client, auth, poll["id"])["max_votes"] == 7
    assert console.post(f"/console/polls/{poll['id']}/edit", form).status_code == 302
    assert api_poll(client, auth, poll["id"])["max_votes"] is None

    refused = console.post(f"/console/polls/{poll['id']}/edit", {**form, "max_votes": "0"})
    assert refused.status_code == 422
    assert field_error(refused.get_data(as_text=True), "max_votes") == \
        "Must be greater than or equal to 1 and less than or equal to 10000000."
