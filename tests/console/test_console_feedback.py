"""Console feedback pages: results per page (context), comments with hide / show, and the
one-click "Was this page helpful?" poll, for the signed-in owner only."""

from __future__ import annotations

import csv
import io
import re
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

import pytest

from service.console.feedback import EXAMPLE_PATH
from tests.console.console_client import CSRF_INPUT


class Sections(HTMLParser):
    """Each <section id>'s table rows as lists of cell texts, and every link and form."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: dict[str, list[list[str]]] = {}
        self.forms: list[dict] = []
        self._section = ""
        self._cell: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self._section = attrs.get("id", "")
        elif tag == "tr":
            self.rows.setdefault(self._section, []).append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "form":
            self.forms.append({**attrs, "inputs": {}})
        elif tag == "input" and self.forms:
            self.forms[-1]["inputs"][attrs.get("name")] = attrs.get("value")

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[self._section][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def body(self, section: str) -> list[list[str]]:
        """The section's rows without the header row."""
        return self.rows.get(section, [])[1:]


@pytest.fixture
def survey(make_poll):
    return make_poll(allow_comment=True, allow_other=True, duplicate_check="none")


@pytest.fixture
def voted(survey, vote, clock):
    """/b: 2 votes, /a: 1, none: 1; comments "first" .. "third", newest last."""
    yes, past, never = (option["id"] for option in survey["options"])
    cast = [([yes], {"context": "/a", "comment": "first"}),
            ([past], {"context": "/b", "comment": "second"}),
            ([never], {"context": "/b"}),
            ([], {"other": "Something else", "comment": "third"})]
    ids = []
    for choices, fields in cast:
        clock.advance(seconds=1)
        response = vote(survey, choices, **fields)
        assert response.status_code == 201, response.get_json()
        ids.append(response.get_json()["vote"]["id"])
    return survey, ids


def feedback_url(poll: dict) -> str:
    return f"/console/polls/{poll['id']}/feedback"


def hide_url(poll: dict, vote_id: str) -> str:
    return f"{feedback_url(poll)}/comments/{vote_id}"


@pytest.mark.parametrize("path", ["/console/polls/{id}/feedback", "/console/presets/page-feedback"])
def test_signed_out_visitors_are_sent_to_sign_in(client, survey, path):
    url = path.format(id=survey["id"])
    response = client.get(url)
    assert response.status_code == 302
    target = urlsplit(response.headers["Location"])
    assert target.path == "/console/sign-in"
    assert parse_qs(target.query)["next"] == [url]


def test_another_owners_poll_is_not_found(other_console, voted):
    poll, ids = voted
    assert other_console.get(feedback_url(poll)).status_code == 404
    hidden = other_console.post(hide_url(poll, ids[0]), {"hidden": "true"})
    assert hidden.status_code == 404
    assert other_console.get("/console/polls/nosuchpoll/feedback").status_code == 404


def test_results_per_context_come_most_votes_first_with_option_counts(console, voted):
    poll, _ = voted
    response = console.get(feedback_url(poll))
    assert response.status_code == 200
    rows = Sections(response.get_data(as_text=True)).body("contexts")
    # page, votes, one column per option, other answers, comments link
    assert [row[:6] for row in rows] == [
        ["/b", "2", "0 (0.00 %)", "1 (50.00 %)", "1 (50.00 %)", "0"],
        ["/a", "1", "1 (100.00 %)", "0 (0.00 %)", "0 (0.00 %)", "0"],
        ["(no context)", "1", "0 (0.00 %)", "0 (0.00 %)", "0 (0.00 %)", "1"],
    ]


def test_results_per_context_are_paginated_like_the_api(console, voted):
    poll, _ = voted
    first = console.get(feedback_url(poll), query_string={"page_size": 2}).get_data(as_text=True)
    second = console.get(feedback_url(poll), query_string={"page_size": 2, "page": 2})
    assert [row[0] for row in Sections(first).body("contexts")] == ["/b", "/a"]
    assert [row[0] for row in Sections(second.get_data(as_text=True)).body("contexts")] == [
        "(no context)"]
    assert "Page 1 of 2 (3 in all)" in first
    assert f'href="{feedback_url(poll)}?page=2&amp;page_size=2#contexts"' in first


@pytest.mark.parametrize("page, page_size", [
    ("%EF%BC%92", "%EF%BC%92"),  # full-width digits: int() reads them, the console not
    ("%C2%B2", "%C2%B2"),  # "²"
    ("1_0", "1_0"),
    ("4611686018427387904", "4611686018427387904"),
])
def test_results_per_context_read_only_plain_page_numbers(console, voted, page, page_size):
    poll, _ = voted
    response = console.get(f"{feedback_url(poll)}?page={page}&page_size={page_size}")

    assert response.status_code == 200
    rows = Sections(response.get_data(as_text=True)).body("contexts")
    assert [row[0] for row in rows] == ["/b", "/a", "(no context)"]


def test_comments_come_newest_first_with_choice_labels_and_context(console, voted):
    poll, _ = voted
    rows = Sections(console.get(feedback_url(poll)).get_data(as_text=True)).body("comments")
    assert [row[1:5] for row in rows] == [
        ["(none)", "Other: “Something else”", "third", "Shown Hide"],
        ["/b", "Yes, in the past", "second", "Shown Hide"],
        ["/a", "Yes, currently", "first", "Shown Hide"],
    ]
    assert all(row[0].endswith("UTC") for row in rows)


def test_comments_filter_by_context_and_visibility(console, voted):
    poll, ids = voted
    only_b = console.get(feedback_url(poll), query_string={"context": "/b"})
    assert [row[3] for row in Sections(only_b.get_data(as_text=True)).body("comments")] == [
        "second"]
    assert console.post(hide_url(poll, ids[0]), {"hidden": "true"}).status_code == 302
    hidden = console.get(feedback_url(poll), query_string={"shown": "hidden"})
    shown = console.get(feedback_url(poll), query_string={"shown": "shown"})
    assert [row[3] for row in Sections(hidden.get_data(as_text=True)).body("comments")] == [
        "first"]
    assert [row[3] for row in Sections(shown.get_data(as_text=True)).body("comments")] == [
        "third", "second"]
    none = console.get(feedback_url(poll), query_string={"context": "/nowhere"})
    assert "No comments match these filters." in none.get_data(as_text=True)


def test_hide_and_show_change_what_the_api_and_exports_say(console, client, auth, voted):
    poll, ids = voted
    api = f"/api/v1/polls/{poll['id']}/comments"
    hidden = console.post(hide_url(poll, ids[1]), {"hidden": "true", "context": "/b"})
    assert hidden.status_code == 302
    # Back to the same filtered list.
    assert hidden.headers["Location"] == f"{feedback_url(poll)}?context=/b#comments"
    found = client.get(api, query_string={"hidden": "true"}, headers=auth).get_json()
    assert [row["vote_id"] for row in found] == [ids[1]]
    export = client.get(f"/api/v1/polls/{poll['id']}/export",
                        query_string={"data": "votes", "format": "csv"}, headers=auth)
    marks = {row["vote_id"]: row["comment_hidden"]
             for row in csv.DictReader(io.StringIO(export.get_data(as_text=True), newline=""))}
    assert (marks[ids[1]], marks[ids[0]]) == ("true", "false")
    page = console.get(hidden.headers["Location"]).get_data(as_text=True)
    assert "The comment is hidden" in page
    assert Sections(page).body("comments")[0][4].startswith("Hidden")

    assert console.post(hide_url(poll, ids[1]), {"hidden": "false"}).status_code == 302
    assert client.get(api, query_string={"hidden": "true"}, headers=auth).get_json() == []


def test_each_comment_has_a_hide_or_show_form_with_the_csrf_token(console, voted):
    poll, ids = voted
    console.post(hide_url(poll, ids[0]), {"hidden": "true"})
    forms = [form for form in Sections(console.get(feedback_url(poll)).get_data(as_text=True))
             .forms if "/comments/" in form.get("action", "")]
    assert {(form["action"], form["inputs"]["hidden"]) for form in forms} == {
        (hide_url(poll, ids[3]), "true"), (hide_url(poll, ids[1]), "true"),
        (hide_url(poll, ids[0]), "false")}
    assert all(form["method"] == "post" and form["inputs"]["csrf_token"] == console.token
               for form in forms)


def test_hiding_without_the_csrf_token_is_refused(console, client, auth, voted):
    poll, ids = voted
    refused = console.post(hide_url(poll, ids[0]), {"hidden": "true"}, token=False)
    assert refused.status_code == 400
    forged = console.client.post(hide_url(poll, ids[0]),
                                 data={"hidden": "true", "csrf_token": "forged"})
    assert forged.status_code == 400
    found = client.get(f"/api/v1/polls/{poll['id']}/comments", headers=auth).get_json()
    assert not any(row["hidden"] for row in found)


@pytest.mark.parametrize("hidden, status", [("yes", 400), ("", 400)])
def test_hiding_needs_true_or_false(console, voted, hidden, status):
    poll, ids = voted
    assert console.post(hide_url(poll, ids[0]), {"hidden": hidden}).status_code == status


def test_hiding_a_vote_without_comment_is_not_found(console, voted):
    poll, ids = voted
    assert console.post(hide_url(poll, ids[2]), {"hidden": "true"}).status_code == 404


def test_feedback_page_shows_the_snippet_with_the_page_path_as_context(console, survey):
    page = console.get(feedback_url(survey)).get_data(as_text=True)
    assert (f'&lt;script async src=&#34;http://localhost/embed.js&#34; '
            f'data-poll=&#34;{survey["id"]}&#34; data-context=&#34;{EXAMPLE_PATH}&#34;&gt;'
            f'&lt;/script&gt;') in page
    assert "location.pathname" in page
    assert f"/polls/{survey['id']}/widget?context=%2Fdocs%2Finstall" in page
    assert 'data-copy-target="#snippet-script"' in page


def test_preset_form_creates_a_yes_no_poll_with_optional_comment(console, client, auth):
    form = console.get("/console/presets/page-feedback")
    assert form.status_code == 200
    assert CSRF_INPUT.search(form.get_data(as_text=True))
    response = console.post("/console/presets/page-feedback", {
        "question": "", "locale": "de",
        "allowed_origins": "https://docs.example\r\n\r\n  https://www.example:8443 \n"})
    assert response.status_code == 302
    poll_id = response.headers["Location"].removeprefix("/console/polls/")
    assert "/" not in poll_id
    poll = client.get(f"/api/v1/polls/{poll_id}", headers=auth).get_json()
    assert poll["question"] == "Was this page helpful?"
    assert [option["label"] for option in poll["options"]] == ["Yes", "No"]
    assert (poll["allow_comment"], poll["results"], poll["duplicate_check"],
            poll["vote_window_seconds"], poll["allowed_origins"], poll["locale"]) == (
        True, "owner_only", "cookie", None, ["https://docs.example", "https://www.example:8443"],
        "de")
    listed = client.get("/api/v1/polls", headers=auth).get_json()
    assert [found["id"] for found in listed] == [poll_id]


def test_preset_takes_a_question(console, client, auth):
    response = console.post("/console/presets/page-feedback", {
        "question": "  Did this page help you?  ", "allowed_origins": "", "locale": "en"})
    poll_id = response.headers["Location"].removeprefix("/console/polls/")
    poll = client.get(f"/api/v1/polls/{poll_id}", headers=auth).get_json()
    assert (poll["question"], poll["allowed_origins"]) == ("Did this page help you?", [])


@pytest.mark.parametrize("form, field, message", [
    ({"allowed_origins": "https://docs.example\nnot an origin"}, "allowed_origins",
     "Line 2: &#39;not an origin&#39; is not an origin"),
    ({"allowed_origins": "https://docs.example/path"}, "allowed_origins", "Line 1:"),
    ({"question": "x" * 501}, "question", "Length must be between 1 and 500."),
    ({"locale": "not a language"}, "locale", "Not a BCP 47 language tag"),
])
def test_preset_names_the_invalid_field_and_creates_nothing(console, client, auth, form, field,
                                                            message):
    response = console.post("/console/presets/page-feedback",
                            {"question": "", "allowed_origins": "", "locale": "en", **form})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert re.search(rf'id="{field}" [^>]*aria-invalid="true"', page, re.S), page
    assert f'<p class="pb-field-error" id="{field}-error">' in page
    assert message in page
    assert client.get("/api/v1/polls", headers=auth).get_json() == []


def test_preset_without_the_csrf_token_is_refused(console, client, auth):
    refused = console.post("/console/presets/page-feedback", {"locale": "en"}, token=False)
    assert refused.status_code == 400
    assert client.get("/api/v1/polls", headers=auth).get_json() == []


def test_the_console_leads_to_the_preset_feedback_and_a_webhook_for_the_poll(console, survey):
    polls = console.get("/console/polls").get_data(as_text=True)
    assert 'href="/console/presets/page-feedback"' in polls
    poll_page = console.get(f"/console/polls/{survey['id']}").get_data(as_text=True)
    assert f'href="/console/polls/{survey["id"]}/feedback"' in poll_page
    assert f'href="/console/webhooks/new?poll={survey["id"]}"' in poll_page
    assert 'href="/console/webhooks"' in poll_page  # the navigation
